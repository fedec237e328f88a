package processor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/attribute"

	"github.com/llmux/llmux/processor/egress"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// Failover before the first byte (issue 8, splice mode).
//
// When the deployment Envoy called answers with a retriable failure (429,
// 5xx, overloaded, Envoy's own 503 for a refused or reset connection on
// Envoy 1.37+), its response headers reply is still held (llmux holds every
// error status until the body is decoded) and no byte has reached the
// client. After Envoy's end of that body, llmux calls the next deployment
// itself through Envoy's egress listener (processor/egress,
// server.egress_address), with the client's request translated for that
// deployment, and answers the held headers with that deployment's status
// and content type and its body as streamed_response replies. Envoy allows
// each step (docs/envoy-facts.md): body replies after its own end of
// stream (fact 1), no message timer while the headers are held (fact 3),
// :status ≥ 200 set by the headers reply (fact 4).
//
// A stream whose 200 went out at once is watched the same way until its
// first content: its output (a role chunk) is held back, and an in-band
// error before content fails over to a deployment that answers with an
// event stream (watchBeforeContent).
//
// Every failed try is reported to routing's health (processor/route), and
// the next deployment is the next in the order routing chose. A too long
// input (context_length_exceeded) or a content-policy refusal
// (content_filtered) moves instead to the group's configured fallback
// groups (model_groups[].failover), whose own routing picks the
// deployment. Bounds, from the requested group's failover settings: at
// most max_attempts tries per request, the first included, and budget
// from the first forward. When every try failed, the client gets the most
// informative error of all of them. docs/recovery.md.

// failoverState is a handler's failover bookkeeping.
type failoverState struct {
	body    []byte                                         // the client's request body, kept for another deployment
	limits  config.Failover                                // the requested group's bounds and fallbacks
	tried   [config.MaxFailoverAttempts]*config.Deployment // deployments tried, the first included
	ntried  int
	groups  [config.MaxFailoverAttempts]*config.Group // groups entered, the requested one first
	ngroups int
	cause   translate.Code // the first deployment's failure, when failover ran
	firstAt time.Time      // the first forward: the budget runs from it

	// A stream whose 200 went out: its output is held until the first
	// content, so that an in-band error before it can still fail over.
	inband  inbandState
	pending []byte // output held back meanwhile (a role chunk)
}

// inbandState is where a stream is in the watch for an in-band error
// before content.
type inbandState uint8

const (
	inbandUnknown  inbandState = iota // not decided yet
	inbandWatching                    // holding output until content
	inbandDone                        // content went out, or no failover possible
)

// watchBeforeContent is onResponseBody's hook for streams whose headers
// went out: it holds the decoder's output (*out) until the first content,
// and fails over on an in-band error before it (done is true:
// onResponseBody returns err). Otherwise *out is what to send now.
func (h *handler) watchBeforeContent(out *[]byte, eos bool) (done bool, err error) {
	if h.fo.inband == inbandDone || h.heldHeaders != nil && !h.own.active {
		return false, nil
	}
	if h.fo.inband == inbandUnknown {
		h.fo.inband = inbandDone
		if h.fo.body == nil || !h.treq.Stream || h.dec.ContentType() != "text/event-stream" {
			return false, nil
		}
		h.fo.inband = inbandWatching
	}
	res := h.dec.Result()
	if res.Err != nil && h.failsOver(res.Err) && !res.FirstContent && !h.broken {
		h.fo.pending = h.fo.pending[:0] // the role chunk and the error event never go out
		if h.heldHeaders != nil {
			return true, h.failover() // owned mode: the client's headers are held too (owned.go)
		}
		return true, h.failoverInBand()
	}
	if res.FirstContent || res.Completed || res.Err != nil || eos {
		h.fo.inband = inbandDone
		h.dropFailoverBody() // no failover after content
		if len(h.fo.pending) > 0 {
			*out = append(h.fo.pending, *out...)
			h.fo.pending = nil
		}
		return false, nil
	}
	h.fo.pending = append(h.fo.pending, *out...)
	*out = (*out)[:0]
	return false, nil
}

// failoverInBand replaces a stream that failed in band before any content:
// the client's 200 and event-stream headers are out, so only a fallback
// that answers with an event stream can take its place; it streams on as if
// it were the first. When none does, the client gets the most informative
// error as an error event.
func (h *handler) failoverInBand() error { return h.runFailover(true) }

