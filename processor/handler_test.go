package processor

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/openai"
)

const (
	testKey     = "sk-client-test-key-0001"
	providerKey = "sk-provider-secret-9999"
)

// testConfig loads testdata/llmux.yaml with test secrets.
func testConfig(t testing.TB) *config.Runtime {
	t.Helper()
	env := map[string]string{"LLMUX_TEST_KEY": testKey, "OPENAI_API_KEY": providerKey}
	rt, err := config.Load("testdata/llmux.yaml", config.LoadOptions{
		Kinds:  translate.KnownKinds,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
	})
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return rt
}

// recorder is a sender that keeps what the handler sends.
type recorder struct {
	sent []*extprocv3.ProcessingResponse
}

func (r *recorder) Send(m *extprocv3.ProcessingResponse) error {
	// Chunk responses are reused by the handler: keep a copy.
	if sr := m.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse(); sr != nil {
		cp := &extprocv3.StreamedBodyResponse{Body: append([]byte(nil), sr.Body...), EndOfStream: sr.EndOfStream}
		m = &extprocv3.ProcessingResponse{DynamicMetadata: m.DynamicMetadata, Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{
				Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: cp}}}}}}
	}
	r.sent = append(r.sent, m)
	return nil
}

// exchange drives one handler the way Envoy would.
type exchange struct {
	t   *testing.T
	h   *handler
	rec *recorder
}

func newExchange(t *testing.T) *exchange {
	t.Helper()
	cfg := testConfig(t)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds})
	rec := &recorder{}
	return &exchange{t: t, h: newHandler(s, context.Background(), rec), rec: rec}
}

// fakeClock advances 10 ms per reading, so latencies are positive and
// deterministic.
func fakeClock() func() time.Time {
	t0 := time.Unix(1_700_000_000, 0)
	n := 0
	return func() time.Time { n++; return t0.Add(time.Duration(n) * 10 * time.Millisecond) }
}

func headerMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

// send delivers one message and returns the replies it caused.
func (x *exchange) send(req *extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, error) {
	before := len(x.rec.sent)
	err := x.h.handle(req)
	return x.rec.sent[before:], err
}

func (x *exchange) must(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	x.t.Helper()
	out, err := x.send(req)
	if err != nil {
		x.t.Fatalf("handle: %v", err)
	}
	if len(out) != 1 {
		x.t.Fatalf("want 1 reply, got %d", len(out))
	}
	return out[0]
}

func reqHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(kv...), EndOfStream: eos}}}
}

func reqBody(body string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}}
}

func respHeaders(eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(kv...), EndOfStream: eos}}}
}

func respBody(body string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: eos}}}
}

func post(path string, auth ...string) *extprocv3.ProcessingRequest {
	kv := append([]string{":method", "POST", ":path", path, ":authority", "gw", "x-request-id", "req-1", "content-type", "application/json"}, auth...)
	return reqHeaders(false, kv...)
}

func bearer() []string { return []string{"authorization", "Bearer " + testKey} }

// immediate asserts an ImmediateResponse with an OpenAI-shaped error body
// and returns its status and error code.
func immediate(t *testing.T, r *extprocv3.ProcessingResponse) (int, string) {
	t.Helper()
	ir := r.GetImmediateResponse()
	if ir == nil {
		t.Fatalf("want immediate response, got %v", r)
	}
	assertRawValues(t, ir.GetHeaders())
	if ct := setHeader(ir.GetHeaders(), "content-type"); ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	status := int(ir.GetStatus().GetCode())
	if status == 200 {
		return status, ""
	}
	body := string(ir.GetBody())
	for _, f := range []string{"error.message", "error.type", "error.param", "error.code"} {
		if !gjson.Get(body, f).Exists() {
			t.Errorf("error body lacks %s: %s", f, body)
		}
	}
	return status, gjson.Get(body, "error.code").String()
}

