package processor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/pricing"
	"github.com/llmux/llmux/processor/egress"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/jsonenc"
)

// Stream repair in splice mode (issue 8 item 2).
//
// A streamed chat completion that fails after content went out — an
// in-band error event, an upstream end without the provider's terminal
// event (truncation), or a stall past server.stream_idle_timeout (the
// watchdog) — is continued: llmux asks the next deployment routing chose
// (or the same one when none is left) through the egress listener for the
// rest, with the client's messages plus the text already sent, as an
// assistant prefill where the provider continues one (Anthropic's Claude,
// on Anthropic, Vertex and Bedrock) and with an explicit continue
// instruction elsewhere. The continuation's events are spliced into the
// same client stream after Envoy's own end of stream if need be (Envoy
// fact 1): the first attempt's id, no second role chunk, the repetition of
// the sent text trimmed, and one usage chunk that counts every attempt
// (splice.go). A stream that failed inside a tool call, or whose answer is
// JSON (response_format), is not continued: it ends with an error event
// that says so. Tries are bounded as failover's are (failover.max_attempts).
// docs/recovery.md.

// Causes of a repair, as metadata ("repair_cause") and metric labels.
const (
	repairInBand    = "inband_error"
	repairTruncated = "truncated"
	repairStalled   = "stalled"
)

// continueInstruction asks a provider without assistant prefill to go on
// with its own cut reply.
const continueInstruction = "Your previous reply was cut off. Continue it exactly from where it stopped: do not repeat anything already written, add no preamble."

// repairState is a handler's stream repair bookkeeping.
type repairState struct {
	body      []byte // the client's request body, kept for a continuation
	decided   bool   // on was decided (at the first body chunk)
	on        bool   // the stream is watched: a repair is possible
	refuse    string // why the stream may not be continued once it has content ("" when it may)
	active    bool   // a continuation is under way: Envoy's body messages are dropped
	unlocked  bool   // the repair runs on the watchdog's goroutine: mu is released around egress I/O
	depth     int    // nested repairs (a continuation that failed in turn)
	n         int    // continuations started
	cause     string // the first repair's cause
	estimated bool   // some failed attempt's usage is an estimate
	sp        splice
	prior     translate.Usage // the failed attempts' usage
	// The attempt that failed last, to be priced at its deployment's
	// price once a continuation takes over (priceAttempt).
	failedDep   *config.Deployment
	failedUsage translate.Usage
	failedAt    time.Time // when the failure being repaired was detected; zero once the continuation's first byte went out
}

// keepForRepair keeps the client's body for a continuation: egress is on
// and the client streams a chat completion (in either mode). The body
// stays counted in server.max_buffered_bytes until dropRepairBody.
func (h *handler) keepForRepair(body []byte) {
	if !h.cfg.Server().EgressAddress.Enabled() || !h.treq.Stream || h.treq.Op != translate.OpChat {
		return
	}
	h.rp.body = body
	if h.fo.ntried == 0 {
		h.fo.tried[0], h.fo.ntried = h.dep, 1
	}
}

// decideRepair decides at the first body chunk whether the stream is
// watched: a 2xx event stream of a request that kept its body.
func (h *handler) decideRepair() {
	h.rp.decided = true
	if h.rp.body == nil || h.status >= 300 || h.dec.ContentType() != "text/event-stream" || h.dep == nil {
		h.dropRepairBody() // no continuation can need it (ownedrepair.go)
		return
	}
	h.rp.on = true
	switch rf := gjson.GetBytes(h.rp.body, "response_format.type").Str; {
	case rf == "json_object" || rf == "json_schema":
		h.rp.refuse = "a JSON response"
	case gjson.GetBytes(h.rp.body, "n").Int() > 1:
		h.rp.refuse = "several choices"
	}
}