// endStreamWith ends a stream whose headers went out with e as an error
// event.
func (h *handler) endStreamWith(e *translate.Error, retry translate.RetryHint) error {
	h.retry, h.errCode, h.masked = retry, string(e.Code), e
	h.ph = phaseDone
	h.complete()
	return h.sendLast(appendEventError(h.buf[:0], e))
}

// failoverMetadata adds, when failover ran, the deployments tried
// ("attempts"), the first one ("failed_deployment") and its failure
// ("failover_cause") to the final metadata.
func (h *handler) failoverMetadata(v *mdValues) {
	if h.fo.cause == "" {
		return
	}
	v.num("attempts", float64(h.fo.ntried))
	v.str("failed_deployment", h.fo.tried[0].Name)
	v.str("failover_cause", string(h.fo.cause))
	if h.fo.ngroups > 1 && h.group != h.fo.groups[0] {
		v.str("requested_model_group", h.fo.groups[0].Name)
	}
}

// keepForFailover keeps the client's body when a fallback could need it:
// failover is on (the egress listener is set, max_attempts > 1) and the
// group has another deployment or a fallback group. The body stays counted
// in server.max_buffered_bytes (budget.go) while it is kept.
func (h *handler) keepForFailover(body []byte) {
	g := h.group
	if !h.cfg.Server().EgressAddress.Enabled() || g == nil || g.Failover.MaxAttempts < 2 ||
		len(g.Deployments) < 2 && len(g.Failover.ContextWindow) == 0 && len(g.Failover.ContentPolicy) == 0 {
		return
	}
	h.fo.body, h.fo.limits = body, g.Failover
	h.fo.tried[0], h.fo.ntried = h.dep, 1
	h.fo.groups[0], h.fo.ngroups = g, 1
}

// dropFailoverBody lets go of the kept body once no failover can need it,
// and gives its bytes back to the server's budget unless repair still
// keeps the body (ownedrepair.go).
func (h *handler) dropFailoverBody() {
	if h.fo.body != nil {
		h.fo.body = nil
		if h.rp.body == nil {
			h.releaseBody()
		}
	}
}

// shouldFailover reports, at the end of a held error response, whether to
// try another deployment: nothing was sent to the client yet, the error is
// one another deployment may not have, and failover is possible.
func (h *handler) shouldFailover() bool {
	if h.fo.body == nil || h.heldHeaders == nil || h.broken || h.masked != nil || h.dep == nil {
		return false
	}
	e := h.dec.Result().Err
	return e != nil && h.failsOver(e)
}

// failsOver reports whether a try that failed with e is worth another:
// another deployment may not have the problem (a retryable class), or a
// configured fallback group takes it.
func (h *handler) failsOver(e *translate.Error) bool {
	return e.Code.Retryable() || h.fallbackGroup(e) != nil
}

// fallbackKind is the configured fallback that takes an error of class
// c: "context_window", "content_policy", or "" for none.
func fallbackKind(c translate.Code) string {
	switch c {
	case translate.CodeContextLengthExceeded:
		return "context_window"
	case translate.CodeContentFiltered:
		return "content_policy"
	}
	return ""
}

// fallbackGroup returns the group a try that failed with e moves to: the
// first of the current group's context-window or content-policy fallbacks
// that the request has not entered yet and the Envoy route allows; nil
// when there is none (cycles end here: no group is entered twice).
func (h *handler) fallbackGroup(e *translate.Error) *config.Group {
	if e == nil || h.group == nil {
		return nil
	}
	var list []*config.Group
	switch fallbackKind(e.Code) {
	case "context_window":
		list = h.group.Failover.ContextWindow
	case "content_policy":
		list = h.group.Failover.ContentPolicy
	default:
		return nil
	}
	for _, g := range list {
		if !h.enteredGroup(g) && h.routeMeta.allows(g.Name) {
			return g
		}
	}
	return nil
}

func (h *handler) enteredGroup(g *config.Group) bool {
	for _, e := range h.fo.groups[:h.fo.ngroups] {
		if e == g {
			return true
		}
	}
	return false
}

