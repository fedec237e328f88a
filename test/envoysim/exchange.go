package envoysim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// One HTTP request/response pair, driven by a single event loop that runs
// on the handler goroutine. Helper goroutines (client body reader, upstream
// call, gRPC receiver/sender, upstream body writer) only post events.

type evReqData struct {
	b   []byte
	eos bool
}
type evReqTrailers struct{ t hmap }
type evReqErr struct{ err error }
type evUpResp struct{ resp *http.Response }
type evUpData struct {
	b   []byte
	eos bool
}
type evUpTrailers struct{ t hmap }
type evUpConn struct{}
type evUpErr struct {
	err           error
	beforeHeaders bool
}
type evTimer struct {
	kind int
	gen  int
}

const (
	timerRoute = iota
	timerIdle
	timerMsgDecode
	timerMsgEncode
)

type exchange struct {
	s   *Sim
	l   *listenerConfig
	hcm *hcmConfig
	w   http.ResponseWriter
	r   *http.Request
	rc  *http.ResponseController

	ctx    context.Context
	cancel context.CancelFunc
	events chan any
	done   chan struct{}
	start  time.Time

	reqHeaders hmap
	route      *routeConfig
	routeValid bool

	xp *xfilter

	reqDone       bool // client request fully received
	reqBytes      int
	bufferedBytes int // decode-side bytes held for the 413 check

	// router
	routerStarted bool
	routeTimeout  time.Duration // the route's timeout, or the request's x-envoy-upstream-rq-timeout-ms
	upCluster     string
	upBody        *ubq[[]byte]
	upTrailers    *trailerBox
	upCancel      context.CancelFunc
	upRespStarted bool // upstream response headers received
	upDone        bool
	upCancelled   bool // the router reset the upstream request itself

	// encoder side
	respHeadersExist  bool // headers handed to the encoder chain
	clientHeadersSent bool
	respDone          bool
	respHeaders       hmap
	status            int
	flags             []string
	details           string
	localStreaming    bool // StreamedImmediateResponse owns the response

	metadata map[string]*structpb.Struct

	// span is the request's trace span (tracing.go, zipkin.go); nil is
	// Envoy's NullSpan: no tracing block, or client trace context the
	// tracer's extractor rejected.
	span span

	timers   [4]*time.Timer
	timerGen [4]int

	finished bool
	abort    bool
}

func (rl *runningListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := rl.sim
	if s.ctx.Err() != nil {
		panic(http.ErrAbortHandler) // shutting down
	}
	s.wg.Add(1)
	defer s.wg.Done()
	s.count("downstream_rq_total")
	ctx, cancel := context.WithCancel(r.Context())
	x := &exchange{
		s: s, l: rl.cfg, hcm: rl.cfg.hcm, w: w, r: r, rc: http.NewResponseController(w),
		ctx: ctx, cancel: cancel, events: make(chan any, 64), done: make(chan struct{}),
		start: time.Now(), metadata: map[string]*structpb.Struct{},
	}
	if x.run() {
		if x.respDone && x.r.ProtoMajor == 1 {
			// A complete response before the complete request: Envoy
			// flushes it (its "connection: close" went out with the
			// headers) and closes the connection after a delay
			// (delayed_close_timeout, default 1 s) so that the client reads
			// the response before the close. net/http does the same when
			// the handler returns: it finishes the body, half-closes and
			// waits before closing; the read deadline bounds its draining
			// of the unread request like the delay.
			_ = x.rc.SetReadDeadline(time.Now().Add(time.Second))
			return
		}
		// Envoy resets the downstream stream: net/http turns this into an
		// aborted HTTP/1 connection or an HTTP/2 RST_STREAM.
		panic(http.ErrAbortHandler)
	}
}

// post delivers an event to the loop unless the exchange is over.
func (x *exchange) post(ev any) bool {
	select {
	case x.events <- ev:
		return true
	case <-x.done:
		return false
	}
}

