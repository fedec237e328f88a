// Package tracing records llmux's OpenTelemetry trace of a request: one
// span for the request as llmux handled it and, under it, one span per
// provider call (each failover try and each stream repair's continuation is
// one), with the failovers and repairs as events.
//
// The request span's parent is the trace context Envoy puts on the ext_proc
// gRPC stream when its own tracing is on (the traceparent of Envoy's span
// for that call, docs/envoy-facts.md fact 10, or its B3 headers with the
// Zipkin tracer, fact 11), else the client's traceparent (or B3) request
// headers, else none (a new trace). The TracerProvider's
// sampler decides what is recorded; Sampler is llmux's: Envoy's decision
// is followed, a client's is not trusted.
//
// A nil *Tracer, and a Request it did not start, record nothing and cost
// nothing: every method returns at once.
package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// Where a request span's parent came from: the value of ParentAttribute,
// which Sampler reads.
const (
	ParentAttribute = "llmux.trace.parent"
	ParentEnvoy     = "envoy"  // Envoy's trace context on the ext_proc stream
	ParentClient    = "client" // the client's traceparent header only
	ParentNone      = "none"   // no parent: a new trace
)

// Sampler decides which requests' spans are recorded. A decision Envoy
// made (its trace context on the ext_proc stream) is followed, as
// OpenTelemetry's ParentBased sampler follows a parent. A request without
// a parent, or whose only parent is the client's traceparent header, is
// recorded at ratio (by its trace id, so the same trace decides alike in
// every replica): a client cannot make llmux record more than that share of
// its requests by sending traceparents marked sampled, nor fewer by
// marking them not sampled. Provider call spans follow their request span.
func Sampler(ratio float64) sdktrace.Sampler {
	r := sdktrace.TraceIDRatioBased(ratio)
	return sampler{ratio: r, parent: sdktrace.ParentBased(r)}
}

type sampler struct{ ratio, parent sdktrace.Sampler }

func (s sampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if p.Kind == trace.SpanKindServer {
		for _, a := range p.Attributes {
			if a.Key == ParentAttribute && a.Value.AsString() != ParentEnvoy {
				return s.ratio.ShouldSample(p)
			}
		}
	}
	return s.parent.ShouldSample(p)
}

func (s sampler) Description() string { return "llmux{" + s.ratio.Description() + "}" }

// scope is the instrumentation scope of llmux's spans.
const scope = "github.com/llmux/llmux/processor"

// Tracer starts request traces.
type Tracer struct {
	tracer trace.Tracer
	w3c    propagation.TraceContext
	b3     propagation.TextMapPropagator
}

// New returns a Tracer that starts spans on tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(scope), b3: b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader))}
}

// extract reads a parent from c: W3C Trace Context, else B3 (Envoy's
// Zipkin tracer, docs/envoy-facts.md fact 11), and says which it was.
func (t *Tracer) extract(c propagation.TextMapCarrier) (ctx context.Context, isB3 bool) {
	ctx = t.w3c.Extract(context.Background(), c)
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, false
	}
	if c.Get("x-b3-traceid") == "" && c.Get("b3") == "" {
		return ctx, false // no B3 either: spare its extractor's allocations
	}
	ctx = t.b3.Extract(context.Background(), c)
	return ctx, trace.SpanContextFromContext(ctx).IsValid()
}

// Carrier reads a header; the request's headers as Envoy sent them.
type Carrier func(name string) string

// Request is the trace of one request. Its zero value records nothing; a
// handler holds one and calls it by phase. It is not safe for concurrent
// use (the handler's mutex guards it).
type Request struct {
	t    *Tracer
	ctx  context.Context // carries span
	span trace.Span

	op     string     // the operation, as the GenAI conventions name it
	b3     bool       // the parent came as B3: calls carry B3 headers too
	try    trace.Span // the provider call in progress, nil between calls
	tryCtx context.Context
	tries  int
}

