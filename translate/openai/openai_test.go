package openai

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func TestRequest(t *testing.T) {
	tests := []struct {
		name       string
		req        translate.Request
		target     translate.Target
		wantPath   string
		wantAuth   string
		wantUsage  bool // stream_options.include_usage in the upstream body
		wantHeader [2]string
	}{
		{
			name:     "chat, default base path, key",
			req:      translate.Request{Op: translate.OpChat, Body: []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)},
			target:   translate.Target{Model: "gpt-4o-2024-08-06", APIKey: "sk-p"},
			wantPath: "/v1/chat/completions", wantAuth: "Bearer sk-p",
		},
		{
			name:     "stream without include_usage gets it",
			req:      translate.Request{Op: translate.OpChat, Stream: true, Body: []byte(`{"model":"m","stream":true,"messages":[]}`)},
			target:   translate.Target{Model: "up"},
			wantPath: "/v1/chat/completions", wantUsage: true,
		},
		{
			name:     "stream with include_usage false is overridden",
			req:      translate.Request{Op: translate.OpChat, Stream: true, Body: []byte(`{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[]}`)},
			target:   translate.Target{Model: "up"},
			wantPath: "/v1/chat/completions", wantUsage: true,
		},
		{
			name:     "embeddings, custom base path and headers",
			req:      translate.Request{Op: translate.OpEmbeddings, Body: []byte(`{"model":"e","input":"x"}`)},
			target:   translate.Target{Model: "text-embedding-3-small", BasePath: "/openai/v1/", Headers: map[string]string{"openai-organization": "org-1"}},
			wantPath: "/openai/v1/embeddings", wantHeader: [2]string{"openai-organization", "org-1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := string(tc.req.Body)
			up, err := Translator{}.Request(context.Background(), &tc.req, &tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if string(tc.req.Body) != orig {
				t.Fatal("client body modified")
			}
			if up.Path != tc.wantPath {
				t.Errorf("path %q", up.Path)
			}
			hdr := map[string]string{}
			for _, h := range up.Headers {
				hdr[h.Key] = h.Value
			}
			if hdr["authorization"] != tc.wantAuth {
				t.Errorf("authorization %q", hdr["authorization"])
			}
			if hdr["content-type"] != "application/json" {
				t.Errorf("content-type %q", hdr["content-type"])
			}
			if tc.wantHeader[0] != "" && hdr[tc.wantHeader[0]] != tc.wantHeader[1] {
				t.Errorf("%s = %q", tc.wantHeader[0], hdr[tc.wantHeader[0]])
			}
			if got := gjson.GetBytes(up.Body, "model").String(); got != tc.target.Model {
				t.Errorf("model %q", got)
			}
			if got := gjson.GetBytes(up.Body, "stream_options.include_usage").Bool(); got != tc.wantUsage {
				t.Errorf("include_usage %v", got)
			}
			if !gjson.ValidBytes(up.Body) {
				t.Errorf("invalid body %s", up.Body)
			}
		})
	}
}