func (x *exchange) goTracked(f func()) {
	x.s.wg.Add(1)
	go func() {
		defer x.s.wg.Done()
		f()
	}()
}

func (x *exchange) armTimer(kind int, d time.Duration) {
	x.stopTimer(kind)
	x.timerGen[kind]++
	gen := x.timerGen[kind]
	x.timers[kind] = time.AfterFunc(d, func() {
		select {
		case x.events <- evTimer{kind: kind, gen: gen}:
		case <-x.done:
		}
	})
}

func (x *exchange) stopTimer(kind int) {
	if t := x.timers[kind]; t != nil {
		t.Stop()
		x.timers[kind] = nil
	}
	x.timerGen[kind]++
}

func (x *exchange) touchIdle() {
	if x.hcm.idleTimeout > 0 && !x.finished {
		x.armTimer(timerIdle, x.hcm.idleTimeout)
	}
}

// run drives the exchange; it returns true if the downstream stream must be
// reset.
func (x *exchange) run() (abort bool) {
	defer x.finish()
	_ = x.rc.EnableFullDuplex() // HTTP/1: read the body while writing the response
	x.touchIdle()

	h := hmap{
		{":authority", x.r.Host},
		{":path", x.r.RequestURI},
		{":method", x.r.Method},
		{":scheme", "http"},
	}
	if x.r.ProtoMajor == 2 && x.r.RequestURI == "" {
		h[1].v = x.r.URL.RequestURI()
	}
	h = append(h, fromHTTP(x.r.Header, func(k string) bool { return k == "host" || hopByHop(k) })...)
	if te := x.r.Header.Get("Te"); strings.EqualFold(te, "trailers") {
		h.add("te", "trailers")
	}
	if x.r.ContentLength > 0 && x.r.ProtoMajor == 1 {
		if _, ok := h.get("content-length"); !ok {
			h.add("content-length", strconv.FormatInt(x.r.ContentLength, 10))
		}
	}
	// HCM header processing before the filter chain (§1.5).
	// use_remote_address is false (not modelled otherwise): Envoy keeps a
	// client's x-forwarded-proto and sets it only when absent
	// (ConnectionManagerUtility::mutateRequestHeaders).
	if _, ok := h.get("x-forwarded-proto"); !ok {
		h.set("x-forwarded-proto", "http")
	}
	// ConnectionManagerUtility::mutateRequestHeaders: x-envoy-internal is
	// always dropped, and a request is internal only with use_remote_address
	// (or an original-IP detection extension) from an internal address. With
	// use_remote_address false, the only mode modelled, every request is
	// external, so cleanInternalHeaders strips the x-envoy-* headers the
	// router would obey and the route config's internal_only_headers before
	// any filter runs.
	h.del("x-envoy-internal")
	for _, k := range internalHeaders {
		h.del(k)
	}
	for _, k := range x.hcm.internalOnly {
		h.del(k)
	}
	if x.hcm.generateRequestID {
		if _, ok := h.get("x-request-id"); !ok {
			h.set("x-request-id", newUUID())
		}
	}
	if tc := x.hcm.tracing; tc != nil {
		// ActiveStream::decodeHeaders: mutateTracingRequestHeader (the
		// sampling decision, marked in x-request-id), then traceRequest
		// starts the request span, all before the filter chain.
		traced := tc.traceDecision(&h)
		x.span = tc.startSpan(h, traced, x.s.minor)
	}
	x.reqHeaders = h
	// HTTP/1: net/http gives NoBody without a body (no content-length/chunked,
	// or content-length: 0: Envoy's codec then raises decodeHeaders with
	// end_stream). HTTP/2: HEADERS with END_STREAM still yields a non-nil
	// Body with ContentLength 0 (an open stream without content-length has
	// -1), so ContentLength 0 is taken as END_STREAM on the headers.
	noBody := x.r.Body == nil || x.r.Body == http.NoBody || (x.r.ProtoMajor == 2 && x.r.ContentLength == 0)
	if noBody {
		x.reqDone = true
	} else {
		x.goTracked(x.readRequestBody)
	}
	x.s.logf("%s %s (listener %s)", x.r.Method, x.r.RequestURI, x.l.name)

	x.selectRoute()
	if x.hcm.extProc != nil {
		x.xp = newXFilter(x)
	}
	x.decodeHeaders(noBody)

	for !x.finished {
		select {
		case ev := <-x.events:
			x.handle(ev)
		case <-x.ctx.Done():
			// downstream went away
			x.s.count("downstream_rq_rx_reset")
			x.flag("DC")
			x.finished = true
			x.abort = true
		}
	}
	return x.abort
}

