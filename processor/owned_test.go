package processor

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// ownedConfig has one group of two OpenAI deployments on clusters a and b;
// a is tried first (priority).
const ownedConfig = routingAuth + `
server: {egress_address: "EGRESS"}
providers:
- {name: a, kind: openai, cluster: a}
- {name: b, kind: openai, cluster: b}
deployments:
- {name: dep-a, provider: a, model: m}
- {name: dep-b, provider: b, model: m, priority: 1}
model_groups:
- {name: g, deployments: [dep-a, dep-b]}
- {name: single, deployments: [dep-a]}
`

const (
	ownedWhole = `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hello from CLUSTER"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`
	ownedRole  = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n"
	ownedText  = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hello from CLUSTER"},"finish_reason":null}]}` + "\n\n"
	ownedEnd   = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n" +
		`data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}` + "\n\n" +
		"data: [DONE]\n\n"
)

// fakeEgress plays Envoy's egress listener: each cluster (the
// x-llmux-upstream header) answers with its scripted behaviour.
type fakeEgress struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []string
	do    map[string]string // cluster → ok, 503, 503_no_body, reset_headers, reset_role, reset_content
}

func newFakeEgress(t *testing.T, do map[string]string) *fakeEgress {
	f := &fakeEgress{do: do}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEgress) serve(w http.ResponseWriter, r *http.Request) {
	cluster := r.Header.Get("x-llmux-upstream")
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.calls = append(f.calls, cluster)
	f.mu.Unlock()
	stream := gjson.GetBytes(body, "stream").Bool()
	text := func(s string) string { return strings.ReplaceAll(s, "CLUSTER", cluster) }
	reset := func(written string) {
		w.Write([]byte(written))
		w.(http.Flusher).Flush()
		// A close (FIN) amid the chunked body: what was written arrives
		// whole, then the read fails (unexpected EOF). A RST could drop
		// unread bytes and make the test's timing matter.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	ct := "application/json"
	if stream {
		ct = "text/event-stream"
	}
	w.Header().Set("content-type", ct)
	switch f.do[cluster] {
	case "503":
		w.WriteHeader(503)
		w.Write([]byte(`{"error":{"message":"overloaded","type":"server_error"}}`))
	case "503_no_body":
		w.Header().Del("content-type")
		w.WriteHeader(503)
	case "reset_headers":
		reset("")
	case "reset_role":
		reset(ownedRole)
	case "reset_content":
		reset(ownedRole + text(ownedText))
	default:
		if stream {
			w.Write([]byte(ownedRole + text(ownedText) + ownedEnd))
			return
		}
		w.Write([]byte(text(ownedWhole)))
	}
}

func (f *fakeEgress) called() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

// ownedEvent is one StreamedImmediateResponse message, copied.
type ownedEvent struct {
	headers map[string]string
	body    string
	eos     bool
	md      map[string]*structpb.Value
}

// ownedRecorder keeps what the handler sends; every reply must be a
// StreamedImmediateResponse or, before one, an ImmediateResponse.
type ownedRecorder struct {
	t         testing.TB
	events    []ownedEvent
	immediate *extprocv3.ImmediateResponse
}

func (r *ownedRecorder) Send(m *extprocv3.ProcessingResponse) error {
	md := m.GetDynamicMetadata().GetFields()["io.llmux"].GetStructValue().GetFields()
	if ir := m.GetImmediateResponse(); ir != nil {
		if len(r.events) > 0 {
			r.t.Errorf("ImmediateResponse after a StreamedImmediateResponse")
		}
		r.immediate = ir
		r.events = append(r.events, ownedEvent{md: md, eos: true})
		return nil
	}
	sir := m.GetStreamedImmediateResponse()
	if sir == nil {
		r.t.Errorf("reply %T in owned mode", m.GetResponse())
		return nil
	}
	switch {
	case sir.GetHeadersResponse() != nil:
		h := map[string]string{}
		for _, hv := range sir.GetHeadersResponse().GetHeaders().GetHeaders() {
			h[hv.GetKey()] = string(hv.GetRawValue())
		}
		r.events = append(r.events, ownedEvent{headers: h, md: md, eos: sir.GetHeadersResponse().GetEndOfStream()})
	case sir.GetBodyResponse() != nil:
		b := sir.GetBodyResponse()
		r.events = append(r.events, ownedEvent{body: string(b.GetBody()), eos: b.GetEndOfStream(), md: md})
	default:
		r.t.Errorf("unexpected streamed immediate response %v", sir)
	}
	return nil
}

// outcome checks the ordering (headers once, first; body; end_of_stream
// last) and returns the status, the body and the last metadata.
func (r *ownedRecorder) outcome() (status, body string, md map[string]*structpb.Value) {
	r.t.Helper()
	if r.immediate != nil {
		return "immediate", string(r.immediate.GetBody()), r.events[0].md
	}
	if len(r.events) == 0 || r.events[0].headers == nil {
		r.t.Fatalf("no headers first: %+v", r.events)
	}
	if d := r.events[0].md["deployment"].GetStringValue(); d == "" {
		r.t.Errorf("the headers carry no request metadata")
	}
	for i, e := range r.events {
		if i > 0 && e.headers != nil {
			r.t.Errorf("headers twice")
		}
		if e.eos != (i == len(r.events)-1) {
			r.t.Errorf("end_of_stream on event %d of %d", i, len(r.events))
		}
		body += e.body
		if e.md != nil {
			md = e.md
		}
	}
	return r.events[0].headers[":status"], body, md
}

func ownedPC(mode extprocfilterv3.ProcessingMode_BodySendMode) *extprocv3.ProtocolConfiguration {
	return &extprocv3.ProtocolConfiguration{RequestBodyMode: mode, ResponseBodyMode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED}
}

// ownedRun runs one owned request, its body in two chunks, against a fake
// egress listener with the given behaviours.
func ownedRun(t *testing.T, do map[string]string, body string, owned bool, mode extprocfilterv3.ProcessingMode_BodySendMode) (*ownedRecorder, *fakeEgress, string) {
	t.Helper()
	f := newFakeEgress(t, do)
	yaml := strings.Replace(ownedConfig, "EGRESS", strings.TrimPrefix(f.srv.URL, "http://"), 1)
	rt, err := config.Parse([]byte(yaml), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { return testKey, k == "LLMUX_TEST_KEY" }})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s := New(Options{Config: func() *config.Runtime { return rt }, Translator: openaiKinds, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	t.Cleanup(s.Close)
	rec := &ownedRecorder{t: t}
	h := newHandler(s, context.Background(), rec)
	hd := post("/v1/chat/completions", bearer()...)
	md := map[string]any{"route": "r"}
	if owned {
		md["mode"] = "owned"
	}
	hd.Attributes = routeAttrs(t, map[string]any{"io.llmux": md})
	hd.ProtocolConfig = ownedPC(mode)
	if err := h.handle(hd); err != nil {
		t.Fatal(err)
	}
	if rec.immediate != nil {
		return rec, f, log.String()
	}
	if len(rec.events) != 0 {
		t.Fatalf("owned mode answered the request headers before the body: %+v", rec.events)
	}
	half := len(body) / 2
	for i, part := range []string{body[:half], body[half:]} {
		if err := h.handle(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte(part), EndOfStream: i == 1}}}); err != nil {
			t.Fatal(err)
		}
		if i == 0 && len(rec.events) != 0 {
			t.Fatalf("answered before the body's end")
		}
	}
	if h.ph != phaseDone {
		t.Errorf("phase %s after the owned answer", h.ph)
	}
	return rec, f, log.String()
}

