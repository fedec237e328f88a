package processor

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llmux/llmux/translate"
)

// localReplyHeader marks Envoy's own local replies: the shipped
// local_reply_config adds it when it rewrites one into an OpenAI error
// (envoy/standalone.yaml).
const localReplyHeader = "x-llmux-local-reply"

func (h *handler) onResponseHeaders(m *extprocv3.HttpHeaders) error {
	h.headersAt = h.s.opts.Now()
	var (
		ct         string
		localReply bool
	)
	for _, hv := range m.GetHeaders().GetHeaders() {
		switch hv.GetKey() {
		case ":status":
			h.status, _ = strconv.Atoi(headerValue(hv))
		case "content-type":
			ct = headerValue(hv)
		case "retry-after", "retry-after-ms":
			h.retry.Header(hv.GetKey(), headerValue(hv))
		case localReplyHeader:
			localReply = true
		default:
			h.noteUpstreamID(hv)
		}
	}
	if h.status == 401 && h.dep != nil {
		// A revoked or expired cloud credential: fetch a fresh one next
		// time rather than reuse it until it would have expired.
		if f, ok := h.tr.(translate.CredentialForgetter); ok {
			f.ForgetCredentials(h.dep.Provider.Name)
		}
	}
	if localReply && h.status >= 400 {
		// Envoy's own reply (a refused or reset connection, a timeout),
		// already in OpenAI's shape by the shipped local_reply_config:
		// read it as such, not as the provider's error.
		if tr, ok := h.s.opts.Translator(translate.ClientSchema); ok {
			h.tr = tr
		}
	}
	h.treq.ResponseHeaders = (*responseHeaders)(m.GetHeaders())
	h.dec = h.tr.NewDecoder(&h.treq, h.status, ct)
	h.treq.ResponseHeaders = nil
	// The reply's messages and its header mutations (the id headers,
	// :status and content-type) in one allocation.
	hr := new(headersReply)
	hb := headerBlock(hr.hdrs[:0])
	mut := &hr.mut
	mut.RemoveHeaders = append(hr.remove[:0], "content-length")
	mut.SetHeaders = h.appendIDHeaders(hr.set[:0], &hb)
	if localReply {
		mut.RemoveHeaders = append(mut.RemoveHeaders, localReplyHeader)
	}
	if st := h.dec.Status(); st >= 200 && st != h.status {
		h.status = st
		mut.SetHeaders = append(mut.SetHeaders, hb.add(":status", strconv.Itoa(st)))
	}
	if want := h.dec.ContentType(); want != "" && !strings.HasPrefix(ct, want) {
		mut.SetHeaders = append(mut.SetHeaders, hb.add("content-type", want))
	}
	hr.cr.HeaderMutation = mut
	hr.hr.Response = &hr.cr
	resp := &hr.hr
	if m.GetEndOfStream() {
		// No body follows: the exchange ends here.
		if h.status >= 400 {
			h.errCode = string(translate.CodeForStatus(h.status))
		}
		h.ph = phaseDone
		h.complete()
		return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}, DynamicMetadata: h.replyMetadata(true)})
	}
	h.ph = phaseResponseBody
	h.chunk = newChunkResponse()
	h.armWatchdog()
	if h.status >= 400 || !h.treq.Stream {
		// The body decides the client's status (a provider's 400 that is
		// really an authentication error; a 200 whose body is an error),
		// and this body is held whole anyway: answer the headers once the
		// body is in. FULL_DUPLEX allows it — Envoy keeps sending body
		// chunks while the headers reply is outstanding (reference §3, §6
		// #20) — and no message timer runs in that mode.
		h.heldHeaders = resp
		return nil
	}
	return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}})
}