func (x *exchange) flag(f string) {
	for _, g := range x.flags {
		if g == f {
			return
		}
	}
	x.flags = append(x.flags, f)
}

func (x *exchange) readRequestBody() {
	buf := make([]byte, 32*1024)
	for {
		n, err := x.r.Body.Read(buf)
		var data []byte
		if n > 0 {
			data = append([]byte(nil), buf[:n]...)
		}
		switch {
		case err == io.EOF:
			tr := fromHTTP(x.r.Trailer, nil)
			tr = nonEmpty(tr)
			if len(tr) > 0 {
				if data != nil && !x.post(evReqData{b: data}) {
					return
				}
				x.post(evReqTrailers{t: tr})
				return
			}
			x.post(evReqData{b: data, eos: true})
			return
		case err != nil:
			if data != nil && !x.post(evReqData{b: data}) {
				return
			}
			x.post(evReqErr{err: err})
			return
		default:
			if n > 0 && !x.post(evReqData{b: data}) {
				return
			}
		}
	}
}

func nonEmpty(h hmap) hmap {
	var out hmap
	for _, e := range h {
		if e.v != "" || e.k != "" {
			out = append(out, e)
		}
	}
	return out
}

func (x *exchange) handle(ev any) {
	switch e := ev.(type) {
	case evReqData:
		x.touchIdle()
		x.reqBytes += len(e.b)
		if e.eos {
			x.reqDone = true
		}
		x.decodeData(e.b, e.eos)
	case evReqTrailers:
		x.touchIdle()
		x.reqDone = true
		x.decodeTrailers(e.t)
	case evReqErr:
		x.s.logf("client request body: %v", e.err)
		x.flag("DC")
		x.finished, x.abort = true, true
	case evUpResp:
		x.touchIdle()
		x.onUpstreamResponse(e.resp)
	case evUpData:
		x.touchIdle()
		if e.eos {
			x.upDone = true
			x.stopTimer(timerRoute)
		}
		x.encodeData(e.b, e.eos)
	case evUpTrailers:
		x.touchIdle()
		x.upDone = true
		x.stopTimer(timerRoute)
		x.encodeTrailers(e.t)
	case evUpErr:
		x.onUpstreamReset(e.err)
	case evUpConn:
		// UpstreamRequest::onPoolReady injected the request span's context
		// into the downstream request headers themselves: from here on the
		// access log's %REQ(traceparent)% (%REQ(x-b3-spanid)%...) is Envoy's
		// value.
		if x.span != nil {
			for _, e := range x.span.injected() {
				x.reqHeaders.set(e.k, e.v)
			}
		}
	case evTimer:
		if e.gen != x.timerGen[e.kind] {
			return
		}
		x.timers[e.kind] = nil
		x.onTimer(e.kind)
	case evGrpcMsg:
		if x.xp != nil {
			x.touchIdle()
			x.xp.onMessage(e)
		}
	case evGrpcEnd:
		if x.xp != nil {
			x.xp.onStreamEnd(e)
		}
	}
}

func (x *exchange) onTimer(kind int) {
	switch kind {
	case timerRoute:
		x.s.count("upstream_rq_timeout")
		x.flag("UT")
		x.cancelUpstream()
		x.localReply(504, "upstream request timeout", "response_timeout", nil, false)
	case timerIdle:
		x.s.count("downstream_rq_idle_timeout")
		x.flag("SI")
		x.cancelUpstream()
		if x.reqDone {
			x.localReply(504, "stream timeout", "stream_idle_timeout", nil, false)
		} else {
			x.localReply(408, "stream timeout", "stream_idle_timeout", nil, false)
		}
	case timerMsgDecode, timerMsgEncode:
		if x.xp != nil {
			x.xp.onMessageTimeout(kind == timerMsgDecode)
		}
	}
}

