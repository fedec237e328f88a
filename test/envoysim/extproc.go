package envoysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	pm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// The ext_proc filter emulation (reference §1–§3). One xfilter per HTTP
// exchange, with a decoding (request) and an encoding (response) direction.

type cbState int

const (
	cbIdle cbState = iota
	cbHeaders
	cbBufferedBody
	cbStreamedBody
	cbPartialBody
	cbTrailers
)

var errSpurious = errors.New("spurious message")

type evGrpcMsg struct {
	resp *extprocsvc.ProcessingResponse
	gen  int
}

type evGrpcEnd struct {
	err error
	gen int
}

type xstream struct {
	cancel context.CancelFunc
	q      *ubq[*extprocsvc.ProcessingRequest]
}

type xfilter struct {
	x         *exchange
	cfg       *extProcConfig
	mode      *pm.ProcessingMode // effective filter-level mode (after per-route merge)
	failOpen  bool
	receiveNS []string
	forwardNS []string
	dec, enc  *xdir

	complete     bool // Envoy's processing_complete_
	stream       *xstream
	gen          int
	firstSent    bool
	localStarted bool // StreamedImmediateResponse headers went out
}

type qchunk struct {
	data      []byte
	eos       bool
	delivered bool
}

type xdir struct {
	f      *xfilter
	decode bool

	sendHeaders  bool
	sendTrailers bool
	bodyMode     pm.ProcessingMode_BodySendMode

	cb           cbState
	overrideUsed bool

	headersSeen   bool
	headersHeld   bool
	noBody        bool
	completeBody  bool
	buf           []byte
	hasBuf        bool
	queue         []qchunk
	trailers      hmap
	trailersAvail bool
	endForwarded  bool
	bodyReplaced  bool
	partialDone   bool
	attrsSent     bool
	fdBodySent    bool
	fdEOSSent     bool
	fdDone        bool
	trailersSent  bool
}

func newXFilter(x *exchange) *xfilter {
	c := x.hcm.extProc
	f := &xfilter{x: x, cfg: c, mode: c.mode, failOpen: c.failureModeAllow,
		receiveNS: c.receiveNamespaces, forwardNS: c.forwardNamespaces}
	f.dec = &xdir{f: f, decode: true}
	f.enc = &xdir{f: f}
	return f
}

func (f *xfilter) setModes(m *pm.ProcessingMode) {
	f.dec.setMode(m.GetRequestHeaderMode() != pm.ProcessingMode_SKIP, m.GetRequestTrailerMode() == pm.ProcessingMode_SEND, m.GetRequestBodyMode())
	f.enc.setMode(m.GetResponseHeaderMode() != pm.ProcessingMode_SKIP, m.GetResponseTrailerMode() == pm.ProcessingMode_SEND, m.GetResponseBodyMode())
}

func (d *xdir) setMode(sendHeaders, sendTrailers bool, body pm.ProcessingMode_BodySendMode) {
	d.sendHeaders, d.sendTrailers, d.bodyMode = sendHeaders, sendTrailers, body
}

// mergePerRoute applies ExtProcPerRoute from the virtual host then the
// route (less → more specific), once, at decodeHeaders (§8).
func (f *xfilter) mergePerRoute() {
	r := f.x.currentRoute()
	mode := f.cfg.mode
	if r != nil {
		var pmode *pm.ProcessingMode
		disabled := false
		for _, pr := range []*pm.ExtProcPerRoute{r.vhost.perFilter, r.perFilter} {
			if pr == nil {
				continue
			}
			if pr.GetDisabled() {
				disabled, pmode = true, nil
				continue
			}
			disabled = false
			o := pr.GetOverrides()
			if o.GetProcessingMode() != nil {
				pmode = o.GetProcessingMode()
			}
			if o.GetFailureModeAllow() != nil {
				f.failOpen = o.GetFailureModeAllow().GetValue()
			}
			if mo := o.GetMetadataOptions(); mo != nil {
				if mo.GetReceivingNamespaces() != nil {
					f.receiveNS = mo.GetReceivingNamespaces().GetUntyped()
				}
				if mo.GetForwardingNamespaces() != nil {
					f.forwardNS = mo.GetForwardingNamespaces().GetUntyped()
				}
			}
		}
		if disabled {
			mode = &pm.ProcessingMode{RequestHeaderMode: pm.ProcessingMode_SKIP, ResponseHeaderMode: pm.ProcessingMode_SKIP}
		} else if pmode != nil {
			mode = pmode
		}
	}
	f.mode = mode
	f.setModes(mode)
}

func (d *xdir) shouldRemoveCL() bool {
	if d.f.cfg.allowContentLength {
		return false
	}
	switch d.bodyMode {
	case pm.ProcessingMode_STREAMED, pm.ProcessingMode_BUFFERED_PARTIAL, pm.ProcessingMode_FULL_DUPLEX_STREAMED:
		return true
	case pm.ProcessingMode_BUFFERED:
		return !d.sendHeaders
	}
	return false
}

func (d *xdir) headerMap() *hmap {
	if d.decode {
		return &d.f.x.reqHeaders
	}
	return &d.f.x.respHeaders
}

func (d *xdir) name() string {
	if d.decode {
		return "request"
	}
	return "response"
}

// ---- forwarding to the next element of the chain ----

func (d *xdir) nextHeaders(eos bool) {
	if d.decode {
		d.f.x.routerHeaders(eos)
	} else {
		d.f.x.clientHeaders(d.f.x.respHeaders, eos)
	}
}

func (d *xdir) nextData(b []byte, eos bool) {
	if d.decode {
		d.f.x.routerData(b, eos)
	} else {
		d.f.x.clientData(b, eos)
	}
}

func (d *xdir) nextTrailers(t hmap) {
	if d.decode {
		d.f.x.routerTrailers(t)
	} else {
		d.f.x.clientTrailers(t)
	}
}

func (d *xdir) fwdHeadersIfHeld() {
	if d.headersHeld && !d.f.x.finished {
		d.headersHeld = false
		eos := d.noBody && !d.hasBuf
		if eos {
			d.endForwarded = true
		}
		d.nextHeaders(eos)
	}
}

