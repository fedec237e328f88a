package processor

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/processor/egress"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// Owned mode (issue 8 item 4, docs/recovery.md).
//
// On a route whose metadata says `mode: owned`, llmux answers the request
// itself: Envoy's router never runs. Envoy sends the request headers and,
// with the route's processing_mode override (request body
// FULL_DUPLEX_STREAMED), the request body in chunks while llmux holds its
// reply to the headers; no message timer runs in that mode
// (docs/envoy-facts.md fact 3). At the body's end llmux validates, routes
// and translates as in splice mode, calls the deployment through Envoy's
// egress listener (processor/egress), and answers the request headers with
// a StreamedImmediateResponse: the headers, then the body chunks, the last
// with end_of_stream (fact 6; Envoy 1.37 or later).
//
// Because the upstream call is llmux's own, every failure is visible to
// llmux, a hard reset after the provider's headers included (splice mode
// never sees one: fact 7). Until content has gone to the client, llmux
// holds the client's headers and fails over to the next deployment, as
// splice mode does for an error status (failover.go); after content, the
// stream is continued as splice mode's repair does (repair.go,
// ownedrepair.go), or, when it cannot be, ends with an OpenAI error event.
//
// The response path is splice mode's: the same decoder, metadata, cost and
// failover code runs, and its replies (response headers and body replies)
// are turned into StreamedImmediateResponse messages by ownedSender on the
// way out.

// routeMode is a route's "mode" metadata key.
type routeMode uint8

const (
	modeSplice routeMode = iota // Envoy calls the provider; llmux processes the response (the default)
	modeOwned                   // llmux answers with a StreamedImmediateResponse and calls the provider itself
)

func init() { registerRouteKey("mode", parseRouteMode) }

func parseRouteMode(v *structpb.Value, p *routePolicy) error {
	switch v.GetStringValue() {
	case "splice":
		p.mode = modeSplice
	case "owned":
		p.mode = modeOwned
	default:
		return errors.New(`must be "splice" or "owned"`)
	}
	return nil
}

// owned reports whether the route asks for owned mode.
func (p *routePolicy) owned() bool { return p != nil && p.mode == modeOwned }

// ownedState is a handler's owned-mode bookkeeping.
type ownedState struct {
	fullDuplex bool   // Envoy sends the request body FULL_DUPLEX_STREAMED (an owned route's override)
	active     bool   // the route is owned: llmux answers the request itself
	body       []byte // the request body gathered so far
	sender     *ownedSender
}

// ownedModes is handle's check of Envoy's processing modes for owned
// routes: the request body FULL_DUPLEX_STREAMED. Whether the route really
// is owned is known only after its metadata is read (startOwned).
func (h *handler) ownedModes(pc *extprocv3.ProtocolConfiguration) bool {
	h.own.fullDuplex = pc.GetRequestBodyMode() == extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED
	return h.own.fullDuplex
}

// startOwned decides, once the route's metadata is read, whether llmux
// answers the request itself; a route and processing mode that disagree are
// a configuration error (500), logged with what to change.
func (h *handler) startOwned(pc *extprocv3.ProtocolConfiguration) *translate.Error {
	owned := h.routeMeta.owned()
	switch {
	case owned && pc != nil && !h.own.fullDuplex:
		h.s.opts.Logger.Error("llmux: an owned route (mode: owned) needs the request body FULL_DUPLEX_STREAMED: add the route's ext_proc processing_mode override (envoy/snippets/owned_route.yaml)",
			"request_body_mode", pc.GetRequestBodyMode().String(), "request_id", h.requestID)
	case !owned && h.own.fullDuplex:
		h.s.opts.Logger.Error("llmux: Envoy's ext_proc processing_mode does not match what llmux needs",
			"error", "request_body_mode is FULL_DUPLEX_STREAMED on a route without mode: owned; want BUFFERED", "request_id", h.requestID)
	default:
		h.own.active = owned
		return nil
	}
	h.s.opts.Metrics.ProtocolError(h.ctx, "processing_mode")
	return &translate.Error{Code: translate.CodeInternal, Message: "The gateway is misconfigured (ext_proc processing mode); see the gateway logs."}
}