// ---- decoder chain: [ext_proc] → router ----

func (x *exchange) decodeHeaders(eos bool) {
	if x.xp != nil {
		x.xp.decodeHeaders(eos)
		return
	}
	x.routerHeaders(eos)
}

func (x *exchange) decodeData(b []byte, eos bool) {
	if x.xp != nil {
		x.xp.dec.onData(b, eos)
		return
	}
	x.routerData(b, eos)
}

func (x *exchange) decodeTrailers(t hmap) {
	if x.xp != nil {
		x.xp.dec.onTrailers(t)
		return
	}
	x.routerTrailers(t)
}

// ---- routing ----

func (x *exchange) selectRoute() {
	x.routeValid = true
	x.route = nil
	host, _ := x.reqHeaders.get(":authority")
	path, _ := x.reqHeaders.get(":path")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	hostOnly := strings.ToLower(host)
	var vh *vhostConfig
	for _, v := range x.hcm.vhosts {
		for _, d := range v.domains {
			if d != "*" && (strings.EqualFold(d, host) || strings.EqualFold(d, hostOnly)) {
				vh = v
				break
			}
		}
		if vh != nil {
			break
		}
	}
	if vh == nil {
		if h, _, ok := strings.Cut(hostOnly, ":"); ok {
			for _, v := range x.hcm.vhosts {
				for _, d := range v.domains {
					if strings.EqualFold(d, h) {
						vh = v
					}
				}
			}
		}
	}
	if vh == nil {
		for _, v := range x.hcm.vhosts {
			for _, d := range v.domains {
				if d == "*" && vh == nil {
					vh = v
				}
			}
		}
	}
	if vh == nil {
		return
	}
	for _, r := range vh.routes {
		if r.hasPath && path == r.path || !r.hasPath && strings.HasPrefix(path, r.prefix) {
			x.route = r
			return
		}
	}
}

func (x *exchange) currentRoute() *routeConfig {
	if !x.routeValid {
		x.selectRoute()
	}
	return x.route
}

// clearRouteCache makes the next route lookup re-run matching.
func (x *exchange) clearRouteCache() { x.routeValid = false }

// ---- router ----