func (d *xdir) fwdData(b []byte, eos bool) {
	if d.f.x.finished || d.endForwarded {
		return
	}
	d.fwdHeadersIfHeld()
	if d.endForwarded {
		return
	}
	if eos {
		d.endForwarded = true
	}
	if len(b) > 0 || eos {
		d.nextData(b, eos)
	}
}

func (d *xdir) fwdTrailers() {
	if d.f.x.finished || d.endForwarded {
		return
	}
	d.fwdHeadersIfHeld()
	d.endForwarded = true
	d.nextTrailers(d.trailers)
}

// continueAll is continueIfNecessary: headers, then buffered data, then the
// end of stream or the trailers if they are not awaiting processing.
func (d *xdir) continueAll() {
	x := d.f.x
	if x.finished || (d.decode && x.localStreaming) {
		return
	}
	if d.bodyMode == pm.ProcessingMode_FULL_DUPLEX_STREAMED && !d.f.complete {
		// In FULL_DUPLEX_STREAMED the body flows through the server; only
		// the headers continue here.
		d.fwdHeadersIfHeld()
		return
	}
	d.fwdHeadersIfHeld()
	if d.hasBuf {
		b := d.buf
		d.buf, d.hasBuf = nil, false
		eos := d.completeBody && !d.trailersAvail && len(d.queue) == 0
		d.fwdData(b, eos)
	}
	if len(d.queue) > 0 || d.cb != cbIdle {
		return
	}
	if d.trailersAvail {
		d.fwdTrailers()
	} else if d.completeBody {
		d.fwdData(nil, true)
	}
}

// clearAsyncState drops any pending callback and lets everything held flow
// on unmodified (used after OK close, spurious with fail-open, timeouts
// with fail-open).
func (d *xdir) clearAsyncState() {
	d.flushHeld()
	if d.headersSeen && !d.endForwarded {
		if d.trailersAvail {
			d.fwdTrailers()
		} else if d.completeBody {
			d.fwdData(nil, true)
		}
	}
}

// flushHeld passes on, unmodified, everything held: headers, buffered data
// and queued chunks (not the end of stream).
func (d *xdir) flushHeld() {
	d.f.x.stopTimer(d.timerKind())
	d.cb = cbIdle
	d.fwdHeadersIfHeld()
	if d.hasBuf {
		b := d.buf
		d.buf, d.hasBuf = nil, false
		d.fwdData(b, false)
	}
	for _, c := range d.queue {
		d.fwdData(c.data, false)
	}
	d.queue = nil
}

func (d *xdir) timerKind() int {
	if d.decode {
		return timerMsgDecode
	}
	return timerMsgEncode
}

// ---- stream management ----

type openResult int

const (
	openOK     openResult = iota
	openIgnore            // continue unprocessed
	openStop              // an error reply was sent
)

func (f *xfilter) openStream() openResult {
	if f.complete {
		return openIgnore
	}
	if f.stream != nil {
		return openOK
	}
	x := f.x
	fail := func(err error) openResult {
		x.s.count("streams_failed")
		x.s.logf("ext_proc: opening stream: %v", err)
		if f.canFailOpen() {
			f.complete = true
			x.s.count("failure_mode_allowed")
			return openIgnore
		}
		f.complete = true
		x.localReply(f.cfg.statusOnError, "", "ext_proc_error_gRPC_error_14", nil, true)
		return openStop
	}
	cc, err := x.s.grpcConn(f.cfg.cluster)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(x.s.ctx)
	var kv []string
	for _, h := range f.cfg.initialMetadata {
		v := h.GetValue()
		if v == "" {
			v = string(h.GetRawValue())
		}
		kv = append(kv, strings.ToLower(h.GetKey()), v)
	}
	if x.span != nil {
		// Filter::openStream passes the request span as the parent
		// (setParentSpan(decoder_callbacks_->activeSpan()), setSampled(
		// absl::nullopt)); Grpc::AsyncStreamImpl spawns the child span
		// "async envoy.service.ext_proc.v3.ExternalProcessor.Process
		// egress" (Tracing::EgressConfig) and, in initialize(), injects it
		// into the request headers after initial_metadata: the keys it sets
		// (traceparent/tracestate, or Zipkin's x-b3-*) replace any configured
		// ones. A NullSpan (nil) injects nothing.
		inj := x.span.spawnChild().injected()
		var kept []string
		for i := 0; i+1 < len(kv); i += 2 {
			if !slices.ContainsFunc(inj, func(e hkv) bool { return e.k == kv[i] }) {
				kept = append(kept, kv[i], kv[i+1])
			}
		}
		for _, e := range inj {
			kept = append(kept, e.k, e.v)
		}
		kv = kept
		x.s.logf("ext_proc: stream trace context %v", inj)
	}
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	st, err := extprocsvc.NewExternalProcessorClient(cc).Process(ctx)
	if err != nil {
		cancel()
		return fail(err)
	}
	x.s.count("streams_started")
	f.gen++
	gen := f.gen
	q := newUBQ[*extprocsvc.ProcessingRequest]()
	f.stream = &xstream{cancel: cancel, q: q}
	x.goTracked(func() {
		for {
			items, ok := q.take(ctx.Done())
			for _, m := range items {
				if err := st.Send(m); err != nil {
					return
				}
			}
			if !ok {
				_ = st.CloseSend()
				return
			}
		}
	})
	x.goTracked(func() {
		for {
			m, err := st.Recv()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				x.post(evGrpcEnd{err: err, gen: gen})
				return
			}
			if !x.post(evGrpcMsg{resp: m, gen: gen}) {
				return
			}
		}
	})
	return openOK
}

// closeStream half-closes and resets the gRPC stream (Envoy's close()).
func (f *xfilter) closeStream() {
	if f.stream != nil {
		f.stream.q.close()
		f.stream.cancel()
		f.stream = nil
		f.gen++
		f.x.s.count("streams_closed")
	}
}

func (f *xfilter) stopTimers() {
	f.x.stopTimer(timerMsgDecode)
	f.x.stopTimer(timerMsgEncode)
}

// abandon ends processing without touching the HTTP stream (a direct local
// reply or a reset follows).
func (f *xfilter) abandon() {
	f.complete = true
	f.stopTimers()
	f.closeStream()
}

