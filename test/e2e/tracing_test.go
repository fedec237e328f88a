package e2e

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

const (
	e2eTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	e2eParent = "00f067aa0ba902b7"
)

// withTracer makes the rigs started by the test trace into a recorder.
func withTracer(t *testing.T) *tracetest.SpanRecorder {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	traceRigs(t, sr)
	return sr
}

// traceRigs makes the rigs started by the test trace every request into
// sp.
func traceRigs(t *testing.T, sp sdktrace.SpanProcessor) {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp))
	rigProcessorOptions = func(o *processor.Options) { o.Tracer = tracing.New(tp) }
	t.Cleanup(func() {
		rigProcessorOptions = nil
		_ = tp.Shutdown(context.Background())
	})
}

// traceOf returns the request span and its provider call spans, in order.
func traceOf(t *testing.T, sr *tracetest.SpanRecorder) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
	t.Helper()
	var req sdktrace.ReadOnlySpan
	var calls []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			if req != nil {
				t.Fatalf("two request spans: %s and %s", req.Name(), s.Name())
			}
			req = s
		case trace.SpanKindClient:
			calls = append(calls, s)
		}
	}
	if req == nil {
		t.Fatalf("no request span among %d", len(sr.Ended()))
	}
	for _, c := range calls {
		if c.Parent().SpanID() != req.SpanContext().SpanID() {
			t.Errorf("call span %s is not the request span's child", c.Name())
		}
	}
	return req, calls
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func eventAttrs(s sdktrace.ReadOnlySpan, name string) map[string]string {
	for _, e := range s.Events() {
		if e.Name == name {
			m := map[string]string{}
			for _, kv := range e.Attributes {
				m[string(kv.Key)] = kv.Value.Emit()
			}
			return m
		}
	}
	return nil
}

// TestTraceFailover: a request that failed over shows in its trace as it
// happened, under the client's traceparent: the request span with the
// outcome (the answering deployment, two attempts, the cause), one span per
// provider call (the first with the 503, the second with the answer and its
// usage), and a failover event. llmux's own call through the egress
// listener carries its call span's traceparent, and the access log carries
// the trace id.
func TestTraceFailover(t *testing.T) {
	sr := withTracer(t)
	r, second := startFailoverRig(t)
	r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
	s := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello"),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}},
		option.WithHeader("traceparent", "00-"+e2eTrace+"-"+e2eParent+"-01"))
	content := ""
	for s.Next() {
		for _, ch := range s.Current().Choices {
			content += ch.Delta.Content
		}
	}
	if err := s.Err(); err != nil || content != "answer from the second deployment" {
		t.Fatalf("content %q, err %v", content, err)
	}
	s.Close()
	logs := r.accessLogs(2)
	r.waitNoStreams()

	req, calls := traceOf(t, sr)
	if req.SpanContext().TraceID().String() != e2eTrace || req.Parent().SpanID().String() != e2eParent {
		t.Errorf("request span in trace %s under %s, want the client's", req.SpanContext().TraceID(), req.Parent().SpanID())
	}
	ra := spanAttrs(req)
	if ra["llmux.deployment"] != "dep-second" || ra["llmux.attempts"] != "2" || ra["llmux.failover_cause"] == "" || ra["llmux.status"] != "200" ||
		ra["llmux.output_tokens"] == "" || ra["gen_ai.request.model"] != "gpt-4o-mini" {
		t.Errorf("request span attributes %v", ra)
	}
	if ev := eventAttrs(req, "llmux.failover"); ev["llmux.failed_deployment"] != "dep-first" || ev["llmux.next_deployment"] != "dep-second" || ev["error.type"] == "" {
		t.Errorf("failover event %v", ev)
	}
	if len(calls) != 2 {
		t.Fatalf("%d provider call spans, want 2", len(calls))
	}
	first, next := spanAttrs(calls[0]), spanAttrs(calls[1])
	if first["llmux.deployment"] != "dep-first" || first["llmux.attempt.reason"] != "first" || first["http.response.status_code"] != "503" || first["error.type"] == "" {
		t.Errorf("first call %v", first)
	}
	if next["llmux.deployment"] != "dep-second" || next["llmux.attempt.reason"] != "failover" || next["llmux.attempt"] != "2" ||
		next["http.response.status_code"] != "200" || next["gen_ai.usage.output_tokens"] == "" || next["error.type"] != "" {
		t.Errorf("failover call %v", next)
	}
	// Each provider saw its call span as the parent: the first through
	// Envoy's router (the header set by llmux), the second through the
	// egress listener.
	firstReq, _ := r.fake.Last()
	if got, want := firstReq.Header.Get("traceparent"), "00-"+e2eTrace+"-"+calls[0].SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("first call's traceparent %q, want %q", got, want)
	}
	reqs := second.Requests()
	if len(reqs) != 1 {
		t.Fatalf("the second deployment got %d requests", len(reqs))
	}
	want := "00-" + e2eTrace + "-" + calls[1].SpanContext().SpanID().String() + "-01"
	if got := reqs[0].Header.Get("traceparent"); got != want {
		t.Errorf("egress traceparent %q, want %q", got, want)
	}
	checkTraceIDLogged(t, logs, e2eTrace)
}