func (x *exchange) routerHeaders(eos bool) {
	if x.finished || x.routerStarted || x.respHeadersExist {
		return
	}
	x.routerStarted = true
	r := x.currentRoute()
	if r == nil {
		x.flag("NR")
		x.localReply(404, "", "route_not_found", nil, false)
		return
	}
	cluster := r.cluster
	if r.clusterHeader != "" {
		cluster, _ = x.reqHeaders.get(r.clusterHeader)
	}
	cc := x.s.cfg.clusters[cluster]
	if cc == nil {
		x.flag("NC")
		x.localReply(r.notFoundCode, "", "cluster_not_found", nil, false)
		return
	}
	x.upCluster = cluster
	method, _ := x.reqHeaders.get(":method")
	path, _ := x.reqHeaders.get(":path")
	authority, _ := x.reqHeaders.get(":authority")
	if r.autoHostRewrite && cc.typ != 0 && cc.host != "" { // LOGICAL_DNS / STRICT_DNS carry a hostname
		authority = cc.host
		x.reqHeaders.set(":authority", authority)
	}
	u, err := url.ParseRequestURI(path)
	if err != nil {
		x.localReply(400, "", "invalid_path", nil, false)
		return
	}
	u.Scheme, u.Host = "http", authority
	ctx, cancel := context.WithCancel(x.s.ctx)
	x.upCancel = cancel
	req := (&http.Request{Method: method, URL: u, Host: authority, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}).WithContext(ctx)
	// FilterUtility::finalTimeout: the router obeys a request's
	// x-envoy-upstream-rq-timeout-ms (which the HCM strips from external
	// requests) and removes it before forwarding.
	x.routeTimeout = r.timeout
	if v, ok := x.reqHeaders.get("x-envoy-upstream-rq-timeout-ms"); ok {
		if ms, err := strconv.ParseUint(v, 10, 32); err == nil {
			x.routeTimeout = time.Duration(ms) * time.Millisecond
		}
		x.reqHeaders.del("x-envoy-upstream-rq-timeout-ms")
	}
	x.reqHeaders.toHTTP(req.Header)
	for _, k := range r.removeHeaders {
		// Router::finalizeRequestHeaders applies request_headers_to_remove
		// to the upstream request only: filters and routing saw the header.
		req.Header.Del(k)
	}
	if x.span != nil {
		// UpstreamRequest::onPoolReady: without an upstream span the active
		// (request) span's Span::injectContext, after
		// finalizeRequestHeaders: each key it sets replaces the client's
		// value, even if the route removed the header (OpenTelemetry:
		// traceparent and tracestate, the tracestate even when empty;
		// Zipkin: x-b3-traceid, x-b3-spanid, x-b3-parentspanid when the span
		// has a parent, x-b3-sampled). Other trace headers (b3, x-b3-flags,
		// a traceparent under Zipkin) pass through untouched.
		for _, e := range x.span.injected() {
			req.Header[http.CanonicalHeaderKey(e.k)] = []string{e.v}
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(httptrace.GotConnInfo) { x.post(evUpConn{}) },
		}))
	}
	if x.routeTimeout > 0 && !x.hcm.suppressEnvoy {
		req.Header.Set("X-Envoy-Expected-Rq-Timeout-Ms", strconv.FormatInt(x.routeTimeout.Milliseconds(), 10))
	}
	req.Header.Del("Content-Length")
	if eos {
		req.Body = http.NoBody
		req.ContentLength = 0
	} else {
		req.ContentLength = -1
		if v, ok := x.reqHeaders.get("content-length"); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				req.ContentLength = n
			}
		}
		pr, pw := io.Pipe()
		req.Body = pr
		if req.ContentLength == -1 {
			// Trailers are copied into req.Trailer by the goroutine that
			// reads the body, when it reaches EOF (no data race with the
			// transport, which reads the map on that goroutine).
			req.Trailer = http.Header{}
			x.upTrailers = &trailerBox{}
			req.Body = &trailerReader{r: pr, box: x.upTrailers, dst: req.Trailer}
		}
		q := newUBQ[[]byte]()
		x.upBody = q
		x.goTracked(func() {
			for {
				items, ok := q.take(ctx.Done())
				for _, b := range items {
					if _, err := pw.Write(b); err != nil {
						return
					}
				}
				if !ok {
					if ctx.Err() != nil {
						pw.CloseWithError(ctx.Err())
					} else {
						pw.Close()
					}
					return
				}
			}
		})
	}
	if eos {
		x.startRouteTimer()
	}
	t := x.s.transports[cluster]
	x.s.count("upstream_rq_total")
	x.s.logf("router: %s %s → cluster %s (%s)", method, path, cluster, cc.dialAddr())
	started := time.Now()
	x.goTracked(func() { x.callUpstream(t, req, started) })
}

func (x *exchange) startRouteTimer() {
	if x.route != nil && x.routeTimeout > 0 && x.routerStarted && !x.finished {
		x.armTimer(timerRoute, x.routeTimeout)
	}
}

func (x *exchange) routerData(b []byte, eos bool) {
	if x.finished || x.upBody == nil {
		return
	}
	if len(b) > 0 {
		x.upBody.push(b)
	}
	if eos {
		x.upBody.close()
		x.startRouteTimer()
	}
}

func (x *exchange) routerTrailers(t hmap) {
	if x.finished || x.upBody == nil {
		return
	}
	if x.upTrailers != nil {
		x.upTrailers.set(t)
	}
	x.upBody.close()
	x.startRouteTimer()
}