func TestOwnedMode(t *testing.T) {
	whole := `{"model":"g","messages":[{"role":"user","content":"hi"}]}`
	stream := `{"model":"g","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name       string
		do         map[string]string
		body       string
		wantCalls  string
		wantStatus string
		wantBody   []string // substrings, in order
		notBody    string
		wantDep    string
		attempts   float64
		cause      string
	}{
		{"whole", nil, whole, "a", "200", []string{`"hello from a"`}, "", "dep-a", 0, ""},
		{"stream", nil, stream, "a", "200", []string{`"role":"assistant"`, "hello from a", "[DONE]"}, "", "dep-a", 0, ""},
		{"whole/reset_after_headers", map[string]string{"a": "reset_headers"}, whole, "a,b", "200", []string{`"hello from b"`}, "", "dep-b", 2, "upstream_unavailable"},
		{"stream/reset_after_headers", map[string]string{"a": "reset_headers"}, stream, "a,b", "200", []string{`"role":"assistant"`, "hello from b", "[DONE]"}, "from a", "dep-b", 2, "upstream_unavailable"},
		{"stream/reset_after_role", map[string]string{"a": "reset_role"}, stream, "a,b", "200", []string{`"role":"assistant"`, "hello from b", "[DONE]"}, "from a", "dep-b", 2, "upstream_unavailable"},
		{"whole/503", map[string]string{"a": "503"}, whole, "a,b", "200", []string{`"hello from b"`}, "", "dep-b", 2, "overloaded"},
		{"whole/503_no_body", map[string]string{"a": "503_no_body"}, whole, "a,b", "200", []string{`"hello from b"`}, "", "dep-b", 2, "upstream_unavailable"},
		{"stream/503", map[string]string{"a": "503"}, stream, "a,b", "200", []string{"hello from b", "[DONE]"}, "", "dep-b", 2, "overloaded"},
		// A reset after content is repaired: the next deployment continues the stream (ownedrepair.go).
		{"stream/reset_after_content", map[string]string{"a": "reset_content"}, stream, "a,b", "200", []string{"hello from a", "hello from b", "[DONE]"}, `"error"`, "dep-b", 0, ""},
		{"whole/both_fail", map[string]string{"a": "reset_headers", "b": "503"}, whole, "a,b", "503", []string{`"error"`}, "hello", "dep-b", 2, "upstream_unavailable"},
		{"stream/single_deployment_reset", map[string]string{"a": "reset_headers"}, strings.Replace(stream, `"g"`, `"single"`, 1), "a", "503", []string{`"code":"upstream_unavailable"`}, "", "dep-a", 1, "upstream_unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, f, log := ownedRun(t, tc.do, tc.body, true, extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED)
			st, body, md := rec.outcome()
			if st != tc.wantStatus {
				t.Errorf("status %s, want %s; body %s\nlog: %s", st, tc.wantStatus, body, log)
			}
			rest := body
			for _, w := range tc.wantBody {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("body lacks %q (in order): %s", w, body)
				}
				rest = rest[i+len(w):]
			}
			if tc.notBody != "" && strings.Contains(body, tc.notBody) {
				t.Errorf("body has %q: %s", tc.notBody, body)
			}
			if n := strings.Count(body, `"role":"assistant"`); n > 1 {
				t.Errorf("%d role chunks: %s", n, body)
			}
			if got := f.called(); got != tc.wantCalls {
				t.Errorf("calls %s, want %s", got, tc.wantCalls)
			}
			if got := md["deployment"].GetStringValue(); got != tc.wantDep {
				t.Errorf("metadata deployment %q, want %q", got, tc.wantDep)
			}
			if got := md["attempts"].GetNumberValue(); got != tc.attempts {
				t.Errorf("metadata attempts %v, want %v", got, tc.attempts)
			}
			if got := md["failover_cause"].GetStringValue(); got != tc.cause {
				t.Errorf("metadata failover_cause %q, want %q", got, tc.cause)
			}
			if md["repairs"] != nil {
				// Both attempts' output counts: b's 4 and a's estimate.
				if md["repair_cause"].GetStringValue() != "reset" || md["repairs"].GetNumberValue() != 1 || md["output_tokens"].GetNumberValue() <= 4 {
					t.Errorf("metadata lacks the repair: %v", md)
				}
			} else if tc.wantStatus == "200" && strings.Contains(tc.wantBody[len(tc.wantBody)-1], "DONE") || tc.name == "whole" {
				if md["output_tokens"].GetNumberValue() != 4 || md["status"].GetNumberValue() != 200 {
					t.Errorf("metadata lacks the outcome: %v", md)
				}
			}
		})
	}
}

// Request trailers end an owned request's body when its last chunk had no
// end_of_stream.
func TestOwnedTrailersEndTheBody(t *testing.T) {
	f := newFakeEgress(t, nil)
	yaml := strings.Replace(ownedConfig, "EGRESS", strings.TrimPrefix(f.srv.URL, "http://"), 1)
	rt, err := config.Parse([]byte(yaml), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { return testKey, k == "LLMUX_TEST_KEY" }})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Config: func() *config.Runtime { return rt }, Translator: openaiKinds})
	defer s.Close()
	rec := &ownedRecorder{t: t}
	h := newHandler(s, context.Background(), rec)
	hd := post("/v1/chat/completions", bearer()...)
	hd.Attributes = routeAttrs(t, map[string]any{"io.llmux": map[string]any{"mode": "owned"}})
	hd.ProtocolConfig = ownedPC(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED)
	for _, m := range []*extprocv3.ProcessingRequest{hd,
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`)}}},
		{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}},
	} {
		if err := h.handle(m); err != nil {
			t.Fatal(err)
		}
	}
	st, body, _ := rec.outcome()
	if st != "200" || !strings.Contains(body, "hello from a") {
		t.Errorf("status %s body %s", st, body)
	}
}