// collectOwned gathers an owned request's body from Envoy's
// FULL_DUPLEX_STREAMED chunks. done is true when onRequestBody must return
// (err): more chunks are expected, or the body is too large. At the last
// chunk, b.Body is the whole body.
func (h *handler) collectOwned(b *extprocv3.HttpBody) (done bool, err error) {
	h.own.body = append(h.own.body, b.GetBody()...)
	if max := h.cfg.Server().MaxRequestBodyBytes; max > 0 && int64(len(h.own.body)) > max {
		return true, h.immediate(&translate.Error{Code: translate.CodeRequestTooLarge, OpenAICode: "request_too_large",
			Message: fmt.Sprintf("The request body is over the limit of %d bytes.", max)})
	}
	if !b.GetEndOfStream() {
		return true, nil
	}
	b.Body, h.own.body = h.own.body, nil
	return false, nil
}

// onOwnedTrailers ends an owned request's body: trailers follow its last
// chunk, which had no end_of_stream.
func (h *handler) onOwnedTrailers() error {
	if h.ph != phaseRequestBody {
		return h.protocolError("request_trailers")
	}
	return h.onRequestBody(&extprocv3.HttpBody{EndOfStream: true})
}

// forwardOwned makes the first provider call of an owned request through
// the egress listener and answers the client from it, failing over while
// nothing reached the client. up is the request translated for h.dep.
func (h *handler) forwardOwned(body []byte, up *translate.Upstream) error {
	h.own.sender = &ownedSender{out: h.out, requestMD: func() *structpb.Struct { return h.metadata(false) }}
	h.out = h.own.sender
	h.chunk = newChunkResponse()
	// The body is kept for the next tries, whether or not keepForFailover
	// kept it (it stays counted in server.max_buffered_bytes until
	// dropFailoverBody or the stream's end); the bounds are the group's.
	h.fo.body, h.fo.limits = body, h.group.Failover
	h.fo.tried[0], h.fo.ntried = h.dep, 1
	h.fo.groups[0], h.fo.ngroups = h.group, 1
	h.treq.Body = nil
	h.ph = phaseResponseBody
	c, err := h.s.egressClient(h.cfg.Server())
	if err != nil {
		h.s.opts.Logger.Error("llmux: owned mode: egress client", "request_id", h.requestID, "error", err)
		return h.immediate(&translate.Error{Code: translate.CodeInternal, Message: "The gateway cannot call providers (egress listener); see the gateway logs."})
	}
	h.forwardedAt = h.s.opts.Now()
	h.traceTry(h.dep, "first")
	ctx, cancel := context.WithDeadline(h.ctx, h.forwardedAt.Add(h.fo.limits.Budget))
	defer cancel()
	req := egressRequest(h.dep, up, h.requestID)
	h.traceInject(req.Header)
	resp, err := c.Do(ctx, req)
	if err != nil {
		h.traceCallFailed(err)
		if h.ctx.Err() != nil {
			return h.ctx.Err() // the client went away
		}
		h.s.opts.Logger.Warn("llmux: owned mode: provider call failed", "request_id", h.requestID, "deployment", h.dep.Name, "error", err)
		if done, rerr := h.retryOwned(err); done {
			return rerr
		}
		return h.answerError(brokenCallError(err), translate.RetryHint{})
	}
	defer resp.Body.Close()
	h.switchTo(h.dep, h.tr, h.treq, resp)
	if resp.Status >= 400 {
		// An error answer is held whole anyway: judge it as failover does.
		out, e := h.decodeWhole(resp.Body)
		if e != nil && h.failsOver(e) {
			return h.failover()
		}
		return h.answerHeld(out)
	}
	return h.streamFallback(resp.Body)
}

// retryOwned is streamFallback's hook for a body read that failed: in owned
// mode, fail over while no content reached the client (done true, err is
// the outcome), or continue the stream (brokenRepair).
func (h *handler) retryOwned(cause error) (done bool, err error) {
	if !h.own.active || h.ctx.Err() != nil {
		return false, nil
	}
	e := brokenCallError(cause)
	sent := h.own.sender.headersSent
	if h.fo.body != nil && (!sent || h.fo.inband == inbandWatching) {
		// Nothing reached the client but, with its headers out, a held
		// role chunk: the attempt failed as a whole.
		h.fo.pending = h.fo.pending[:0]
		h.dec, h.errCode = errorResult{e}, string(e.Code)
		h.broken = false
		return true, h.runFailover(sent)
	}
	return h.brokenRepair(cause) // ownedrepair.go
}

