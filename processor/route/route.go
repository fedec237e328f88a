// Package route chooses deployments: per request it orders a model
// group's deployments by the group's strategy (weighted, cost, latency,
// least busy), keeps priorities as tiers, skips deployments that are
// cooling down, and hears each request's outcome to keep per-deployment
// health and latency statistics.
//
// It knows neither Envoy nor providers: the processor gives it candidates
// (name, priority, weight, price) and reports outcomes as translate.Code
// classes and durations. Its state lives in one Router per process, keyed
// by deployment name, so it survives configuration reloads; Retain drops
// the deployments a reload removed.
//
// The shape: a strategy returns an ordered list, not one pick (the first
// is the pick, the rest is what failover tries next); health is data (a
// cooldown-until timestamp and a ring of failure times), with no timer or
// goroutine per failure.
package route

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/llmux/llmux/translate"
)

// Pricer estimates a request's cost in USD. *pricing.Entry implements it.
// Estimate must not allocate; it is called once per candidate per request
// under the cost strategy.
type Pricer interface {
	Estimate(inputTokens, outputTokens int64) float64
}

// Candidate is one deployment of a model group, as the router sees it.
type Candidate struct {
	// Name identifies the deployment; health and statistics are kept by
	// name.
	Name string
	// Priority is the tier: lower first.
	Priority int
	// Weight is the share under the weighted strategy and in ties; 0 keeps
	// the deployment out of every list.
	Weight int
	// Price estimates the request's cost; nil means the price is unknown.
	Price Pricer
}

// Request is what Pick needs to know about one request.
type Request struct {
	// Policy is the effective routing policy (the group's, possibly
	// overridden by the Envoy route); defaults must be applied
	// (Policy.WithDefaults).
	Policy *Policy
	// Candidates are the group's deployments. The slice must stay valid
	// and unchanged while the Attempt is in use: the Attempt refers to it.
	Candidates []Candidate
	// Stream: the client asked for a stream (latency is then time to first
	// token; otherwise time per output token).
	Stream bool
	// InputTokens is the estimated prompt size, for the cost strategy.
	InputTokens int64
	// MaxOutputTokens is the request's max_tokens (or
	// max_completion_tokens); 0 when unset.
	MaxOutputTokens int64
}

// Reason says why the first deployment of a list was chosen.
type Reason uint8

// The reasons, as they appear in metadata and metrics.
const (
	ReasonNone           Reason = iota // nothing could be chosen
	ReasonWeighted                     // weighted random in the best tier
	ReasonCost                         // cheapest expected cost (within max_ttft when set)
	ReasonCostUnknown                  // cost strategy, but no deployment of known price was available
	ReasonCostFastest                  // cost with max_ttft: no deployment within the bound, so the fastest
	ReasonLatency                      // lowest expected latency
	ReasonLatencyExplore               // a cold or stale deployment measured again
	ReasonLeastBusy                    // fewest requests in flight
	ReasonCooldownAll                  // every deployment was cooling down: the one whose cooldown ends first
)

var reasonNames = [...]string{"", "weighted", "cost", "cost_unknown", "cost_fastest", "latency", "latency_explore", "least_busy", "cooldown_all"}

// String is the reason's name ("" for ReasonNone).
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every reason but ReasonNone.
func Reasons() []Reason {
	return []Reason{ReasonWeighted, ReasonCost, ReasonCostUnknown, ReasonCostFastest, ReasonLatency,
		ReasonLatencyExplore, ReasonLeastBusy, ReasonCooldownAll}
}

// Options configure a Router. Zero values take the defaults.
type Options struct {
	// Now is the clock; nil means time.Now. The Router measures every
	// interval (cooldowns, failure windows, sample ages) as the difference
	// of two readings with Time.Sub, so time.Now's monotonic reading is
	// used and a wall-clock step (NTP) changes nothing; wall-clock values
	// appear only in Status and OnCooldown.
	Now func() time.Time
	// Elapsed, if set, is the monotonic clock the Router measures
	// intervals with instead: the time since a fixed origin, never
	// decreasing. nil means Now's readings minus its first one. Tests set
	// it to step wall and monotonic time apart.
	Elapsed func() time.Duration
	// Rand is the source of randomness (weighted choice, ties,
	// exploration); nil means math/rand/v2's global source. It must be
	// safe for concurrent use when the Router is used concurrently; tests
	// inject a seeded source to make choices reproducible.
	Rand rand.Source
	// OnCooldown, if set, is called when a deployment starts a cooldown
	// lasting until until; consecutive counts cooldowns without a success
	// in between (1 for the first). It runs on the reporting request's
	// goroutine and must not block.
	OnCooldown func(deployment string, until time.Time, consecutive int)
}