// A route and Envoy's processing mode that disagree are a configuration
// error, and the owned answer waits for the whole body.
func TestOwnedModeMismatch(t *testing.T) {
	whole := `{"model":"g","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name  string
		owned bool
		mode  extprocfilterv3.ProcessingMode_BodySendMode
	}{
		{"owned_route_buffered_body", true, extprocfilterv3.ProcessingMode_BUFFERED},
		{"splice_route_full_duplex_body", false, extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, f, log := ownedRun(t, nil, whole, tc.owned, tc.mode)
			if rec.immediate == nil || rec.immediate.GetStatus().GetCode() != 500 {
				t.Fatalf("want an immediate 500, got %+v", rec.events)
			}
			if !strings.Contains(log, "processing_mode") && !strings.Contains(log, "FULL_DUPLEX_STREAMED") {
				t.Errorf("log does not say what to change: %s", log)
			}
			if f.called() != "" {
				t.Errorf("provider called: %s", f.called())
			}
		})
	}
}

func TestOwnedRouteModeKey(t *testing.T) {
	for _, tc := range []struct {
		v       any
		owned   bool
		wantErr bool
	}{{"owned", true, false}, {"splice", false, false}, {"Owned", false, true}, {1.0, false, true}} {
		s, err := structpb.NewStruct(map[string]any{"mode": tc.v})
		if err != nil {
			t.Fatal(err)
		}
		var p routePolicy
		err = parseRouteMode(s.Fields["mode"], &p)
		if (err != nil) != tc.wantErr || p.owned() != tc.owned {
			t.Errorf("mode %v: owned %v err %v", tc.v, p.owned(), err)
		}
	}
	var nilPolicy *routePolicy
	if nilPolicy.owned() {
		t.Error("no metadata is owned")
	}
}

// The whole client body is over server.max_request_body_bytes only once
// its chunks add up: a 413 before any provider call.
func TestOwnedBodyTooLarge(t *testing.T) {
	big := `{"model":"g","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	f := newFakeEgress(t, nil)
	yaml := strings.Replace(ownedConfig, "EGRESS", strings.TrimPrefix(f.srv.URL, "http://"), 1)
	yaml = strings.Replace(yaml, "server: {", "server: {max_request_body_bytes: 4096, ", 1)
	rt, err := config.Parse([]byte(yaml), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { return testKey, k == "LLMUX_TEST_KEY" }})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Config: func() *config.Runtime { return rt }, Translator: openaiKinds})
	defer s.Close()
	rec := &ownedRecorder{t: t}
	h := newHandler(s, context.Background(), rec)
	hd := post("/v1/chat/completions", bearer()...)
	hd.Attributes = routeAttrs(t, map[string]any{"io.llmux": map[string]any{"mode": "owned"}})
	hd.ProtocolConfig = ownedPC(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED)
	if err := h.handle(hd); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(big))
	sc.Buffer(nil, 1<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if len(data) == 0 {
			return 0, nil, nil
		}
		n := min(len(data), 3000)
		return n, data[:n], nil
	})
	for sc.Scan() && h.ph != phaseDone {
		if err := h.handle(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: sc.Bytes()}}}); err != nil {
			t.Fatal(err)
		}
	}
	if rec.immediate == nil || rec.immediate.GetStatus().GetCode() != 413 {
		t.Fatalf("want 413, got %+v", rec.events)
	}
	if f.called() != "" {
		t.Errorf("provider called: %s", f.called())
	}
}