func (f *xfilter) destroy() { f.abandon() }

func (f *xfilter) canFailOpen() bool {
	if !f.failOpen {
		return false
	}
	// FULL_DUPLEX_STREAMED: fail-open only until the first body chunk was
	// sent in that direction (§3, PR #41276).
	for _, d := range []*xdir{f.dec, f.enc} {
		if d.bodyMode == pm.ProcessingMode_FULL_DUPLEX_STREAMED && d.fdBodySent {
			return false
		}
	}
	return true
}

func (f *xfilter) send(d *xdir, req *extprocsvc.ProcessingRequest, next cbState) {
	if !f.firstSent {
		f.firstSent = true
		req.ProtocolConfig = &extprocsvc.ProtocolConfiguration{
			RequestBodyMode:  f.dec.bodyMode,
			ResponseBodyMode: f.enc.bodyMode,
		}
	}
	f.addAttributes(d, req)
	req.MetadataContext = f.forwardMetadata()
	f.x.s.count("stream_msgs_sent")
	if next != cbIdle {
		d.cb = next
		d.overrideUsed = false
		if d.bodyMode != pm.ProcessingMode_FULL_DUPLEX_STREAMED {
			f.x.armTimer(d.timerKind(), f.cfg.messageTimeout)
		}
	}
	f.stream.q.push(req)
}

func (f *xfilter) forwardMetadata() *corev3.Metadata {
	m := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for _, ns := range f.forwardNS {
		if s := f.x.metadata[ns]; s != nil {
			m.FilterMetadata[ns] = s
		}
	}
	if len(m.FilterMetadata) == 0 {
		m.FilterMetadata = nil
	}
	return m
}

func (d *xdir) sendHeadersMsg(eos bool) {
	h := &extprocsvc.HttpHeaders{Headers: d.headerMap().proto(), EndOfStream: eos}
	req := &extprocsvc.ProcessingRequest{}
	if d.decode {
		req.Request = &extprocsvc.ProcessingRequest_RequestHeaders{RequestHeaders: h}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseHeaders{ResponseHeaders: h}
	}
	d.f.send(d, req, cbHeaders)
}

func (d *xdir) sendBody(b []byte, eos bool, next cbState) {
	body := &extprocsvc.HttpBody{Body: append([]byte(nil), b...), EndOfStream: eos}
	req := &extprocsvc.ProcessingRequest{}
	if d.decode {
		req.Request = &extprocsvc.ProcessingRequest_RequestBody{RequestBody: body}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseBody{ResponseBody: body}
	}
	d.f.send(d, req, next)
}

func (d *xdir) sendTrailersMsg(next cbState) {
	d.trailersSent = true
	t := &extprocsvc.HttpTrailers{Trailers: d.trailers.proto()}
	req := &extprocsvc.ProcessingRequest{}
	if d.decode {
		req.Request = &extprocsvc.ProcessingRequest_RequestTrailers{RequestTrailers: t}
	} else {
		req.Request = &extprocsvc.ProcessingRequest_ResponseTrailers{ResponseTrailers: t}
	}
	d.f.send(d, req, next)
}

// fdNextState is the callback state after sending a FULL_DUPLEX_STREAMED
// body chunk or trailers: Envoy stays in HeadersCallback while the headers
// response is outstanding, keeps a body callback in progress, and otherwise
// enters next (handleDataStreamedModeBase, sendTrailers).
func (d *xdir) fdNextState(next cbState) cbState {
	switch d.cb {
	case cbHeaders, cbStreamedBody:
		return d.cb
	}
	return next
}

// ---- HTTP events into the filter ----

func (f *xfilter) decodeHeaders(eos bool) {
	f.mergePerRoute()
	f.dec.onHeaders(eos)
}

func (f *xfilter) encodeHeaders(h hmap, eos bool) {
	_ = h
	f.enc.onHeaders(eos)
}

func (d *xdir) onHeaders(eos bool) {
	f := d.f
	d.headersSeen, d.headersHeld, d.noBody = true, true, eos
	if eos {
		d.completeBody = true
	}
	if d.sendHeaders && !f.complete {
		switch f.openStream() {
		case openStop:
			return
		case openIgnore:
			d.continueAll()
			return
		}
		d.sendHeadersMsg(eos)
		if !f.complete && d.shouldRemoveCL() {
			d.headerMap().del("content-length")
		}
		return
	}
	if !f.complete && d.shouldRemoveCL() {
		d.headerMap().del("content-length")
	}
	d.continueAll()
}

func (d *xdir) bufferLimitExceeded() bool {
	return len(d.buf) > d.f.x.l.bufferLimit
}

func (d *xdir) overflow() {
	x := d.f.x
	if d.decode {
		x.s.count("downstream_rq_too_large")
		x.localReply(413, "Payload Too Large", "request_payload_too_large", nil, false)
		return
	}
	x.s.count("rs_too_large")
	x.localReply(500, "Internal Server Error", "response_payload_too_large", nil, true)
}