// failover answers the client with the next deployments' response; it runs
// after Envoy's end of the failed response's body, its headers still held.
func (h *handler) failover() error { return h.runFailover(false) }

// runFailover tries the next deployments until one answers, within the
// attempt count and the budget. inBand: the client's headers went out
// already (a stream that failed in band before content).
func (h *handler) runFailover(inBand bool) error {
	h.stopWatchdog()           // egress bounds the fallback
	last := h.dec.Result().Err // the failed try's error
	best, bestRetry := last, h.retry
	if h.fo.cause == "" {
		h.fo.cause = last.Code
		h.fo.firstAt = h.forwardedAt
	}
	giveUp := h.answerError
	if inBand {
		giveUp = h.endStreamWith
	}
	c, err := h.s.egressClient(h.cfg.Server())
	if err != nil {
		h.s.opts.Logger.Error("llmux: failover: egress client", "request_id", h.requestID, "error", err)
		return giveUp(best, bestRetry)
	}
	deadline := h.fo.firstAt.Add(h.fo.limits.Budget)
	for h.fo.ntried < h.fo.limits.MaxAttempts && h.s.opts.Now().Before(deadline) {
		failed := h.depName()
		dep, tr := h.nextTry(last)
		if dep == nil {
			break
		}
		h.fo.tried[h.fo.ntried] = dep
		h.fo.ntried++
		h.s.opts.Logger.Info("llmux: failover", "request_id", h.requestID, "failed", failed, "error_code", string(last.Code),
			"in_band", inBand, "next", dep.Name, "model_group", h.group.Name, "attempt", h.fo.ntried)
		h.traceEvent("llmux.failover", attribute.String("llmux.failed_deployment", failed), attribute.String("error.type", string(last.Code)),
			attribute.String("llmux.next_deployment", dep.Name), attribute.String("llmux.model_group", h.group.Name),
			attribute.Bool("llmux.in_band", inBand), attribute.Int("llmux.attempt", h.fo.ntried))
		ctx, cancel := context.WithDeadline(h.ctx, deadline)
		resp, treq, err := h.callDeployment(ctx, c, dep, tr, h.fo.body)
		if err != nil {
			cancel()
			if h.ctx.Err() != nil {
				return h.ctx.Err() // the client went away
			}
			h.s.opts.Logger.Warn("llmux: failover call failed", "request_id", h.requestID, "deployment", dep.Name, "error", err)
			h.errCode = string(translate.CodeUpstreamUnavailable) // for the try's report
			last = &translate.Error{Code: translate.CodeUpstreamUnavailable, Message: "The provider could not be reached."}
			continue
		}
		h.switchTo(dep, tr, treq, resp)
		if inBand {
			h.heldHeaders = nil // the client's headers went out with the first response
		}
		if inBand && (resp.Status >= 300 || h.dec.ContentType() != "text/event-stream") ||
			!inBand && (resp.Status == http.StatusTooManyRequests || resp.Status >= 400) {
			// Decode the whole (bounded) answer to judge it.
			out, e := h.decodeWhole(resp.Body)
			resp.Body.Close()
			cancel()
			if !inBand && (e == nil || !h.failsOver(e)) {
				if e != nil {
					h.errCode = string(e.Code)
				}
				return h.answerHeld(out)
			}
			if e == nil {
				e = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "The provider did not answer with an event stream."}
			}
			last = e
			if moreInformative(e, best) {
				best, bestRetry = e, h.retry
			}
			continue
		}
		if inBand {
			h.fo.inband = inbandWatching // its own in-band error before content fails over too
		}
		err = h.streamFallback(resp.Body)
		resp.Body.Close()
		cancel()
		return err
	}
	h.endTry()
	return giveUp(best, bestRetry)
}

// nextTry ends the failed try and chooses the next: the first deployment
// of a configured fallback group when last is the kind of refusal one
// takes, else the next deployment of the current group when last is
// retryable.
func (h *handler) nextTry(last *translate.Error) (*config.Deployment, translate.Translator) {
	h.endTry()
	if g := h.fallbackGroup(last); g != nil {
		h.s.opts.Metrics.FailoverTry(h.ctx, h.fo.groups[0].Name, string(last.Code), fallbackKind(last.Code))
		return h.enterGroup(g)
	}
	if !last.Code.Retryable() {
		return nil, nil // every deployment of the group would refuse it alike
	}
	dep, tr := h.nextDeployment()
	if dep != nil {
		h.s.opts.Metrics.FailoverTry(h.ctx, h.fo.groups[0].Name, string(last.Code), "deployment")
	}
	return dep, tr
}

