package tracing

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"
)

func newTracer(t *testing.T) (*Tracer, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return New(tp), sr
}

// TestZeroRequest: a Request that was never started, or started without a
// Tracer, does nothing and reports no trace.
func TestZeroRequest(t *testing.T) {
	var r Request
	r.Start(nil, context.Background(), func(string) string { return "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" }, "chat", time.Now())
	r.StartTry(time.Now(), Attempt{Reason: "first"})
	r.EndTry(time.Now(), TryOutcome{Status: 200})
	r.Event(time.Now(), "x")
	r.Inject(func(k, v string) { t.Errorf("injected %s", k) })
	r.End(time.Now(), true, "x", nil)
	if r.Recording() || r.TraceID() != "" {
		t.Errorf("recording %v, trace %q", r.Recording(), r.TraceID())
	}
}

// TestHostileTraceContext: whatever a client or a misconfigured proxy puts
// in traceparent/tracestate, the request gets a valid trace of its own (a
// new root) and nothing panics.
func TestHostileTraceContext(t *testing.T) {
	for _, tp := range []string{
		"",
		"garbage",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",            // no flags
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01x",        // trailing junk
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",         // forbidden version
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",         // zero trace id
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",         // zero parent
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\x00\xff", // control bytes
		"00-" + strings.Repeat("a", 10000),
		"00-ünïcødé-00f067aa0ba902b7-01",
	} {
		tr, sr := newTracer(t)
		var r Request
		md := metadata.Pairs("traceparent", tp, "tracestate", strings.Repeat("k=v,", 1000))
		r.Start(tr, metadata.NewIncomingContext(context.Background(), md), func(string) string { return tp }, "chat", time.Now())
		r.End(time.Now(), false, "", nil)
		spans := sr.Ended()
		if len(spans) != 1 || spans[0].Parent().IsValid() || len(r.TraceID()) != 32 {
			t.Errorf("traceparent %.40q: %d spans, parent %v, trace %q", tp, len(spans), spans[0].Parent(), r.TraceID())
		}
	}
}

// TestTries: calls are children of the request span, numbered, the
// previous one ended when the next starts, the open one ended with the
// request; Inject names the call in progress, else the request.
func TestTries(t *testing.T) {
	tr, sr := newTracer(t)
	var r Request
	t0 := time.Unix(100, 0)
	r.Start(tr, context.Background(), nil, "chat", t0)
	var got []string
	inject := func() string {
		v := ""
		r.Inject(func(k, val string) {
			if k == "traceparent" {
				v = val
			}
		})
		return v
	}
	got = append(got, inject())
	r.StartTry(t0.Add(time.Millisecond), Attempt{Reason: "first", Deployment: "a", ProviderKind: "bedrock", Model: "m1"})
	got = append(got, inject())
	r.StartTry(t0.Add(2*time.Millisecond), Attempt{Reason: "failover", Deployment: "b", ProviderKind: "gemini", Model: "m2"})
	got = append(got, inject())
	r.End(t0.Add(3*time.Millisecond), false, "", nil)
	r.End(t0.Add(4*time.Millisecond), true, "again", nil) // no effect
	spans := sr.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	a, b, req := spans[0], spans[1], spans[2]
	if a.EndTime() != t0.Add(2*time.Millisecond) || b.EndTime() != t0.Add(3*time.Millisecond) || req.EndTime() != t0.Add(3*time.Millisecond) {
		t.Errorf("ends %v %v %v", a.EndTime(), b.EndTime(), req.EndTime())
	}
	for i, want := range []string{req.SpanContext().SpanID().String(), a.SpanContext().SpanID().String(), b.SpanContext().SpanID().String()} {
		if !strings.Contains(got[i], want) {
			t.Errorf("inject %d: %q, want span %s", i, got[i], want)
		}
	}
	if b.Name() != "chat m2" || attr(b, "gen_ai.provider.name") != "gcp.gemini" || attr(b, "llmux.attempt") != "2" || attr(a, "gen_ai.provider.name") != "aws.bedrock" {
		t.Errorf("call span %q %v", b.Name(), b.Attributes())
	}
}

func attr(s sdktrace.ReadOnlySpan, k string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == k {
			return kv.Value.Emit()
		}
	}
	return ""
}

func TestProviderName(t *testing.T) {
	for kind, want := range map[string]string{"openai": "openai", "openai_compatible": "openai_compatible", "azure_openai": "azure.ai.openai",
		"anthropic": "anthropic", "vertex_anthropic": "gcp.vertex_ai", "bedrock": "aws.bedrock", "gemini": "gcp.gemini", "vertex": "gcp.vertex_ai"} {
		if got := ProviderName(kind); got != want {
			t.Errorf("%s: %q, want %q", kind, got, want)
		}
	}
}

