package route

import (
	"fmt"
	"time"
)

// Strategy is how a model group orders its deployments.
type Strategy uint8

// The strategies. Every one keeps priorities as tiers (a lower tier only
// when no deployment of a higher one is available) and leaves weight-0
// deployments out.
const (
	// Weighted picks at random in proportion to the deployments' weights
	// (the default, and llmux's behaviour before strategies existed).
	Weighted Strategy = iota
	// Cost picks the cheapest expected cost for the request; with
	// Policy.MaxTTFT, the cheapest whose recent p90 time to first token is
	// within the bound.
	Cost
	// Latency picks the lowest expected latency: the median time to first
	// token for streams, the median time per output token otherwise.
	Latency
	// LeastBusy picks the fewest requests in flight.
	LeastBusy
)

var strategyNames = [...]string{Weighted: "weighted", Cost: "cost", Latency: "latency", LeastBusy: "least_busy"}

// String is the strategy's configuration name.
func (s Strategy) String() string {
	if int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return fmt.Sprintf("strategy(%d)", s)
}

// ParseStrategy reads a strategy's configuration name.
func ParseStrategy(name string) (Strategy, bool) {
	for i, n := range strategyNames {
		if n == name {
			return Strategy(i), true
		}
	}
	return 0, false
}

// StrategyNames lists the configuration names, for error messages.
func StrategyNames() []string { return strategyNames[:] }

// UnknownCost says what the cost strategy does with a deployment whose
// price is unknown.
type UnknownCost uint8

const (
	// UnknownLast ranks deployments of unknown cost after every deployment
	// of known cost in the same tier (the default).
	UnknownLast UnknownCost = iota
	// UnknownExclude leaves them out of the cost strategy's list.
	UnknownExclude
)

// String is the configuration name.
func (u UnknownCost) String() string {
	if u == UnknownExclude {
		return "exclude"
	}
	return "last"
}

// ParseUnknownCost reads "last" or "exclude".
func ParseUnknownCost(s string) (UnknownCost, bool) {
	switch s {
	case "last":
		return UnknownLast, true
	case "exclude":
		return UnknownExclude, true
	}
	return 0, false
}

// Policy is a model group's routing configuration (model_groups[].routing),
// possibly overridden per Envoy route. The zero value is the weighted
// strategy with default health settings.
type Policy struct {
	// Strategy orders the deployments.
	Strategy Strategy
	// MaxTTFT, with Cost, bounds the recent p90 time to first token of the
	// deployments the cheapest is chosen from; 0 means no bound.
	MaxTTFT time.Duration
	// ExpectedOutputTokens is the output Cost assumes when the request sets
	// neither max_tokens nor max_completion_tokens (0: DefaultExpectedOutputTokens).
	ExpectedOutputTokens int64
	// UnknownCost places deployments of unknown price under Cost.
	UnknownCost UnknownCost
	// Explore is the share of requests (0 to 1) on which Latency, and Cost
	// with MaxTTFT, try a stale deployment instead of the best; negative
	// means never, 0 means DefaultExplore.
	Explore float64
	// StaleAfter is how old a deployment's newest latency sample must be
	// for it to be explored again (0: DefaultStaleAfter).
	StaleAfter time.Duration
	// Health says when a deployment is cooled down.
	Health Health
}

// Health is passive health checking: a deployment that fails Failures
// times within Window is skipped for Cooldown (doubling on each
// consecutive cooldown, at most MaxCooldown), then comes back through one
// probe request at a time.
type Health struct {
	// Failures within Window that start a cooldown (0: DefaultFailures).
	Failures int
	// Window is how far back failures count (0: DefaultWindow).
	Window time.Duration
	// Cooldown is the first cooldown's length (0: DefaultCooldown).
	Cooldown time.Duration
	// MaxCooldown bounds every cooldown, including one a provider's
	// retry-after asks for (0: DefaultMaxCooldown).
	MaxCooldown time.Duration
}

// Defaults of Policy and Health.
const (
	DefaultExpectedOutputTokens = 256
	DefaultExplore              = 0.05
	DefaultStaleAfter           = time.Minute
	DefaultFailures             = 3
	DefaultWindow               = time.Minute
	DefaultCooldown             = 30 * time.Second
	DefaultMaxCooldown          = 5 * time.Minute
	// MaxFailures bounds Health.Failures.
	MaxFailures = 100
)

// WithDefaults returns p with zero fields set to their defaults.
func (p Policy) WithDefaults() Policy {
	if p.ExpectedOutputTokens <= 0 {
		p.ExpectedOutputTokens = DefaultExpectedOutputTokens
	}
	switch {
	case p.Explore == 0:
		p.Explore = DefaultExplore
	case p.Explore < 0:
		p.Explore = -1
	case p.Explore > 1:
		p.Explore = 1
	}
	if p.StaleAfter <= 0 {
		p.StaleAfter = DefaultStaleAfter
	}
	p.Health = p.Health.WithDefaults()
	return p
}

// WithDefaults returns h with zero fields set to their defaults.
func (h Health) WithDefaults() Health {
	if h.Failures <= 0 {
		h.Failures = DefaultFailures
	}
	h.Failures = min(h.Failures, MaxFailures)
	if h.Window <= 0 {
		h.Window = DefaultWindow
	}
	if h.Cooldown <= 0 {
		h.Cooldown = DefaultCooldown
	}
	if h.MaxCooldown <= 0 {
		h.MaxCooldown = max(DefaultMaxCooldown, h.Cooldown)
	}
	return h
}
