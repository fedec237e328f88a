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
	return h.send(immediateResponse(h.status, e.AppendJSON(nil), "llmux_"+string(e.Code), h.replyMetadata(true), append(extra, h.appendIDHeaders(nil, nil)...)...))
}

// immediateOK answers the request itself with a JSON body.
func (h *handler) immediateOK(body []byte) error {
	h.status = 200
	h.ph = phaseDone
	h.complete()
	return h.send(immediateResponse(200, body, "llmux_local", h.replyMetadata(true), h.appendIDHeaders(nil, nil)...))
}

// complete records the finished request once.
func (h *handler) complete() {
	if h.recorded {
		return
	}
	h.recorded = true
	h.stopWatchdog()
	h.dropFailoverBody() // no failover after the outcome (failover.go)
	h.dropRepairBody()   // nor a repair (ownedrepair.go)
	h.priceRequest()
	h.settleLimits() // limits.go: with the real usage and cost
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
			r.Tokens = [telemetry.NumTokenKinds]int64{telemetry.TokensInput: u.InputTokens, telemetry.TokensOutput: u.OutputTokens,
				telemetry.TokensCached: u.CachedTokens, telemetry.TokensCacheCreation: u.CacheCreationTokens, telemetry.TokensReasoning: u.ReasoningTokens}
		}
	}
	h.endTrace(now)     // the request's span, with the outcome (tracing.go)
	h.reportRoute(now)  // the deployment's outcome (routing.go)
	h.recordRedaction() // what the response's masking found (redaction.go)
	h.s.opts.Metrics.RecordRequest(h.ctx, r)
	// One line per request; failures that are not the client's doing
	// (a 5xx, or a class whose status is 5xx even when the client saw a
	// 200, like a truncated stream) at warning level. An interrupted
	// stream is as often a client that stopped reading as an upstream
	// reset: info.
	level := slog.LevelDebug
	switch {
	case translate.Code(h.errCode) == translate.CodeStreamInterrupted:
		level = slog.LevelInfo
	case serverFailure(h.status, h.errCode):
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

// end runs when Process returns, however the stream ended.
func (h *handler) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.releaseBody()
	h.finish()
}

// finish records a request whose stream ended before llmux's last reply.
// Envoy ends the ext_proc stream without a word in every such case
// (reference §4.2): the client went away; the upstream reset or timed out
// once the response had started (Envoy then sends its own 503/504 if the
// headers were still held, or resets the client stream); or, on Envoy
// 1.34–1.36, Envoy answered the client itself and skipped ext_proc. What
// llmux knows is how far the exchange had got, and that is what it
// records (docs/architecture.md, "Failures").
func (h *handler) finish() {
	h.stopWatchdog()
	if h.recorded {
		return
	}
	if h.outcomeSent {
		// The client had the whole response (its terminal event, or the
		// in-band error) and closed before the upstream's end of stream:
		// the outcome stands.
		h.complete()
		return
	}
	if h.errCode == "" {
		switch {
		case h.ph < phaseResponseBody:
			// No response yet: the client went away (or, on Envoy
			// 1.34–1.36, Envoy answered it without ext_proc).
			h.errCode = string(translate.CodeCanceled)
			h.status = translate.CodeCanceled.Status()
		default:
			// The response had started. The client saw the status llmux
			// released; if the headers were still held it saw Envoy's
			// own 503/504 or nothing at all, which llmux cannot know (0).
			h.errCode = string(translate.CodeStreamInterrupted)
			if h.heldHeaders != nil {
				h.status = 0
			}
		}
	}
	if h.status == 0 && h.ph < phaseResponseBody {
		h.status = translate.CodeCanceled.Status()
	}
	h.complete()
}
