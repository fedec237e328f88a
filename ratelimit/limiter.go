package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Request is what a request asks of the limiter.
type Request struct {
	// ID identifies the request (its concurrency slots are held under
	// it); unique among requests in flight.
	ID string
	// Claims must all admit the request.
	Claims []Claim
	// Alternatives, when set, are the claims of the deployments the
	// request may go to, in the order routing prefers them: the first
	// alternative whose claims all admit is reserved with Claims, the
	// others are left alone. A request none admits is denied.
	Alternatives [][]Claim
	// Estimate is what the request is expected to use: its input tokens,
	// max_tokens (or the configured expected output) and their cost.
	Estimate Usage
}

// Source says where a decision was taken.
type Source uint8

// The sources.
const (
	SourceNone   Source = iota // no claim: nothing was checked
	SourceRedis                // the shared counters in Redis
	SourceLocal                // the in-memory limiter (no Redis, or fail_open while Redis fails)
	SourceFailed               // Redis failed and a fail_closed policy applied
)

var sourceNames = [...]string{"none", "redis", "local", "unavailable"}

// String is the source's name in metadata and metrics.
func (s Source) String() string { return sourceNames[s] }

// Status is the state of one limit after a decision, for the client's
// x-ratelimit-* headers.
type Status struct {
	// Policy and Limit say which bound this is; Limit.Max is 0 when no
	// limit of the kind applied.
	Policy string
	Limit  Limit
	// Max is the bound in force (the local share under fail_open).
	Max int64
	// Remaining is what is left after this request's reservation.
	Remaining int64
	// Reset is the time until Remaining next grows.
	Reset time.Duration
}

// Decision is the limiter's answer to a request.
type Decision struct {
	// Allowed: the request may go upstream; its reservation must be
	// settled.
	Allowed bool
	// Alternative is the index into Request.Alternatives that admitted
	// the request, or -1 when the request had none.
	Alternative int
	// Source says where the decision was taken.
	Source Source
	// Denied is the limit that refused the request (Allowed is false).
	Denied Denial
	// Requests and Tokens are the tightest request and token limits
	// (the least remaining) among those the request was checked against.
	Requests, Tokens Status
}

// Denial says why a request was refused.
type Denial struct {
	// Claim and Limit are the bound that refused it; zero when Unavailable.
	Claim Claim
	Limit Limit
	// RetryAfter is when the request could be admitted, at the earliest.
	RetryAfter time.Duration
	// Unavailable: Redis failed and a fail_closed policy applied.
	Unavailable bool
}

// Budget reports whether the denial is a spend budget (insufficient_quota)
// rather than a rate (rate_limit_exceeded).
func (d Denial) Budget() bool { return d.Limit.Kind == Spend }

// Reservation is what an admitted request holds until it settles. Its zero
// value holds nothing; embed it by value.
type Reservation struct {
	held   bool
	source Source
	id     string
	nowMs  int64
	est    Usage
	checks []check // the checks reserved
}

// Held reports whether the reservation still has to be settled.
func (r *Reservation) Held() bool { return r.held }

// Options configure a Limiter. Zero values take the defaults.
type Options struct {
	// Redis holds the shared counters (a single server, Sentinel or
	// Cluster client); nil keeps every limit in memory in this process.
	Redis redis.UniversalClient
	// KeyPrefix starts every key (default "llmux:rl").
	KeyPrefix string
	// HashTag is the Redis Cluster hash tag every key carries (default
	// "llmux"): all limit keys live in one slot, so that one script can
	// check and reserve all of a request's policies atomically.
	HashTag string
	// Timeout bounds each Redis call (default 100ms).
	Timeout time.Duration
	// Lease is how long a concurrency slot is held when the request never
	// settles (llmux crashed, or Redis was unreachable at settle time);
	// default 15 minutes. Keep it above the longest response.
	Lease time.Duration
	// BreakerFailures is how many consecutive Redis failures open the
	// circuit breaker (default 3); BreakerOpenFor is how long it stays
	// open before one probe call is let through (default 5s).
	BreakerFailures int
	BreakerOpenFor  time.Duration
	// Now is the in-memory limiter's clock; nil means time.Now. Redis
	// decisions use Redis server time.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultKeyPrefix       = "llmux:rl"
	DefaultHashTag         = "llmux"
	DefaultTimeout         = 100 * time.Millisecond
	DefaultLease           = 15 * time.Minute
	DefaultBreakerFailures = 3
	DefaultBreakerOpenFor  = 5 * time.Second
)

