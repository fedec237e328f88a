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
