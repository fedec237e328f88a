package anthropic

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

// FuzzStreamDecoder: any byte stream, cut anywhere, decodes without panic,
// the same whole or split, into events that are each valid JSON (or
// [DONE]), with bounded state.
func FuzzStreamDecoder(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.sse")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b, uint16(len(b)/2), true)
	}
	f.Add([]byte("data: {\"type\":\"content_block_start\",\"index\":-1,\"content_block\":{\"type\":\"tool_use\",\"input\":{\"a\":1}}}\n\n"), uint16(3), false)
	f.Add([]byte("data: {\"type\":\"error\",\"error\":7}\n\ndata: x\n\n"), uint16(9), false)
	f.Add([]byte("data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"a\\u00e9\"}}\n\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":7}}\n\n"), uint16(40), true)
	f.Fuzz(func(t *testing.T, src []byte, cut uint16, usage bool) {
		req := &translate.Request{Op: translate.OpChat, Stream: true, IncludeUsage: usage}
		d1 := Translator{}.NewDecoder(req, 200, "text/event-stream").(*decoder)
		d1.sc.Max = 1 << 16
		whole, err1 := d1.Decode(nil, src, true)
		i := int(cut) % (len(src) + 1)
		d2 := Translator{}.NewDecoder(req, 200, "text/event-stream").(*decoder)
		d2.sc.Max = 1 << 16
		split, err2 := d2.Decode(nil, src[:i], false)
		if err2 == nil {
			split, err2 = d2.Decode(split, src[i:], true)
		}
		if err1 == nil && err2 == nil && !bytes.Equal(whole, split) {
			t.Fatalf("split at %d differs:\n%q\n%q", i, whole, split)
		}
		if len(d1.tools) > maxToolBlocks || d1.sc.Buffered() > 1<<16+2 {
			t.Fatalf("unbounded state: %d tools, %d buffered", len(d1.tools), d1.sc.Buffered())
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
	f.Add(529, []byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
	f.Add(400, []byte(`{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}`))
	f.Add(503, []byte("upstream connect error"))
	f.Add(0, []byte(`{"error":[]}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := ParseError(status, body)
		if e == nil || e.Code == "" || len(e.Message) > 2*maxMessage {
			t.Fatalf("%+v", e)
		}
		if out := e.AppendJSON(nil); !gjson.ValidBytes(out) {
			t.Fatalf("invalid error JSON %s", out)
		}
		d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 400+status%200, "application/json")
		if out, _ := d.Decode(nil, body, true); !gjson.ValidBytes(out) {
			t.Fatalf("invalid error body %s", out)
		}
	})
}

// FuzzResponse: any non-streamed body gives valid JSON.
func FuzzResponse(f *testing.F) {
	for _, p := range []string{"testdata/message.json", "testdata/message_tools.json", "testdata/message_thinking.json"} {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
		if out, _ := d.Decode(nil, body, true); !gjson.ValidBytes(out) {
			t.Fatalf("invalid body %s for %q", out, body)
		}
	})
}

// FuzzRequest: any client body translates or is refused without panic,
// and what is sent is valid JSON.
func FuzzRequest(f *testing.F) {
	f.Add([]byte(`{"model":"c","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA"}}]}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"response_format":{"type":"json_object"}}`))
	f.Add([]byte(`{"model":"c","messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":"x"}]}`))
	f.Add([]byte(`{"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"high","max_tokens":2000,"temperature":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !gjson.ValidBytes(body) {
			return // the processor rejects invalid JSON first
		}
		up, err := Translator{}.Request(t.Context(), &translate.Request{Op: translate.OpChat, Body: body}, &translate.Target{Model: "m"})
		if err == nil && !gjson.ValidBytes(up.Body) {
			t.Fatalf("invalid upstream body %s for %s", up.Body, body)
		}
	})
}
