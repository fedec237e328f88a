package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/pricing"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/ratelimit"
	"github.com/llmux/llmux/translate"
)

// The limits concern (docs/limits.md): in the request-body phase, once
// routing has ordered the deployments, the request reserves against every
// policy that applies to it (its API key, tenant, model group, the Envoy
// route's "limits", the global ones, and the deployment's own quota) in
// one call to the limiter; a deployment without headroom is skipped for
// the next in routing's order. complete settles the reservation with the
// real usage and cost, whatever the ending. Every response carries the
// x-ratelimit-* headers of the tightest policy; the decision goes into the
// dynamic metadata.

func init() { registerRouteKey("limits", parseRouteLimits) }

// parseRouteLimits reads the route metadata key "limits": the names of
// route-scope policies (limits.policies[].scope: route). The names are
// resolved against the configuration per request.
func parseRouteLimits(v *structpb.Value, p *routePolicy) error {
	l, ok := v.GetKind().(*structpb.Value_ListValue)
	if !ok {
		return errors.New("must be a list of policy names")
	}
	for i, e := range l.ListValue.GetValues() {
		s, ok := e.GetKind().(*structpb.Value_StringValue)
		if !ok || s.StringValue == "" {
			return fmt.Errorf("[%d] must be a policy name", i)
		}
		p.limits = append(p.limits, s.StringValue)
	}
	return nil
}

// limitState is a handler's limits: the reservation to settle and the
// decision the headers and metadata show.
type limitState struct {
	checked bool // a decision was taken
	dec     ratelimit.Decision
	res     ratelimit.Reservation
	claims  []ratelimit.Claim
	alts    [][]ratelimit.Claim
	altIdx  []int // candidate index of each alternative
	pols    []*ratelimit.Policy
	est     ratelimit.Usage
}

