package processor

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llmux/llmux/translate"
)

func (h *handler) onResponseHeaders(m *extprocv3.HttpHeaders) error {
	h.headersAt = h.s.opts.Now()
	var ct string
	for _, hv := range m.GetHeaders().GetHeaders() {
		switch hv.GetKey() {
		case ":status":
			h.status, _ = strconv.Atoi(headerValue(hv))
		case "content-type":
			ct = headerValue(hv)
		}
	}
	if h.status == 401 && h.dep != nil {
		// A revoked or expired cloud credential: fetch a fresh one next
		// time rather than reuse it until it would have expired.
		if f, ok := h.tr.(translate.CredentialForgetter); ok {
			f.ForgetCredentials(h.dep.Provider.Name)
		}
	}
	h.treq.ResponseHeaders = (*responseHeaders)(m.GetHeaders())
	h.dec = h.tr.NewDecoder(&h.treq, h.status, ct)
	h.treq.ResponseHeaders = nil
	mut := &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}}
	if st := h.dec.Status(); st >= 200 && st != h.status {
		h.status = st
		mut.SetHeaders = append(mut.SetHeaders, header(":status", strconv.Itoa(st)))
	}
	if want := h.dec.ContentType(); want != "" && !strings.HasPrefix(ct, want) {
		mut.SetHeaders = append(mut.SetHeaders, header("content-type", want))
	}
	resp := &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}
	if m.GetEndOfStream() {
		// No body follows: the exchange ends here.
		if h.status >= 400 {
			h.errCode = string(translate.CodeForStatus(h.status))
		}
		h.ph = phaseDone
		h.complete()
		return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}, DynamicMetadata: h.metadata(true)})
	}
	h.ph = phaseResponseBody
	h.chunk = newChunkResponse()
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
			out = append(out, "data: "...)
			out = e.AppendJSON(out)
			out = append(out, "\n\n"...)
		} else {
			out = e.AppendJSON(out)
		}
	}
	if h.firstAt.IsZero() && h.dec.Result().FirstContent {
		h.firstAt = h.s.opts.Now()
	}
	h.buf = out
	return out
}

func (h *handler) onResponseBody(b *extprocv3.HttpBody) error {
	h.sawBody = true
	eos := b.GetEndOfStream()
	out := h.decode(b.GetBody(), eos)
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
		h.chunk.msg.DynamicMetadata = h.metadata(true)
	case !h.outcomeSent && (h.dec.Result().Completed || h.dec.Result().Err != nil):
		// The terminal event (with usage) or an in-band error is in this
		// reply: a client may close as soon as it reads it, before the
		// upstream's end of stream reaches llmux. Send the outcome now so
		// the access log has it either way.
		h.outcomeSent = true
		if e := h.dec.Result().Err; e != nil && h.errCode == "" {
			h.errCode = string(e.Code)
		}
		h.chunk.msg.DynamicMetadata = h.metadata(true)
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
	trailers.DynamicMetadata = h.metadata(true)
	return h.send(trailers)
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