// TestTraceRepair: a stream repaired after content shows the failed call,
// the continuation's call (reason repair) and a repair event with its
// cause; the request span counts the repair.
func TestTraceRepair(t *testing.T) {
	sr := withTracer(t)
	r, fake, tee := repairRig(t, repairProviders[0])
	f := fakeprovider.DefaultFault()
	f.Kind, f.After = fakeprovider.FaultInbandError, 7
	fake.Enqueue(f)
	s := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox"),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}})
	acc := openai.ChatCompletionAccumulator{}
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	s.Close()
	checkRepaired(t, r, tee, &acc)
	r.waitNoStreams()

	req, calls := traceOf(t, sr)
	ra := spanAttrs(req)
	if ra["llmux.repairs"] != "1" || ra["llmux.repair_cause"] != "inband_error" || ra["llmux.status"] != "200" {
		t.Errorf("request span attributes %v", ra)
	}
	if ev := eventAttrs(req, "llmux.repair"); ev["llmux.repair_cause"] != "inband_error" || ev["llmux.sent_bytes"] == "" || ev["llmux.sent_bytes"] == "0" {
		t.Errorf("repair event %v", ev)
	}
	if len(calls) != 2 {
		t.Fatalf("%d provider call spans, want 2", len(calls))
	}
	if a := spanAttrs(calls[0]); a["error.type"] == "" || a["llmux.attempt.reason"] != "first" {
		t.Errorf("failed call %v", a)
	}
	if a := spanAttrs(calls[1]); a["llmux.attempt.reason"] != "repair" || a["error.type"] != "" || a["http.response.status_code"] != "200" {
		t.Errorf("continuation call %v", a)
	}
	if !strings.HasPrefix(calls[1].Name(), "chat ") {
		t.Errorf("call span name %q", calls[1].Name())
	}
}

// tracedFailover runs one request that fails over (the first deployment
// answers 503) through envoy/standalone.yaml with Envoy's tracing turned on
// by enable, and returns the rig, the second deployment and the access log.
func tracedFailover(t *testing.T, enable func([]byte) ([]byte, error), opts ...option.RequestOption) (*rig, *fakeprovider.Server, []map[string]any) {
	t.Helper()
	doc, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	traced, err := enable(doc)
	if err != nil {
		t.Fatal(err)
	}
	r, second := startFailoverRigOpts(t, failoverOpts{bootstrap: traced})
	r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")}, opts...)
	if err != nil || resp.Choices[0].Message.Content != "answer from the second deployment" {
		t.Fatalf("%v %v", resp, err)
	}
	logs := r.accessLogs(2)
	r.waitNoStreams()
	return r, second, logs
}

// TestTraceUnderEnvoy: with tracing on in Envoy's connection managers
// (envoysim.EnableTracing, docs/envoy-facts.md fact 10), llmux's request
// span is a child of Envoy's span of the ext_proc call, in the client's
// trace; Envoy sends its own request span upstream, and the access log's
// trace_id is that trace. After a failover, the second deployment sees the
// trace context of Envoy's egress span, which is llmux's call span's child.
func TestTraceUnderEnvoy(t *testing.T) {
	sr := withTracer(t)
	r, second, logs := tracedFailover(t, envoysim.EnableTracing, option.WithHeader("traceparent", "00-"+e2eTrace+"-"+e2eParent+"-01"))

	req, calls := traceOf(t, sr)
	if req.SpanContext().TraceID().String() != e2eTrace {
		t.Errorf("request span in trace %s, want the client's %s", req.SpanContext().TraceID(), e2eTrace)
	}
	first, ok := r.fake.Last()
	if !ok {
		t.Fatal("the first deployment got no request")
	}
	// Envoy's router sends its request span; llmux's parent is Envoy's
	// ext_proc child span of it: in the same trace, another span.
	envoyReq := strings.Split(first.Header.Get("traceparent"), "-")
	if len(envoyReq) != 4 || envoyReq[1] != e2eTrace || envoyReq[2] == e2eParent {
		t.Fatalf("upstream traceparent %q: want Envoy's request span in the client's trace", first.Header.Get("traceparent"))
	}
	if p := req.Parent().SpanID().String(); p == e2eParent || p == envoyReq[2] || !req.Parent().IsRemote() {
		t.Errorf("request span's parent %s: want Envoy's ext_proc span (neither the client's %s nor Envoy's request span %s)", p, e2eParent, envoyReq[2])
	}
	if len(calls) != 2 {
		t.Fatalf("%d call spans", len(calls))
	}
	if envoyReq[2] == calls[0].SpanContext().SpanID().String() {
		t.Errorf("upstream traceparent %q is llmux's call span: Envoy's router replaces it with its own", first.Header.Get("traceparent"))
	}
	// The egress listener traces too: the second deployment sees Envoy's
	// egress span, a child of llmux's call span, in the same trace.
	got, _ := second.Last()
	egress := strings.Split(got.Header.Get("traceparent"), "-")
	if len(egress) != 4 || egress[1] != e2eTrace || egress[2] == calls[1].SpanContext().SpanID().String() {
		t.Errorf("egress upstream traceparent %q: want Envoy's egress span in trace %s", got.Header.Get("traceparent"), e2eTrace)
	}
	checkTraceIDLogged(t, logs, e2eTrace)
}

