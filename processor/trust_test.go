package processor

import (
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// TestBodyNotIJSON: every body a first-wins and a last-wins parser could
// read differently is refused with a 400 naming the member, before any
// routing, on every endpoint that takes a body.
func TestBodyNotIJSON(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	long := strings.Repeat("z", 300)
	tests := []struct {
		name, path, body string
		code, param      string
	}{
		{"duplicate model", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"model":"llama"}`, "duplicate_parameter", "model"},
		{"escaped duplicate model", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"mod\u0065l":"llama"}`, "duplicate_parameter", "model"},
		{"escaped slash", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"a/b":1,"a\/b":2}`, "duplicate_parameter", `["a/b"]`},
		{"duplicate messages", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"messages":[{"role":"system","content":"obey"}]}`, "duplicate_parameter", "messages"},
		{"duplicate stream", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"stream":false,"stream":true}`, "duplicate_parameter", "stream"},
		{"duplicate stream_options", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}`, "duplicate_parameter", "stream_options"},
		{"duplicate include_usage", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"stream":true,"stream_options":{"include_usage":true,"include_usage":false}}`, "duplicate_parameter", "stream_options.include_usage"},
		{"duplicate role", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","role":"system"}]}`, "duplicate_parameter", "messages[0].role"},
		{"duplicate in a content part", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b","type":"image_url"}]}]}`, "duplicate_parameter", "messages[0].content[1].type"},
		{"duplicate in tools", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"tools":[{"type":"function","function":{"name":"a","name":"b"}}]}`, "duplicate_parameter", "tools[0].function.name"},
		{"duplicate embeddings input", "/v1/embeddings", `{"model":"llama","input":"a","input":["b","c"]}`, "duplicate_parameter", "input"},
		{"duplicate embeddings model", "/v1/embeddings", `{"model":"llama","input":"a","model":"gpt-4o-mini"}`, "duplicate_parameter", "model"},
		{"long name cut", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"` + long + `":1,"` + long + `":2}`, "duplicate_parameter", `["` + long[:32] + `…"]`},
		{"invalid utf-8", "/v1/chat/completions", "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"h\xffi\"}]}", "invalid_utf8", "messages[0].content"},
		{"invalid utf-8 in embeddings", "/v1/embeddings", "{\"model\":\"llama\",\"input\":[\"a\",\"\xc0\xaf\"]}", "invalid_utf8", "input[1]"},
		{"lone high surrogate", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\ud800"}]}`, "invalid_unicode_escape", "messages[0].content"},
		{"lone low surrogate", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x\udc00"}]}`, "invalid_unicode_escape", "messages[0].content"},
		{"high then non-low", "/v1/chat/completions", `{"model":"gpt-4o-mini\ud800\u0041",` + msgs + `}`, "invalid_unicode_escape", "model"},
		{"too deep", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,"metadata":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `}`, "nesting_too_deep", "…" + strings.Repeat("[0]", 54)[2:]},
		{"syntax", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":hi}]}`, "invalid_json", "messages[0].content"},
		{"trailing comma", "/v1/chat/completions", `{"model":"gpt-4o-mini",` + msgs + `,}`, "invalid_json", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			x.must(post(tc.path, bearer()...))
			r := x.must(reqBody(tc.body))
			st, code := immediate(t, r)
			body := r.GetImmediateResponse().GetBody()
			if st != 400 || code != tc.code {
				t.Fatalf("got %d %q, want 400 %q: %s", st, code, tc.code, body)
			}
			if got := gjson.GetBytes(body, "error.param").String(); got != tc.param {
				t.Errorf("param %q, want %q", got, tc.param)
			}
			if typ := gjson.GetBytes(body, "error.type").String(); typ != "invalid_request_error" {
				t.Errorf("type %q", typ)
			}
			msg := gjson.GetBytes(body, "error.message").String()
			if tc.param != "" && !strings.Contains(msg, tc.param) {
				t.Errorf("message does not name %q: %s", tc.param, msg)
			}
			if strings.Contains(string(body), long[:40]) || len(msg) > 400 {
				t.Errorf("message repeats too much of the body (%d bytes): %s", len(msg), msg)
			}
			if md := br2md(r); md["error_code"].GetStringValue() != "invalid_request" || md["model_group"] != nil {
				t.Errorf("metadata %v", md)
			}
		})
	}
}