// watchForRepair is onResponseBody's hook for every chunk of a stream
// whose headers went out: it records what out tells the client and, when
// out ends the stream with a failure after content, sends what came before
// the failure and continues the stream (done is true: onResponseBody
// returns err).
func (h *handler) watchForRepair(out []byte) (done bool, err error) {
	if !h.rp.decided {
		h.decideRepair()
	}
	// Held headers go out with this output (onResponseBody releases them
	// before sending it), so its text is recorded too: a fallback's first
	// read, or a fast provider's first chunk, may hold content and even
	// the failure after it (then the headers go out as they are, 200,
	// with the content before the failure: releaseHeadersForRepair).
	if !h.rp.on {
		return false, nil
	}
	if !h.rp.failedAt.IsZero() && len(out) > 0 {
		// The continuation's first byte: the repair's latency.
		h.s.opts.Logger.Info("llmux: stream repaired", "request_id", h.requestID, "deployment", h.depName(),
			"first_byte_after", h.s.opts.Now().Sub(h.rp.failedAt))
		h.rp.failedAt = time.Time{}
	}
	cut := h.rp.sp.observe(out)
	res := h.dec.Result()
	var cause string
	switch {
	case cut >= 0 && h.masked != nil && h.masked.Code == translate.CodeUpstreamTruncated:
		cause = repairTruncated
	case cut >= 0 && res.Err != nil && (res.Err.Code.Retryable() || h.broken):
		cause = repairInBand
	default:
		return false, nil
	}
	if len(h.rp.sp.text) == 0 && !h.rp.sp.tool || h.rp.sp.finished {
		return false, nil // no content yet (failover's watch), or the answer was complete
	}
	if err := h.releaseHeadersForRepair(); err != nil { // owned mode (ownedrepair.go)
		return true, err
	}
	good := out[:cut]
	if len(good) > 0 {
		h.chunk.body.Body, h.chunk.body.EndOfStream, h.chunk.msg.DynamicMetadata = good, false, nil
		if err := h.send(h.chunk.msg); err != nil {
			return true, err
		}
	}
	h.masked, h.errCode, h.broken = nil, "", false
	return true, h.repair(cause, res.Err)
}

// stallRepair continues a stream the watchdog found silent; mu is held
// and is released while llmux waits for the egress (ok is false when the
// stream is not repairable: stalled answers it as before).
func (h *handler) stallRepair() (ok bool, err error) {
	if !h.sawBody || !h.repairable() {
		return false, nil
	}
	h.rp.unlocked = true
	return true, h.repair(repairStalled, nil)
}