// reserveLimits checks the request against its policies and reserves its
// estimate; it may move the request to a later deployment in routing's
// order when the chosen one has no headroom. It returns the denial to
// answer with, if any.
func (h *handler) reserveLimits(g *config.Group, body []byte, dep *config.Deployment) (*config.Deployment, *translate.Error) {
	ls := h.cfg.Limits()
	var routeNames []string
	if h.routeMeta != nil {
		routeNames = h.routeMeta.limits
	}
	if !ls.Enabled() && len(routeNames) == 0 {
		return dep, nil
	}
	st := &h.lim
	st.claims = st.claims[:0]
	add := func(scope, subject string) {
		st.pols = ls.For(st.pols[:0], scope, subject)
		for _, p := range st.pols {
			st.claims = append(st.claims, ratelimit.Claim{Policy: p, Subject: subject})
		}
	}
	if h.keyName != "" {
		add(config.ScopeKey, h.keyName)
	}
	add(config.ScopeTenant, h.tenant)
	add(config.ScopeModelGroup, g.Name)
	add(config.ScopeGlobal, "")
	for _, name := range routeNames {
		p, ok := ls.RoutePolicy(name)
		if !ok {
			h.s.opts.Logger.Error("llmux: the Envoy route names a limits policy that is not a route-scope policy of the configuration",
				"policy", name, "request_id", h.requestID)
			return dep, &translate.Error{Code: translate.CodeInternal, OpenAICode: "invalid_route_metadata",
				Message: fmt.Sprintf("The gateway's route configuration is invalid: route metadata key filter_metadata.%s.limits names an unknown policy. See the gateway logs.", h.cfg.Server().MetadataNamespace)}
		}
		st.claims = append(st.claims, ratelimit.Claim{Policy: p, Subject: h.routeMeta.name})
	}
	// The deployment's own quota: the candidates from the chosen one on,
	// in routing's order, are the alternatives.
	st.alts, st.altIdx = st.alts[:0], st.altIdx[:0]
	if ls.HasScope(config.ScopeDeployment) {
		a := &h.rs.attempt
		on, any := false, false
		for i := 0; i < a.Len(); i++ {
			idx := a.At(i)
			on = on || idx == a.Current()
			if !on {
				continue
			}
			d := g.Deployments[idx]
			var alt []ratelimit.Claim
			if n := len(st.alts); n < cap(st.alts) {
				alt = st.alts[:n+1][n][:0]
			}
			st.pols = ls.For(st.pols[:0], config.ScopeDeployment, d.Name)
			for _, p := range st.pols {
				alt = append(alt, ratelimit.Claim{Policy: p, Subject: d.Name})
			}
			st.alts = append(st.alts, alt)
			st.altIdx = append(st.altIdx, idx)
			any = any || len(alt) > 0
		}
		if !any { // no candidate has a quota: nothing to choose
			st.alts, st.altIdx = st.alts[:0], st.altIdx[:0]
		}
	}
	if len(st.claims) == 0 && len(st.alts) == 0 {
		return dep, nil
	}
	in := h.rs.inputTokens // routing's estimate, when the cost strategy made one
	if in < 0 {
		in = pricing.EstimateInputTokens(h.ep.op(), body)
	}
	out := int64(0)
	if h.ep.op() == translate.OpChat {
		if out = maxOutputTokens(body); out <= 0 {
			out = ls.Spec.ExpectedOutputTokens
		}
	}
	st.est = ratelimit.Usage{InputTokens: in, OutputTokens: out}
	if dep.Price != nil {
		st.est.SpendMicros = ratelimit.MicroUSD(dep.Price.Estimate(in, out))
	}
	// The concurrency slot's id is llmux's own: a client may send the same
	// x-request-id on concurrent requests, which must not share a slot.
	req := ratelimit.Request{ID: newRequestID(), Claims: st.claims, Alternatives: st.alts, Estimate: st.est}
	st.dec = h.s.limiter.Reserve(h.ctx, &req, &st.res)
	st.checked = true
	h.s.opts.Metrics.RateLimitDecision(h.ctx, limitDecisionName(&st.dec), st.dec.Source.String())
	if !st.dec.Allowed {
		// The request never goes upstream: routing must not count it
		// against the deployment.
		h.rs.attempt.Cancel()
		h.rs.routed = false
		return nil, limitError(&st.dec)
	}
	if k := st.dec.Alternative; k > 0 {
		// The chosen deployment had no headroom; move to the one that did.
		want := st.altIdx[k]
		for h.rs.attempt.Current() != want {
			if _, ok := h.rs.attempt.Next(); !ok {
				break
			}
		}
		if h.rs.attempt.Current() != want {
			// Routing would not take it (it cooled down meanwhile): give
			// the reservation back and answer as a deployment quota.
			h.settleLimits()
			h.rs.routed = false
			return nil, &translate.Error{Code: translate.CodeRateLimited, OpenAICode: "rate_limit_exceeded",
				Message: fmt.Sprintf("Every deployment of model %q is at its rate limit. Please retry shortly.", g.Name), RetryAfter: time.Second}
		}
		dep = g.Deployments[want]
	}
	return dep, nil
}

// limitDecisionName is the decision as metrics and metadata name it.
func limitDecisionName(d *ratelimit.Decision) string {
	switch {
	case d.Allowed:
		return "allowed"
	case d.Denied.Unavailable:
		return "unavailable"
	}
	return "denied"
}

// limitError is the client's error for a denial: 429 rate_limit_exceeded
// (insufficient_quota for a spend budget), or 503 when Redis failed and a
// fail_closed policy applied.
func limitError(d *ratelimit.Decision) *translate.Error {
	if d.Denied.Unavailable {
		return &translate.Error{Code: translate.CodeOverloaded, OpenAICode: "limits_unavailable", Status: 503,
			Message: "The gateway cannot check its rate limits right now. Please retry shortly.", RetryAfter: d.Denied.RetryAfter}
	}
	l := d.Denied.Limit
	if d.Denied.Budget() {
		return &translate.Error{Code: translate.CodeQuotaExhausted, OpenAICode: "insufficient_quota", Status: 429, Type: "insufficient_quota",
			Message: fmt.Sprintf("You exceeded your current quota: the spend budget per %s of policy %s is used up. It frees up in %s.",
				windowWord(l.Window), d.Denied.Claim.Policy.Name, roundRetry(d.Denied.RetryAfter)), RetryAfter: d.Denied.RetryAfter}
	}
	what := l.Kind.String()
	if l.Kind == ratelimit.Concurrency {
		what = "concurrent requests"
	} else {
		what += " per " + windowWord(l.Window)
	}
	typ := "requests"
	if l.Kind == ratelimit.Tokens || l.Kind == ratelimit.InputTokens || l.Kind == ratelimit.OutputTokens {
		typ = "tokens"
	}
	return &translate.Error{Code: translate.CodeRateLimited, OpenAICode: "rate_limit_exceeded", Status: 429, Type: typ,
		Message: fmt.Sprintf("Rate limit reached for %s (policy %s): limit %d. Please try again in %s.",
			what, d.Denied.Claim.Policy.Name, l.Max, roundRetry(d.Denied.RetryAfter)), RetryAfter: d.Denied.RetryAfter}
}