// TestSampler: Envoy's sampling decision is followed; a client's
// traceparent only names the trace, llmux's ratio decides; calls follow
// their request.
func TestSampler(t *testing.T) {
	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	tp := func(flags string) string { return "00-" + trace + "-00f067aa0ba902b7-" + flags }
	for _, tc := range []struct {
		name        string
		ratio       float64
		envoy, head string // traceparents on the ext_proc stream and in the client's headers
		recorded    bool
	}{
		{"envoy sampled, ratio 0", 0, tp("01"), "", true},
		{"envoy not sampled, ratio 1", 1, tp("00"), tp("01"), false},
		{"client sampled, ratio 0", 0, "", tp("01"), false},
		{"client not sampled, ratio 1", 1, "", tp("00"), true},
		{"no parent, ratio 0", 0, "", "", false},
		{"no parent, ratio 1", 1, "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sr := tracetest.NewSpanRecorder()
			prov := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(Sampler(tc.ratio)))
			defer func() { _ = prov.Shutdown(context.Background()) }()
			ctx := context.Background()
			if tc.envoy != "" {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("traceparent", tc.envoy))
			}
			var r Request
			r.Start(New(prov), ctx, func(string) string { return tc.head }, "chat", time.Now())
			r.StartTry(time.Now(), Attempt{Reason: "first", Model: "m"})
			r.End(time.Now(), false, "", nil)
			want := 0
			if tc.recorded {
				want = 2
			}
			if n := len(sr.Ended()); n != want || r.Recording() {
				t.Errorf("%d spans recorded, want %d", n, want)
			}
			if (tc.envoy != "" || tc.head != "") && r.TraceID() != trace {
				t.Errorf("trace id %q, want the parent's", r.TraceID())
			}
		})
	}
}

// TestB3Parents: a parent in B3 headers (Envoy's Zipkin tracer, multiple
// or single header, 64- or 128-bit trace ids; or a client's) is continued;
// W3C wins when both are present; calls carry B3 headers only when the
// parent came as B3.
func TestB3Parents(t *testing.T) {
	const (
		trace128 = "4bf92f3577b34da6a3ce929d0e0e4736"
		trace64  = "a3ce929d0e0e4736"
		span     = "00f067aa0ba902b7"
	)
	for _, tc := range []struct {
		name      string
		md        metadata.MD
		headers   map[string]string
		wantTrace string
		wantB3    bool
		recorded  bool
	}{
		{"envoy multi 128", metadata.Pairs("x-b3-traceid", trace128, "x-b3-spanid", span, "x-b3-sampled", "1"), nil, trace128, true, true},
		{"envoy multi 64", metadata.Pairs("x-b3-traceid", trace64, "x-b3-spanid", span, "x-b3-sampled", "1"), nil, trace64, true, true},
		{"envoy 64 not sampled", metadata.Pairs("x-b3-traceid", trace64, "x-b3-spanid", span, "x-b3-sampled", "0"), nil, trace64, true, false},
		{"envoy single", metadata.Pairs("b3", trace128+"-"+span+"-1"), nil, trace128, true, true},
		{"envoy not sampled", metadata.Pairs("x-b3-traceid", trace128, "x-b3-spanid", span, "x-b3-sampled", "0"), nil, trace128, true, false},
		{"w3c wins", metadata.Pairs("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "x-b3-traceid", trace128, "x-b3-spanid", span, "x-b3-sampled", "1"), nil, "0af7651916cd43dd8448eb211c80319c", false, true},
		{"client b3", nil, map[string]string{"x-b3-traceid": trace128, "x-b3-spanid": span, "x-b3-sampled": "0"}, trace128, true, true},
		{"invalid b3", metadata.Pairs("x-b3-traceid", "zz", "x-b3-spanid", span), nil, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sr := tracetest.NewSpanRecorder()
			prov := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(Sampler(1)))
			defer func() { _ = prov.Shutdown(context.Background()) }()
			ctx := context.Background()
			if tc.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tc.md)
			}
			var r Request
			r.Start(New(prov), ctx, func(k string) string { return tc.headers[k] }, "chat", time.Now())
			if r.Recording() != tc.recorded {
				t.Fatalf("recording %v, want %v", r.Recording(), tc.recorded)
			}
			if tc.wantTrace != "" && r.TraceID() != tc.wantTrace {
				t.Errorf("trace %q, want %q", r.TraceID(), tc.wantTrace)
			}
			if !tc.recorded {
				return
			}
			r.StartTry(time.Now(), Attempt{Reason: "first", Model: "m"})
			got := map[string]string{}
			r.Inject(func(k, v string) { got[k] = v })
			if got["traceparent"] == "" {
				t.Errorf("no traceparent injected: %v", got)
			}
			if _, ok := got["x-b3-traceid"]; ok != tc.wantB3 {
				t.Errorf("B3 headers injected %v, want %v: %v", ok, tc.wantB3, got)
			}
			if tc.wantB3 && (!strings.HasSuffix(got["x-b3-traceid"], r.TraceID()) || got["x-b3-sampled"] != "1") {
				t.Errorf("B3 injected %v, want trace %s sampled", got, r.TraceID())
			}
			r.End(time.Now(), false, "", nil)
		})
	}
}