// repair fetches a continuation and streams it to the client. failure is
// the failed attempt's error, if it had one. On the watchdog's path
// (rp.unlocked) mu is released while waiting for the egress; Process drops
// Envoy's messages meanwhile (rp.active).
func (h *handler) repair(cause string, failure *translate.Error) error {
	h.stopWatchdog() // egress bounds the continuation
	h.rp.failedAt = h.s.opts.Now()
	h.rp.depth++
	defer func() { h.rp.depth-- }()
	unlocked := h.rp.unlocked
	if failure == nil {
		failure = &translate.Error{Code: translate.CodeStreamInterrupted, Message: "The provider's response was interrupted."}
		if cause == repairStalled {
			failure = &translate.Error{Code: translate.CodeStreamStalled, Message: "The provider stopped sending; the gateway ended the response."}
		} else if cause == repairTruncated {
			failure = &translate.Error{Code: translate.CodeUpstreamTruncated, Message: "The provider's response ended before it was complete; the answer is truncated."}
		}
	}
	if h.rp.cause == "" {
		h.rp.cause = cause
	}
	h.addFailedUsage()
	if h.rp.sp.tool || h.rp.refuse != "" {
		what := "a tool call"
		if !h.rp.sp.tool {
			what = h.rp.refuse
		}
		if h.rp.depth == 1 {
			h.s.opts.Metrics.StreamRepair(h.ctx, cause, "refused")
		}
		e := &translate.Error{Code: failure.Code, Status: failure.Status,
			Message: "The provider failed in the middle of " + what + "; the gateway does not continue those. Retry the request."}
		return h.endStreamWith(e, h.retry)
	}
	h.errCode = string(failure.Code)
	h.reportTry()
	forwarded := h.forwardedAt // the failed attempt's (callFailed)
	c, err := h.s.egressClient(h.cfg.Server())
	if err != nil {
		h.s.opts.Logger.Error("llmux: repair: egress client", "request_id", h.requestID, "error", err)
		return h.repairFailed(cause, failure)
	}
	h.rp.active = true
	defer func() { h.rp.active = false }()
	for h.fo.ntried < h.repairAttempts() {
		dep, tr := h.nextRepairDeployment()
		if dep == nil {
			break
		}
		h.fo.tried[h.fo.ntried] = dep
		h.fo.ntried++
		body, err := continuationBody(h.rp.body, h.rp.sp.sentText(), prefillFor(dep))
		if err == nil {
			body, err = capContinuationTokens(body, h.rp.prior.OutputTokens) // ownedrepair.go
		}
		if err != nil {
			h.s.opts.Logger.Error("llmux: repair: continuation body", "request_id", h.requestID, "error", err)
			break
		}
		h.s.opts.Logger.Info("llmux: repairing a stream", "request_id", h.requestID, "failed", h.depName(), "cause", cause,
			"next", dep.Name, "attempt", h.fo.ntried, "sent_bytes", len(h.rp.sp.text))
		h.traceEvent("llmux.repair", attribute.String("llmux.repair_cause", cause), attribute.String("llmux.failed_deployment", h.depName()),
			attribute.String("llmux.next_deployment", dep.Name), attribute.Int("llmux.attempt", h.fo.ntried),
			attribute.Int("llmux.sent_bytes", len(h.rp.sp.text)))
		ctx, cancel := context.WithCancel(h.ctx)
		var resp *egress.Response
		req, treq, err := h.prepareCall(ctx, dep, tr, body)
		if err == nil {
			// Only the call itself without mu: Envoy's stream may end
			// meanwhile, and complete then runs on its goroutine.
			if unlocked {
				h.mu.Unlock()
			}
			resp, err = c.Do(ctx, req)
			if unlocked {
				h.mu.Lock()
			}
			if err != nil && !h.recorded {
				h.traceCallFailed(err)
			}
		}
		if h.recorded || h.ctx.Err() != nil { // the client went away meanwhile
			cancel()
			if resp != nil {
				resp.Body.Close()
			}
			return h.ctx.Err()
		}
		if err != nil {
			cancel()
			h.s.opts.Logger.Warn("llmux: repair call failed", "request_id", h.requestID, "deployment", dep.Name, "error", err)
			h.callFailed(translate.CodeUpstreamUnavailable, forwarded)
			continue
		}
		if resp.Status >= 300 || !isEventStream(resp.Header.Get("content-type"), tr, treq) {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			cancel()
			h.s.opts.Logger.Warn("llmux: repair call answered no stream", "request_id", h.requestID, "deployment", dep.Name, "status", resp.Status, "body", string(msg))
			code := translate.CodeUpstreamProtocol // a 2xx that is no event stream
			if resp.Status >= 300 {
				code = translate.CodeForStatus(resp.Status)
			}
			h.traceCallAnswered(resp.Status, code)
			h.callFailed(code, forwarded)
			continue
		}
		sent := h.rp.sp.sentText()
		h.priceAttempt(h.rp.failedDep, h.rp.failedUsage) // cost.go
		h.rp.failedDep = nil
		h.switchTo(dep, tr, treq, resp)
		h.heldHeaders = nil // the client's headers went out with the first response
		h.fo.inband = inbandDone
		h.rp.n++
		h.rp.sp.attemptText = len(h.rp.sp.text)
		sd := &spliceDecoder{Decoder: h.dec, sp: &h.rp.sp, prior: h.rp.prior, sent: sent, trim: true}
		if prefillFor(dep) {
			sd.lead = sent[len(strings.TrimRightFunc(sent, unicode.IsSpace)):]
		}
		h.dec = sd
		err = h.pump(resp.Body, unlocked)
		cancel()
		if h.rp.depth == 1 {
			outcome := "repaired"
			if h.errCode != "" || h.ph != phaseDone {
				outcome = "failed"
			}
			h.s.opts.Metrics.StreamRepair(h.ctx, cause, outcome)
		}
		return err
	}
	return h.repairFailed(cause, failure)
}