func (x *exchange) callUpstream(t http.RoundTripper, req *http.Request, started time.Time) {
	resp, err := t.RoundTrip(req)
	if err != nil {
		x.post(evUpErr{err: err, beforeHeaders: true})
		return
	}
	defer resp.Body.Close()
	if !x.hcm.suppressEnvoy {
		resp.Header.Set("X-Envoy-Upstream-Service-Time", strconv.FormatInt(time.Since(started).Milliseconds(), 10))
	}
	if !x.post(evUpResp{resp: resp}) {
		return
	}
	if resp.Body == http.NoBody || (resp.ContentLength == 0 && len(resp.Trailer) == 0) {
		return
	}
	buf := make([]byte, 32*1024)
	for {
		n, err := resp.Body.Read(buf)
		var data []byte
		if n > 0 {
			data = append([]byte(nil), buf[:n]...)
		}
		switch {
		case err == io.EOF:
			tr := fromHTTP(resp.Trailer, nil)
			if len(tr) > 0 {
				if data != nil && !x.post(evUpData{b: data}) {
					return
				}
				x.post(evUpTrailers{t: tr})
				return
			}
			x.post(evUpData{b: data, eos: true})
			return
		case err != nil:
			if data != nil && !x.post(evUpData{b: data}) {
				return
			}
			x.post(evUpErr{err: err})
			return
		default:
			if n > 0 && !x.post(evUpData{b: data}) {
				return
			}
		}
	}
}

func (x *exchange) cancelUpstream() {
	x.stopTimer(timerRoute)
	x.upCancelled = true
	if x.upCancel != nil {
		x.upCancel()
	}
	if x.upBody != nil {
		x.upBody.close()
	}
}

func (x *exchange) onUpstreamResponse(resp *http.Response) {
	if x.finished || x.respHeadersExist {
		return
	}
	x.upRespStarted = true
	x.details = "via_upstream" // the router's ResponseCodeDetails::ViaUpstream
	h := hmap{{":status", strconv.Itoa(resp.StatusCode)}}
	h = append(h, fromHTTP(resp.Header, hopByHop)...)
	eos := resp.Body == http.NoBody || (resp.ContentLength == 0 && len(resp.Trailer) == 0)
	if eos {
		x.upDone = true
		x.stopTimer(timerRoute)
	}
	x.encodeHeaders(h, eos)
}

// onUpstreamReset models Envoy's router onUpstreamReset + sendLocalReply
// (§4.2).
func (x *exchange) onUpstreamReset(err error) {
	if x.finished || x.upCancelled {
		// The router reset the upstream itself (route timeout, a local
		// reply): Envoy gets no reset callback for its own reset.
		return
	}
	x.s.count("upstream_rq_reset")
	x.cancelUpstream()
	if !x.upRespStarted {
		x.flag("UF")
		x.s.logf("upstream connect error or disconnect/reset before headers: %v", err)
		x.localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: "+resetReason(err),
			"upstream_reset_before_response_started{"+replaceAllEmptySpace(resetReason(err))+"}", nil, false)
		return
	}
	x.flag("UR")
	x.s.logf("upstream reset after response started: %v", err)
	// Router::onUpstreamReset builds the same body either way; only the
	// details differ.
	x.localReply(503, "upstream connect error or disconnect/reset before headers. reset reason: "+resetReason(err),
		"upstream_reset_after_response_started{"+replaceAllEmptySpace(resetReason(err))+"}", nil, false)
}

func resetReason(err error) string {
	if err == nil {
		return "remote reset"
	}
	if strings.Contains(err.Error(), "connection refused") {
		return "remote connection failure, transport failure reason: delayed connect error: Connection refused"
	}
	return "connection termination"
}

// ---- encoder chain: router/local reply → [ext_proc] → client ----