// Limiter reserves and settles. It is safe for concurrent use; one
// Limiter serves the process, across configuration reloads (policies come
// with each request).
type Limiter struct {
	opts  Options
	rdb   redis.UniversalClient
	local *memory
	br    breaker
	plans sync.Pool

	redisErrors atomic.Int64
	fallbacks   atomic.Int64
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if opts.HashTag == "" {
		opts.HashTag = DefaultHashTag
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = DefaultBreakerFailures
	}
	if opts.BreakerOpenFor <= 0 {
		opts.BreakerOpenFor = DefaultBreakerOpenFor
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Limiter{opts: opts, rdb: opts.Redis, local: newMemory(opts.Now)}
	l.br = breaker{failures: int64(opts.BreakerFailures), openFor: opts.BreakerOpenFor, now: opts.Now}
	l.plans.New = func() any { return &plan{} }
	return l
}

// Load loads the scripts into Redis, so that the first requests need one
// round trip each (a script missing later, after a Redis restart, is
// reloaded by the call that finds it missing).
func (l *Limiter) Load(ctx context.Context) error {
	if l.rdb == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout*10)
	defer cancel()
	for _, s := range []*redis.Script{reserveScript, settleScript} {
		if err := s.Load(ctx, l.rdb).Err(); err != nil {
			return fmt.Errorf("ratelimit: load script: %w", err)
		}
	}
	return nil
}

// Mode is the limiter's state for /readyz and metrics: "memory" without
// Redis, "redis" while Redis answers, "fallback" while the breaker is open.
func (l *Limiter) Mode() string {
	switch {
	case l.rdb == nil:
		return "memory"
	case l.br.isOpen():
		return "fallback"
	}
	return "redis"
}

// RedisErrors is how many Redis calls failed (timeouts included).
func (l *Limiter) RedisErrors() int64 { return l.redisErrors.Load() }

// Fallbacks is how many decisions were taken without Redis because it
// failed (fail_open locally, or fail_closed denials).
func (l *Limiter) Fallbacks() int64 { return l.fallbacks.Load() }

// Reserve checks req against its claims and, when every claim admits it,
// reserves its estimate into r, all at once: one Redis round trip. A
// denied request reserves nothing. An admitted request must be settled
// (Settle) exactly once, whatever its ending; Settle on a reservation
// never made does nothing. r must not be in use.
func (l *Limiter) Reserve(ctx context.Context, req *Request, r *Reservation) Decision {
	*r = Reservation{checks: r.checks[:0]}
	d := Decision{Alternative: -1}
	if len(req.Claims) == 0 && len(req.Alternatives) == 0 {
		return Decision{Allowed: true, Alternative: -1}
	}
	p := l.plans.Get().(*plan)
	defer l.plans.Put(p)

	var o outcome
	var err error
	src := SourceLocal
	if l.rdb != nil {
		src = SourceRedis
		if !l.br.allow() {
			err = ErrBreakerOpen
		} else {
			p.build(l.opts.KeyPrefix, l.opts.HashTag, req, false)
			err = l.reserveRedis(ctx, req.ID, p, &o)
			l.observe(err)
		}
		if err != nil {
			l.fallbacks.Add(1)
			if failClosed(req) {
				d.Source = SourceFailed
				d.Denied = Denial{Unavailable: true, RetryAfter: time.Second}
				return d
			}
			src = SourceLocal
		}
	}
	if src == SourceLocal {
		p.build(l.opts.KeyPrefix, l.opts.HashTag, req, l.rdb != nil)
		l.local.reserve(req.ID, l.opts.Lease, p, &o)
	}
	d.Source = src
	if !o.ok {
		c := p.checks[o.fail]
		d.Denied = Denial{Claim: p.claims[c.claim], Limit: c.limit, RetryAfter: time.Duration(o.retry) * time.Millisecond}
		// The headers of a denial show the limit that denied, spent.
		st := Status{Policy: c.claimName(p), Limit: c.limit, Max: c.max, Reset: d.Denied.RetryAfter}
		switch c.limit.Kind {
		case Requests:
			d.Requests = st
		case Tokens, InputTokens, OutputTokens:
			d.Tokens = st
		}
		return d
	}
	d.Allowed = true
	if o.chosen > 0 {
		d.Alternative = o.chosen - 1
	}
	// The checks reserved: group 0 and the chosen alternative.
	start, n := 0, p.groups[0]
	r.checks = append(r.checks, p.checks[:n]...)
	d.tighten(p, 0, n, &o)
	if o.chosen > 0 {
		for g := 0; g < o.chosen; g++ {
			start += p.groups[g]
		}
		n = p.groups[o.chosen]
		r.checks = append(r.checks, p.checks[start:start+n]...)
		d.tighten(p, start, start+n, &o)
	}
	r.held, r.source, r.id, r.nowMs, r.est = true, src, req.ID, o.nowMs, req.Estimate
	return d
}