func (d *xdir) onData(b []byte, eos bool) {
	f := d.f
	if d.f.x.finished {
		return
	}
	if eos {
		d.completeBody = true
	}
	if d.bodyReplaced {
		// CONTINUE_AND_REPLACE: the original body is drained.
		if eos {
			d.fwdData(nil, true)
		}
		return
	}
	if f.complete {
		d.flushHeld()
		d.fwdData(b, eos)
		return
	}
	if d.cb == cbHeaders && d.bodyMode != pm.ProcessingMode_FULL_DUPLEX_STREAMED {
		// Header processing in progress: hold the data.
		d.buf = append(d.buf, b...)
		d.hasBuf = true
		if d.bodyMode == pm.ProcessingMode_BUFFERED && d.bufferLimitExceeded() {
			d.overflow()
		}
		return
	}
	switch d.bodyMode {
	case pm.ProcessingMode_BUFFERED:
		d.buf = append(d.buf, b...)
		d.hasBuf = true
		if !eos {
			if d.bufferLimitExceeded() {
				d.overflow()
			}
			return
		}
		if d.bufferLimitExceeded() {
			d.overflow()
			return
		}
		switch f.openStream() {
		case openStop:
			return
		case openIgnore:
			d.continueAll()
			return
		}
		d.sendBody(d.buf, true, cbBufferedBody)
	case pm.ProcessingMode_STREAMED:
		switch f.openStream() {
		case openStop:
			return
		case openIgnore:
			d.fwdData(b, eos)
			return
		}
		d.fwdHeadersIfHeld()
		d.queue = append(d.queue, qchunk{data: b, eos: eos, delivered: true})
		d.sendBody(b, eos, cbStreamedBody)
	case pm.ProcessingMode_BUFFERED_PARTIAL:
		if d.partialDone {
			d.fwdData(b, eos)
			return
		}
		d.queue = append(d.queue, qchunk{data: b, eos: eos})
		if d.cb == cbPartialBody {
			return
		}
		if eos || d.queueBytes() > d.f.x.l.bufferLimit {
			switch f.openStream() {
			case openStop:
				return
			case openIgnore:
				d.clearAsyncState()
				return
			}
			all, end := d.consolidate()
			d.sendBody(all, end, cbPartialBody)
		}
	case pm.ProcessingMode_FULL_DUPLEX_STREAMED:
		switch f.openStream() {
		case openStop:
			return
		case openIgnore:
			d.fwdData(b, eos)
			return
		}
		d.fdBodySent, d.fdEOSSent = true, eos
		d.sendBody(b, eos, d.fdNextState(cbStreamedBody))
	default:
		if d.hasBuf {
			buf := d.buf
			d.buf, d.hasBuf = nil, false
			d.fwdData(buf, false)
		}
		d.fwdData(b, eos)
	}
}

func (d *xdir) queueBytes() int {
	n := 0
	for _, c := range d.queue {
		n += len(c.data)
	}
	return n
}

func (d *xdir) consolidate() ([]byte, bool) {
	var all []byte
	end := false
	for _, c := range d.queue {
		all = append(all, c.data...)
		end = end || c.eos
	}
	d.queue = []qchunk{{data: all, eos: end, delivered: true}}
	return all, end
}

func (d *xdir) onTrailers(t hmap) {
	f := d.f
	if f.x.finished {
		return
	}
	if f.complete {
		d.flushHeld()
		d.trailers, d.trailersAvail = t, true
		d.fwdTrailers()
		return
	}
	bodyDelivered := d.completeBody
	d.completeBody, d.trailersAvail, d.trailers = true, true, t
	if d.bodyMode == pm.ProcessingMode_FULL_DUPLEX_STREAMED {
		// Sent at once, without waiting for body responses (§3).
		if !d.sendTrailers {
			return
		}
		switch f.openStream() {
		case openStop:
			return
		case openIgnore:
			d.clearAsyncState()
			return
		}
		d.sendTrailersMsg(d.fdNextState(cbTrailers))
		return
	}
	if d.cb != cbIdle {
		return // held until the current callback finishes
	}
	if !bodyDelivered && ((d.hasBuf && d.bodyMode == pm.ProcessingMode_BUFFERED) ||
		(len(d.queue) > 0 && d.bodyMode == pm.ProcessingMode_BUFFERED_PARTIAL && !d.partialDone)) {
		switch f.openStream() {
		case openStop:
			return
		case openIgnore:
			d.continueAll()
			return
		}
		if d.bodyMode == pm.ProcessingMode_BUFFERED {
			d.sendBody(d.buf, false, cbBufferedBody)
		} else {
			all, _ := d.consolidate()
			d.sendBody(all, false, cbPartialBody)
		}
		return
	}
	if !d.sendTrailers {
		d.continueAll()
		return
	}
	switch f.openStream() {
	case openStop:
		return
	case openIgnore:
		d.continueAll()
		return
	}
	d.sendTrailersMsg(cbTrailers)
}

// ---- responses from the server ----

func (d *xdir) finishCall(next cbState) {
	d.f.x.stopTimer(d.timerKind())
	d.cb = next
	d.overrideUsed = false
}

func (f *xfilter) maybeClearRouteCache(d *xdir, cr *extprocsvc.CommonResponse) {
	if !d.decode || cr == nil {
		return
	}
	want := false
	switch f.cfg.routeCacheAction {
	case pm.ExternalProcessor_DEFAULT:
		want = cr.GetClearRouteCache()
	case pm.ExternalProcessor_CLEAR:
		want = true
	case pm.ExternalProcessor_RETAIN:
		if cr.GetClearRouteCache() {
			f.x.s.count("clear_route_cache_disabled")
		}
		return
	}
	if !want {
		return
	}
	if cr.GetHeaderMutation() == nil {
		f.x.s.count("clear_route_cache_ignored")
		return
	}
	if f.x.routerStarted {
		// The router already picked the upstream; too late to re-route.
		return
	}
	f.x.clearRouteCache()
}

func (f *xfilter) mutationTarget(d *xdir) mutationTarget {
	if d.decode {
		return targetRequest
	}
	return targetResponse
}