// headersReply is the reply to the response headers: its messages and
// room for its header mutations, one allocation.
type headersReply struct {
	hr     extprocv3.HeadersResponse
	cr     extprocv3.CommonResponse
	mut    extprocv3.HeaderMutation
	remove [2]string
	set    [5]*corev3.HeaderValueOption // one more for a retry-after
	hdrs   [4]headerEntry
}

// releaseHeaders sends a held response-headers reply, with the status the
// decoded body calls for.
func (h *handler) releaseHeaders() error {
	resp := h.heldHeaders
	if resp == nil {
		return nil
	}
	h.heldHeaders = nil
	e := h.dec.Result().Err
	if h.masked != nil {
		e = h.masked
	}
	if e != nil {
		if st := e.HTTPStatus(); st >= 200 && st != h.status {
			h.status = st
			mut := resp.Response.HeaderMutation
			kept := mut.SetHeaders[:0]
			for _, hv := range mut.SetHeaders {
				if hv.GetHeader().GetKey() != ":status" {
					kept = append(kept, hv)
				}
			}
			mut.SetHeaders = append(kept, header(":status", strconv.Itoa(st)))
		}
		if h.masked == nil {
			// The provider said how long to wait (a header, or Google's
			// RetryInfo in the body): the client is told in retry-after.
			if ra := e.RetryAfterWith(h.retry); ra > 0 {
				mut := resp.Response.HeaderMutation
				mut.SetHeaders = append(mut.SetHeaders, header("retry-after", translate.RetryAfterValue(ra)))
			}
		}
	}
	return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}})
}

// decode runs the decoder over one body chunk.
func (h *handler) decode(src []byte, final bool) []byte {
	out := h.buf[:0]
	if h.broken {
		return out
	}
	out, err := h.dec.Decode(out, src, final)
	if final && err == nil && h.heldHeaders != nil && h.dep != nil {
		if e := h.dec.Result().Err; e != nil && e.Code == translate.CodeAuthentication {
			// The provider rejected the gateway's own credential: the
			// client's key is fine, and the provider's message may quote
			// part of the gateway's key. The client gets a 502 that says
			// so; operators get the log line and error_code
			// "authentication" in metadata and metrics.
			h.masked = &translate.Error{Code: translate.CodeUpstreamError, Status: 502, OpenAICode: "upstream_authentication_failed",
				Message: "The provider rejected the gateway's credentials for this model; this is a gateway configuration problem, not your API key."}
			h.s.opts.Logger.Error("llmux: the provider rejected the gateway's credentials", "request_id", h.requestID,
				"deployment", h.dep.Name, "provider", h.dep.Provider.Name, "upstream_status", h.status)
			out = h.masked.AppendJSON(out[:0])
		}
	}
	if final && err == nil && h.masked == nil {
		if res := h.dec.Result(); !res.Completed && res.Err == nil {
			// The upstream ended cleanly but without the provider's
			// terminal event: the answer is cut. The client must not take
			// it for a whole one.
			h.masked = &translate.Error{Code: translate.CodeUpstreamTruncated,
				Message: "The provider's response ended before it was complete; the answer is truncated."}
			h.errCode = string(translate.CodeUpstreamTruncated)
			if h.dec.ContentType() == "text/event-stream" {
				out = appendEventError(out, h.masked)
			} else {
				// A buffered decoder that did not complete has produced
				// nothing: the client gets the error instead (status
				// from releaseHeaders).
				out = h.masked.AppendJSON(out[:0])
			}
		}
	}
	if err != nil {
		h.broken = true
		h.s.opts.Logger.Warn("llmux: response decoding failed", "request_id", h.requestID, "deployment", h.depName(), "error", err)
		e := h.dec.Result().Err
		if e == nil {
			e = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "The provider's response could not be decoded."}
		}
		// The error goes out in the framing of the body the client is
		// getting: an SSE event in a stream, the JSON body otherwise (a
		// buffered decoder has produced nothing before it fails).
		if h.dec.ContentType() == "text/event-stream" {
			out = appendEventError(out, e)
		} else {
			out = e.AppendJSON(out)
		}
	}
	if h.firstAt.IsZero() && h.dec.Result().FirstContent {
		h.firstAt = h.s.opts.Now()
	}
	h.buf = out
	return h.restoreOutput(out, final) // redaction.go
}