// tighten keeps the request and token limits with the least remaining.
func (d *Decision) tighten(p *plan, from, to int, o *outcome) {
	for i := from; i < to; i++ {
		c := &p.checks[i]
		var st *Status
		switch c.limit.Kind {
		case Requests:
			st = &d.Requests
		case Tokens, InputTokens, OutputTokens:
			st = &d.Tokens
		default:
			continue
		}
		rem := o.rem[i]
		if rem < 0 {
			rem = 0
		}
		if st.Max == 0 || rem < st.Remaining {
			*st = Status{Policy: p.claims[c.claim].Policy.Name, Limit: c.limit, Max: c.max, Remaining: rem,
				Reset: time.Duration(max(o.reset[i], 0)) * time.Millisecond}
		}
	}
}

// Settle ends a reservation with the request's real usage: what the
// estimate got wrong is returned or charged to the windows the request
// was counted in, and its concurrency slots are freed. The caller is the
// end of the request, however it ended (success, error, client gone,
// upstream failure), once; later calls do nothing. A reservation never
// settled (the process died) frees its slots when its lease ends, and its
// estimate stays counted until it leaves the windows.
//
// Settle goes where the reservation was made: a reservation made in Redis
// settles in Redis (if Redis fails then, the slot is left to its lease and
// the difference is lost, which is counted in RedisErrors); one made in
// memory settles in memory. Nothing is counted twice.
func (l *Limiter) Settle(ctx context.Context, r *Reservation, actual Usage) error {
	if !r.held {
		return nil
	}
	r.held = false
	if r.source == SourceLocal {
		l.local.settle(r, actual)
		return nil
	}
	if !l.br.allow() {
		return fmt.Errorf("ratelimit: settle: %w", ErrBreakerOpen)
	}
	err := l.settleRedis(ctx, r, actual)
	l.observe(err)
	return err
}

// observe feeds a Redis call's result to the breaker.
func (l *Limiter) observe(err error) {
	if err != nil {
		l.redisErrors.Add(1)
		l.br.failure()
		return
	}
	l.br.success()
}

func failClosed(req *Request) bool {
	for _, c := range req.Claims {
		if c.Policy.OnRedisError == FailClosed {
			return true
		}
	}
	for _, alt := range req.Alternatives {
		for _, c := range alt {
			if c.Policy.OnRedisError == FailClosed {
				return true
			}
		}
	}
	return false
}

// ErrBreakerOpen is the error of a call the circuit breaker kept from a
// Redis that failed repeatedly.
var ErrBreakerOpen = errors.New("circuit breaker open: Redis failed repeatedly")

// breaker is a consecutive-failure circuit breaker: closed, it lets every
// call through; after failures consecutive failures it opens for openFor,
// refusing calls; then it lets one probe call through (half-open), whose
// success closes it and whose failure opens it again.
type breaker struct {
	failures int64
	openFor  time.Duration
	now      func() time.Time

	consecutive atomic.Int64
	openUntil   atomic.Int64 // unix ns; 0 when closed
	probing     atomic.Bool
}

func (b *breaker) isOpen() bool { return b.openUntil.Load() != 0 }

// allow reports whether a call may go to Redis.
func (b *breaker) allow() bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	if b.now().UnixNano() < until {
		return false
	}
	return b.probing.CompareAndSwap(false, true) // one probe at a time
}

func (b *breaker) success() {
	b.consecutive.Store(0)
	b.openUntil.Store(0)
	b.probing.Store(false)
}

func (b *breaker) failure() {
	n := b.consecutive.Add(1)
	if n >= b.failures || b.openUntil.Load() != 0 {
		b.openUntil.Store(b.now().Add(b.openFor).UnixNano())
	}
	b.probing.Store(false)
}