func (d *xdir) onHeadersResponse(r *extprocsvc.HeadersResponse) error {
	f := d.f
	if d.cb != cbHeaders {
		return errSpurious
	}
	cr := r.GetResponse()
	replace := cr.GetStatus() == extprocsvc.CommonResponse_CONTINUE_AND_REPLACE
	if hm := cr.GetHeaderMutation(); hm != nil {
		if err := f.x.s.applyMutation(hm, d.headerMap(), f.cfg.rules, replace, d.shouldRemoveCL(), f.mutationTarget(d)); err != nil {
			return err
		}
	}
	f.maybeClearRouteCache(d, cr)
	d.finishCall(cbIdle)
	if replace {
		if bm := cr.GetBodyMutation(); bm != nil {
			d.headerMap().del("content-length")
			d.bodyReplaced = true
			d.buf = applyBodyMutation(bm, d.buf)
			d.hasBuf = true
			if len(d.buf) > 0 {
				d.noBody = false
			}
			if d.noBody {
				d.hasBuf = false
			}
		}
		d.bodyMode = pm.ProcessingMode_NONE
		d.sendTrailers = false
		d.continueAll()
		return nil
	}
	switch {
	case d.noBody:
	case d.completeBody && d.bodyMode != pm.ProcessingMode_NONE && d.bodyMode != pm.ProcessingMode_FULL_DUPLEX_STREAMED:
		// The whole body arrived while we waited: process it as BUFFERED.
		d.sendBody(d.buf, !d.trailersAvail, cbBufferedBody)
		return nil
	case d.bodyMode == pm.ProcessingMode_BUFFERED:
		return nil // headers stay held until the body response
	case d.bodyMode == pm.ProcessingMode_STREAMED:
		d.fwdHeadersIfHeld()
		if d.hasBuf {
			b := d.buf
			d.buf, d.hasBuf = nil, false
			d.queue = append(d.queue, qchunk{data: b, delivered: true})
			d.sendBody(b, false, cbStreamedBody)
		}
		return nil
	case d.bodyMode == pm.ProcessingMode_FULL_DUPLEX_STREAMED:
		// Data held while the headers were processed (only after a
		// mode_override to FULL_DUPLEX_STREAMED) goes to the server now.
		// Envoy's getCallbackStateAfterHeaderResp: a body response is
		// expected only once a body chunk went to the server.
		switch {
		case d.fdBodySent:
			d.cb = cbStreamedBody
		case d.trailersAvail:
			d.cb = cbTrailers
		}
		d.fwdHeadersIfHeld()
		if d.hasBuf || (d.completeBody && !d.fdEOSSent && !d.trailersAvail) {
			b := d.buf
			d.buf, d.hasBuf = nil, false
			eos := d.completeBody && !d.trailersAvail
			d.fdBodySent, d.fdEOSSent = true, eos
			d.sendBody(b, eos, d.fdNextState(cbStreamedBody))
		}
		if d.trailersAvail && d.sendTrailers && !d.trailersSent {
			d.sendTrailersMsg(d.fdNextState(cbTrailers))
		}
		return nil
	case d.bodyMode == pm.ProcessingMode_BUFFERED_PARTIAL:
		if d.hasBuf {
			d.queue = append(d.queue, qchunk{data: d.buf})
			d.buf, d.hasBuf = nil, false
		}
		if d.queueBytes() > f.x.l.bufferLimit {
			all, end := d.consolidate()
			d.sendBody(all, end, cbPartialBody)
			return nil
		}
		d.fwdHeadersIfHeld()
		return nil
	}
	if d.sendTrailers && d.trailersAvail && d.bodyMode != pm.ProcessingMode_FULL_DUPLEX_STREAMED {
		d.sendTrailersMsg(cbTrailers)
		return nil
	}
	d.continueAll()
	return nil
}

func applyBodyMutation(bm *extprocsvc.BodyMutation, b []byte) []byte {
	switch m := bm.GetMutation().(type) {
	case *extprocsvc.BodyMutation_Body:
		return append([]byte(nil), m.Body...)
	case *extprocsvc.BodyMutation_ClearBody:
		if m.ClearBody {
			return nil
		}
	}
	return b
}

func (d *xdir) onBodyResponse(r *extprocsvc.BodyResponse) error {
	f := d.f
	cr := r.GetResponse()
	sr := cr.GetBodyMutation().GetStreamedResponse()
	if d.bodyMode == pm.ProcessingMode_FULL_DUPLEX_STREAMED {
		if sr == nil {
			return spuriousErr("spurious message: Normal body mutation response is received while body_mode_ is FULL_DUPLEX_STREAMED")
		}
		// Only while a body chunk awaits processing (Envoy's
		// isValidBodyCallbackState): not before the headers response, not
		// before the first chunk was sent, not after the server's own
		// end_of_stream.
		if d.cb != cbStreamedBody {
			return errSpurious
		}
		if sr.GetEndOfStream() {
			d.cb = cbIdle
		}
		if d.decode && f.x.localStreaming && !f.x.routerStarted {
			// The router never runs behind a streamed local response.
			if sr.GetEndOfStream() {
				d.fdDone = true
			}
			return nil
		}
		if len(sr.GetBody()) > 0 {
			d.fwdData(sr.GetBody(), false)
		}
		if sr.GetEndOfStream() {
			d.fdDone = true
			if d.trailersAvail {
				d.fwdTrailers()
			} else {
				d.fwdData(nil, true)
			}
		}
		return nil
	}
	if sr != nil {
		return spuriousErr("spurious message: streamed_response is received while body_mode_ is not FULL_DUPLEX_STREAMED")
	}
	switch d.cb {
	case cbBufferedBody:
		if hm := cr.GetHeaderMutation(); hm != nil && d.headersHeld {
			if err := f.x.s.applyMutation(hm, d.headerMap(), f.cfg.rules, false, d.shouldRemoveCL(), f.mutationTarget(d)); err != nil {
				return err
			}
		}
		if bm := cr.GetBodyMutation(); bm != nil {
			nb := applyBodyMutation(bm, d.buf)
			if d.headersHeld && !f.cfg.allowContentLength {
				if cl, ok := d.headerMap().get("content-length"); ok && cl != strconv.Itoa(len(nb)) {
					return mutationErr("mismatch between content length and the length of the mutated body")
				}
			}
			d.buf, d.hasBuf = nb, true
		}
		d.finishCall(cbIdle)
		f.maybeClearRouteCache(d, cr)
		d.afterBody(true)
	case cbStreamedBody:
		deliveredOne, shouldContinue := false, false
		for len(d.queue) > 0 {
			c := d.queue[0]
			if c.delivered {
				if deliveredOne {
					break
				}
				if bm := cr.GetBodyMutation(); bm != nil {
					c.data = applyBodyMutation(bm, c.data)
				}
				deliveredOne = true
			}
			d.queue = d.queue[1:]
			shouldContinue = c.eos
			if len(c.data) > 0 {
				d.fwdData(c.data, false)
			}
		}
		if len(d.queue) == 0 {
			d.finishCall(cbIdle)
		} else {
			d.finishCall(cbStreamedBody) // timer stopped, re-armed by the next send only
		}
		d.afterBody(shouldContinue || (len(d.queue) == 0 && d.trailersAvail))
	case cbPartialBody:
		if len(d.queue) == 0 {
			return errSpurious
		}
		c := d.queue[0]
		d.queue = d.queue[1:]
		if bm := cr.GetBodyMutation(); bm != nil {
			c.data = applyBodyMutation(bm, c.data)
		}
		d.fwdData(c.data, false)
		d.partialDone = true
		d.finishCall(cbIdle)
		for _, l := range d.queue {
			d.fwdData(l.data, false)
		}
		d.queue = nil
		f.maybeClearRouteCache(d, cr)
		d.afterBody(true)
	default:
		return errSpurious
	}
	return nil
}