// enterGroup moves the request to fallback group g: g's routing orders its
// deployments and the first not tried yet takes the request.
func (h *handler) enterGroup(g *config.Group) (*config.Deployment, translate.Translator) {
	h.fo.groups[h.fo.ngroups] = g // entered, even if it has nothing to offer now
	h.fo.ngroups++
	prev := h.group
	h.group = g
	dep, tr := h.route(g, h.treq.Stream, h.fo.body)
	if dep == nil {
		h.group = prev // the group did not serve
		return nil, nil
	}
	if h.triedDeployment(dep) {
		return h.nextDeployment()
	}
	return dep, tr
}

// endTry ends the failed try: its real usage is priced into the request's
// cost (cost.go) and its outcome reported to routing.
func (h *handler) endTry() {
	h.priceTry()
	h.reportTry()
}

// nextDeployment returns the next deployment in the order routing chose for the request,
// skipping deployments cooling down, already tried, or of a kind this build
// cannot serve.
func (h *handler) nextDeployment() (*config.Deployment, translate.Translator) {
	if !h.rs.routedOnce() {
		return h.nextByPriority()
	}
	for {
		i, ok := h.rs.attempt.Next()
		if !ok {
			return nil, nil
		}
		d := h.group.Deployments[i]
		tr, ok := h.s.opts.Translator(d.Provider.Kind)
		if !ok || h.triedDeployment(d) {
			continue
		}
		h.rs.routed = true // complete reports this try's outcome
		return d, tr
	}
}

// reportTry reports the try in progress to routing as failed with its
// error class.
func (h *handler) reportTry() {
	if h.errCode == "" && h.dec != nil {
		if e := h.dec.Result().Err; e != nil {
			h.errCode = string(e.Code)
		}
	}
	now := h.s.opts.Now()
	h.traceTryEnd(now) // tracing.go
	h.reportRoute(now)
	h.errCode = ""
}

// nextByPriority is the order without routing (a handler that did not
// route): not tried yet, served by this build, the lowest priority, then
// the highest weight, then configuration order.
func (h *handler) nextByPriority() (*config.Deployment, translate.Translator) {
	var best *config.Deployment
	for _, d := range h.group.Deployments {
		if d.Weight <= 0 || h.triedDeployment(d) {
			continue
		}
		if _, ok := h.s.opts.Translator(d.Provider.Kind); !ok {
			continue
		}
		if best == nil || d.Priority < best.Priority || d.Priority == best.Priority && d.Weight > best.Weight {
			best = d
		}
	}
	if best == nil {
		return nil, nil
	}
	tr, _ := h.s.opts.Translator(best.Provider.Kind)
	return best, tr
}

func (h *handler) triedDeployment(d *config.Deployment) bool {
	for _, t := range h.fo.tried[:h.fo.ntried] {
		if t == d {
			return true
		}
	}
	return false
}

// callDeployment translates body, the client's request (or a
// continuation of it), for dep and sends it through the egress listener,
// mu held throughout.
func (h *handler) callDeployment(ctx context.Context, c *egress.Client, dep *config.Deployment, tr translate.Translator, body []byte) (*egress.Response, translate.Request, error) {
	req, treq, err := h.prepareCall(ctx, dep, tr, body)
	if err != nil {
		return nil, treq, err
	}
	resp, err := c.Do(ctx, req)
	if err != nil {
		h.traceCallFailed(err)
	}
	return resp, treq, err
}

