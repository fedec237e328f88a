package redact_test

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/redact"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/anthropic"
	_ "github.com/llmux/llmux/translate/bedrock"
	"github.com/llmux/llmux/translate/eventstream"
	_ "github.com/llmux/llmux/translate/gemini"
	"github.com/llmux/llmux/translate/jsonenc"
	_ "github.com/llmux/llmux/translate/openai"
)

// The placeholders of the request below, cut across the provider's stream
// events as a model may write them.
var deltas = []string{"Mail <EMA", "IL_1> and <PHO", "NE_1>", ", not <EMAIL_2>."}

const restored = "Mail jane@example.com and +1 415 555 2671, not <EMAIL_2>."

func js(s string) string { return string(jsonenc.AppendString(nil, s)) }

// providerStreams are each provider's wire format for the deltas.
func providerStreams() map[string]struct {
	kind, ct string
	body     []byte
} {
	var oa, an, ge strings.Builder
	var be []byte
	oa.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	an.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
	be = eventstream.Event(be, "messageStart", []byte(`{"role":"assistant"}`))
	for i, d := range deltas {
		oa.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":` + js(d) + `},"finish_reason":null}]}` + "\n\n")
		an.WriteString("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":" + js(d) + "}}\n\n")
		finish := ""
		if i == len(deltas)-1 {
			finish = `,"finishReason":"STOP"`
		}
		ge.WriteString(`data: {"candidates":[{"content":{"parts":[{"text":` + js(d) + `}],"role":"model"}` + finish + `,"index":0}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":4,"totalTokenCount":9},"modelVersion":"gemini-2.0-flash","responseId":"r1"}` + "\n\n")
		be = eventstream.Event(be, "contentBlockDelta", []byte(`{"contentBlockIndex":0,"delta":{"text":`+js(d)+`}}`))
	}
	oa.WriteString(`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n")
	an.WriteString("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	be = eventstream.Event(be, "contentBlockStop", []byte(`{"contentBlockIndex":0}`))
	be = eventstream.Event(be, "messageStop", []byte(`{"stopReason":"end_turn"}`))
	be = eventstream.Event(be, "metadata", []byte(`{"usage":{"inputTokens":5,"outputTokens":9,"totalTokens":14},"metrics":{"latencyMs":10}}`))
	return map[string]struct {
		kind, ct string
		body     []byte
	}{
		"openai":    {"openai", "text/event-stream", []byte(oa.String())},
		"anthropic": {"anthropic", "text/event-stream", []byte(an.String())},
		"gemini":    {"gemini", "text/event-stream", []byte(ge.String())},
		"bedrock":   {"bedrock", "application/vnd.amazon.eventstream", be},
	}
}

// TestRestoreProviderStreamsEverySplit decodes each provider's stream with
// its translator, as the processor does, split into two body chunks at
// every byte, and restores the decoder's OpenAI output: the client always
// reads the originals; a placeholder the request did not get stays.
func TestRestoreProviderStreamsEverySplit(t *testing.T) {
	pol, err := redact.NewPolicy(redact.PolicyOptions{Name: "p", Actions: map[redact.Kind]redact.Action{
		redact.KindEmail: redact.ActionReversible, redact.KindPhone: redact.ActionReversible}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"model":"m","stream":true,"messages":[{"role":"user","content":"jane@example.com, +1 415 555 2671"}]}`)
	for name, ps := range providerStreams() {
		t.Run(name, func(t *testing.T) {
			tr, ok := translate.Lookup(ps.kind)
			if !ok {
				t.Fatalf("no translator %s", ps.kind)
			}
			for split := 0; split <= len(ps.body); split++ {
				s := pol.NewSession("t")
				red, err := s.Request(body, redact.InputChat)
				if err != nil {
					t.Fatal(err)
				}
				if got := gjson.GetBytes(red, "messages.0.content").Str; got != "<EMAIL_1>, <PHONE_1>" {
					t.Fatalf("redacted %q", got)
				}
				treq := &translate.Request{Op: translate.OpChat, Stream: true, IncludeUsage: true, MaxBuffered: 1 << 20}
				dec := tr.NewDecoder(treq, 200, ps.ct)
				s.StartResponse(dec.ContentType())
				var client []byte
				for _, part := range []struct {
					b     []byte
					final bool
				}{{ps.body[:split], false}, {ps.body[split:], true}} {
					out, err := dec.Decode(nil, part.b, part.final)
					if err != nil {
						t.Fatalf("split %d: decode: %v", split, err)
					}
					client = append(client, s.Restore(nil, out, part.final)...)
				}
				if got := sseContent(t, client); got != restored {
					t.Fatalf("split %d: the client read %q, want %q", split, got, restored)
				}
			}
		})
	}
}

// sseContent joins the content deltas of an OpenAI stream.
func sseContent(t *testing.T, b []byte) string {
	t.Helper()
	var out strings.Builder
	for _, ev := range strings.Split(string(b), "\n\n") {
		p, ok := strings.CutPrefix(ev, "data: ")
		if !ok || p == "[DONE]" {
			continue
		}
		if !gjson.Valid(p) {
			t.Fatalf("malformed event %q", ev)
		}
		out.WriteString(gjson.Get(p, "choices.0.delta.content").Str)
	}
	return out.String()
}
