package processor

import (
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/translate"
)

// immediate answers the request itself with an OpenAI-shaped error.
func (h *handler) immediate(e *translate.Error, extra ...*corev3.HeaderValueOption) error {
	h.status, h.errCode = e.HTTPStatus(), string(e.Code)
	h.ph = phaseDone
	h.complete()
	return h.send(immediateResponse(h.status, e.AppendJSON(nil), "llmux_"+string(e.Code), h.metadata(true), extra...))
}

// immediateOK answers the request itself with a JSON body.
func (h *handler) immediateOK(body []byte) error {
	h.status = 200
	h.ph = phaseDone
	h.complete()
	return h.send(immediateResponse(200, body, "llmux_local", h.metadata(true)))
}

// complete records the finished request once.
func (h *handler) complete() {
	if h.recorded {
		return
	}
	h.recorded = true
	now := h.s.opts.Now()
	r := telemetry.Request{
		Endpoint:               h.ep.String(),
		Tenant:                 h.tenant,
		Status:                 h.status,
		ErrorCode:              h.errCode,
		DurationSeconds:        now.Sub(h.start).Seconds(),
		UpstreamLatencySeconds: -1,
		TTFTSeconds:            -1,
	}
	if h.group != nil {
		r.ModelGroup = h.group.Name
	}
	if h.dep != nil {
		r.Deployment, r.Provider = h.dep.Name, h.dep.Provider.Name
	}
	if !h.headersAt.IsZero() {
		r.UpstreamLatencySeconds = h.headersAt.Sub(h.forwardedAt).Seconds()
	}
	if !h.firstAt.IsZero() {
		r.TTFTSeconds = h.firstAt.Sub(h.forwardedAt).Seconds()
	}
	if h.dec != nil {
		res := h.dec.Result()
		if res.Err != nil && h.errCode == "" {
			h.errCode = string(res.Err.Code)
			r.ErrorCode = h.errCode
		}
		if res.HasUsage {
			u := res.Usage
			r.Tokens = map[string]int64{"input": u.InputTokens, "output": u.OutputTokens, "cached": u.CachedTokens,
				"cache_creation": u.CacheCreationTokens, "reasoning": u.ReasoningTokens}
		}
	}
	h.s.opts.Metrics.RecordRequest(h.ctx, r)
	level := slog.LevelDebug
	if h.status >= 500 {
		level = slog.LevelWarn
	}
	if !h.s.opts.Logger.Enabled(h.ctx, level) {
		return // not worth building the line's attributes
	}
	h.s.opts.Logger.Log(h.ctx, level, "request",
		"request_id", h.requestID, "tenant", h.tenant, "endpoint", r.Endpoint, "model_group", r.ModelGroup,
		"deployment", r.Deployment, "status", h.status, "error_code", h.errCode, "duration", now.Sub(h.start))
}

// depName is the chosen deployment's name, or "" before one is chosen.
func (h *handler) depName() string {
	if h.dep == nil {
		return ""
	}
	return h.dep.Name
}

// finish runs when the stream ends, however it ends.
func (h *handler) finish() {
	if h.recorded {
		return
	}
	// Envoy ended the stream before llmux sent its last reply: the client
	// went away, or (once the response had started) the upstream reset and
	// Envoy reset the client stream (reference §4.2). ext_proc cannot tell
	// these apart; both are recorded as canceled.
	if h.outcomeSent {
		// The client had the whole response (its terminal event, or the
		// in-band error) and closed before the upstream's end of stream:
		// the outcome stands.
		h.complete()
		return
	}
	if h.errCode == "" {
		h.errCode = string(translate.CodeCanceled)
	}
	if h.status == 0 {
		h.status = translate.CodeCanceled.Status()
	}
	h.complete()
}