func (d *xdir) afterBody(shouldContinue bool) {
	if d.sendTrailers && d.trailersAvail && len(d.queue) == 0 {
		d.sendTrailersMsg(cbTrailers)
		return
	}
	if shouldContinue {
		d.continueAll()
	}
}

func (d *xdir) onTrailersResponse(r *extprocsvc.TrailersResponse) error {
	f := d.f
	if d.bodyMode == pm.ProcessingMode_FULL_DUPLEX_STREAMED {
		if d.fdDone || !d.headersSeen {
			return errSpurious
		}
		d.fdDone = true
		d.finishCall(cbIdle)
		if !d.trailersAvail {
			// A synthesized trailers response: no trailers are created, the
			// direction ends (§2.6, §6 #22).
			d.fwdData(nil, true)
			return nil
		}
		if err := f.x.s.applyMutation(r.GetHeaderMutation(), &d.trailers, f.cfg.rules, false, false, targetTrailers); err != nil {
			return err
		}
		d.fwdTrailers()
		return nil
	}
	if d.cb != cbTrailers {
		return errSpurious
	}
	if err := f.x.s.applyMutation(r.GetHeaderMutation(), &d.trailers, f.cfg.rules, false, false, targetTrailers); err != nil {
		return err
	}
	d.finishCall(cbIdle)
	d.continueAll()
	return nil
}

// ---- dispatch ----

func (f *xfilter) setDynamicMetadata(resp *extprocsvc.ProcessingResponse) {
	dm := resp.GetDynamicMetadata()
	if dm == nil {
		return
	}
	for ns, v := range dm.GetFields() {
		allowed := false
		for _, r := range f.receiveNS {
			allowed = allowed || r == ns
		}
		if !allowed {
			f.x.s.logf("ext_proc: dynamic metadata for namespace %q not configured for receiving: dropped", ns)
			continue
		}
		// setDynamicMetadata(ns, value.struct_value()) merges into the
		// namespace with Struct::MergeFrom: top-level keys replace, nested
		// structs are not merged; a non-struct value is the empty Struct,
		// which still creates the namespace.
		sv := v.GetStructValue()
		cur := f.x.metadata[ns]
		if cur == nil {
			cur = &structpb.Struct{Fields: map[string]*structpb.Value{}}
			f.x.metadata[ns] = cur
		}
		for k, fv := range sv.GetFields() {
			cur.Fields[k] = fv
		}
	}
}

func isFD(m pm.ProcessingMode_BodySendMode) bool {
	return m == pm.ProcessingMode_FULL_DUPLEX_STREAMED
}

func (f *xfilter) applyModeOverride(o *pm.ProcessingMode) {
	base := f.mode
	eff := &pm.ProcessingMode{
		RequestHeaderMode:   base.GetRequestHeaderMode(),
		ResponseHeaderMode:  base.GetResponseHeaderMode(),
		RequestTrailerMode:  base.GetRequestTrailerMode(),
		ResponseTrailerMode: base.GetResponseTrailerMode(),
		RequestBodyMode:     o.GetRequestBodyMode(),
		ResponseBodyMode:    o.GetResponseBodyMode(),
	}
	if o.GetResponseHeaderMode() != pm.ProcessingMode_DEFAULT {
		eff.ResponseHeaderMode = o.GetResponseHeaderMode()
	}
	if o.GetRequestTrailerMode() != pm.ProcessingMode_DEFAULT {
		eff.RequestTrailerMode = o.GetRequestTrailerMode()
	}
	if o.GetResponseTrailerMode() != pm.ProcessingMode_DEFAULT {
		eff.ResponseTrailerMode = o.GetResponseTrailerMode()
	}
	if len(f.cfg.allowedOverrides) > 0 {
		ok := false
		for _, a := range f.cfg.allowedOverrides {
			ok = ok || (a.GetResponseHeaderMode() == eff.ResponseHeaderMode && a.GetRequestBodyMode() == eff.RequestBodyMode &&
				a.GetResponseBodyMode() == eff.ResponseBodyMode && a.GetRequestTrailerMode() == eff.RequestTrailerMode &&
				a.GetResponseTrailerMode() == eff.ResponseTrailerMode)
		}
		if !ok {
			f.x.s.logf("ext_proc: mode_override not in allowed_override_modes: dropped")
			return
		}
	}
	sendReqHeaders := f.dec.sendHeaders
	f.setModes(eff)
	f.dec.sendHeaders = sendReqHeaders // request_header_mode is ignored
}