func windowWord(w time.Duration) string {
	switch w {
	case ratelimit.Minute:
		return "minute"
	case ratelimit.Day:
		return "day"
	case ratelimit.Month:
		return "month (30 days)"
	}
	return w.String()
}

func roundRetry(d time.Duration) time.Duration {
	return max(d.Round(time.Second), time.Second)
}

// settleLimits settles the reservation with the request's real usage and
// cost, once; complete calls it whatever the ending. Without usage
// (the response was cut, or never came) the estimate stands, as the
// provider may have billed the work; a request the provider refused
// before producing anything uses nothing.
func (h *handler) settleLimits() {
	st := &h.lim
	if !st.res.Held() {
		return
	}
	actual := st.est
	if h.dec != nil {
		res := h.dec.Result()
		switch {
		case res.HasUsage:
			actual = ratelimit.Usage{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}
			if h.cost.state == costKnown {
				actual.SpendMicros = ratelimit.MicroUSD(h.cost.usd)
			} else {
				actual.SpendMicros = st.est.SpendMicros
			}
		case res.Err != nil && !res.FirstContent:
			actual = ratelimit.Usage{}
		}
	}
	if err := h.s.limiter.Settle(h.ctx, &st.res, actual); err != nil {
		level := slog.LevelWarn
		if errors.Is(err, ratelimit.ErrBreakerOpen) {
			level = slog.LevelDebug // Redis is known to be down: counted, not logged per request
		}
		h.s.opts.Logger.Log(h.ctx, level, "llmux: settling the request's limits failed; its concurrency slots end with their lease",
			"request_id", h.requestID, "error", err)
	}
}

// appendLimitHeaders adds OpenAI's x-ratelimit-* headers of the tightest
// request and token limits to a response.
func (h *handler) appendLimitHeaders(dst []*corev3.HeaderValueOption) []*corev3.HeaderValueOption {
	if !h.lim.checked {
		return dst
	}
	if s := h.lim.dec.Requests; s.Max > 0 {
		dst = append(dst, header("x-ratelimit-limit-requests", strconv.FormatInt(s.Max, 10)),
			header("x-ratelimit-remaining-requests", strconv.FormatInt(s.Remaining, 10)),
			header("x-ratelimit-reset-requests", resetValue(s.Reset)))
	}
	if s := h.lim.dec.Tokens; s.Max > 0 {
		dst = append(dst, header("x-ratelimit-limit-tokens", strconv.FormatInt(s.Max, 10)),
			header("x-ratelimit-remaining-tokens", strconv.FormatInt(s.Remaining, 10)),
			header("x-ratelimit-reset-tokens", resetValue(s.Reset)))
	}
	return dst
}

// resetValue renders a reset time as OpenAI does ("1s", "6m0s", "20ms").
func resetValue(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// limitsMetadata adds the decision and the remaining budget to the
// metadata.
func (h *handler) limitsMetadata(v *mdValues) {
	st := &h.lim
	if !st.checked {
		return
	}
	v.str("ratelimit_decision", limitDecisionName(&st.dec))
	v.str("ratelimit_source", st.dec.Source.String())
	if !st.dec.Allowed && st.dec.Denied.Claim.Policy != nil {
		v.str("ratelimit_policy", st.dec.Denied.Claim.Policy.Name)
		v.str("ratelimit_limit", st.dec.Denied.Limit.String())
	}
	if s := st.dec.Requests; s.Max > 0 {
		v.num("ratelimit_remaining_requests", float64(s.Remaining))
	}
	if s := st.dec.Tokens; s.Max > 0 {
		v.num("ratelimit_remaining_tokens", float64(s.Remaining))
	}
}

// retryAfterHeader is the retry-after header of an error that says when
// to retry.
func (h *handler) retryAfterHeader(e *translate.Error) []*corev3.HeaderValueOption {
	if e.RetryAfter <= 0 {
		return nil
	}
	return []*corev3.HeaderValueOption{header("retry-after", translate.RetryAfterValue(e.RetryAfter))}
}