// Start begins the request's span at start. streamCtx is the ext_proc
// stream's context, whose incoming gRPC metadata holds Envoy's trace
// context when Envoy traces; headers reads the client's request headers,
// the fallback parent. op names the operation ("chat", "embeddings").
func (r *Request) Start(t *Tracer, streamCtx context.Context, headers Carrier, op string, start time.Time) {
	if t == nil {
		return
	}
	parent, isB3 := t.extract(mdCarrier{streamCtx})
	from := ParentEnvoy
	if !trace.SpanContextFromContext(parent).IsValid() {
		from = ParentNone
		if headers != nil {
			parent, isB3 = t.extract(headerCarrier{headers})
			if trace.SpanContextFromContext(parent).IsValid() {
				from = ParentClient
			}
		}
	}
	ctx, span := t.tracer.Start(parent, spanName(op), trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("gen_ai.operation.name", op), attribute.String(ParentAttribute, from)))
	if !span.IsRecording() {
		// Not sampled: nothing to record, though a parent's trace id
		// still goes to the metadata (TraceID), where the parent may
		// have recorded.
		if trace.SpanContextFromContext(parent).IsValid() {
			r.ctx, r.b3 = ctx, isB3
		}
		return
	}
	r.t, r.ctx, r.span, r.op, r.b3 = t, ctx, span, op, isB3
}

// spanName is the request span's name for op, a constant for llmux's
// operations.
func spanName(op string) string {
	switch op {
	case "chat":
		return "llmux chat"
	case "embeddings":
		return "llmux embeddings"
	case "models":
		return "llmux models"
	}
	return "llmux " + op
}

// Recording reports whether the request's span records (it was started
// and sampled): the handler builds attributes only then.
func (r *Request) Recording() bool { return r.span != nil }

// TraceID is the request's trace id in hex, or "" without a trace. An
// unsampled request with a parent has its parent's (Envoy's or the
// client's), so that logs still join the trace where the parent recorded.
// A 64-bit B3 trace id (Zipkin's default) is written as its 16 digits, as
// Envoy's %TRACE_ID% writes it, not padded to 32.
func (r *Request) TraceID() string {
	if r.ctx == nil {
		return ""
	}
	sc := trace.SpanContextFromContext(r.ctx)
	if !sc.IsValid() {
		return ""
	}
	id := sc.TraceID().String()
	if r.b3 && id[:16] == "0000000000000000" {
		return id[16:]
	}
	return id
}

// Attempt describes a provider call.
type Attempt struct {
	// Reason is why the call is made: "first", "failover" or "repair".
	Reason string
	// Deployment, Provider and ProviderKind name who is called, Model
	// the provider's model.
	Deployment, Provider, ProviderKind, Model string
}

// StartTry begins the span of a provider call at the time the request is
// forwarded, ending the previous one if still open.
func (r *Request) StartTry(at time.Time, a Attempt) {
	if r.span == nil {
		return
	}
	if r.try != nil {
		r.try.End(trace.WithTimestamp(at))
	}
	r.tries++
	op := r.op
	r.tryCtx, r.try = r.t.tracer.Start(r.ctx, op+" "+a.Model, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(at),
		trace.WithAttributes(
			attribute.String("gen_ai.operation.name", op),
			attribute.String("gen_ai.provider.name", ProviderName(a.ProviderKind)),
			attribute.String("gen_ai.request.model", a.Model),
			attribute.String("llmux.deployment", a.Deployment),
			attribute.String("llmux.provider", a.Provider),
			attribute.Int("llmux.attempt", r.tries),
			attribute.String("llmux.attempt.reason", a.Reason),
		))
}

// TryOutcome is how a provider call ended.
type TryOutcome struct {
	Status        int    // the provider's status after translation; 0 when it never answered
	ErrorCode     string // llmux's error class; "" on success
	HasUsage      bool
	Input, Output int64 // tokens the provider reported for this call
	UpstreamID    string
	ServerError   bool // the failure is the provider's or the network's, not the client's
}