func (f *xfilter) onMessage(e evGrpcMsg) {
	x := f.x
	if e.gen != f.gen || f.complete || x.finished {
		return
	}
	resp := e.resp
	if t := resp.GetOverrideMessageTimeout(); t != nil {
		f.onNewTimeout(t.AsDuration())
		return
	}
	if resp.GetResponse() == nil && resp.GetModeOverride() != nil {
		// v1.40 standalone mode_override (§2.10).
		if f.standaloneOverride(resp.GetModeOverride()) {
			x.s.count("stream_msgs_received")
			return
		}
		f.onError(fmt.Errorf("%w: standalone mode_override not allowed here", errSpurious))
		return
	}
	if f.cfg.allowModeOverride && !isFD(f.cfg.mode.GetRequestBodyMode()) && !isFD(f.cfg.mode.GetResponseBodyMode()) &&
		(f.dec.cb == cbHeaders || f.enc.cb == cbHeaders) && resp.GetModeOverride() != nil {
		f.applyModeOverride(resp.GetModeOverride())
	}
	var err error
	switch r := resp.GetResponse().(type) {
	case *extprocsvc.ProcessingResponse_RequestHeaders:
		f.setDynamicMetadata(resp)
		err = f.dec.onHeadersResponse(r.RequestHeaders)
	case *extprocsvc.ProcessingResponse_ResponseHeaders:
		f.setDynamicMetadata(resp)
		err = f.enc.onHeadersResponse(r.ResponseHeaders)
	case *extprocsvc.ProcessingResponse_RequestBody:
		f.setDynamicMetadata(resp)
		err = f.dec.onBodyResponse(r.RequestBody)
	case *extprocsvc.ProcessingResponse_ResponseBody:
		f.setDynamicMetadata(resp)
		err = f.enc.onBodyResponse(r.ResponseBody)
	case *extprocsvc.ProcessingResponse_RequestTrailers:
		f.setDynamicMetadata(resp)
		err = f.dec.onTrailersResponse(r.RequestTrailers)
	case *extprocsvc.ProcessingResponse_ResponseTrailers:
		f.setDynamicMetadata(resp)
		err = f.enc.onTrailersResponse(r.ResponseTrailers)
	case *extprocsvc.ProcessingResponse_ImmediateResponse:
		if f.cfg.disableImmediate {
			err = spuriousErr("unhandled immediate response due to config disabled it")
			break
		}
		f.setDynamicMetadata(resp)
		x.s.count("stream_msgs_received")
		f.abandon()
		f.sendImmediate(r.ImmediateResponse)
		return
	case *extprocsvc.ProcessingResponse_StreamedImmediateResponse:
		if x.s.minor < minorStreamedImmediate {
			// Before 1.37 the field is unknown to Envoy: the response case is
			// unset and onReceiveMessage's default branch calls it spurious.
			err = spuriousErr("unhandled message")
			break
		}
		f.setDynamicMetadata(resp)
		err = f.onStreamedImmediate(r.StreamedImmediateResponse)
	default:
		err = spuriousErr("unhandled message")
	}
	if err != nil {
		f.onError(err)
		return
	}
	x.s.count("stream_msgs_received")
}

func (f *xfilter) onError(err error) {
	x := f.x
	if errors.Is(err, errSpurious) {
		x.s.count("spurious_msgs_received")
		x.s.logf("ext_proc: %v", err)
		if f.canFailOpen() && !f.localStarted {
			x.s.count("failure_mode_allowed")
			f.complete = true
			f.closeStream()
			f.dec.clearAsyncState()
			f.enc.clearAsyncState()
			return
		}
		f.abandon()
		// handleErrorResponse: details are the status message.
		x.localReply(f.cfg.statusOnError, "", replaceAllEmptySpace(err.Error()), nil, true)
		return
	}
	// Mutation failures and the like always fail closed.
	x.s.count("stream_msgs_received")
	x.s.logf("ext_proc: %v", err)
	f.abandon()
	x.localReply(f.cfg.statusOnError, "", replaceAllEmptySpace(err.Error()), nil, true)
}

func (f *xfilter) standaloneOverride(o *pm.ProcessingMode) bool {
	if !f.cfg.allowModeOverride || f.dec.cb != cbHeaders {
		return false
	}
	cur := f.dec.bodyMode
	if cur != pm.ProcessingMode_NONE && cur != pm.ProcessingMode_STREAMED {
		return false
	}
	if o.GetRequestBodyMode() != pm.ProcessingMode_FULL_DUPLEX_STREAMED || o.GetRequestTrailerMode() != pm.ProcessingMode_SEND {
		return false
	}
	f.dec.bodyMode = pm.ProcessingMode_FULL_DUPLEX_STREAMED
	f.dec.sendTrailers = true
	if o.GetResponseBodyMode() != pm.ProcessingMode_NONE || o.GetResponseHeaderMode() != pm.ProcessingMode_DEFAULT ||
		o.GetResponseTrailerMode() != pm.ProcessingMode_DEFAULT {
		if o.GetResponseHeaderMode() != pm.ProcessingMode_DEFAULT {
			f.enc.sendHeaders = o.GetResponseHeaderMode() != pm.ProcessingMode_SKIP
		}
		if o.GetResponseTrailerMode() != pm.ProcessingMode_DEFAULT {
			f.enc.sendTrailers = o.GetResponseTrailerMode() == pm.ProcessingMode_SEND
		}
		f.enc.bodyMode = o.GetResponseBodyMode()
	}
	return true
}

func (f *xfilter) onNewTimeout(d time.Duration) {
	x := f.x
	if d < time.Millisecond || d > f.cfg.maxMessageTimeout {
		x.s.count("override_message_timeout_ignored")
		return
	}
	restarted := false
	for _, dir := range []*xdir{f.dec, f.enc} {
		if dir.cb != cbIdle && x.timers[dir.timerKind()] != nil && !dir.overrideUsed {
			dir.overrideUsed = true
			x.armTimer(dir.timerKind(), d)
			restarted = true
		}
	}
	if !restarted {
		x.s.count("override_message_timeout_ignored")
		return
	}
	x.s.count("override_message_timeout_received")
}

func (f *xfilter) onStreamEnd(e evGrpcEnd) {
	x := f.x
	if e.gen != f.gen || f.complete || x.finished {
		return
	}
	if e.err == nil {
		// OK close: continue unmodified (§2.1).
		x.s.logf("ext_proc: server closed the stream with OK")
		f.complete = true
		f.closeStream()
		if f.localStarted {
			return
		}
		f.dec.clearAsyncState()
		f.enc.clearAsyncState()
		return
	}
	x.s.count("streams_failed")
	code := status.Code(e.err)
	x.s.logf("ext_proc: stream failed: %v", e.err)
	if f.canFailOpen() && !f.localStarted {
		x.s.count("failure_mode_allowed")
		f.complete = true
		f.closeStream()
		f.dec.clearAsyncState()
		f.enc.clearAsyncState()
		return
	}
	f.abandon()
	x.localReply(f.cfg.statusOnError, "", replaceAllEmptySpace(fmt.Sprintf("ext_proc_error_gRPC_error_%d{%s}", int(code), status.Convert(e.err).Message())), nil, true)
}

