package processor

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/pricing"
	"github.com/llmux/llmux/processor/route"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// routing is the Server's side of deployment choice: the process-wide
// Router (health and latency statistics, keyed by deployment name) and
// each configuration's candidates per model group.
type routing struct {
	router *route.Router

	mu     sync.RWMutex
	newest *config.Runtime // the newest configuration a request used
	cands  map[*config.Group][]route.Candidate
}

// newRouting wires the Router: its clock is the server's, and its
// cooldowns are counted and logged.
func newRouting(opts *Options) *routing {
	r := opts.Router
	if r == nil {
		m, log := opts.Metrics, opts.Logger
		r = route.New(route.Options{Now: opts.Now, OnCooldown: func(dep string, until time.Time, n int) {
			m.RouteCooldown(context.Background(), dep)
			log.Warn("llmux: deployment cooling down after failures", "deployment", dep, "until", until, "consecutive", n)
		}})
	}
	if err := opts.Metrics.ObserveCoolingDown(func() int64 { return int64(r.CoolingDown()) }); err != nil {
		opts.Logger.Error("llmux: routing gauge", "error", err)
	}
	return &routing{router: r, cands: map[*config.Group][]route.Candidate{}}
}

// candidates returns g's deployments as the Router sees them. They are
// built once per configuration and group; when a newer configuration
// appears, the Router forgets deployments it no longer has.
func (s *Server) candidates(cfg *config.Runtime, g *config.Group) []route.Candidate {
	rt := s.routing
	rt.mu.RLock()
	c, ok := rt.cands[g]
	rt.mu.RUnlock()
	if ok {
		return c
	}
	c = make([]route.Candidate, len(g.Deployments))
	for i, d := range g.Deployments {
		c[i] = route.Candidate{Name: d.Name, Priority: d.Priority, Weight: d.Weight, Price: deploymentPrice(d)}
		if _, ok := s.opts.Translator(d.Provider.Kind); !ok {
			c[i].Weight = 0 // this build cannot serve it
		}
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.newest == nil || cfg != rt.newest && cfg.LoadedAt().After(rt.newest.LoadedAt()) {
		// A reload: drop the old configuration's candidates and the
		// state of deployments that are gone.
		rt.newest = cfg
		clear(rt.cands)
		var names []string
		for _, gr := range cfg.Groups() {
			for _, d := range gr.Deployments {
				names = append(names, d.Name)
			}
		}
		rt.router.Retain(names)
	}
	rt.cands[g] = c
	return c
}

// RoutingStatus is what this process knows about each deployment it has
// routed to (in flight, cooldown, latency statistics), sorted by name: the
// admin listener's /routing.
func (s *Server) RoutingStatus() []route.Status {
	st := s.routing.router.Statuses()
	slices.SortFunc(st, func(a, b route.Status) int { return strings.Compare(a.Deployment, b.Deployment) })
	return st
}

// deploymentPrice is the deployment's price for the cost strategy, nil
// when unknown (a nil *pricing.Entry must not become a non-nil
// interface).
func deploymentPrice(d *config.Deployment) route.Pricer {
	if d.Price == nil {
		return nil
	}
	return d.Price
}

// routeState is a handler's routing: the policy in force, the group's
// candidates and the attempt that hears the outcome.
type routeState struct {
	policy  route.Policy
	cands   []route.Candidate
	attempt route.Attempt
	routed  bool // a try is in progress and its outcome not reported

	inputTokens int64 // the prompt's estimated tokens, when the cost strategy needed them; -1 when not estimated
}

// route chooses the deployment for the request (replacing the former
// pick): the group's policy, overridden by the Envoy route's metadata,
// orders the group's deployments; the first is tried.
func (h *handler) route(g *config.Group, stream bool, body []byte) (*config.Deployment, translate.Translator) {
	rs := &h.rs
	rs.policy = g.Routing
	if h.routeMeta != nil {
		rs.policy = h.routeMeta.routing.Apply(rs.policy)
	}
	rs.cands = h.s.candidates(h.cfg, g)
	req := route.Request{Policy: &rs.policy, Candidates: rs.cands, Stream: stream}
	if rs.policy.Strategy == route.Cost && len(rs.cands) > 1 {
		// The estimate (one pass over the prompt's text, about 2 µs a
		// KB) only matters when there is something to compare.
		req.InputTokens = pricing.EstimateInputTokens(h.ep.op(), body)
		req.MaxOutputTokens = maxOutputTokens(body)
	}
	rs.inputTokens = -1
	if req.InputTokens > 0 {
		rs.inputTokens = req.InputTokens // shared with limits (limits.go)
	}
	if !h.s.routing.router.Pick(&rs.attempt, &req) {
		return nil, nil
	}
	rs.routed = true
	d := g.Deployments[rs.attempt.Current()]
	tr, ok := h.s.opts.Translator(d.Provider.Kind)
	if !ok {
		// Only reachable when every candidate cooled down and the one
		// chosen is a kind this build lacks; candidates gives it weight
		// 0, so this does not happen.
		rs.attempt.Cancel()
		rs.routed = false
		return nil, nil
	}
	h.s.opts.Metrics.RoutePicked(h.ctx, g.Name, rs.policy.Strategy.String(), rs.attempt.Reason().String())
	return d, tr
}

// reportRoute tells the Router how the request ended; complete calls it
// once, whatever the ending (a success, an error, Envoy's own reply, a
// cancellation). A request llmux answered itself before forwarding it
// cancels the pick.
func (h *handler) reportRoute(now time.Time) {
	rs := &h.rs
	if !rs.routed {
		return
	}
	rs.routed = false
	if h.forwardedAt.IsZero() {
		// llmux refused the request itself after the pick (the
		// translation failed, or a later local check): the deployment
		// never saw it, so the pick is cancelled, neither a success nor
		// a failure.
		rs.attempt.Cancel()
		return
	}
	o := route.Outcome{Code: translate.Code(h.errCode), RetryAfter: h.retry.After()}
	if !h.forwardedAt.IsZero() {
		o.Duration = now.Sub(h.forwardedAt)
		if h.treq.Stream && !h.firstAt.IsZero() {
			o.TTFT = h.firstAt.Sub(h.forwardedAt)
		}
	}
	if h.dec != nil {
		res := h.dec.Result()
		if res.HasUsage {
			o.OutputTokens = res.Usage.OutputTokens
		}
		if res.Err != nil {
			o.RetryAfter = res.Err.RetryAfterWith(h.retry)
		}
	}
	if o.Code == "" && h.status >= 400 {
		o.Code = translate.CodeForStatus(h.status)
	}
	rs.attempt.Report(o)
}

// routingReason and routingStrategy are the metadata values of the choice.
func (h *handler) routingReason() string {
	if !h.rs.routedOnce() {
		return ""
	}
	return h.rs.attempt.Reason().String()
}

func (h *handler) routingStrategy() string {
	if !h.rs.routedOnce() {
		return ""
	}
	return h.rs.policy.Strategy.String()
}

// routedOnce reports whether a deployment was chosen for the request.
func (rs *routeState) routedOnce() bool { return rs.attempt.Len() > 0 }

// maxOutputTokens reads max_completion_tokens or max_tokens from a chat
// body; 0 when neither is set.
func maxOutputTokens(body []byte) int64 {
	if v := gjson.GetBytes(body, "max_completion_tokens"); v.Type == gjson.Number {
		return v.Int()
	}
	if v := gjson.GetBytes(body, "max_tokens"); v.Type == gjson.Number {
		return v.Int()
	}
	return 0
}
