package bedrock

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/eventstream"
)

// FuzzStreamDecoder: any event-stream payloads (well-framed, so the JSON
// handling is reached), cut anywhere, decode without panic, the same whole
// or split, into SSE events that are each valid JSON (or [DONE]), with
// bounded state.
func FuzzStreamDecoder(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.events")
	for _, p := range files {
		b := encodeEvents(f, p)
		f.Add(b, []byte(nil), uint16(len(b)/2), true, false)
	}
	f.Add([]byte(nil), []byte(`{"contentBlockIndex":-1,"start":{"toolUse":{"toolUseId":"x","name":"llmux_json_response"}}}`), uint16(3), false, true)
	f.Add([]byte("\x00\x00\x00\x10garbage"), []byte(`{"delta":{"text":7}}`), uint16(9), false, false)
	types := []string{"messageStart", "contentBlockStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"}
	f.Fuzz(func(t *testing.T, raw, payload []byte, cut uint16, usage, jsonMode bool) {
		// raw is used as is; payload is framed under every event type.
		src := bytes.Clone(raw)
		for i, typ := range types {
			if len(payload) > 0 && (int(cut)+i)%3 != 0 {
				src = eventstream.Event(src, typ, payload)
			}
		}
		req := chatReq(true, usage, jsonMode)
		d1 := Translator{}.NewDecoder(req, 200, EventStreamType).(*decoder)
		whole, err1 := d1.Decode(nil, src, true)
		i := int(cut) % (len(src) + 1)
		d2 := Translator{}.NewDecoder(req, 200, EventStreamType).(*decoder)
		split, err2 := d2.Decode(nil, src[:i], false)
		if err2 == nil {
			split, err2 = d2.Decode(split, src[i:], true)
		}
		if err1 == nil && err2 == nil && !bytes.Equal(whole, split) {
			t.Fatalf("split at %d differs:\n%q\n%q", i, whole, split)
		}
		if len(d1.tools) > maxToolBlocks || d1.es.Buffered() > maxFrame {
			t.Fatalf("unbounded state: %d tools, %d buffered", len(d1.tools), d1.es.Buffered())
		}
		for _, ev := range bytes.Split(whole, []byte("\n\n")) {
			if len(ev) == 0 {
				continue
			}
			data, ok := bytes.CutPrefix(ev, []byte("data: "))
			if !ok || (string(data) != "[DONE]" && !gjson.ValidBytes(data)) {
				t.Fatalf("bad output event %q", ev)
			}
		}
		if r := d1.Result(); r.Completed && r.Err != nil {
			t.Fatalf("completed with an error: %+v", r)
		}
	})
}

// FuzzParseError: any error body classifies without panic into an error
// whose OpenAI body is valid JSON and whose message is bounded.
func FuzzParseError(f *testing.F) {
	f.Add(400, []byte(`{"message":"Input is too long for requested model."}`))
	f.Add(429, []byte(`{"__type":"ThrottlingException","message":"x"}`))
	f.Add(503, []byte("upstream connect error"))
	f.Add(0, []byte(`{"message":[]}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := ParseError(status, body)
		if e == nil || e.Code == "" || len(e.Message) > 2*maxMessage {
			t.Fatalf("%+v", e)
		}
		if out := e.AppendJSON(nil); !gjson.ValidBytes(out) {
			t.Fatalf("invalid error JSON %s", out)
		}
		d := Translator{}.NewDecoder(chatReq(false, false, false), 400+status%200, "application/json")
		if out, _ := d.Decode(nil, body, true); !gjson.ValidBytes(out) {
			t.Fatalf("invalid error body %s", out)
		}
		x := exceptionError(body, body, body)
		if !gjson.ValidBytes(x.AppendJSON(nil)) || len(x.Message) > 2*maxMessage {
			t.Fatalf("%+v", x)
		}
	})
}

// FuzzResponse: any non-streamed Converse or embeddings body gives valid
// JSON.
func FuzzResponse(f *testing.F) {
	files, _ := filepath.Glob("testdata/converse_*.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b, uint8(0))
	}
	f.Add([]byte(`{"embedding":[1,2],"inputTextTokenCount":1}`), uint8(1))
	f.Add([]byte(`{"embeddings":[[1],[2]]}`), uint8(2))
	f.Fuzz(func(t *testing.T, body []byte, kind uint8) {
		req := chatReq(false, false, kind%2 == 0)
		if k := embedKind(kind % 3); k != embedNone {
			req = &translate.Request{Op: translate.OpEmbeddings, State: &state{op: translate.OpEmbeddings, embed: k, base64: kind&4 != 0, model: "e"}}
		}
		d := Translator{}.NewDecoder(req, 200, "application/json")
		if out, _ := d.Decode(nil, body, true); !gjson.ValidBytes(out) {
			t.Fatalf("invalid body %s for %q", out, body)
		}
	})
}

// FuzzRequest: any client body translates or is refused without panic,
// and what is sent is valid JSON.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"model":"c","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"response_format":{"type":"json_object"}}`), false)
	f.Add([]byte(`{"model":"c","messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":"x"}],"tool_choice":"none"}`), false)
	f.Add([]byte(`{"model":"e","input":["a","b"],"encoding_format":"base64"}`), true)
	f.Add([]byte(`{"model":"c","messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":"x"}],"reasoning_effort":"high","max_tokens":5000}`), false)
	f.Fuzz(func(t *testing.T, body []byte, embed bool) {
		if !gjson.ValidBytes(body) {
			return // the processor rejects invalid JSON first
		}
		op, model := translate.OpChat, testModel
		if embed {
			op, model = translate.OpEmbeddings, "cohere.embed-english-v3"
		}
		up, err := testTranslator().Request(t.Context(), &translate.Request{Op: op, Body: body}, target(model))
		if err == nil && !gjson.ValidBytes(up.Body) {
			t.Fatalf("invalid upstream body %s for %s", up.Body, body)
		}
	})
}