// brokenCallError is the class of a provider call that broke: a reset or a
// refused connection is an outage another deployment may not have.
func brokenCallError(cause error) *translate.Error {
	switch {
	case errors.Is(cause, egress.ErrHeaderTimeout), errors.Is(cause, egress.ErrIdleTimeout), errors.Is(cause, context.DeadlineExceeded):
		return &translate.Error{Code: translate.CodeTimeout, Message: "The provider did not answer in time."}
	}
	return &translate.Error{Code: translate.CodeUpstreamUnavailable, Message: "The provider's connection failed before it answered."}
}

// egressRequest is the egress call for up, already translated for dep.
func egressRequest(dep *config.Deployment, up *translate.Upstream, requestID string) *egress.Request {
	hdr := make(http.Header, len(up.Headers)+2)
	hdr.Set("content-type", "application/json")
	for _, hd := range up.Headers {
		hdr.Set(hd.Key, hd.Value)
	}
	hdr.Set("x-request-id", requestID)
	return &egress.Request{Cluster: dep.Provider.Cluster, Path: up.Path, Header: hdr, Body: up.Body}
}

// ownedSender turns the response path's replies into a
// StreamedImmediateResponse: the response headers reply (a header
// mutation that sets every header the client gets, :status included:
// switchTo and answerError build it so) into its headers, and body replies
// into its body chunks. Every other reply (an ImmediateResponse before the
// headers went out) passes unchanged. Dynamic metadata rides along.
type ownedSender struct {
	out         sender
	headersSent bool
	// requestMD is the request's metadata (the deployment that answers),
	// sent with the headers when they carry none, as splice mode sends it
	// with the forwarded request: a client that goes away mid-stream still
	// leaves it in the access log.
	requestMD func() *structpb.Struct
	body      *extprocv3.StreamedBodyResponse // reused for every chunk
	msg       *extprocv3.ProcessingResponse
}

// Send implements sender.
func (s *ownedSender) Send(m *extprocv3.ProcessingResponse) error {
	switch r := m.Response.(type) {
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		s.headersSent = true
		md := m.DynamicMetadata
		if md == nil && s.requestMD != nil {
			md = s.requestMD()
		}
		return s.out.Send(&extprocv3.ProcessingResponse{DynamicMetadata: md,
			Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: &extprocv3.StreamedImmediateResponse{
				Response: &extprocv3.StreamedImmediateResponse_HeadersResponse{HeadersResponse: &extprocv3.HttpHeaders{
					Headers: ownedHeaders(r.ResponseHeaders.GetResponse().GetHeaderMutation())}}}}})
	case *extprocv3.ProcessingResponse_ResponseBody:
		sr := r.ResponseBody.GetResponse().GetBodyMutation().GetStreamedResponse()
		if sr == nil {
			return s.out.Send(m)
		}
		if s.msg == nil {
			s.body = &extprocv3.StreamedBodyResponse{}
			s.msg = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_StreamedImmediateResponse{
				StreamedImmediateResponse: &extprocv3.StreamedImmediateResponse{
					Response: &extprocv3.StreamedImmediateResponse_BodyResponse{BodyResponse: s.body}}}}
		}
		s.body.Body, s.body.EndOfStream = sr.Body, sr.EndOfStream
		s.msg.DynamicMetadata = m.DynamicMetadata
		return s.out.Send(s.msg)
	}
	return s.out.Send(m)
}

// ownedHeaders is the client's header map from a response headers
// mutation: its set headers, the last value of a name winning, :status
// first (200 when none is set).
func ownedHeaders(mut *extprocv3.HeaderMutation) *corev3.HeaderMap {
	set := mut.GetSetHeaders()
	out := &corev3.HeaderMap{Headers: make([]*corev3.HeaderValue, 1, len(set)+1)}
	out.Headers[0] = &corev3.HeaderValue{Key: ":status", RawValue: []byte("200")}
	for _, o := range set {
		hv := o.GetHeader()
		if hv.GetKey() == ":status" {
			out.Headers[0] = hv
			continue
		}
		replaced := false
		for i, prev := range out.Headers {
			if prev.GetKey() == hv.GetKey() {
				out.Headers[i], replaced = hv, true
			}
		}
		if !replaced {
			out.Headers = append(out.Headers, hv)
		}
	}
	return out
}
