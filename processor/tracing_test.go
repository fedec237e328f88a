package processor

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/proto/config"
)

const (
	clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientParent = "00f067aa0ba902b7"
	envoyTrace   = "0af7651916cd43dd8448eb211c80319c"
	envoySpan    = "b7ad6b7169203331"
)

// tracedExchange is newExchange with a tracer recording into the returned
// recorder; md is the ext_proc stream's incoming gRPC metadata.
func tracedExchange(t *testing.T, sampler sdktrace.Sampler, md metadata.MD) (*exchange, *tracetest.SpanRecorder) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg := testConfig(t)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds, Tracer: tracing.New(tp)})
	ctx := context.Background()
	if md != nil {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	rec := &recorder{}
	return &exchange{t: t, h: newHandler(s, ctx, rec), rec: rec}, sr
}

// runTracedStream runs a streamed chat exchange to its end; clientTP is the
// client's traceparent header ("" for none). It returns the final
// metadata.
func runTracedStream(t *testing.T, x *exchange, clientTP string) map[string]string {
	t.Helper()
	hdrs := append(bearer(), ":method", "POST", ":path", "/v1/chat/completions", ":authority", "gw", "x-request-id", "req-1")
	if clientTP != "" {
		hdrs = append(hdrs, "traceparent", clientTP)
	}
	x.must(reqHeaders(false, hdrs...))
	x.must(reqBody(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	x.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	if _, err := x.send(respBody(streamUpstream, true)); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range br2md(x.rec.sent[len(x.rec.sent)-1]) {
		out[k] = v.GetStringValue()
	}
	return out
}

func attrs(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// TestTraceParents: the request span's parent is Envoy's span from the
// ext_proc stream's gRPC metadata when there is one, else the client's
// traceparent, else none; the provider call is its child; the final
// metadata carries the trace id for the access log.
func TestTraceParents(t *testing.T) {
	for _, tc := range []struct {
		name      string
		md        metadata.MD
		clientTP  string
		wantTrace string // "" for a new trace
		wantSpan  string // the parent span id
	}{
		{"envoy", metadata.Pairs("traceparent", "00-"+envoyTrace+"-"+envoySpan+"-01"), "00-" + clientTrace + "-" + clientParent + "-01", envoyTrace, envoySpan},
		{"client", nil, "00-" + clientTrace + "-" + clientParent + "-01", clientTrace, clientParent},
		{"client_when_envoy_metadata_invalid", metadata.Pairs("traceparent", "00-zz-yy-01"), "00-" + clientTrace + "-" + clientParent + "-01", clientTrace, clientParent},
		{"client_traceparent_invalid", nil, "00-00000000000000000000000000000000-" + clientParent + "-01", "", ""},
		{"none", nil, "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, sr := tracedExchange(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), tc.md)
			md := runTracedStream(t, x, tc.clientTP)
			spans := sr.Ended()
			if len(spans) != 2 {
				t.Fatalf("%d spans, want the request's and the provider call's", len(spans))
			}
			call, req := spans[0], spans[1]
			if req.Name() != "llmux chat" || req.SpanKind() != trace.SpanKindServer {
				t.Errorf("request span %q kind %v", req.Name(), req.SpanKind())
			}
			tid := req.SpanContext().TraceID().String()
			if tc.wantTrace != "" && tid != tc.wantTrace {
				t.Errorf("trace %s, want %s", tid, tc.wantTrace)
			}
			if got := req.Parent().SpanID().String(); tc.wantSpan != "" && got != tc.wantSpan {
				t.Errorf("parent span %s, want %s", got, tc.wantSpan)
			}
			if tc.wantSpan == "" && req.Parent().IsValid() {
				t.Errorf("parent %v, want a root span", req.Parent())
			}
			if md["trace_id"] != tid {
				t.Errorf("metadata trace_id %q, want %s", md["trace_id"], tid)
			}
			if call.Parent().SpanID() != req.SpanContext().SpanID() || call.SpanKind() != trace.SpanKindClient || call.Name() != "chat gpt-4o-mini-2024-07-18" {
				t.Errorf("call span %q kind %v parent %v", call.Name(), call.SpanKind(), call.Parent())
			}
			ca := attrs(call.Attributes())
			if ca["llmux.deployment"].AsString() != "gpt-4o-mini-openai" || ca["gen_ai.provider.name"].AsString() != "openai" ||
				ca["llmux.attempt"].AsInt64() != 1 || ca["llmux.attempt.reason"].AsString() != "first" ||
				ca["http.response.status_code"].AsInt64() != 200 || ca["gen_ai.usage.input_tokens"].AsInt64() != 9 || ca["gen_ai.usage.output_tokens"].AsInt64() != 1 {
				t.Errorf("call attributes %v", ca)
			}
			ra := attrs(req.Attributes())
			if ra["llmux.model_group"].AsString() != "gpt-4o-mini" || ra["llmux.tenant"].AsString() != "team-a" || ra["llmux.request_id"].AsString() != "req-1" ||
				ra["llmux.status"].AsInt64() != 200 || ra["gen_ai.request.model"].AsString() != "gpt-4o-mini" || ra["gen_ai.usage.input_tokens"].AsInt64() != 9 ||
				ra["llmux.trace_id"].AsString() != tid {
				t.Errorf("request attributes %v", ra)
			}
			if req.Status().Code != codes.Unset || call.EndTime().After(req.EndTime()) || call.StartTime().Before(req.StartTime()) {
				t.Errorf("status %v, call %v–%v inside request %v–%v?", req.Status(), call.StartTime(), call.EndTime(), req.StartTime(), req.EndTime())
			}
		})
	}
}

// TestTraceNotSampled: a parent that was not sampled records nothing, yet
// its trace id goes to the metadata (the parent's other spans may be kept
// by a tail sampler); without a tracer there is no trace id at all.
func TestTraceNotSampled(t *testing.T) {
	x, sr := tracedExchange(t, sdktrace.ParentBased(sdktrace.AlwaysSample()), metadata.Pairs("traceparent", "00-"+envoyTrace+"-"+envoySpan+"-00"))
	md := runTracedStream(t, x, "")
	if n := len(sr.Ended()) + len(sr.Started()); n != 0 {
		t.Errorf("%d spans recorded for an unsampled parent", n)
	}
	if md["trace_id"] != envoyTrace {
		t.Errorf("trace_id %q", md["trace_id"])
	}
	x = newExchange(t)
	if md := runTracedStream(t, x, "00-"+clientTrace+"-"+clientParent+"-01"); md["trace_id"] != "" {
		t.Errorf("without a tracer: trace_id %q", md["trace_id"])
	}
}

// TestTraceServerError: an upstream 5xx marks both spans as errors with
// the error class.
func TestTraceServerError(t *testing.T) {
	x, sr := tracedExchange(t, sdktrace.AlwaysSample(), nil)
	x.must(post("/v1/chat/completions", bearer()...))
	x.must(reqBody(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	if _, err := x.send(respHeaders(false, ":status", "503", "content-type", "application/json")); err != nil {
		t.Fatal(err)
	}
	if _, err := x.send(respBody(`{"error":{"message":"overloaded","type":"server_error"}}`, true)); err != nil {
		t.Fatal(err)
	}
	spans := sr.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	for _, s := range spans {
		if s.Status().Code != codes.Error || s.Status().Description == "" {
			t.Errorf("%s: status %v, want an error with its class", s.Name(), s.Status())
		}
		if a := attrs(s.Attributes()); a["http.response.status_code"].AsInt64() != 503 || a["error.type"].AsString() == "" {
			t.Errorf("%s: attributes %v", s.Name(), a)
		}
	}
}

// TestTracePendingCallEndsWithoutAnAnswer: a call llmux makes itself that
// has no answer when the request ends (the client went away meanwhile)
// ends with the request's error and none of the previous try's status or
// usage.
func TestTracePendingCallEndsWithoutAnAnswer(t *testing.T) {
	x, sr := tracedExchange(t, sdktrace.AlwaysSample(), nil)
	x.must(post("/v1/chat/completions", bearer()...))
	x.must(reqBody(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	x.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	first, _, _ := strings.Cut(streamUpstream, "\n\n")
	if _, err := x.send(respBody(first+"\n\n", false)); err != nil {
		t.Fatal(err)
	}
	x.h.forwardedAt = x.h.s.opts.Now()
	x.h.traceTry(x.h.dep, "repair") // as prepareCall does, then the stream ends
	x.h.end()
	spans := sr.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans", len(spans))
	}
	a := attrs(spans[1].Attributes())
	if a["llmux.attempt.reason"].AsString() != "repair" || a["error.type"].AsString() != "stream_interrupted" {
		t.Errorf("pending call %v", a)
	}
	for _, k := range []string{"http.response.status_code", "gen_ai.usage.input_tokens", "llmux.upstream_request_id"} {
		if _, ok := a[k]; ok {
			t.Errorf("pending call has the previous try's %s", k)
		}
	}
}