// EndTry ends the provider call in progress, if any, at at.
func (r *Request) EndTry(at time.Time, o TryOutcome) {
	if r.try == nil {
		return
	}
	s := r.try
	r.try, r.tryCtx = nil, nil
	attrs := make([]attribute.KeyValue, 0, 6)
	if o.Status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", o.Status))
	}
	if o.ErrorCode != "" {
		attrs = append(attrs, attribute.String("error.type", o.ErrorCode))
	}
	if o.HasUsage {
		attrs = append(attrs, attribute.Int64("gen_ai.usage.input_tokens", o.Input), attribute.Int64("gen_ai.usage.output_tokens", o.Output))
	}
	if o.UpstreamID != "" {
		attrs = append(attrs, attribute.String("llmux.upstream_request_id", o.UpstreamID))
	}
	s.SetAttributes(attrs...)
	if o.ErrorCode != "" && o.ServerError {
		s.SetStatus(codes.Error, o.ErrorCode)
	}
	s.End(trace.WithTimestamp(at))
}

// Inject writes the trace context of the provider call in progress (else
// the request's) into set, for a call llmux makes itself through Envoy's
// egress listener, so that Envoy's span of that call joins the trace: W3C
// Trace Context, and B3 headers too when the request's parent came as B3
// (a mesh tracing with Zipkin).
func (r *Request) Inject(set func(key, value string)) {
	if r.span == nil {
		return
	}
	ctx := r.tryCtx
	if ctx == nil {
		ctx = r.ctx
	}
	r.t.w3c.Inject(ctx, setCarrier{set})
	if r.b3 {
		r.t.b3.Inject(ctx, setCarrier{set})
	}
}

// Event adds an event to the request span at at.
func (r *Request) Event(at time.Time, name string, attrs ...attribute.KeyValue) {
	if r.span == nil {
		return
	}
	r.span.AddEvent(name, trace.WithTimestamp(at), trace.WithAttributes(attrs...))
}

// End ends the request span at at with the final attributes; serverError
// marks the outcome as a failure that was not the client's doing. Calling
// End again does nothing.
func (r *Request) End(at time.Time, serverError bool, errorCode string, attrs []attribute.KeyValue) {
	if r.span == nil {
		return
	}
	if r.try != nil {
		r.try.End(trace.WithTimestamp(at))
		r.try, r.tryCtx = nil, nil
	}
	r.span.SetAttributes(attrs...)
	if serverError {
		r.span.SetStatus(codes.Error, errorCode)
	}
	r.span.End(trace.WithTimestamp(at))
	r.span = nil
}

// ProviderName is the gen_ai.provider.name of an llmux provider kind (the
// OpenTelemetry GenAI semantic conventions' well-known values), or the
// kind itself.
func ProviderName(kind string) string {
	switch kind {
	case "anthropic":
		return "anthropic"
	case "vertex_anthropic":
		return "gcp.vertex_ai"
	case "bedrock":
		return "aws.bedrock"
	case "gemini":
		return "gcp.gemini"
	case "vertex":
		return "gcp.vertex_ai"
	case "azure_openai":
		return "azure.ai.openai"
	case "openai":
		return "openai"
	}
	return kind
}

// mdCarrier reads the incoming gRPC metadata of a stream's context (keys
// are lower case there, as in the W3C and B3 header names), one key at a
// time: the whole map is not copied.
type mdCarrier struct{ ctx context.Context }

func (c mdCarrier) Get(key string) string {
	if c.ctx == nil {
		return ""
	}
	if vs := metadata.ValueFromIncomingContext(c.ctx, key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}
func (c mdCarrier) Set(string, string) {}
func (c mdCarrier) Keys() []string {
	if c.ctx == nil {
		return nil
	}
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// headerCarrier reads request headers.
type headerCarrier struct{ get Carrier }

func (c headerCarrier) Get(key string) string { return c.get(key) }
func (c headerCarrier) Set(string, string)    {}
func (c headerCarrier) Keys() []string        { return nil }

// setCarrier writes headers.
type setCarrier struct{ set func(key, value string) }

func (c setCarrier) Get(string) string     { return "" }
func (c setCarrier) Set(key, value string) { c.set(key, value) }
func (c setCarrier) Keys() []string        { return nil }