func (x *exchange) encodeHeaders(h hmap, eos bool) {
	x.respHeadersExist = true
	x.respHeaders = h
	if x.xp != nil && !x.localStreaming {
		x.xp.encodeHeaders(h, eos)
		return
	}
	x.clientHeaders(h, eos)
}

func (x *exchange) encodeData(b []byte, eos bool) {
	if x.finished {
		return
	}
	if x.xp != nil && !x.localStreaming {
		x.xp.enc.onData(b, eos)
		return
	}
	x.clientData(b, eos)
}

func (x *exchange) encodeTrailers(t hmap) {
	if x.finished {
		return
	}
	if x.xp != nil && !x.localStreaming {
		x.xp.enc.onTrailers(t)
		return
	}
	x.clientTrailers(t)
}

// localReply is Envoy's DownstreamFilterManager::sendLocalReply (§4.2):
// through the encoder chain if no response headers exist yet, straight to
// the client if headers exist but none were sent, a reset otherwise.
// bypass forces the direct path (used when ext_proc itself replies).
func (x *exchange) localReply(status int, body, details string, mutate func(*hmap), bypass bool) {
	if x.finished {
		return
	}
	x.details = details
	x.cancelUpstream()
	if x.clientHeadersSent {
		x.s.logf("local reply %d after response headers were sent: resetting the stream", status)
		x.finished, x.abort = true, true
		return
	}
	// Http::Utility::prepareLocalReply: modify_headers first, then the
	// HCM's local_reply_config rewrite (status, body, content type), then
	// content-length from the body (overriding whatever was set) and the
	// format's content type unless a content-type was set and the body was
	// not rewritten; an empty body drops both.
	h := hmap{{":status", strconv.Itoa(status)}}
	if mutate != nil {
		mutate(&h)
	}
	orig := body
	rc := &replyCtx{status: status, body: body, details: details, flags: x.flags, metadata: x.metadata, req: x.reqHeaders}
	status, body, ct := x.hcm.localReply.rewrite(rc)
	h.set(":status", strconv.Itoa(status))
	for _, kv := range rc.add {
		h.set(kv[0], kv[1])
	}
	if body != "" {
		h.set("content-length", strconv.Itoa(len(body)))
		if _, ok := h.get("content-type"); !ok || body != orig {
			h.set("content-type", ct)
		}
	} else {
		h.del("content-length")
		h.del("content-type")
	}
	if !bypass && !x.respHeadersExist && x.xp != nil && x.s.skipLocalReply && !x.xp.complete {
		// Envoy 1.34–1.36 (SkipExtProcOnLocalReply): ext_proc's
		// onLocalReply marks processing complete; the reply reaches the
		// client without a response message to the processor, which only
		// sees its stream end.
		x.s.logf("local reply %d skips ext_proc (%s)", status, SkipExtProcOnLocalReply)
		x.s.count("local_reply_skipped_ext_proc")
		bypass = true
	}
	if x.respHeadersExist || bypass {
		if x.xp != nil {
			x.xp.abandon()
		}
		x.respHeadersExist = true
		x.respHeaders = h
		x.clientHeaders(h, body == "")
		if body != "" {
			x.clientData([]byte(body), true)
		}
		return
	}
	x.encodeHeaders(h, body == "")
	if body != "" && !x.finished {
		x.encodeData([]byte(body), true)
	}
}

// ---- client writer ----

func (x *exchange) clientHeaders(h hmap, eos bool) {
	if x.finished || x.clientHeadersSent {
		return
	}
	x.clientHeadersSent = true
	st, _ := h.get(":status")
	code, err := strconv.Atoi(st)
	if err != nil || code < 100 || code > 999 {
		code = 500
	}
	x.status = code
	x.respHeaders = h
	dst := x.w.Header()
	h.toHTTP(dst)
	if _, ok := h.get("content-type"); !ok {
		dst["Content-Type"] = nil // no sniffing: Envoy adds nothing
	}
	if !x.reqDone && x.r.ProtoMajor == 1 {
		// ConnectionManagerImpl::ActiveStream::encodeHeaders: a response
		// that starts before the request is complete drains an HTTP/1
		// connection and says so with "connection: close", so the client
		// does not reuse a connection Envoy is about to close.
		dst.Set("Connection", "close")
		x.s.count("downstream_rq_response_before_rq_complete")
	}
	x.w.WriteHeader(code)
	if eos {
		x.respComplete()
		return
	}
	_ = x.rc.Flush()
}