// callFailed reports a continuation call that brought no continuation to
// routing, with its error class, and gives the handler back the failed
// attempt's forward time: the handler keeps describing the attempt whose
// text the client has (its deployment, status, decoder and latency), which
// is also the one priced if no continuation comes.
func (h *handler) callFailed(code translate.Code, forwarded time.Time) {
	h.errCode = string(code)
	h.reportTry()
	h.forwardedAt = forwarded
}

// repairAttempts is the bound on tries for a request, the first included:
// the group's failover.max_attempts (default 3), as failover's.
func (h *handler) repairAttempts() int {
	n := 3
	if h.group != nil && h.group.Failover.MaxAttempts > 0 {
		n = h.group.Failover.MaxAttempts
	}
	return min(n, len(h.fo.tried))
}

// repairFailed ends the stream with the failure when no continuation came.
func (h *handler) repairFailed(cause string, failure *translate.Error) error {
	if h.rp.depth == 1 {
		h.s.opts.Metrics.StreamRepair(h.ctx, cause, "failed")
	}
	return h.endStreamWith(failure, h.retry)
}

// nextRepairDeployment is the next deployment routing chose, or the same
// deployment again when no other is left.
func (h *handler) nextRepairDeployment() (*config.Deployment, translate.Translator) {
	if h.group != nil && len(h.group.Deployments) > 1 {
		if dep, tr := h.nextDeployment(); dep != nil {
			return dep, tr
		}
	}
	if h.dep == nil {
		return nil, nil
	}
	tr, ok := h.s.opts.Translator(h.dep.Provider.Kind)
	if !ok {
		return nil, nil
	}
	h.rs.routed = true // complete reports this try's outcome
	return h.dep, tr
}

// addFailedUsage adds the failed attempt's usage to what the client's
// usage chunk will count, and keeps it to be priced at the failed
// deployment's price. A failed stream rarely reported its output tokens:
// they are estimated from the text it sent, and the input from the
// request's messages when the provider said nothing (the o200k estimate
// routing and limits use, pricing.EstimateInputTokens).
func (h *handler) addFailedUsage() {
	res := h.dec.Result()
	if sd, ok := h.dec.(*spliceDecoder); ok {
		res = sd.Decoder.Result() // its own, without the prior attempts
	}
	u := res.Usage
	est := pricing.EstimateTextTokens(view(h.rp.sp.text[h.rp.sp.attemptText:]))
	if !res.HasUsage {
		u = translate.Usage{InputTokens: pricing.EstimateInputTokens(translate.OpChat, h.rp.body)}
		h.rp.estimated = true
	}
	if !res.Completed && u.OutputTokens < est {
		u.OutputTokens = est
		h.rp.estimated = true
	}
	h.rp.prior = addUsage(h.rp.prior, u)
	h.rp.failedDep, h.rp.failedUsage = h.dep, u
}