// appendEventError appends e as one OpenAI SSE error event. No [DONE]
// follows: both official SDKs raise this event as an error.
func appendEventError(dst []byte, e *translate.Error) []byte {
	dst = append(dst, "data: "...)
	dst = e.AppendJSON(dst)
	return append(dst, "\n\n"...)
}

func (h *handler) onResponseBody(b *extprocv3.HttpBody) error {
	h.sawBody = true
	if h.watchdog != nil {
		h.lastBodyAt = h.s.opts.Now()
	}
	eos := b.GetEndOfStream()
	out := h.decode(b.GetBody(), eos)
	if eos && h.shouldFailover() { // failover before the first byte (failover.go)
		return h.failover()
	}
	if done, err := h.watchBeforeContent(&out, eos); done { // an in-band error before content (failover.go)
		return err
	}
	if done, err := h.watchForRepair(out); done { // a failure after content (repair.go)
		return err
	}
	if len(out) == 0 && !eos {
		return nil
	}
	if err := h.releaseHeaders(); err != nil {
		return err
	}
	h.chunk.body.Body = out
	h.chunk.body.EndOfStream = eos
	h.chunk.msg.DynamicMetadata = nil
	switch {
	case eos:
		h.ph = phaseDone
		h.complete()
		h.chunk.msg.DynamicMetadata = h.replyMetadata(true)
	case !h.outcomeSent && (h.dec.Result().Completed || h.dec.Result().Err != nil):
		// The terminal event (with usage) or an in-band error is in this
		// reply: a client may close as soon as it reads it, before the
		// upstream's end of stream reaches llmux. Send the outcome now so
		// the access log has it either way.
		h.outcomeSent = true
		if e := h.dec.Result().Err; e != nil && h.errCode == "" {
			h.errCode = string(e.Code)
		}
		if h.dec.Result().Completed {
			// The terminal event carried the usage: price now, so that
			// an access log written on the client's early close has the
			// cost too.
			h.priceRequest()
		}
		h.chunk.msg.DynamicMetadata = h.replyMetadata(true)
	}
	return h.send(h.chunk.msg)
}

// onResponseTrailers ends the body (the last body chunk had no
// end_of_stream because trailers followed) and answers the trailers.
func (h *handler) onResponseTrailers() error {
	trailers := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	if h.ph != phaseResponseBody {
		return h.send(trailers)
	}
	// A body reply is only valid while Envoy is processing a body chunk:
	// when the response was headers and trailers with no body, there is
	// nothing to flush into (Envoy would treat it as spurious and reset).
	out := h.decode(nil, true)
	if err := h.releaseHeaders(); err != nil {
		return err
	}
	if len(out) > 0 && h.sawBody {
		h.chunk.body.Body = out
		h.chunk.body.EndOfStream = false
		h.chunk.msg.DynamicMetadata = nil
		if err := h.send(h.chunk.msg); err != nil {
			return err
		}
	}
	h.ph = phaseDone
	h.complete()
	trailers.DynamicMetadata = h.replyMetadata(true)
	return h.send(trailers)
}

// armWatchdog starts the response body's idle bound
// (server.stream_idle_timeout). One timer serves the whole response: a
// chunk only records when it came, and the timer, when it fires, re-arms
// itself for what is left of the bound if a chunk came meanwhile.
func (h *handler) armWatchdog() {
	d := h.cfg.Server().StreamIdleTimeout
	if d <= 0 {
		return
	}
	h.lastBodyAt = h.s.opts.Now()
	h.watchdog = h.s.opts.AfterFunc(d, h.onWatchdog)
}