func (x *exchange) clientData(b []byte, eos bool) {
	if x.finished {
		return
	}
	if !x.clientHeadersSent {
		x.clientHeaders(hmap{{":status", "200"}}, false)
	}
	if len(b) > 0 {
		if _, err := x.w.Write(b); err != nil {
			x.finished, x.abort = true, true
			return
		}
		if err := x.rc.Flush(); err != nil {
			x.finished, x.abort = true, true
			return
		}
	}
	if eos {
		x.respComplete()
	}
}

func (x *exchange) clientTrailers(t hmap) {
	if x.finished {
		return
	}
	for _, e := range t {
		if strings.HasPrefix(e.k, ":") {
			continue
		}
		x.w.Header().Add(http.TrailerPrefix+e.k, e.v)
	}
	x.respComplete()
}

func (x *exchange) respComplete() {
	x.s.logf("response complete (status %d, request complete %v)", x.status, x.reqDone)
	x.respDone = true
	x.finished = true
	if !x.reqDone {
		// Envoy resets a stream whose response ended before the request.
		x.abort = true
	}
}

// finish tears the exchange down and writes the access log.
func (x *exchange) finish() {
	for k := range x.timers {
		x.stopTimer(k)
	}
	if x.xp != nil {
		x.xp.destroy()
	}
	x.cancelUpstream()
	close(x.done)
	x.cancel()
	if x.abort && x.clientHeadersSent && !x.respDone {
		x.s.count("downstream_rq_tx_reset")
	}
	rec := &logRecord{
		start: x.start, duration: time.Since(x.start), reqHeaders: x.reqHeaders, respHeaders: x.respHeaders,
		status: x.status, flags: x.flags, cluster: x.upCluster, details: x.details, metadata: x.metadata,
		protocol: protocolString(x.r),
	}
	if x.span != nil {
		rec.traceID = x.span.traceID()
	}
	for _, f := range x.hcm.accessLogs {
		line, obj, err := f.line(rec)
		if err != nil {
			x.s.logf("access log: %v", err)
			continue
		}
		x.s.writeLog(line, obj)
	}
}

// protocolString is Envoy's Http::Utility::getProtocolString.
func protocolString(r *http.Request) string {
	if r.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return r.Proto
}

func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("%d", time.Now().UnixNano())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var errNoStream = errors.New("no ext_proc stream")

// internalHeaders are the request headers ConnectionManagerUtility::
// cleanInternalHeaders removes from every external request, on every
// supported Envoy version: the ones that would let a client steer the
// router (retries, timeouts, stats names, tracing).
var internalHeaders = []string{
	"x-envoy-retriable-status-codes", "x-envoy-retriable-header-names", "x-envoy-retry-on",
	"x-envoy-retry-grpc-on", "x-envoy-max-retries", "x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response", "x-envoy-expected-rq-timeout-ms",
	"x-envoy-force-trace", "x-envoy-ip-tags", "x-envoy-original-url", "x-envoy-hedge-on-per-try-timeout",
}

// trailerBox hands request trailers from the loop to the body reader.
type trailerBox struct {
	mu sync.Mutex
	t  hmap
}

func (b *trailerBox) set(t hmap) {
	b.mu.Lock()
	b.t = t
	b.mu.Unlock()
}

type trailerReader struct {
	r   io.ReadCloser
	box *trailerBox
	dst http.Header
}

func (t *trailerReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err == io.EOF {
		t.box.mu.Lock()
		for _, e := range t.box.t {
			t.dst.Add(e.k, e.v)
		}
		t.box.mu.Unlock()
	}
	return n, err
}

func (t *trailerReader) Close() error { return t.r.Close() }