// prepareCall translates body for dep and starts the call's try: its
// forward time and span. The handler's state is touched here only, so a
// caller may release mu around the egress call itself (repair.go).
func (h *handler) prepareCall(ctx context.Context, dep *config.Deployment, tr translate.Translator, body []byte) (*egress.Request, translate.Request, error) {
	treq := translate.Request{Op: h.ep.op(), Body: body, Stream: h.treq.Stream, IncludeUsage: h.treq.IncludeUsage,
		MaxBuffered: h.cfg.Server().MaxResponseBodyBytes}
	target := targetFor(dep)
	up, err := tr.Request(ctx, &treq, &target)
	if err != nil {
		// Not sent: the pick is cancelled, not judged.
		h.rs.attempt.Cancel()
		h.rs.routed = false
		return nil, treq, fmt.Errorf("translating for %s: %w", dep.Name, err)
	}
	treq.Body = nil
	h.forwardedAt = h.s.opts.Now() // this try's latency, for routing and metadata
	reason := "failover"
	if h.rp.active {
		reason = "repair"
	}
	h.traceTry(dep, reason)
	req := egressRequest(dep, up, h.requestID)
	h.traceInject(req.Header)
	return req, treq, nil
}

// switchTo makes the fallback's response the handler's: its deployment,
// translator, status, retry hint, upstream id and decoder, and a fresh held
// headers reply that sets its status and content type.
func (h *handler) switchTo(dep *config.Deployment, tr translate.Translator, treq translate.Request, resp *egress.Response) {
	h.dep, h.tr, h.treq = dep, tr, treq
	h.tryPending = false  // the traced call has its answer (tracing.go)
	h.cost.priced = false // a new try to price
	h.status, h.retry, h.upstreamID, h.upstreamIDRank = resp.Status, translate.RetryHint{}, "", 0
	for k, vs := range resp.Header {
		lk := strings.ToLower(k)
		for _, v := range vs {
			h.retry.Header(lk, v)
			h.noteUpstreamID(&corev3.HeaderValue{Key: lk, RawValue: []byte(v)})
		}
	}
	ct := resp.Header.Get("content-type")
	h.treq.ResponseHeaders = httpHeaders(resp.Header)
	h.dec = tr.NewDecoder(&h.treq, resp.Status, ct)
	h.treq.ResponseHeaders = nil
	h.headersAt, h.firstAt = h.s.opts.Now(), time.Time{}
	st := resp.Status
	if ds := h.dec.Status(); ds >= 200 {
		st = ds
	}
	h.status = st
	if want := h.dec.ContentType(); want != "" {
		ct = want
	}
	mut := &extprocv3.HeaderMutation{
		// The failed response's own headers that would now lie.
		RemoveHeaders: []string{"content-length", "retry-after", "retry-after-ms"},
		SetHeaders:    append(h.appendIDHeaders(nil, nil), header(":status", strconv.Itoa(st))),
	}
	if ct != "" {
		mut.SetHeaders = append(mut.SetHeaders, header("content-type", ct))
	}
	h.heldHeaders = &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}
}

// decodeWhole reads a whole (bounded) error body through the decoder and
// returns the client's body and the error it holds.
func (h *handler) decodeWhole(body io.Reader) ([]byte, *translate.Error) {
	b, err := io.ReadAll(body)
	if err != nil {
		e := &translate.Error{Code: translate.CodeUpstreamUnavailable, Message: "The provider's response could not be read."}
		return e.AppendJSON(nil), e
	}
	out := h.decode(b, true)
	e := h.dec.Result().Err
	if h.masked != nil {
		e = h.masked
	}
	return out, e
}

// streamFallback passes the fallback's body to the client as Envoy's body
// messages would have: through the decoder, the held headers released
// with the first output.
func (h *handler) streamFallback(body io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if err := h.onResponseBody(&extprocv3.HttpBody{Body: buf[:n]}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return h.onResponseBody(&extprocv3.HttpBody{EndOfStream: true})
		}
		if err != nil {
			if h.ctx.Err() != nil {
				return h.ctx.Err()
			}
			// The fallback broke mid-body: end the response with an
			// error in the body's framing.
			if done, err := h.retryOwned(err); done { // owned mode: fail over before content (owned.go)
				return err
			}
			h.s.opts.Logger.Warn("llmux: failover response interrupted", "request_id", h.requestID, "deployment", h.depName(), "error", err)
			e := &translate.Error{Code: translate.CodeStreamInterrupted, Message: "The provider's response was interrupted."}
			h.masked, h.errCode = e, string(e.Code)
			if err := h.releaseHeaders(); err != nil {
				return err
			}
			h.ph = phaseDone
			h.complete()
			if h.dec.ContentType() == "text/event-stream" {
				return h.sendLast(appendEventError(h.buf[:0], e))
			}
			return h.sendLast(e.AppendJSON(h.buf[:0]))
		}
	}
}