func setHeader(m *extprocv3.HeaderMutation, key string) string {
	for _, h := range m.GetSetHeaders() {
		if h.GetHeader().GetKey() == key {
			return string(h.GetHeader().GetRawValue())
		}
	}
	return ""
}

func assertRawValues(t *testing.T, m *extprocv3.HeaderMutation) {
	t.Helper()
	for _, h := range m.GetSetHeaders() {
		if h.GetHeader().GetValue() != "" {
			t.Errorf("header %s uses value, not raw_value", h.GetHeader().GetKey())
		}
	}
}

func TestRequestHeaderPhase(t *testing.T) {
	tests := []struct {
		name       string
		req        *extprocv3.ProcessingRequest
		wantStatus int    // 0: a CONTINUE headers response
		wantCode   string // OpenAI error code
	}{
		{"chat continues", post("/v1/chat/completions", bearer()...), 0, ""},
		{"x-api-key", post("/v1/chat/completions", "x-api-key", testKey), 0, ""},
		{"azure-style api-key", post("/v1/embeddings", "api-key", testKey), 0, ""},
		{"identity from envoy", post("/v1/chat/completions", "x-llmux-tenant", "team-jwt"), 0, ""},
		{"query string ignored", post("/v1/chat/completions?x=1", bearer()...), 0, ""},
		{"no key", post("/v1/chat/completions"), 401, "missing_api_key"},
		{"unknown key", post("/v1/chat/completions", "authorization", "Bearer sk-nope-nope-nope"), 401, "invalid_api_key"},
		{"basic auth", post("/v1/chat/completions", "authorization", "Basic Zm9vOmJhcg=="), 401, "invalid_api_key"},
		{"empty bearer", post("/v1/chat/completions", "authorization", "Bearer "), 401, "invalid_api_key"},
		{"unknown path", post("/v1/nothing", bearer()...), 404, "unknown_url"},
		{"get on chat", reqHeaders(true, ":method", "GET", ":path", "/v1/chat/completions", "authorization", "Bearer "+testKey), 405, "method_not_allowed"},
		{"post on models", post("/v1/models", bearer()...), 405, "method_not_allowed"},
		{"post without body", reqHeaders(true, ":method", "POST", ":path", "/v1/chat/completions", "authorization", "Bearer "+testKey), 400, "missing_body"},
		{"models list", reqHeaders(true, ":method", "GET", ":path", "/v1/models", "authorization", "Bearer "+testKey), 200, ""},
		{"models without key", reqHeaders(true, ":method", "GET", ":path", "/v1/models"), 401, "missing_api_key"},
		{"one model", reqHeaders(true, ":method", "GET", ":path", "/v1/models/llama", "authorization", "Bearer "+testKey), 200, ""},
		{"unknown model", reqHeaders(true, ":method", "GET", ":path", "/v1/models/nope", "authorization", "Bearer "+testKey), 404, "model_not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			r := x.must(tc.req)
			if tc.wantStatus == 0 {
				if r.GetRequestHeaders() == nil {
					t.Fatalf("want a headers response, got %v", r)
				}
				if x.h.ph != phaseRequestBody {
					t.Fatalf("phase %s", x.h.ph)
				}
				return
			}
			st, code := immediate(t, r)
			if st != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("got %d %q, want %d %q (%s)", st, code, tc.wantStatus, tc.wantCode, r.GetImmediateResponse().GetBody())
			}
			if md := r.GetDynamicMetadata().GetFields()["io.llmux"].GetStructValue().GetFields(); md["status"].GetNumberValue() != float64(st) {
				t.Errorf("metadata status %v", md["status"])
			}
		})
	}
}

func TestMethodNotAllowedSetsAllow(t *testing.T) {
	x := newExchange(t)
	r := x.must(reqHeaders(true, ":method", "DELETE", ":path", "/v1/models", "authorization", "Bearer "+testKey))
	if got := setHeader(r.GetImmediateResponse().GetHeaders(), "allow"); got != "GET" {
		t.Fatalf("allow %q", got)
	}
}