// stopWatchdog stops the idle timer; a callback already running finds the
// exchange over and does nothing.
func (h *handler) stopWatchdog() {
	if h.watchdog != nil {
		h.watchdog.Stop()
		h.watchdog = nil
	}
}

// onWatchdog runs on the timer's goroutine while Process may be blocked in
// Recv; FULL_DUPLEX_STREAMED lets llmux reply unprompted (reference,
// errata: "replies the processor sends unprompted ... are applied at
// once").
func (h *handler) onWatchdog() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchdog == nil || h.ph != phaseResponseBody || h.recorded {
		return
	}
	d := h.cfg.Server().StreamIdleTimeout
	if rest := d - h.s.opts.Now().Sub(h.lastBodyAt); rest > 0 {
		h.watchdog.Reset(rest)
		return
	}
	h.watchdog = nil
	if ok, err := h.stallRepair(); ok { // repair.go; releases mu around the egress call
		if err != nil {
			h.s.opts.Logger.Debug("llmux: stall repair failed", "request_id", h.requestID, "error", err)
		}
		return
	}
	if err := h.stalled(d); err != nil {
		h.s.opts.Logger.Debug("llmux: sending the stall reply failed", "request_id", h.requestID, "error", err)
	}
}

// stalled ends a response whose upstream went silent for d, in the only
// form Envoy accepts at this point:
//   - headers held, body chunks seen: the headers reply with 504, then
//     the OpenAI error body with end_of_stream;
//   - headers held, no body chunk yet: an ImmediateResponse 504 (a body
//     reply before Envoy sent a chunk would be spurious);
//   - headers sent, chunks seen: an OpenAI error event with end_of_stream
//     (Envoy then resets the still-open upstream);
//   - headers sent, no chunk yet: nothing can be spliced; an
//     ImmediateResponse makes Envoy reset the client stream, which the
//     client sees as a failure rather than a hang.
func (h *handler) stalled(d time.Duration) error {
	e := &translate.Error{Code: translate.CodeStreamStalled,
		Message: fmt.Sprintf("The provider sent nothing for %s; the gateway ended the response.", d)}
	h.masked = e
	h.errCode = string(e.Code)
	h.ph = phaseDone
	switch {
	case h.heldHeaders != nil && h.sawBody:
		if err := h.releaseHeaders(); err != nil {
			h.complete()
			return err
		}
		h.complete()
		return h.sendLast(e.AppendJSON(h.buf[:0]))
	case h.heldHeaders != nil || !h.sawBody:
		if h.heldHeaders != nil {
			h.status = e.HTTPStatus()
		}
		h.heldHeaders = nil
		h.complete()
		return h.send(immediateResponse(e.HTTPStatus(), e.AppendJSON(nil), "llmux_"+string(e.Code), h.replyMetadata(true)))
	default:
		h.complete()
		if h.dec.ContentType() == "text/event-stream" {
			return h.sendLast(appendEventError(h.buf[:0], e))
		}
		return h.sendLast(e.AppendJSON(h.buf[:0]))
	}
}

// sendLast sends the last body reply, with end_of_stream and the outcome.
func (h *handler) sendLast(body []byte) error {
	h.buf = body
	h.chunk.body.Body = body
	h.chunk.body.EndOfStream = true
	h.chunk.msg.DynamicMetadata = h.replyMetadata(true)
	return h.send(h.chunk.msg)
}

// responseHeaders lets a decoder read the provider's response headers
// (translate.Request.ResponseHeaders) without a copy: a pointer converts to
// the interface without allocating.
type responseHeaders corev3.HeaderMap

// Get implements translate.HeaderGetter; Envoy sends header names in lower
// case.
func (r *responseHeaders) Get(name string) string {
	for _, hv := range (*corev3.HeaderMap)(r).GetHeaders() {
		if hv.GetKey() == name {
			return headerValue(hv)
		}
	}
	return ""
}
