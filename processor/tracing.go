package processor

import (
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// The tracing concern: the handler calls h.trace (processor/tracing) by
// phase. The request span starts with the request headers; each provider
// call (the forwarded request, each failover try, each repair's
// continuation) is a child span from the time it is forwarded to the
// moment its outcome is known; failovers and repairs are events; the
// request span ends in complete with the final metadata's fields as its
// attributes, so the trace, the access log and the metrics say the same.
// Without Options.Tracer, or for a request not sampled, each call returns
// at once.

// traceOp is the GenAI conventions' operation name of an endpoint.
func traceOp(ep endpoint) string {
	switch ep {
	case epChat:
		return "chat"
	case epEmbeddings:
		return "embeddings"
	case epModels, epModel:
		return "models"
	}
	return "request"
}

// startTrace starts the request span; hs are the client's request headers,
// read for a traceparent when the ext_proc stream carries none.
func (h *handler) startTrace(hs []*corev3.HeaderValue) {
	if h.s.opts.Tracer == nil {
		return
	}
	get := func(name string) string {
		for _, hv := range hs {
			if hv.GetKey() == name {
				return headerValue(hv)
			}
		}
		return ""
	}
	h.trace.Start(h.s.opts.Tracer, h.ctx, get, traceOp(h.ep), h.start)
}

// traceTry starts the span of a provider call to d, forwarded at
// h.forwardedAt; reason: "first", "failover" or "repair".
func (h *handler) traceTry(d *config.Deployment, reason string) {
	if !h.trace.Recording() {
		return
	}
	h.trace.StartTry(h.forwardedAt, tracing.Attempt{Reason: reason, Deployment: d.Name, Provider: d.Provider.Name,
		ProviderKind: d.Provider.Kind, Model: d.Model})
	// llmux's own call: until switchTo takes its answer, the handler's
	// status and decoder are the previous try's.
	h.tryPending = reason != "first"
}

// traceTryEnd ends the span of the provider call in progress, at at, with
// what the handler knows of it: its status, error class and usage.
func (h *handler) traceTryEnd(at time.Time) {
	if !h.trace.Recording() {
		return
	}
	if h.tryPending {
		// No answer yet (the client went away, or the request's end came
		// first): nothing of the previous try's is this call's.
		h.tryPending = false
		code := h.errCode
		if code == "" || h.ctx.Err() != nil {
			code = string(translate.CodeCanceled)
		}
		h.trace.EndTry(at, tracing.TryOutcome{ErrorCode: code})
		return
	}
	o := tracing.TryOutcome{Status: h.status, ErrorCode: h.errCode, UpstreamID: h.upstreamID}
	if h.dec != nil {
		res := h.dec.Result()
		if sd, ok := h.dec.(*spliceDecoder); ok {
			res = sd.Decoder.Result() // this call's own, without the prior attempts
		}
		if o.ErrorCode == "" && res.Err != nil {
			o.ErrorCode = string(res.Err.Code)
		}
		if res.HasUsage {
			o.HasUsage, o.Input, o.Output = true, res.Usage.InputTokens, res.Usage.OutputTokens
		}
	}
	o.ServerError = serverFailure(o.Status, o.ErrorCode)
	h.trace.EndTry(at, o)
}

// traceCallFailed ends the span of a provider call that got no answer:
// the provider's failure, or the client's going away.
func (h *handler) traceCallFailed(err error) {
	if !h.trace.Recording() {
		return
	}
	o := tracing.TryOutcome{ErrorCode: string(brokenCallError(err).Code), ServerError: true}
	if h.ctx.Err() != nil {
		o = tracing.TryOutcome{ErrorCode: string(translate.CodeCanceled)}
	}
	h.trace.EndTry(h.s.opts.Now(), o)
	h.tryPending = false
}

// traceCallAnswered ends the span of a provider call whose answer (status,
// class code) was not used.
func (h *handler) traceCallAnswered(status int, code translate.Code) {
	if h.trace.Recording() {
		h.trace.EndTry(h.s.opts.Now(), tracing.TryOutcome{Status: status, ErrorCode: string(code), ServerError: serverFailure(status, string(code))})
		h.tryPending = false
	}
}

// traceInject puts the trace context of the provider call in progress into
// the headers of a call llmux makes through the egress listener.
func (h *handler) traceInject(hdr http.Header) {
	if h.trace.Recording() { // the closure is not built otherwise
		h.trace.Inject(func(k, v string) { hdr.Set(k, v) })
	}
}

// traceEvent records a failover or a repair on the request span.
func (h *handler) traceEvent(name string, attrs ...attribute.KeyValue) {
	if h.trace.Recording() {
		h.trace.Event(h.s.opts.Now(), name, attrs...)
	}
}

// endTrace ends the request span with the final metadata's fields as
// attributes (prefixed "llmux."), and the GenAI conventions' usage and
// status attributes, at now.
func (h *handler) endTrace(now time.Time) {
	if !h.trace.Recording() {
		return
	}
	h.traceTryEnd(now)
	sh := h.buildMetadata(true)
	attrs := make([]attribute.KeyValue, 0, len(sh.fields)+4)
	for _, f := range sh.fields {
		if a, ok := mdAttribute(f); ok {
			attrs = append(attrs, a)
		}
	}
	if h.status != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", h.status))
	}
	if h.errCode != "" {
		attrs = append(attrs, attribute.String("error.type", h.errCode))
	}
	if h.group != nil {
		attrs = append(attrs, attribute.String("gen_ai.request.model", h.group.Name))
	}
	if h.dec != nil {
		if res := h.dec.Result(); res.HasUsage {
			attrs = append(attrs, attribute.Int64("gen_ai.usage.input_tokens", res.Usage.InputTokens),
				attribute.Int64("gen_ai.usage.output_tokens", res.Usage.OutputTokens))
		}
	}
	h.trace.End(now, serverFailure(h.status, h.errCode), h.errCode, attrs)
}

// attrKeys maps a metadata key to its span attribute key, built once per
// key (the metadata's keys are a fixed set).
var attrKeys sync.Map // string → attribute.Key

// mdAttribute is a metadata field as a span attribute.
func mdAttribute(f mdField) (attribute.KeyValue, bool) {
	ak, ok := attrKeys.Load(f.key)
	if !ok {
		ak, _ = attrKeys.LoadOrStore(f.key, attribute.Key("llmux."+f.key))
	}
	k := ak.(attribute.Key)
	switch v := f.v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return k.String(v.StringValue), true
	case *structpb.Value_NumberValue:
		if n := int64(v.NumberValue); float64(n) == v.NumberValue {
			return k.Int64(n), true
		}
		return k.Float64(v.NumberValue), true
	case *structpb.Value_BoolValue:
		return k.Bool(v.BoolValue), true
	}
	return attribute.KeyValue{}, false
}

// serverFailure reports whether an outcome is a failure that is not the
// client's doing: a 5xx, or an error class whose status is 5xx even when
// the client saw a 200 (a stream that broke after its headers).
func serverFailure(status int, code string) bool {
	c := translate.Code(code)
	return status >= 500 || c.Known() && c.Status() >= 500
}