// answerHeld releases the held headers and sends body as the whole answer.
func (h *handler) answerHeld(body []byte) error {
	if err := h.releaseHeaders(); err != nil {
		return err
	}
	h.ph = phaseDone
	h.complete()
	return h.sendLast(body)
}

// answerError ends the exchange with e: the held headers with e's status
// (and retry-after), the OpenAI error body.
func (h *handler) answerError(e *translate.Error, retry translate.RetryHint) error {
	h.retry = retry
	h.errCode = string(e.Code)
	if h.heldHeaders == nil {
		h.heldHeaders = &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{}}}
	}
	mut := h.heldHeaders.Response.HeaderMutation
	mut.SetHeaders = append(mut.SetHeaders, header("content-type", "application/json"))
	h.dec = errorResult{e} // releaseHeaders takes the status and retry-after from it
	return h.answerHeld(e.AppendJSON(h.buf[:0]))
}

// moreInformative reports whether a tells the client more than b: a
// provider's specific refusal (a 4xx other than 429) over a rate limit,
// a rate limit (which says when to retry) over an outage, and an outage
// over the gateway's own transport errors.
func moreInformative(a, b *translate.Error) bool {
	if b == nil {
		return true
	}
	return informativeRank(a) > informativeRank(b)
}

func informativeRank(e *translate.Error) int {
	switch st := e.HTTPStatus(); {
	case st >= 400 && st < 500 && st != http.StatusTooManyRequests:
		return 4
	case st == http.StatusTooManyRequests:
		return 3
	case e.Code == translate.CodeOverloaded || e.Code == translate.CodeUpstreamError:
		return 2
	default:
		return 1
	}
}

// errorResult is a decoder stand-in that only reports an error: the
// exchange's outcome when every try failed.
type errorResult struct{ e *translate.Error }

func (r errorResult) Status() int                                  { return r.e.HTTPStatus() }
func (r errorResult) ContentType() string                          { return "application/json" }
func (r errorResult) Decode(dst, _ []byte, _ bool) ([]byte, error) { return dst, nil }
func (r errorResult) Result() *translate.Result                    { return &translate.Result{Err: r.e} }

// httpHeaders lets a decoder read an egress response's headers.
type httpHeaders http.Header

// Get implements translate.HeaderGetter.
func (hh httpHeaders) Get(name string) string { return http.Header(hh).Get(name) }

// targetFor is what a translator needs to know about a deployment.
func targetFor(dep *config.Deployment) translate.Target {
	return translate.Target{
		Model:      dep.Model,
		BasePath:   dep.Provider.BasePath,
		APIVersion: dep.Provider.APIVersion,
		APIKey:     dep.Provider.APIKey.Value(),
		Headers:    dep.Provider.Headers,
		Provider:   dep.Provider.Name,
		Region:     dep.Provider.Region,
		Project:    dep.Provider.Project,
		Host:       dep.Provider.Host,
		Options:    dep.Provider.Options,
	}
}

// egressClients are the Server's egress clients, one per listener address
// (server.egress_address may change on reload).
type egressClients struct {
	mu      sync.Mutex
	clients map[string]*egress.Client
}

// egressClient returns the client for the configuration's egress listener.
func (s *Server) egressClient(sc config.Server) (*egress.Client, error) {
	addr := string(sc.EgressAddress)
	s.egress.mu.Lock()
	defer s.egress.mu.Unlock()
	if c := s.egress.clients[addr]; c != nil {
		return c, nil
	}
	c, err := egress.New(egress.Options{Address: addr, ClusterHeader: sc.ClusterHeader,
		IdleTimeout: sc.StreamIdleTimeout, MaxBodyBytes: sc.MaxResponseBodyBytes})
	if err != nil {
		return nil, err
	}
	if s.egress.clients == nil {
		s.egress.clients = map[string]*egress.Client{}
	}
	s.egress.clients[addr] = c
	return c, nil
}

// Close releases what the Server holds beyond its streams: the egress
// clients' connections. Call it after the gRPC server stopped.
func (s *Server) Close() {
	s.egress.mu.Lock()
	defer s.egress.mu.Unlock()
	for a, c := range s.egress.clients {
		c.Close()
		delete(s.egress.clients, a)
	}
}