func (f *xfilter) onMessageTimeout(decode bool) {
	x := f.x
	if f.complete || x.finished {
		return
	}
	x.s.count("message_timeouts")
	if f.failOpen {
		x.s.count("failure_mode_allowed")
		f.complete = true
		f.closeStream()
		f.dec.clearAsyncState()
		f.enc.clearAsyncState()
		return
	}
	f.abandon()
	x.localReply(504, "", "ext_proc_error_per-message_timeout_exceeded", nil, true)
}

func (f *xfilter) sendImmediate(ir *extprocsvc.ImmediateResponse) {
	code := int(ir.GetStatus().GetCode())
	if code < 200 || code > 999 {
		code = 200
	}
	var mutate func(*hmap)
	// grpc_status only matters for gRPC requests (is_grpc local replies,
	// not modelled); for any other request Envoy ignores it.
	if ir.GetHeaders() != nil {
		mutate = func(h *hmap) {
			if err := f.x.s.applyMutation(ir.GetHeaders(), h, f.cfg.rules, false, false, targetResponse); err != nil {
				f.x.s.logf("ext_proc: immediate response mutations failed: %v", err)
			}
		}
	}
	details := replaceAllEmptySpace(ir.GetDetails())
	f.x.localReply(code, string(ir.GetBody()), details, mutate, true)
}

func (f *xfilter) onStreamedImmediate(sir *extprocsvc.StreamedImmediateResponse) error {
	x := f.x
	switch r := sir.GetResponse().(type) {
	case *extprocsvc.StreamedImmediateResponse_HeadersResponse:
		if f.localStarted || f.dec.cb != cbHeaders {
			return fmt.Errorf("%w: streamed_immediate_response headers only in reply to request_headers", errSpurious)
		}
		if m := f.dec.bodyMode; m != pm.ProcessingMode_NONE && m != pm.ProcessingMode_FULL_DUPLEX_STREAMED {
			return fmt.Errorf("%w: streamed_immediate_response requires request body mode NONE or FULL_DUPLEX_STREAMED", errMutation)
		}
		f.localStarted = true
		x.localStreaming = true
		f.dec.finishCall(cbIdle)
		f.dec.headersHeld = false
		x.cancelUpstream()
		var h hmap
		for _, hv := range r.HeadersResponse.GetHeaders().GetHeaders() {
			v := string(hv.GetRawValue())
			if v == "" {
				v = hv.GetValue()
			}
			h = append(h, hkv{strings.ToLower(hv.GetKey()), v})
		}
		if _, ok := h.get(":status"); !ok {
			return fmt.Errorf("%w: streamed_immediate_response headers without :status", errMutation)
		}
		x.respHeadersExist = true
		x.respHeaders = h
		x.clientHeaders(h, r.HeadersResponse.GetEndOfStream())
		if !f.dec.completeBody || f.dec.bodyMode != pm.ProcessingMode_FULL_DUPLEX_STREAMED {
			// Request data that arrived before is dropped: the router never runs.
			f.dec.buf, f.dec.hasBuf = nil, false
		}
	case *extprocsvc.StreamedImmediateResponse_BodyResponse:
		if !f.localStarted {
			return errSpurious
		}
		x.clientData(r.BodyResponse.GetBody(), r.BodyResponse.GetEndOfStream())
	case *extprocsvc.StreamedImmediateResponse_TrailersResponse:
		if !f.localStarted {
			return errSpurious
		}
		var t hmap
		for _, hv := range r.TrailersResponse.GetHeaders() {
			t = append(t, hkv{strings.ToLower(hv.GetKey()), string(hv.GetRawValue())})
		}
		x.clientTrailers(t)
	default:
		return errSpurious
	}
	return nil
}

// ---- attributes ----

func (f *xfilter) addAttributes(d *xdir, req *extprocsvc.ProcessingRequest) {
	names := f.cfg.requestAttributes
	if !d.decode {
		names = f.cfg.responseAttributes
	}
	if len(names) == 0 || d.attrsSent {
		return
	}
	d.attrsSent = true
	s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, n := range names {
		if v := f.attribute(n); v != nil {
			s.Fields[n] = v
		}
	}
	req.Attributes = map[string]*structpb.Struct{extProcFilterName: s}
}

func (f *xfilter) attribute(name string) *structpb.Value {
	x := f.x
	str := func(s string, ok bool) *structpb.Value {
		if !ok {
			return nil
		}
		return structpb.NewStringValue(s)
	}
	switch name {
	case "xds.route_metadata":
		r := x.currentRoute()
		if r == nil {
			return nil
		}
		// CEL yields the envoy.config.core.v3.Metadata message; ext_proc
		// renders non-scalar values with print(), i.e. the protobuf
		// ShortDebugString text format.
		return structpb.NewStringValue(shortDebugMetadata(r.metadata))
	case "xds.route_name":
		r := x.currentRoute()
		return str(routeName(r), r != nil)
	case "xds.virtual_host_name":
		r := x.currentRoute()
		if r == nil {
			return nil
		}
		return structpb.NewStringValue(r.vhost.name)
	case "xds.cluster_name":
		if x.upCluster != "" {
			return structpb.NewStringValue(x.upCluster)
		}
		if r := x.currentRoute(); r != nil && r.cluster != "" {
			return structpb.NewStringValue(r.cluster)
		}
		return nil
	case "request.path":
		return str(x.reqHeaders.get(":path"))
	case "request.url_path":
		p, ok := x.reqHeaders.get(":path")
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		return str(p, ok)
	case "request.host":
		return str(x.reqHeaders.get(":authority"))
	case "request.scheme":
		return str(x.reqHeaders.get(":scheme"))
	case "request.method":
		return str(x.reqHeaders.get(":method"))
	case "request.id":
		return str(x.reqHeaders.get("x-request-id"))
	case "request.protocol":
		return structpb.NewStringValue(protocolString(x.r))
	case "response.code":
		if s, ok := x.respHeaders.get(":status"); ok {
			if n, err := strconv.Atoi(s); err == nil {
				return structpb.NewNumberValue(float64(n))
			}
		}
		return nil
	}
	return nil
}

func routeName(r *routeConfig) string {
	if r == nil {
		return ""
	}
	return r.name
}