// pump passes a continuation's body through onResponseBody as Envoy's body
// messages would; unlocked: mu is released during each read. It closes
// body.
func (h *handler) pump(body io.ReadCloser, unlocked bool) error {
	defer body.Close()
	buf := make([]byte, 32<<10)
	for {
		if unlocked {
			h.mu.Unlock()
		}
		n, err := body.Read(buf)
		if unlocked {
			h.mu.Lock()
		}
		if h.recorded || h.ph == phaseDone {
			return nil
		}
		if n > 0 {
			if err := h.onResponseBody(&extprocv3.HttpBody{Body: buf[:n]}); err != nil || h.ph == phaseDone {
				return err
			}
		}
		if errors.Is(err, io.EOF) || err != nil && h.dec.Result().Completed {
			// The end, or a read error after the terminal event went out
			// (nothing is missing).
			return h.onResponseBody(&extprocv3.HttpBody{EndOfStream: true})
		}
		if err != nil {
			if h.ctx.Err() != nil {
				return h.ctx.Err()
			}
			body.Close() // before another call: the egress client waits for its bodies when it closes
			if errors.Is(err, egress.ErrClosed) {
				// llmux is shutting down: no other call.
				return h.endStreamWith(&translate.Error{Code: translate.CodeStreamInterrupted, Message: "The provider's response was interrupted."}, h.retry)
			}
			// The continuation broke too: another one, within the bound.
			h.s.opts.Logger.Warn("llmux: continuation interrupted", "request_id", h.requestID, "deployment", h.depName(), "error", err)
			cause := repairStalled
			if !errors.Is(err, egress.ErrIdleTimeout) {
				cause = repairInBand
			}
			return h.repair(cause, &translate.Error{Code: translate.CodeStreamInterrupted, Message: "The provider's response was interrupted."})
		}
	}
}

// repairMetadata adds, when a stream was repaired, the continuations
// ("repairs"), the first cause ("repair_cause") and whether some usage is
// an estimate ("usage_estimated").
func (h *handler) repairMetadata(v *mdValues) {
	if h.rp.cause == "" {
		return
	}
	v.num("repairs", float64(h.rp.n))
	v.str("repair_cause", h.rp.cause)
	if h.rp.estimated {
		v.next("usage_estimated").Kind = &structpb.Value_BoolValue{BoolValue: true}
	}
}

// continuationBody is the client's chat request asking for the rest of a
// reply that stopped after sent: the messages plus sent as the assistant's
// (a prefill when prefill is true, its trailing whitespace removed, as
// Anthropic requires), then, without prefill, a user message asking to
// continue.
func continuationBody(body []byte, sent string, prefill bool) ([]byte, error) {
	msgs := gjson.GetBytes(body, "messages")
	if !msgs.IsArray() || msgs.Index <= 0 {
		return nil, fmt.Errorf("repair: the request has no messages array")
	}
	end := msgs.Index + len(msgs.Raw) - 1 // the closing ]
	out := make([]byte, 0, len(body)+len(sent)+len(continueInstruction)+96)
	out = append(out, body[:end]...)
	if len(msgs.Array()) > 0 {
		out = append(out, ',')
	}
	if prefill {
		sent = strings.TrimRightFunc(sent, unicode.IsSpace)
	}
	out = append(out, `{"role":"assistant","content":`...)
	out = jsonenc.AppendString(out, sent)
	out = append(out, '}')
	if !prefill {
		out = append(out, `,{"role":"user","content":`...)
		out = jsonenc.AppendString(out, continueInstruction)
		out = append(out, '}')
	}
	return append(out, body[end:]...), nil
}

// prefillFor reports whether dep's provider continues a trailing assistant
// message (Claude: Anthropic, Vertex, Bedrock).
func prefillFor(dep *config.Deployment) bool {
	switch dep.Provider.Kind {
	case "anthropic", "vertex_anthropic":
		return true
	case "bedrock":
		m := strings.ToLower(dep.Model)
		return strings.Contains(m, "anthropic") || strings.Contains(m, "claude")
	}
	return false
}

// isEventStream reports whether a continuation's response is an event
// stream, as its decoder reads it (Bedrock's streams are AWS event
// streams, decoded to SSE).
func isEventStream(ct string, tr translate.Translator, treq translate.Request) bool {
	return tr.NewDecoder(&treq, 200, ct).ContentType() == "text/event-stream"
}
