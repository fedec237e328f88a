// Package ratelimit enforces llmux's limits and budgets: requests, tokens,
// concurrent requests and spend, per minute, day or month, shared by every
// llmux replica through Redis.
//
// A request reserves before it goes upstream (one request, one
// concurrency slot, its estimated tokens and cost) and settles when it
// ends (the difference between the estimate and the real usage is
// returned or charged, and the slot is freed). Both are one Redis round
// trip each: a Lua script checks every policy of the request and reserves
// them all, atomically, on Redis server time. A denied request consumes
// nothing.
//
// Windows are sliding: each is cut into 60 sub-buckets and a request is
// admitted when the usage of the current sub-bucket and the 60 before it,
// plus the request's own, stays within the limit. docs/limits.md states
// the algorithm and its error bound.
//
// When Redis fails, each policy says what happens: fail_open checks an
// in-memory limiter at a share of the global limit; fail_closed denies
// with 503. A circuit breaker stops calling a Redis that keeps failing and
// probes it back.
//
// The package knows neither Envoy nor providers: the processor says which
// policies apply to a request and what it is expected to cost.
package ratelimit

import (
	"fmt"
	"time"
)

// Kind is what a limit counts.
type Kind uint8

// The kinds of limit.
const (
	Requests     Kind = iota // requests started
	Tokens                   // input + output tokens
	InputTokens              // input tokens only
	OutputTokens             // output tokens only
	Spend                    // cost in micro-USD
	Concurrency              // requests in flight (no window)
	numKinds
)

var kindNames = [numKinds]string{"requests", "tokens", "input_tokens", "output_tokens", "spend", "concurrency"}

// String is the kind's name as it appears in keys, metrics and metadata.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Windowed reports whether the kind counts over a time window.
func (k Kind) Windowed() bool { return k != Concurrency }

// The windows. A month is 30 days, sliding like the others.
const (
	Minute = time.Minute
	Day    = 24 * time.Hour
	Month  = 30 * Day
)

// Buckets is how many sub-buckets cut a window.
const Buckets = 60

// Limit is one bound of a policy.
type Limit struct {
	// Kind is what is counted.
	Kind Kind
	// Window is the sliding window (Minute, Day, Month); 0 for
	// Concurrency.
	Window time.Duration
	// Max is the bound: a count, tokens, or micro-USD for Spend. At least
	// 1.
	Max int64
}

// String is e.g. "requests/1m0s" or "concurrency".
func (l Limit) String() string {
	if !l.Kind.Windowed() {
		return l.Kind.String()
	}
	return l.Kind.String() + "/" + windowName(l.Window)
}

func windowName(w time.Duration) string {
	switch w {
	case Minute:
		return "minute"
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return w.String()
}

// Mode is what a policy does while Redis is failing.
type Mode uint8

const (
	// FailOpen checks the request against an in-memory limiter at
	// Policy.LocalShare of each limit, in this process alone.
	FailOpen Mode = iota
	// FailClosed denies the request (503, limits_unavailable).
	FailClosed
)

// String is "fail_open" or "fail_closed".
func (m Mode) String() string {
	if m == FailClosed {
		return "fail_closed"
	}
	return "fail_open"
}

// Policy is a named set of limits. All of them must admit a request the
// policy applies to. A Policy is immutable once in use.
type Policy struct {
	// Name identifies the policy in keys, logs and metadata. It must not
	// contain ':', '{' or '}'.
	Name string
	// Limits are the bounds; at most one per kind and window.
	Limits []Limit
	// OnRedisError says what happens while Redis is failing.
	OnRedisError Mode
	// LocalShare is the share of each limit the in-memory limiter allows
	// under FailOpen (0 < LocalShare <= 1); set it to 1/replicas so that
	// the fleet cannot exceed the global limit.
	LocalShare float64
}

// Validate checks the policy's shape.
func (p *Policy) Validate() error {
	if p.Name == "" {
		return fmt.Errorf("ratelimit: policy without a name")
	}
	for _, c := range p.Name {
		if c == ':' || c == '{' || c == '}' || c < ' ' {
			return fmt.Errorf("ratelimit: policy %q: the name must not contain ':', '{', '}' or control characters", p.Name)
		}
	}
	if len(p.Limits) == 0 {
		return fmt.Errorf("ratelimit: policy %q has no limit", p.Name)
	}
	seen := map[Limit]bool{}
	for _, l := range p.Limits {
		if l.Max < 1 {
			return fmt.Errorf("ratelimit: policy %q: %s must be at least 1", p.Name, l)
		}
		if l.Kind >= numKinds {
			return fmt.Errorf("ratelimit: policy %q: unknown kind %d", p.Name, l.Kind)
		}
		if l.Kind.Windowed() != (l.Window > 0) || l.Window%(Buckets*time.Millisecond) != 0 {
			return fmt.Errorf("ratelimit: policy %q: %s: bad window %v", p.Name, l, l.Window)
		}
		k := Limit{Kind: l.Kind, Window: l.Window}
		if seen[k] {
			return fmt.Errorf("ratelimit: policy %q: %s given twice", p.Name, l)
		}
		seen[k] = true
	}
	if p.LocalShare <= 0 || p.LocalShare > 1 {
		return fmt.Errorf("ratelimit: policy %q: local share %v must be in (0, 1]", p.Name, p.LocalShare)
	}
	return nil
}

// Usage is what a request costs against limits: its tokens and its spend
// in micro-USD. Requests and concurrency count 1 each.
type Usage struct {
	// InputTokens and OutputTokens are the request's tokens.
	InputTokens, OutputTokens int64
	// SpendMicros is its cost in micro-USD (MicroUSD).
	SpendMicros int64
}

// amount is what u counts against a limit of kind k.
func (u Usage) amount(k Kind) int64 {
	switch k {
	case Requests, Concurrency:
		return 1
	case Tokens:
		return u.InputTokens + u.OutputTokens
	case InputTokens:
		return u.InputTokens
	case OutputTokens:
		return u.OutputTokens
	case Spend:
		return u.SpendMicros
	}
	return 0
}

// settleAmount is what u counts at settle time: requests and slots are
// not charged again.
func (u Usage) settleAmount(k Kind) int64 {
	switch k {
	case Requests, Concurrency:
		return 0
	}
	return u.amount(k)
}

// MicroUSD converts a cost in USD to the micro-USD Spend limits count,
// rounding up so that a tiny non-zero cost still counts.
func MicroUSD(usd float64) int64 {
	if usd <= 0 {
		return 0
	}
	m := usd * 1e6
	n := int64(m)
	if float64(n) < m {
		n++
	}
	return n
}

// Claim is one policy applied to one subject (an API key's name, a tenant,
// a model group, a deployment, a route): the subject has its own counters
// under the policy.
type Claim struct {
	// Policy is the policy that applies.
	Policy *Policy
	// Subject is whose counters it uses.
	Subject string
}