// Router keeps per-deployment health and latency statistics and orders
// candidates. It is safe for concurrent use; one Router serves the whole
// process.
type Router struct {
	now        func() time.Time
	elapsed    func() time.Duration
	rng        *rand.Rand
	onCooldown func(string, time.Time, int)

	mu     sync.RWMutex
	states map[string]*state
}

type globalSource struct{}

func (globalSource) Uint64() uint64 { return rand.Uint64() }

// New returns a Router.
func New(opts Options) *Router {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = globalSource{}
	}
	if opts.Elapsed == nil {
		now, origin := opts.Now, opts.Now()
		opts.Elapsed = func() time.Duration { return now().Sub(origin) }
	}
	return &Router{now: opts.Now, elapsed: opts.Elapsed, rng: rand.New(opts.Rand), onCooldown: opts.OnCooldown, states: map[string]*state{}}
}

// mono is the Router's monotonic time in nanoseconds, the unit of every
// instant in its state. It starts at 1, so that 0 can mean "never".
func (r *Router) mono() int64 { return int64(r.elapsed()) + 1 }

// wall converts a monotonic instant to the wall clock, for display.
func (r *Router) wall(ns int64) time.Time { return r.now().Add(time.Duration(ns - r.mono())) }

// Retain forgets every deployment not named in keep: call it when a new
// configuration is in force. A request still running on an older
// configuration may bring a removed deployment back; it is forgotten at
// the next Retain.
func (r *Router) Retain(keep []string) {
	set := make(map[string]struct{}, len(keep))
	for _, n := range keep {
		set[n] = struct{}{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for n := range r.states {
		if _, ok := set[n]; !ok {
			delete(r.states, n)
		}
	}
}

// CoolingDown counts the deployments whose cooldown has not ended.
func (r *Router) CoolingDown() int {
	now := r.mono()
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, s := range r.states {
		if s.coolUntil.Load() > now {
			n++
		}
	}
	return n
}

// Status is a read-only view of one deployment's state.
type Status struct {
	Deployment string    `json:"deployment"`
	InFlight   int64     `json:"in_flight"`
	CoolUntil  time.Time `json:"cool_until,omitzero"`
	HalfOpen   bool      `json:"half_open,omitempty"`
	// Latency medians and p90 in seconds; 0 when not measured.
	TTFTMedian float64 `json:"ttft_p50_seconds,omitempty"`
	TTFTP90    float64 `json:"ttft_p90_seconds,omitempty"`
	TPOTMedian float64 `json:"seconds_per_output_token_p50,omitempty"`
}

// Statuses returns every known deployment's state, in no particular order.
func (r *Router) Statuses() []Status {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Status, 0, len(r.states))
	for _, s := range r.states {
		st := Status{Deployment: s.name, InFlight: s.inflight.Load(), HalfOpen: s.halfOpen.Load(),
			TTFTMedian: s.ttft.median(), TTFTP90: s.ttft.percentile90(), TPOTMedian: s.tpot.median()}
		if u := s.coolUntil.Load(); u != 0 {
			st.CoolUntil = r.wall(u)
		}
		out = append(out, st)
	}
	return out
}

// lookup returns the states of cands into dst, creating missing ones.
func (r *Router) lookup(cands []Candidate, dst []*state) {
	missing := false
	r.mu.RLock()
	for i := range cands {
		dst[i] = r.states[cands[i].Name]
		missing = missing || dst[i] == nil
	}
	r.mu.RUnlock()
	if !missing {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range cands {
		if dst[i] != nil {
			continue
		}
		s := r.states[cands[i].Name]
		if s == nil {
			s = &state{name: cands[i].Name}
			r.states[cands[i].Name] = s
		}
		dst[i] = s
	}
}

// Failure reports whether an outcome of class c counts against the
// deployment's health: every retryable class (rate limited, overloaded,
// timeout, unavailable, upstream errors, truncated or stalled bodies) and
// an exhausted quota, but not stream_interrupted, which ext_proc cannot
// tell from a client that went away.
func Failure(c translate.Code) bool {
	switch c {
	case "", translate.CodeStreamInterrupted, translate.CodeCanceled:
		return false
	case translate.CodeQuotaExhausted:
		return true
	}
	return c.Retryable()
}

// neutral reports whether an outcome says nothing about the deployment.
func neutral(c translate.Code) bool {
	return c == translate.CodeCanceled || c == translate.CodeStreamInterrupted
}

// Outcome is how one try of a deployment ended.
type Outcome struct {
	// Code is the error class; "" for success.
	Code translate.Code
	// RetryAfter is what the provider asked for (retry-after), or 0.
	RetryAfter time.Duration
	// TTFT is the time from forwarding to the first content (streams);
	// 0 when unknown.
	TTFT time.Duration
	// Duration is the time from forwarding to the end of the response.
	Duration time.Duration
	// OutputTokens is the response's output token count, 0 when unknown.
	OutputTokens int64
}

// inlineCandidates is how many candidates an Attempt orders without
// allocating.
const inlineCandidates = 32

// entry is one candidate in an Attempt's order.
type entry struct {
	idx int32
	st  *state
	key float64
}

// Attempt is one request's routing: the ordered candidates and the try in
// progress. The zero value is ready for Pick; an Attempt is not safe for
// concurrent use (one request's handler owns it). Embed it by value to
// avoid an allocation.
type Attempt struct {
	r          *Router
	health     Health
	staleAfter time.Duration
	stream     bool
	reason     Reason

	order  []entry
	inline [inlineCandidates]entry
	states [inlineCandidates]*state

	pos     int   // the try in progress (or last ended) in order
	active  bool  // a try is in progress
	probe   bool  // the try holds its deployment's half-open probe
	started int64 // Router.mono
}

// Len is how many candidates the list holds.
func (a *Attempt) Len() int { return len(a.order) }

// At is the index into Request.Candidates of the i-th candidate in order.
func (a *Attempt) At(i int) int { return int(a.order[i].idx) }

// Current is the index into Request.Candidates of the try in progress (or
// the last one), or -1 when the list is empty.
func (a *Attempt) Current() int {
	if a.pos >= len(a.order) {
		return -1
	}
	return int(a.order[a.pos].idx)
}

// Reason says why the first candidate was chosen.
func (a *Attempt) Reason() Reason { return a.reason }

// Pick orders req's candidates into a and starts a try on the first
// (counting it in flight). It returns false when no candidate can serve
// (every one has weight 0 or, under cost with unknown_cost: exclude, an
// unknown price). A previous try on a still in progress is cancelled.
func (r *Router) Pick(a *Attempt, req *Request) bool {
	a.Cancel()
	ns := r.mono()
	p := req.Policy
	cands := req.Candidates
	*a = Attempt{r: r, health: p.Health, staleAfter: p.StaleAfter, stream: req.Stream}

	states := a.states[:0]
	if len(cands) <= inlineCandidates {
		states = a.states[:len(cands)]
		a.order = a.inline[:0]
	} else {
		states = make([]*state, len(cands))
		a.order = make([]entry, 0, len(cands))
	}
	r.lookup(cands, states)

	// Available candidates in tier order (stable: configuration order
	// within a tier), then the unavailable ones.
	var coolBuf [inlineCandidates]entry
	cool := coolBuf[:0]
	for i := range cands {
		c := &cands[i]
		if c.Weight <= 0 || p.Strategy == Cost && p.UnknownCost == UnknownExclude && c.Price == nil {
			continue
		}
		e := entry{idx: int32(i), st: states[i]}
		if states[i].availability(ns) == unavailable {
			e.key = float64(states[i].coolUntil.Load())
			cool = append(cool, e)
			continue
		}
		a.order = append(a.order, e)
	}
	if len(a.order)+len(cool) == 0 {
		a.reason = ReasonNone
		return false
	}
	sortByPriority(a.order, cands)
	for lo := 0; lo < len(a.order); {
		hi := lo + 1
		for hi < len(a.order) && cands[a.order[hi].idx].Priority == cands[a.order[lo].idx].Priority {
			hi++
		}
		reason := r.orderTier(a.order[lo:hi], req, ns)
		if lo == 0 {
			a.reason = reason
		}
		lo = hi
	}
	sortByKey(cool)
	if len(a.order) == 0 {
		a.reason = ReasonCooldownAll
	}
	a.order = append(a.order, cool...)
	a.pos = -1
	if !a.advance(ns, false) {
		// Every candidate is cooling down, or every available one is
		// half-open and lost its probe to a concurrent request: the first
		// takes the try anyway, without the probe.
		a.pos = -1
		a.advance(ns, true)
	}
	return true
}

// advance starts a try on the next candidate after pos that may take one;
// any: also candidates cooling down.
func (a *Attempt) advance(ns int64, any bool) bool {
	for a.pos+1 < len(a.order) {
		a.pos++
		e := &a.order[a.pos]
		switch e.st.availability(ns) {
		case probeFree:
			if !e.st.probing.CompareAndSwap(false, true) {
				if !any {
					continue
				}
			} else {
				a.probe = true
			}
		case unavailable:
			if !any {
				continue
			}
		}
		e.st.inflight.Add(1)
		a.active, a.started = true, ns
		return true
	}
	return false
}

// Next ends the try in progress as cancelled (if Report was not called)
// and starts one on the next candidate in order that can take it now; it
// returns that candidate's index into Request.Candidates. Failover calls
// it after a failed try has been reported.
func (a *Attempt) Next() (int, bool) {
	a.Cancel()
	if a.r == nil {
		return -1, false
	}
	ns := a.r.mono()
	if a.advance(ns, false) {
		return a.Current(), true
	}
	return -1, false
}

// Report ends the try in progress with its outcome: it leaves the
// in-flight count, updates the deployment's health (a failure may start a
// cooldown) and, on success, its latency statistics. Later calls until
// the next try do nothing.
func (a *Attempt) Report(o Outcome) {
	if !a.active {
		return
	}
	a.active = false
	st := a.order[a.pos].st
	st.inflight.Add(-1)
	ns := a.r.mono()
	switch {
	case Failure(o.Code):
		if until := st.failure(ns, a.started, o.RetryAfter, a.health); until != 0 && a.r.onCooldown != nil {
			st.mu.Lock()
			n := st.consecutive
			st.mu.Unlock()
			a.r.onCooldown(st.name, a.r.wall(until), n)
		}
	case neutral(o.Code):
	default:
		st.success(a.started)
		if o.Code == "" {
			if a.stream && o.TTFT > 0 {
				st.sample(&st.ttft, o.TTFT.Seconds(), ns, a.staleAfter)
			}
			if !a.stream && o.OutputTokens > 0 && o.Duration > 0 {
				st.sample(&st.tpot, o.Duration.Seconds()/float64(o.OutputTokens), ns, a.staleAfter)
			}
		}
	}
	if a.probe {
		a.probe = false
		st.probing.Store(false)
	}
}

// Cancel ends the try in progress without judging the deployment (the
// client went away, or the request ended before an outcome was known).
func (a *Attempt) Cancel() { a.Report(Outcome{Code: translate.CodeCanceled}) }

// orderTier orders one tier's available candidates by the strategy and
// returns the reason for its first.
func (r *Router) orderTier(t []entry, req *Request, ns int64) Reason {
	p := req.Policy
	cands := req.Candidates
	switch p.Strategy {
	case Cost:
		out := req.MaxOutputTokens
		if out <= 0 {
			out = p.ExpectedOutputTokens
		}
		for i := range t {
			t[i].key = math.Inf(1)
			if pr := cands[t[i].idx].Price; pr != nil {
				t[i].key = pr.Estimate(req.InputTokens, out)
			}
		}
		if p.MaxTTFT > 0 {
			return r.orderBounded(t, cands, p, ns)
		}
		r.sortKeys(t, cands)
		if math.IsInf(t[0].key, 1) {
			return ReasonCostUnknown
		}
		return ReasonCost
	case Latency:
		for i := range t {
			s := t[i].st.latency(req.Stream)
			t[i].key = math.MaxFloat64
			if s.warm() {
				t[i].key = s.median()
			}
		}
		r.sortKeys(t, cands)
		if r.explore(t, p, ns, func(e *entry) *stat { return e.st.latency(req.Stream) }) {
			return ReasonLatencyExplore
		}
		return ReasonLatency
	case LeastBusy:
		for i := range t {
			t[i].key = float64(t[i].st.inflight.Load())
		}
		r.sortKeys(t, cands)
		return ReasonLeastBusy
	}
	r.shuffleWeighted(t, cands)
	return ReasonWeighted
}

// orderBounded orders a tier for cost with max_ttft: the candidates
// within the bound (p90 time to first token, or cold and idle) by cost,
// then the others by p90; or, when none is within, all by p90.
func (r *Router) orderBounded(t []entry, cands []Candidate, p *Policy, ns int64) Reason {
	bound := p.MaxTTFT.Seconds()
	within := 0
	for i := range t {
		s := &t[i].st.ttft
		if !s.warm() && t[i].st.inflight.Load() == 0 || s.warm() && s.percentile90() <= bound {
			t[within], t[i] = t[i], t[within]
			within++
		}
	}
	r.sortKeys(t[:within], cands)
	rest := t[within:]
	for i := range rest {
		rest[i].key = math.MaxFloat64
		if s := &rest[i].st.ttft; s.warm() {
			rest[i].key = s.percentile90()
		}
	}
	r.sortKeys(rest, cands)
	if within > 0 && r.explore(t, p, ns, func(e *entry) *stat { return &e.st.ttft }) {
		return ReasonLatencyExplore
	}
	switch {
	case within == 0:
		return ReasonCostFastest
	case math.IsInf(t[0].key, 1):
		return ReasonCostUnknown
	}
	return ReasonCost
}

// explore moves a stale candidate (its newest sample older than
// StaleAfter) to the front on a share Explore of requests, and a cold one
// (too few samples) with nothing in flight on every request. t is ordered
// best first; the choice among several goes to the earliest in t.
func (r *Router) explore(t []entry, p *Policy, ns int64, stat func(*entry) *stat) bool {
	pick := -1
	for i := 1; i < len(t); i++ {
		if s := stat(&t[i]); !s.warm() && t[i].st.inflight.Load() == 0 {
			pick = i
			break
		}
	}
	if pick < 0 && p.Explore > 0 {
		stale := ns - int64(p.StaleAfter)
		for i := 1; i < len(t); i++ {
			if s := stat(&t[i]); s.warm() && s.last.Load() < stale {
				if r.rng.Float64() < p.Explore {
					pick = i
				}
				break
			}
		}
	}
	if pick < 0 {
		// The first may itself be cold (every candidate is): that is
		// exploration too.
		s := stat(&t[0])
		return !s.warm()
	}
	e := t[pick]
	copy(t[1:pick+1], t[:pick])
	t[0] = e
	return true
}

// latency is the statistic the latency strategy ranks by.
func (s *state) latency(stream bool) *stat {
	if stream {
		return &s.ttft
	}
	return &s.tpot
}

// sortKeys orders t by key, ties in weighted random order.
func (r *Router) sortKeys(t []entry, cands []Candidate) {
	sortByKey(t)
	for lo := 0; lo < len(t); {
		hi := lo + 1
		for hi < len(t) && t[hi].key == t[lo].key {
			hi++
		}
		r.shuffleWeighted(t[lo:hi], cands)
		lo = hi
	}
}

// shuffleWeighted puts t in a weighted random order: each position is
// drawn among the rest in proportion to weight.
func (r *Router) shuffleWeighted(t []entry, cands []Candidate) {
	if len(t) < 2 {
		return
	}
	total := 0
	for i := range t {
		total += cands[t[i].idx].Weight
	}
	for i := 0; i < len(t)-1; i++ {
		n := r.rng.IntN(total)
		for j := i; j < len(t); j++ {
			if n -= cands[t[j].idx].Weight; n < 0 {
				t[i], t[j] = t[j], t[i]
				break
			}
		}
		total -= cands[t[i].idx].Weight
	}
}

// sortByKey and sortByPriority sort small slices stably without
// allocating.
func sortByKey(t []entry) {
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && t[j].key < t[j-1].key; j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
}

func sortByPriority(t []entry, cands []Candidate) {
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && cands[t[j].idx].Priority < cands[t[j-1].idx].Priority; j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
}