func TestModelsList(t *testing.T) {
	x := newExchange(t)
	r := x.must(reqHeaders(true, ":method", "GET", ":path", "/v1/models", "authorization", "Bearer "+testKey))
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID, Object, OwnedBy string
			Created             int64
		} `json:"data"`
	}
	if err := json.Unmarshal(r.GetImmediateResponse().GetBody(), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.Created == 0 {
			t.Errorf("bad model object %+v", m)
		}
	}
	if list.Object != "list" || strings.Join(ids, ",") != "claude,gpt-4o-beta,gpt-4o-mini,llama" {
		t.Fatalf("got %+v", list)
	}
}

func TestRequestBodyPhase(t *testing.T) {
	long := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	tests := []struct {
		name, path, body string
		wantStatus       int
		wantCode         string
	}{
		{"invalid json", "/v1/chat/completions", `{"model":`, 400, "invalid_json"},
		{"empty", "/v1/chat/completions", ``, 400, "invalid_json"},
		{"array", "/v1/chat/completions", `[1,2]`, 400, "invalid_type"},
		{"no model", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "missing_required_parameter"},
		{"model not string", "/v1/chat/completions", `{"model":4,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_type"},
		{"no messages", "/v1/chat/completions", `{"model":"gpt-4o-mini"}`, 400, "missing_required_parameter"},
		{"messages not array", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":"hi"}`, 400, "invalid_type"},
		{"messages empty", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[]}`, 400, "empty_array"},
		{"message without role", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"content":"hi"}]}`, 400, "missing_required_parameter"},
		{"stream not bool", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_type"},
		{"stream_options without stream", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_value"},
		{"embeddings without input", "/v1/embeddings", `{"model":"gpt-4o-mini"}`, 400, "missing_required_parameter"},
		{"embeddings bad format", "/v1/embeddings", `{"model":"gpt-4o-mini","input":"a","encoding_format":"hex"}`, 400, "invalid_value"},
		{"too large", "/v1/chat/completions", long, 413, "request_too_large"},
		{"unknown model", "/v1/chat/completions", `{"model":"gpt-9","messages":[{"role":"user","content":"hi"}]}`, 404, "model_not_found"},
		{"no deployment", "/v1/chat/completions", `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`, 503, "no_deployment_available"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			x.must(post(tc.path, bearer()...))
			st, code := immediate(t, x.must(reqBody(tc.body)))
			if st != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("got %d %q, want %d %q", st, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
}

// forward runs the request phases of a valid chat request and returns the
// request-body reply.
func forward(t *testing.T, x *exchange, body string) *extprocv3.CommonResponse {
	t.Helper()
	x.must(post("/v1/chat/completions", append(bearer(), "accept-encoding", "gzip")...))
	r := x.must(reqBody(body))
	br := r.GetRequestBody().GetResponse()
	if br == nil {
		t.Fatalf("want a body response, got %v", r)
	}
	return br
}

func TestForwardMutations(t *testing.T) {
	x := newExchange(t)
	br := forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if !br.GetClearRouteCache() {
		t.Error("clear_route_cache not set with the cluster header")
	}
	m := br.GetHeaderMutation()
	assertRawValues(t, m)
	body := br.GetBodyMutation().GetBody()
	want := map[string]string{
		":path":            "/v1/chat/completions",
		"x-llmux-upstream": "openai",
		"content-length":   strconv.Itoa(len(body)),
		"authorization":    "Bearer " + providerKey,
		"content-type":     "application/json",
		"x-request-id":     "req-1",
	}
	for k, v := range want {
		if got := setHeader(m, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if removed := strings.Join(m.GetRemoveHeaders(), ","); removed != "authorization,accept-encoding" {
		t.Errorf("removed %s, want the client's authorization and accept-encoding", removed)
	}
	if got := gjson.GetBytes(body, "model").String(); got != "gpt-4o-mini-2024-07-18" {
		t.Errorf("upstream model %q", got)
	}
	if gjson.GetBytes(body, "stream_options").Exists() {
		t.Error("stream_options added to a non-stream request")
	}
	md := br2md(x.rec.sent[len(x.rec.sent)-1])
	if md["model_group"].GetStringValue() != "gpt-4o-mini" || md["deployment"].GetStringValue() != "gpt-4o-mini-openai" || md["tenant"].GetStringValue() != "team-a" {
		t.Errorf("metadata %v", md)
	}
}

func br2md(r *extprocv3.ProcessingResponse) map[string]*structpb.Value {
	return r.GetDynamicMetadata().GetFields()["io.llmux"].GetStructValue().GetFields()
}

func TestForwardCompatibleBasePathNoKey(t *testing.T) {
	x := newExchange(t)
	br := forward(t, x, `{"model":"llama","messages":[{"role":"user","content":"hi"}]}`)
	m := br.GetHeaderMutation()
	if got := setHeader(m, ":path"); got != "/openai/v1/chat/completions" {
		t.Errorf(":path %q", got)
	}
	if got := setHeader(m, "x-llmux-upstream"); got != "vllm" {
		t.Errorf("cluster %q", got)
	}
	if got := setHeader(m, "authorization"); got != "" {
		t.Errorf("authorization set without a provider key: %q", got)
	}
}

const streamUpstream = `data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":4}}}

data: [DONE]

`

func TestStreamUsageInjectedAndRemoved(t *testing.T) {
	for _, clientAsked := range []bool{false, true} {
		t.Run("include_usage="+strconv.FormatBool(clientAsked), func(t *testing.T) {
			x := newExchange(t)
			body := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			if clientAsked {
				body = `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
			}
			br := forward(t, x, body)
			if !gjson.GetBytes(br.GetBodyMutation().GetBody(), "stream_options.include_usage").Bool() {
				t.Fatal("include_usage not requested upstream")
			}
			hr := x.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream", "content-length", "999"))
			if !strings.Contains(strings.Join(hr.GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders(), ","), "content-length") {
				t.Error("content-length not removed")
			}
			// Deliver the stream in 7-byte pieces: events split anywhere.
			var got strings.Builder
			src := streamUpstream
			for len(src) > 0 {
				n := min(7, len(src))
				out, err := x.send(respBody(src[:n], n == len(src)))
				if err != nil {
					t.Fatal(err)
				}
				src = src[n:]
				for _, r := range out {
					got.WriteString(string(r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()))
				}
			}
			last := x.rec.sent[len(x.rec.sent)-1]
			if !last.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetEndOfStream() {
				t.Fatal("last reply lacks end_of_stream")
			}
			hasUsage := strings.Contains(got.String(), `"prompt_tokens":9`)
			if hasUsage != clientAsked {
				t.Errorf("usage chunk present=%v, client asked=%v:\n%s", hasUsage, clientAsked, got.String())
			}
			if !strings.Contains(got.String(), `"content":"Hello"`) || !strings.HasSuffix(got.String(), "data: [DONE]\n\n") {
				t.Errorf("stream altered:\n%s", got.String())
			}
			md := br2md(last)
			if md["input_tokens"].GetNumberValue() != 9 || md["output_tokens"].GetNumberValue() != 1 || md["cached_tokens"].GetNumberValue() != 4 {
				t.Errorf("token metadata %v", md)
			}
			if md["status"].GetNumberValue() != 200 || md["ttft_ms"] == nil || md["upstream_latency_ms"] == nil {
				t.Errorf("metadata %v", md)
			}
			if x.h.ph != phaseDone {
				t.Errorf("phase %s", x.h.ph)
			}
		})
	}
}

func TestResponseTrailersEndTheBody(t *testing.T) {
	x := newExchange(t)
	forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if out, err := x.send(respHeaders(false, ":status", "200", "content-type", "application/json")); err != nil || len(out) != 0 {
		t.Fatalf("non-stream headers should be held until the body is in: %v %v", out, err)
	}
	out, err := x.send(respBody(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, false))
	if err != nil || len(out) != 0 {
		t.Fatalf("non-stream body should be held until the end: %v %v", out, err)
	}
	out, err = x.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: headerMap("x-t", "1")}}})
	if err != nil || len(out) != 3 {
		t.Fatalf("want headers + body + trailers replies, got %d (%v)", len(out), err)
	}
	if out[0].GetResponseHeaders() == nil {
		t.Fatalf("first reply %v", out[0])
	}
	sr := out[1].GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
	if sr.GetEndOfStream() || !strings.Contains(string(sr.GetBody()), `"content":"ok"`) {
		t.Errorf("body reply %v", sr)
	}
	if out[2].GetResponseTrailers() == nil || br2md(out[2])["input_tokens"].GetNumberValue() != 3 {
		t.Errorf("trailers reply %v", out[2])
	}
}

func TestUpstreamErrors(t *testing.T) {
	tests := []struct {
		name, ct, body string
		status         int
		wantCode       string // gateway code in metadata
		wantOpenAICode string // code in the body the client gets
		passThrough    bool
		headers        []string // more response headers from the provider
		retryAfter     string   // retry-after llmux sets for the client
	}{
		// A provider fault is rewritten to the class's type (rate_limit_error, not OpenAI's "requests").
		{"openai 429", "application/json", `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`, 429, "rate_limited", "rate_limit_exceeded", false, []string{"retry-after", "3"}, "3"},
		{"azure 429 retry-after-ms", "application/json", `{"error":{"code":"429","message":"Requests have exceeded the rate limit."}}`, 429, "rate_limited", "rate_limit_exceeded", false, []string{"retry-after-ms", "1500"}, "2"},
		{"openai quota", "application/json", `{"error":{"message":"quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`, 429, "quota_exhausted", "insufficient_quota", true, nil, ""},
		{"context length", "application/json", `{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, 400, "context_length_exceeded", "context_length_exceeded", true, nil, ""},
		{"envoy local reply", "text/plain", `no healthy upstream`, 503, "upstream_unavailable", "upstream_unavailable", false, nil, ""},
		{"html gateway page", "text/html", `<html>bad gateway</html>`, 502, "upstream_protocol", "upstream_protocol", false, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
			if out, err := x.send(respHeaders(false, append([]string{":status", strconv.Itoa(tc.status), "content-type", tc.ct}, tc.headers...)...)); err != nil || len(out) != 0 {
				t.Fatalf("error headers should wait for the body: %v %v", out, err)
			}
			out, err := x.send(respBody(tc.body, true))
			if err != nil || len(out) != 2 || out[0].GetResponseHeaders() == nil {
				t.Fatalf("want headers then body, got %v %v", out, err)
			}
			hm := out[0].GetResponseHeaders().GetResponse().GetHeaderMutation()
			if ctSet := setHeader(hm, "content-type"); tc.ct != "application/json" && ctSet != "application/json" {
				t.Errorf("content-type not corrected: %q", ctSet)
			}
			if st := setHeader(hm, ":status"); st != "" && st != strconv.Itoa(tc.status) {
				t.Errorf(":status changed to %s", st)
			}
			if ra := setHeader(hm, "retry-after"); ra != tc.retryAfter {
				t.Errorf("retry-after %q, want %q", ra, tc.retryAfter)
			}
			r := out[1]
			got := r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()
			if tc.passThrough && string(got) != tc.body {
				t.Errorf("OpenAI error body altered: %s", got)
			}
			if c := gjson.GetBytes(got, "error.code").String(); c != tc.wantOpenAICode {
				t.Errorf("client code %q in %s", c, got)
			}
			if md := br2md(r); md["error_code"].GetStringValue() != tc.wantCode || md["status"].GetNumberValue() != float64(tc.status) {
				t.Errorf("metadata %v", md)
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	x := newExchange(t)
	_, err := x.send(respBody("x", true))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("body before headers: %v", err)
	}
	x = newExchange(t)
	x.must(post("/v1/chat/completions", bearer()...))
	if _, err := x.send(post("/v1/chat/completions", bearer()...)); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second request_headers: %v", err)
	}
}

func TestProcessingModeMismatch(t *testing.T) {
	x := newExchange(t)
	req := post("/v1/chat/completions", bearer()...)
	req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
		RequestBodyMode:  extprocfilterv3.ProcessingMode_STREAMED,
		ResponseBodyMode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
	}
	if st, _ := immediate(t, x.must(req)); st != 500 {
		t.Fatalf("status %d", st)
	}
	x = newExchange(t)
	req.ProtocolConfig.RequestBodyMode = extprocfilterv3.ProcessingMode_BUFFERED
	if r := x.must(req); r.GetRequestHeaders() == nil {
		t.Fatalf("right modes rejected: %v", r)
	}
}

// TestTrailersWithoutBody: headers then trailers, no body message. llmux
// must answer only the trailers (a body reply would be spurious in Envoy).
func TestTrailersWithoutBody(t *testing.T) {
	x := newExchange(t)
	forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if out, err := x.send(respHeaders(false, ":status", "200", "content-type", "application/json")); err != nil || len(out) != 0 {
		t.Fatalf("%v %v", out, err)
	}
	out, err := x.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: headerMap("grpc-status", "0")}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].GetResponseHeaders() == nil || out[1].GetResponseTrailers() == nil {
		t.Fatalf("want the held headers reply and a trailers reply, no body reply; got %v", out)
	}
	if x.h.ph != phaseDone {
		t.Fatalf("phase %s", x.h.ph)
	}
}

// statusDecoder is an OpenAI-schema decoder whose parsed error carries a
// different status than the provider's (as Gemini's bad-key 400 does).
type statusTranslator struct{ translate.Translator }

func (s statusTranslator) NewDecoder(req *translate.Request, status int, ct string) translate.Decoder {
	return &statusDecoder{Decoder: s.Translator.NewDecoder(req, status, ct)}
}

type statusDecoder struct{ translate.Decoder }

func (d *statusDecoder) Result() *translate.Result {
	r := d.Decoder.Result()
	if r.Err != nil {
		r.Err.Status = 409
	}
	return r
}

// TestHeldHeadersTakeTheBodysStatus: a non-streamed or error response's
// headers reply waits for the body, and carries the status the decoded
// error calls for.
func TestHeldHeadersTakeTheBodysStatus(t *testing.T) {
	cfg := testConfig(t)
	base, _ := translate.Lookup("openai")
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Logger: discardLogger(),
		Translator: func(kind string) (translate.Translator, bool) { return statusTranslator{base}, kind == "openai" }})
	rec := &recorder{}
	x := &exchange{t: t, h: newHandler(s, context.Background(), rec), rec: rec}
	forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if out, _ := x.send(respHeaders(false, ":status", "400", "content-type", "application/json")); len(out) != 0 {
		t.Fatalf("headers not held: %v", out)
	}
	if out, _ := x.send(respBody(`{"error":{"message":"conflict`, false)); len(out) != 0 {
		t.Fatalf("partial error body released: %v", out)
	}
	out, err := x.send(respBody(`","type":"invalid_request_error","code":"conflict"}}`, true))
	if err != nil || len(out) != 2 {
		t.Fatalf("%v %v", out, err)
	}
	if st := setHeader(out[0].GetResponseHeaders().GetResponse().GetHeaderMutation(), ":status"); st != "409" {
		t.Fatalf(":status %q", st)
	}
	if br2md(out[1])["status"].GetNumberValue() != 409 {
		t.Fatalf("metadata status %v", br2md(out[1])["status"])
	}
}

// TestOutcomeWithTheTerminalEvent: the reply that carries [DONE] carries
// the tokens too, so a client that closes right after it loses nothing.
func TestOutcomeWithTheTerminalEvent(t *testing.T) {
	x := newExchange(t)
	forward(t, x, `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	x.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	r := x.must(respBody(streamUpstream, false))
	if md := br2md(r); md["output_tokens"].GetNumberValue() != 1 || md["status"].GetNumberValue() != 200 {
		t.Fatalf("metadata with the terminal event: %v", md)
	}
	// Envoy ends the stream (the client left) before the upstream's end.
	x.h.finish()
	if x.h.errCode != "" || x.h.status != 200 {
		t.Fatalf("a completed response recorded as %d %q", x.h.status, x.h.errCode)
	}
}

// forgetful records ForgetCredentials calls.
type forgetful struct {
	translate.Translator
	forgot []string
}

func (f *forgetful) ForgetCredentials(p string) { f.forgot = append(f.forgot, p) }

// TestUnauthorizedForgetsCachedCredentials: a provider's 401 makes the
// translator drop its cached credential for that provider.
func TestUnauthorizedForgetsCachedCredentials(t *testing.T) {
	for _, status := range []string{"401", "429"} {
		cfg := testConfig(t)
		base, _ := translate.Lookup("openai")
		f := &forgetful{Translator: base}
		s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Logger: discardLogger(),
			Translator: func(kind string) (translate.Translator, bool) { return f, kind == "openai" }})
		rec := &recorder{}
		x := &exchange{t: t, h: newHandler(s, context.Background(), rec), rec: rec}
		forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
		if _, err := x.send(respHeaders(false, ":status", status, "content-type", "application/json")); err != nil {
			t.Fatal(err)
		}
		want := 0
		if status == "401" {
			want = 1
		}
		if len(f.forgot) != want || want == 1 && f.forgot[0] != "openai" {
			t.Fatalf("status %s: forgot %v", status, f.forgot)
		}
	}
}

// TestDecodeFailureBody: when the decoder gives up (a body over the
// buffer bound), the client gets the OpenAI error in the framing of the
// decoder's content type: a JSON body for a JSON response (held headers,
// whether or not the client asked for a stream), an SSE event for a
// stream. An empty body or an SSE event inside a JSON body is wrong.
func TestDecodeFailureBody(t *testing.T) {
	tests := []struct {
		name    string
		request string
		status  string
		ct      string
		wantSSE bool
	}{
		{"non-stream 200", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, "200", "application/json", false},
		{"non-stream 500", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, "500", "application/json", false},
		{"stream 500", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "500", "application/json", false},
		{"stream answered with JSON", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "200", "application/json", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Logger: discardLogger()})
			rec := &recorder{}
			x := &exchange{t: t, h: newHandler(s, context.Background(), rec), rec: rec}
			forward(t, x, tc.request)
			x.h.treq.MaxBuffered = 64
			if _, err := x.send(respHeaders(false, ":status", tc.status, "content-type", tc.ct)); err != nil {
				t.Fatal(err)
			}
			var body strings.Builder
			for _, chunk := range []string{strings.Repeat("x", 40), strings.Repeat("y", 40), "z"} {
				out, err := x.send(respBody(chunk, chunk == "z"))
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range out {
					body.Write(r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody())
				}
			}
			if x.h.ph != phaseDone {
				t.Fatalf("phase %s", x.h.ph)
			}
			got := body.String()
			if tc.wantSSE != strings.HasPrefix(got, "data: ") {
				t.Fatalf("framing: %q", got)
			}
			if !tc.wantSSE && gjson.Get(got, "error.code").String() != "upstream_protocol" {
				t.Fatalf("client body %q, want an OpenAI error", got)
			}
			if x.h.errCode != "upstream_protocol" {
				t.Errorf("error code %q", x.h.errCode)
			}
		})
	}
}

// TestProviderAuthFailureIsAGatewayError: when the provider rejects the
// gateway's own key, the client gets a 502 that blames the gateway (not a
// 401 that blames the client's key), and none of the provider's text,
// which may quote part of the gateway's key.
func TestProviderAuthFailureIsAGatewayError(t *testing.T) {
	x := newExchange(t)
	forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if out, _ := x.send(respHeaders(false, ":status", "401", "content-type", "application/json")); len(out) != 0 {
		t.Fatalf("headers not held: %v", out)
	}
	out, err := x.send(respBody(`{"error":{"message":"Incorrect API key provided: sk-pro****9999.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`, true))
	if err != nil || len(out) != 2 {
		t.Fatalf("%v %v", out, err)
	}
	if st := setHeader(out[0].GetResponseHeaders().GetResponse().GetHeaderMutation(), ":status"); st != "502" {
		t.Fatalf(":status %q", st)
	}
	body := string(out[1].GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody())
	if strings.Contains(body, "sk-pro") || gjson.Get(body, "error.code").String() != "upstream_authentication_failed" {
		t.Fatalf("client body %s", body)
	}
	if md := br2md(out[1]); md["status"].GetNumberValue() != 502 || md["error_code"].GetStringValue() != "authentication" {
		t.Fatalf("metadata %v", md)
	}
}

// TestEnvoyLocalReplyBeforeForwarding: Envoy answers the client itself
// (its 413 over the buffer limit; an ext_authz 401 before llmux ran) and
// the reply passes through ext_proc's encoder side. llmux turns it into
// an OpenAI error instead of failing the stream.
func TestEnvoyLocalReplyBeforeForwarding(t *testing.T) {
	for _, tc := range []struct {
		name    string
		started bool // llmux saw the request headers
		status  string
		body    string
		code    string
	}{
		{"413 during the body phase", true, "413", "Payload Too Large", "request_too_large"},
		{"401 from ext_authz, no request seen", false, "401", "denied", "invalid_api_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			if tc.started {
				x.must(post("/v1/chat/completions", bearer()...))
			}
			if out, err := x.send(respHeaders(false, ":status", tc.status, "content-type", "text/plain")); err != nil || len(out) != 0 {
				t.Fatalf("%v %v", out, err)
			}
			out, err := x.send(respBody(tc.body, true))
			if err != nil || len(out) != 2 {
				t.Fatalf("%v %v", out, err)
			}
			if ct := setHeader(out[0].GetResponseHeaders().GetResponse().GetHeaderMutation(), "content-type"); ct != "application/json" {
				t.Errorf("content-type %q", ct)
			}
			body := out[1].GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()
			if gjson.GetBytes(body, "error.code").String() != tc.code {
				t.Errorf("body %s", body)
			}
			if st := setHeader(out[0].GetResponseHeaders().GetResponse().GetHeaderMutation(), ":status"); st != "" && st != tc.status {
				t.Errorf(":status changed to %s", st)
			}
		})
	}
}

// TestLateBodyAfterEndIsIgnored: a body message that reaches llmux after
// its own end_of_stream reply (Envoy had it in flight) is dropped, not a
// protocol error.
func TestLateBodyAfterEndIsIgnored(t *testing.T) {
	x := newExchange(t)
	forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if _, err := x.send(respHeaders(false, ":status", "200", "content-type", "application/json")); err != nil {
		t.Fatal(err)
	}
	if _, err := x.send(respBody(`{"id":"x","object":"chat.completion","choices":[]}`, true)); err != nil || x.h.ph != phaseDone {
		t.Fatalf("end: %v, phase %s", err, x.h.ph)
	}
	out, err := x.send(respBody("late", false))
	if err != nil || len(out) != 0 {
		t.Fatalf("late body: %v, replies %v", err, out)
	}
}
