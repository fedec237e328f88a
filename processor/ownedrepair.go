package processor

import (
	"errors"
	"fmt"
	"strconv"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/processor/egress"
)

// Stream repair's parts that owned mode shares with splice mode (issue 8):
// the repair of a provider call that broke (owned mode sees resets and
// read errors that splice mode never does), the kept body's place in the
// bounded bytes, and a continuation's output bound.

// repairReset is the cause of a repair after the provider's connection
// broke (owned mode): a reset or another read error.
const repairReset = "reset"

// repairable reports whether the stream may be continued now: it is
// watched, its headers went out, it has content and no finish reason.
func (h *handler) repairable() bool {
	return h.rp.on && h.heldHeaders == nil && (len(h.rp.sp.text) > 0 || h.rp.sp.tool) && !h.rp.sp.finished
}

// brokenRepair continues, in owned mode, a stream whose provider call broke
// after content went out: a reset, a read error, or the egress client's
// idle bound (a stall). ok is false when the stream cannot be continued:
// the caller ends it with an error event.
func (h *handler) brokenRepair(cause error) (ok bool, err error) {
	if !h.repairable() {
		return false, nil
	}
	c := repairReset
	if errors.Is(cause, egress.ErrIdleTimeout) {
		c = repairStalled
	}
	h.s.opts.Logger.Warn("llmux: owned mode: provider call broke after content", "request_id", h.requestID, "deployment", h.depName(), "error", cause)
	return true, h.repair(c, nil)
}

// releaseHeadersForRepair sends the client's held headers (held until the
// first output: owned mode's, a fallback's, or Envoy's when the first body
// chunk already failed after content) as they are, 200: the content before
// a failure that is being repaired goes out with them, and the failure is
// not the answer's status.
func (h *handler) releaseHeadersForRepair() error {
	hh := h.heldHeaders
	if hh == nil {
		return nil
	}
	h.heldHeaders = nil
	return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: hh}})
}

// dropRepairBody lets go of the body kept for a continuation once no
// repair can need it (the stream is not watched, or the request is
// recorded), and gives its bytes back to the server's budget unless
// failover still keeps the body.
func (h *handler) dropRepairBody() {
	if h.rp.body != nil {
		h.rp.body = nil
		if h.fo.body == nil {
			h.releaseBody()
		}
	}
}

// outputBoundKeys are the OpenAI request members that bound a reply's
// output tokens; the translators map them to each provider's own.
var outputBoundKeys = [...]string{"max_completion_tokens", "max_tokens"}

// capContinuationTokens lowers the client's output bound in a continuation
// body by spent, the tokens the failed attempts already produced (at least
// 1 stays), so that the spliced reply keeps within what the client asked
// for. A body without a bound is returned as is.
func capContinuationTokens(body []byte, spent int64) ([]byte, error) {
	if spent <= 0 {
		return body, nil
	}
	for _, k := range outputBoundKeys {
		r := gjson.GetBytes(body, k)
		if !r.Exists() || r.Type == gjson.Null {
			continue
		}
		if r.Type != gjson.Number || r.Index <= 0 || r.Index+len(r.Raw) > len(body) {
			return nil, fmt.Errorf("repair: %s is not a number", k)
		}
		n := max(r.Int()-spent, 1)
		out := make([]byte, 0, len(body)+20)
		out = append(out, body[:r.Index]...)
		out = strconv.AppendInt(out, n, 10)
		body = append(out, body[r.Index+len(r.Raw):]...)
	}
	return body, nil
}