func decodeAll(t *testing.T, d translate.Decoder, src string, step int) string {
	t.Helper()
	var out []byte
	for i := 0; i < len(src); i += step {
		j := min(i+step, len(src))
		var err error
		out, err = d.Decode(out, []byte(src[i:j]), j == len(src))
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(src) == 0 {
		out, _ = d.Decode(out, nil, true)
	}
	return string(out)
}

func TestStreamDecoderEverySplit(t *testing.T) {
	src, err := os.ReadFile("testdata/chat_stream_usage.sse")
	if err != nil {
		t.Fatal(err)
	}
	req := &translate.Request{Op: translate.OpChat, Stream: true}
	whole := decodeAll(t, Translator{}.NewDecoder(req, 200, "text/event-stream"), string(src), len(src))
	for step := 1; step < len(src); step++ {
		d := Translator{}.NewDecoder(req, 200, "text/event-stream")
		if got := decodeAll(t, d, string(src), step); got != whole {
			t.Fatalf("step %d differs:\n%s\nvs\n%s", step, got, whole)
		}
		r := d.Result()
		if !r.Completed || !r.HasUsage || r.Usage.InputTokens != 19 || r.Usage.OutputTokens != 10 || r.Usage.CachedTokens != 3 || r.Usage.ReasoningTokens != 2 || r.FinishReason != "stop" || !r.FirstContent {
			t.Fatalf("step %d: result %+v", step, r)
		}
	}
	if strings.Contains(whole, `"choices":[]`) {
		t.Errorf("usage chunk not removed:\n%s", whole)
	}
	if !strings.HasSuffix(whole, "data: [DONE]\n\n") {
		t.Errorf("no [DONE]:\n%s", whole)
	}
}

func TestStreamDecoderKeepsAskedUsage(t *testing.T) {
	src, _ := os.ReadFile("testdata/chat_stream_usage.sse")
	req := &translate.Request{Op: translate.OpChat, Stream: true, IncludeUsage: true}
	got := decodeAll(t, Translator{}.NewDecoder(req, 200, "text/event-stream"), string(src), 64)
	if got != strings.ReplaceAll(string(src), "\r\n", "\n") {
		t.Errorf("stream altered:\n%s", got)
	}
}

func TestStreamTruncatedAndInbandError(t *testing.T) {
	req := &translate.Request{Op: translate.OpChat, Stream: true}
	d := Translator{}.NewDecoder(req, 200, "text/event-stream")
	decodeAll(t, d, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"ind", 10)
	if r := d.Result(); r.Completed || r.Err != nil {
		t.Errorf("truncated stream: %+v", r)
	}
	d = Translator{}.NewDecoder(req, 200, "text/event-stream")
	out := decodeAll(t, d, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n", 9)
	if r := d.Result(); r.Err == nil || r.Err.Code != translate.CodeUpstreamError {
		t.Errorf("in-band error: %+v", r.Err)
	}
	if !strings.Contains(out, `"error"`) {
		t.Errorf("in-band error event not passed on: %s", out)
	}
}

func TestJSONDecoder(t *testing.T) {
	src, _ := os.ReadFile("testdata/chat.json")
	d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
	out := decodeAll(t, d, string(src), 13)
	if out != string(src) {
		t.Error("body altered")
	}
	r := d.Result()
	if !r.Completed || r.Usage.InputTokens != 19 || r.Usage.OutputTokens != 10 || r.Usage.CachedTokens != 0 || r.FinishReason != "stop" || r.Model != "gpt-4o-mini-2024-07-18" {
		t.Errorf("result %+v", r)
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   translate.Code
	}{
		{429, `{"error":{"message":"m","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, translate.CodeRateLimited},
		{429, `{"error":{"message":"m","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`, translate.CodeQuotaExhausted},
		{400, `{"error":{"message":"m","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, translate.CodeContextLengthExceeded},
		{400, `{"error":{"message":"m","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}`, translate.CodeContentFiltered},
		{401, `{"error":{"message":"m","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, translate.CodeAuthentication},
		{404, `{"error":{"message":"m","type":"invalid_request_error","param":null,"code":"model_not_found"}}`, translate.CodeNotFound},
		{500, `{"error":{"message":"m","type":"server_error","param":null,"code":null}}`, translate.CodeUpstreamError},
		{503, `upstream connect error or disconnect/reset before headers`, translate.CodeUpstreamUnavailable},
		// OpenAI's own 503 bodies: the provider answered, over capacity.
		{503, `{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}`, translate.CodeOverloaded},
		{503, `{"error":{"message":"m","type":"service_unavailable_error","param":null,"code":"server_is_overloaded"}}`, translate.CodeOverloaded},
		{429, `{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"slow_down"}}`, translate.CodeRateLimited},
		{504, ``, translate.CodeTimeout},
		{502, `<html>`, translate.CodeUpstreamProtocol},
	}
	for _, tc := range tests {
		e := ParseError(tc.status, []byte(tc.body))
		if e.Code != tc.want {
			t.Errorf("%d %s: got %s, want %s", tc.status, tc.body, e.Code, tc.want)
		}
		if e.HTTPStatus() != tc.status {
			t.Errorf("%d: status %d", tc.status, e.HTTPStatus())
		}
		if !gjson.ValidBytes(e.AppendJSON(nil)) {
			t.Errorf("invalid JSON %s", e.AppendJSON(nil))
		}
		// A provider fault reads as its class, whatever OpenAI's type
		// ("requests") and code (null, "slow_down") were.
		if body := e.AppendJSON(nil); tc.want.Uniform() && (gjson.GetBytes(body, "error.type").Str != tc.want.Type() || gjson.GetBytes(body, "error.code").Str != tc.want.OpenAICode()) {
			t.Errorf("%d %s: not uniform: %s", tc.status, tc.body, body)
		}
	}
}

func FuzzStreamDecoder(f *testing.F) {
	src, _ := os.ReadFile("testdata/chat_stream_usage.sse")
	f.Add(src, 5, false)
	f.Add([]byte("data: {\"error\":{}}\n\ndata: [DONE]\n\n"), 3, true)
	f.Add([]byte("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":\"x\"}}\n\n"), 1, false)
	f.Fuzz(func(t *testing.T, b []byte, step int, includeUsage bool) {
		if step <= 0 {
			step = 1
		}
		d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true, IncludeUsage: includeUsage}, 200, "text/event-stream")
		var out []byte
		for i := 0; i < len(b); i += step {
			j := min(i+step, len(b))
			out, _ = d.Decode(out, b[i:j], j == len(b))
		}
		// Each event grows by at most its terminator, or, for an error
		// event rewritten into OpenAI's shape, by a bounded envelope around
		// a message of at most maxMessage bytes.
		if len(out) > len(b)+(strings.Count(string(b), "\n")+1)*(6*translate.MaxMessage+256) {
			t.Fatalf("output grew beyond input: %d > %d", len(out), len(b))
		}
	})
}

func FuzzErrorParser(f *testing.F) {
	f.Add(429, []byte(`{"error":{"message":"m","code":"rate_limit_exceeded"}}`))
	f.Add(500, []byte(`<html>`))
	f.Add(422, []byte(`{"detail":[{"loc":["body","messages",0],"msg":"field required"}]}`))
	f.Add(404, []byte(`{"error":"model not found"}`))
	f.Add(400, []byte(`{"object":"error","message":{"x":1},"type":"BadRequestError","code":400}`))
	f.Add(401, []byte(`{"statusCode":401,"message":"Unauthorized"}`))
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		e := ParseError(status, b)
		if !e.Code.Known() || len(e.Message) > 2048 {
			t.Fatalf("error %+v", e)
		}
		if !gjson.ValidBytes(e.AppendJSON(nil)) {
			t.Fatalf("invalid error JSON for %q", b)
		}
	})
}

func BenchmarkStreamChunk(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_4d06ba6ea9","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")
	d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
	var out []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}

// TestParseErrorCompatible covers the error bodies of OpenAI-compatible
// servers (testdata/README.md cites their documentation).
func TestParseErrorCompatible(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    translate.Code
		oaiCode string
		param   string
	}{
		{"fastapi detail string", 404, `{"detail":"Not Found"}`, translate.CodeNotFound, "model_not_found", ""},
		{"fastapi validation", 422, `{"detail":[{"type":"missing","loc":["body","messages"],"msg":"Field required","input":{}}]}`, translate.CodeInvalidRequest, "invalid_request", "messages"},
		{"ollama string", 404, `{"error":"model \"llama3\" not found, try pulling it first"}`, translate.CodeNotFound, "model_not_found", ""},
		{"vllm top-level", 400, `{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}`, translate.CodeContextLengthExceeded, "context_length_exceeded", ""},
		{"vllm nested", 404, `{"error":{"message":"The model does not exist.","type":"NotFoundError","param":null,"code":404}}`, translate.CodeNotFound, "model_not_found", ""},
		{"mistral object message", 422, `{"object":"error","message":{"detail":[{"msg":"bad"}]},"type":"invalid_request_message_error","param":null,"code":null}`, translate.CodeInvalidRequest, "invalid_request", ""},
		{"mistral 401", 401, `{"message":"Unauthorized","request_id":"abc"}`, translate.CodeAuthentication, "invalid_api_key", ""},
		{"deepseek balance", 402, `{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}`, translate.CodeQuotaExhausted, "insufficient_quota", ""},
		{"groq decommissioned", 400, `{"error":{"message":"The model has been decommissioned","type":"invalid_request_error","code":"model_decommissioned"}}`, translate.CodeNotFound, "model_decommissioned", ""},
		{"plain text 500", 500, `Internal Server Error`, translate.CodeUpstreamError, "server_error", ""},
		{"not implemented", 501, ``, translate.CodeUnsupported, "unsupported_parameter", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, tc.status, "application/json")
			out := decodeAll(t, d, tc.body, 7)
			e := d.Result().Err
			if want := statusOf(tc.want, tc.status); e.Code != tc.want || e.HTTPStatus() != want {
				t.Fatalf("got %s %d, want %s", e.Code, e.HTTPStatus(), tc.want)
			}
			if !IsOpenAIShaped(out) {
				t.Fatalf("not OpenAI-shaped: %s", out)
			}
			if c := gjson.Get(out, "error.code").String(); c != tc.oaiCode {
				t.Errorf("code %q, want %q", c, tc.oaiCode)
			}
			if p := gjson.Get(out, "error.param").String(); p != tc.param {
				t.Errorf("param %q", p)
			}
			if gjson.Get(out, "error.message").String() == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestStreamQuirks(t *testing.T) {
	role := `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n"
	reason := `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"reasoning_content":"hmm"},"finish_reason":null}]}` + "\n\n"
	last := `data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}` + "\n\n"
	done := "data: [DONE]\n\n"
	req := &translate.Request{Op: translate.OpChat, Stream: true}

	// No usage at all: the stream completes, HasUsage stays false.
	d := Translator{}.NewDecoder(req, 200, "text/event-stream")
	noUsage := strings.Replace(last, `,"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}`, "", 1)
	out := decodeAll(t, d, role+noUsage+done, 11)
	if r := d.Result(); !r.Completed || r.HasUsage || r.Err != nil || out != role+noUsage+done {
		t.Errorf("no usage: %+v\n%s", r, out)
	}
	// Usage on the last content chunk: kept, and read.
	d = Translator{}.NewDecoder(req, 200, "text/event-stream")
	out = decodeAll(t, d, role+reason+last+done, 13)
	if r := d.Result(); !r.HasUsage || r.Usage.InputTokens != 5 || out != role+reason+last+done {
		t.Errorf("usage on last chunk: %+v\n%s", r, out)
	}
	// reasoning_content counts as the first content (TTFT).
	d = Translator{}.NewDecoder(req, 200, "text/event-stream")
	decodeAll(t, d, role+reason, 1000)
	if !d.Result().FirstContent {
		t.Error("reasoning_content is not first content")
	}
}

func TestInbandErrorsWrapped(t *testing.T) {
	req := &translate.Request{Op: translate.OpChat, Stream: true}
	tests := []struct {
		name, ev string
		want     translate.Code
	}{
		{"ollama string", `data: {"error":"model runner crashed"}`, translate.CodeUpstreamError},
		{"vllm object", `data: {"object":"error","message":"context length","type":"BadRequestError","param":null,"code":400}`, translate.CodeInvalidRequest},
		{"no message", `data: {"error":{"code":"rate_limit_exceeded"}}`, translate.CodeRateLimited},
		{"event error text", "event: error\ndata: upstream exploded", translate.CodeUpstreamError},
		{"event error json", "event: error\ndata: {\"detail\":\"overloaded\"}", translate.CodeUpstreamError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Translator{}.NewDecoder(req, 200, "text/event-stream")
			out := decodeAll(t, d, tc.ev+"\n\n", 4)
			if e := d.Result().Err; e == nil || e.Code != tc.want {
				t.Fatalf("error %+v", e)
			}
			payload, ok := strings.CutPrefix(strings.TrimSuffix(out, "\n\n"), "data: ")
			if !ok || !IsOpenAIShaped(payload) {
				t.Errorf("not an OpenAI error event: %q", out)
			}
		})
	}
	// An OpenAI-shaped in-band error passes unchanged.
	ev := `data: {"error":{"message":"m","type":"server_error","param":null,"code":"server_error"}}` + "\n\n"
	d := Translator{}.NewDecoder(req, 200, "text/event-stream")
	if out := decodeAll(t, d, ev, 3); out != ev {
		t.Errorf("shaped error altered: %s", out)
	}
	// A 200 JSON body that is an error.
	d = Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
	out := decodeAll(t, d, `{"error":"boom"}`, 3)
	if d.Result().Err == nil || d.Result().Completed || !IsOpenAIShaped(out) {
		t.Errorf("200 error body: %+v %s", d.Result(), out)
	}
}

func TestCodesComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range translate.Codes {
		if !c.Known() || c.Type() == "" || c.OpenAICode() == "" || c.Status() < 400 {
			t.Errorf("%s: incomplete mapping", c)
		}
		if seen[string(c)] {
			t.Errorf("%s listed twice", c)
		}
		seen[string(c)] = true
	}
	for _, st := range []int{400, 401, 402, 403, 404, 405, 408, 413, 422, 429, 499, 500, 501, 502, 503, 504, 529} {
		if c := translate.CodeForStatus(st); !c.Known() {
			t.Errorf("CodeForStatus(%d) = %s", st, c)
		}
	}
}

func TestMaxBuffered(t *testing.T) {
	d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat, MaxBuffered: 10}, 200, "application/json")
	if _, err := d.Decode(nil, []byte(`{"choices":[],"model":"m"}`), true); err == nil || d.Result().Err.Code != translate.CodeUpstreamProtocol {
		t.Fatalf("over the limit: %v %+v", err, d.Result().Err)
	}
}

// statusOf is the client status for a provider status: the class's for
// provider faults (translate.Code.Uniform), else the provider's.
func statusOf(c translate.Code, status int) int {
	if c.Uniform() {
		return c.Status()
	}
	return status
}