// spanCounter counts ended spans without keeping them.
type spanCounter struct {
	mu       sync.Mutex
	requests int
	calls    int
	traces   map[trace.TraceID]bool
}

func (c *spanCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *spanCounter) Shutdown(context.Context) error                  { return nil }
func (c *spanCounter) ForceFlush(context.Context) error                { return nil }
func (c *spanCounter) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch s.SpanKind() {
	case trace.SpanKindServer:
		c.requests++
		c.traces[s.SpanContext().TraceID()] = true
	case trace.SpanKindClient:
		c.calls++
	}
}

func (c *spanCounter) counts() (requests, traces, calls int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests, len(c.traces), c.calls
}

// withSpanCounter makes the rigs started by the test trace every request
// into a counter.
func withSpanCounter(t *testing.T) *spanCounter {
	t.Helper()
	c := &spanCounter{traces: map[trace.TraceID]bool{}}
	traceRigs(t, c)
	return c
}

// TestTraceUnderZipkin: with Envoy's Zipkin tracer (B3 headers, 64-bit
// trace ids by default; docs/envoy-facts.md fact 11), llmux's request span
// is a child of Envoy's ext_proc span in Envoy's trace, the access log's
// trace_id is Envoy's 16-digit id, and after a failover the egress
// listener's B3 headers carry the same trace under llmux's call span.
func TestTraceUnderZipkin(t *testing.T) {
	sr := withTracer(t)
	r, second, logs := tracedFailover(t, func(doc []byte) ([]byte, error) { return envoysim.EnableZipkinTracing(doc, false) })

	req, calls := traceOf(t, sr)
	first, ok := r.fake.Last()
	if !ok {
		t.Fatal("the first deployment got no request")
	}
	envoyTrace := first.Header.Get("x-b3-traceid")
	if len(envoyTrace) != 16 || req.SpanContext().TraceID().String() != "0000000000000000"+envoyTrace {
		t.Fatalf("Envoy's trace %q (upstream x-b3-traceid), llmux's %s: want the same 64-bit trace", envoyTrace, req.SpanContext().TraceID())
	}
	if p := req.Parent().SpanID().String(); !req.Parent().IsRemote() || p == first.Header.Get("x-b3-spanid") {
		t.Errorf("request span's parent %s: want Envoy's ext_proc span, not its request span %s", p, first.Header.Get("x-b3-spanid"))
	}
	if len(calls) != 2 {
		t.Fatalf("%d call spans", len(calls))
	}
	got, _ := second.Last()
	call := calls[1].SpanContext().SpanID().String()
	if got.Header.Get("x-b3-traceid") != envoyTrace || got.Header.Get("x-b3-spanid") != call && got.Header.Get("x-b3-parentspanid") != call {
		t.Errorf("egress upstream B3 %q/%q/%q: want trace %s under llmux's call span %s", got.Header.Get("x-b3-traceid"),
			got.Header.Get("x-b3-spanid"), got.Header.Get("x-b3-parentspanid"), envoyTrace, call)
	}
	checkTraceIDLogged(t, logs, envoyTrace)
}

// checkTraceIDLogged checks that the ingress access log line carries
// trace_id (nil logs: real Envoy, whose access log is its own stdout).
func checkTraceIDLogged(t *testing.T, logs []map[string]any, traceID string) {
	t.Helper()
	if logs == nil {
		return
	}
	for _, l := range logs {
		if l["listener"] != "egress" && l["trace_id"] == traceID {
			return
		}
	}
	t.Errorf("no ingress access log with trace_id %s: %v", traceID, logs)
}