// BenchmarkOwnedSenderChunk is owned mode's cost per response chunk: a
// body reply turned into a StreamedImmediateResponse body message.
func BenchmarkOwnedSenderChunk(b *testing.B) {
	s := &ownedSender{out: discard{}}
	c := newChunkResponse()
	c.body.Body = []byte(ownedText)
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Send(c.msg); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Send(*extprocv3.ProcessingResponse) error { return nil }

// BenchmarkOwnedRequest is one owned streamed request end to end in the
// processor: headers, a body in two chunks, the egress call to a loopback
// fake (HTTP/1.1 keep-alive) and the streamed answer.
func BenchmarkOwnedRequest(b *testing.B) {
	f := &fakeEgress{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	defer f.srv.Close()
	yaml := strings.Replace(ownedConfig, "EGRESS", strings.TrimPrefix(f.srv.URL, "http://"), 1)
	rt, err := config.Parse([]byte(yaml), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { return testKey, k == "LLMUX_TEST_KEY" }})
	if err != nil {
		b.Fatal(err)
	}
	s := New(Options{Config: func() *config.Runtime { return rt }, Translator: openaiKinds, Logger: slog.New(slog.DiscardHandler)})
	defer s.Close()
	hd := post("/v1/chat/completions", bearer()...)
	hd.Attributes = routeAttrs(b, map[string]any{"io.llmux": map[string]any{"mode": "owned"}})
	hd.ProtocolConfig = ownedPC(extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED)
	body := []byte(`{"model":"g","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	rec := &ownedRecorder{t: b}
	b.ReportAllocs()
	for b.Loop() {
		rec.events = rec.events[:0]
		h := newHandler(s, context.Background(), rec)
		if err := h.handle(hd); err != nil {
			b.Fatal(err)
		}
		if err := h.handle(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}}); err != nil {
			b.Fatal(err)
		}
		if h.ph != phaseDone || len(rec.events) < 3 {
			b.Fatalf("phase %s, %d events", h.ph, len(rec.events))
		}
		h.end()
	}
}
