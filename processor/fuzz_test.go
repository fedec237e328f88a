package processor

import (
	"context"
	"strconv"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/proto/config"
)

// FuzzStreamHandler feeds random header sets, request bodies and response
// bytes into a stream handler and asserts a well-formed ext_proc reply to
// every message.
func FuzzStreamHandler(f *testing.F) {
	f.Add("POST", "/v1/chat/completions", "Bearer "+testKey, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, 200, "application/json", `{"usage":{"prompt_tokens":1}}`, false)
	f.Add("POST", "/v1/chat/completions", "Bearer "+testKey, `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, 200, "text/event-stream", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n", false)
	f.Add("POST", "/v1/embeddings", "Bearer "+testKey, `{"model":"llama","input":["a","b"]}`, 429, "application/json", `{"error":{"message":"x"}}`, true)
	f.Add("GET", "/v1/models", "Bearer "+testKey, "", 200, "", "", true)
	f.Add("POST", "/v1/chat/completions?x", "Basic x", `[`, 500, "text/html", "<html>", false)
	f.Add("PUT", "/", "", "\x00\xff", 0, "", "", true)
	cfg := testConfig(f)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger()})
	f.Fuzz(func(t *testing.T, method, path, authz, body string, status int, ct, respBytes string, headersEOS bool) {
		rec := &recorder{}
		h := newHandler(s, context.Background(), rec)
		defer h.finish()
		step := func(req *extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
			before := len(rec.sent)
			if err := h.handle(req); err != nil {
				t.Fatalf("handler error on a well-ordered exchange: %v", err)
			}
			return rec.sent[before:]
		}
		one := func(out []*extprocv3.ProcessingResponse, what string) *extprocv3.ProcessingResponse {
			if len(out) != 1 {
				t.Fatalf("%s: want exactly one reply, got %d", what, len(out))
			}
			r := out[0]
			if ir := r.GetImmediateResponse(); ir != nil {
				checkImmediate(t, ir)
				if h.ph != phaseDone {
					t.Fatalf("immediate response but phase %s", h.ph)
				}
			}
			return r
		}

		r := one(step(reqHeaders(headersEOS, ":method", method, ":path", path, "authorization", authz)), "request_headers")
		if r.GetImmediateResponse() != nil {
			return
		}
		if r.GetRequestHeaders() == nil {
			t.Fatalf("request_headers answered with %T", r.Response)
		}
		r = one(step(reqBody(body)), "request_body")
		if r.GetImmediateResponse() != nil {
			return
		}
		br := r.GetRequestBody().GetResponse()
		if br == nil {
			t.Fatalf("request_body answered with %T", r.Response)
		}
		m := br.GetHeaderMutation()
		for _, hv := range m.GetSetHeaders() {
			if hv.GetHeader().GetValue() != "" {
				t.Fatalf("header %s set with value", hv.GetHeader().GetKey())
			}
		}
		if cl := setHeader(m, "content-length"); cl != strconv.Itoa(len(br.GetBodyMutation().GetBody())) {
			t.Fatalf("content-length %s for %d bytes", cl, len(br.GetBodyMutation().GetBody()))
		}
		if !br.GetClearRouteCache() || setHeader(m, "x-llmux-upstream") == "" || setHeader(m, ":path") == "" {
			t.Fatal("routing mutation incomplete")
		}

		// The headers reply may wait for the body (non-streamed and error
		// responses); it must come before any body reply, exactly once.
		headerReplies := 0
		check := func(out []*extprocv3.ProcessingResponse) {
			for _, r := range out {
				switch {
				case r.GetResponseHeaders() != nil:
					headerReplies++
				case r.GetResponseBody() != nil:
					if headerReplies != 1 {
						t.Fatal("a body reply before the headers reply")
					}
				default:
					t.Fatalf("unexpected reply %T", r.Response)
				}
			}
		}
		check(step(respHeaders(false, ":status", strconv.Itoa(status), "content-type", ct)))
		// Deliver the response in three pieces; the last reply must end
		// the stream.
		n := len(respBytes)
		parts := []string{respBytes[:n/3], respBytes[n/3 : 2*n/3], respBytes[2*n/3:]}
		var last *extprocv3.ProcessingResponse
		for i, p := range parts {
			out := step(respBody(p, i == 2))
			check(out)
			for _, r := range out {
				if r.GetResponseHeaders() != nil {
					continue
				}
				if r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse() == nil {
					t.Fatalf("body answered without streamed_response: %v", r)
				}
				last = r
			}
		}
		if headerReplies != 1 {
			t.Fatalf("%d headers replies", headerReplies)
		}
		if last == nil || !last.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetEndOfStream() {
			t.Fatal("the response never ended")
		}
		if h.ph != phaseDone {
			t.Fatalf("phase %s after the end", h.ph)
		}
	})
}

func checkImmediate(t *testing.T, ir *extprocv3.ImmediateResponse) {
	t.Helper()
	code := ir.GetStatus().GetCode()
	if code < 200 || code > 599 {
		t.Fatalf("immediate status %d", code)
	}
	if !gjson.ValidBytes(ir.GetBody()) {
		t.Fatalf("immediate body is not JSON: %q", ir.GetBody())
	}
	if code >= 400 && !gjson.GetBytes(ir.GetBody(), "error.message").Exists() {
		t.Fatalf("error body not OpenAI-shaped: %s", ir.GetBody())
	}
}
