package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/llmux/llmux/processor/route"
)

// RoutingSpec is how a model group chooses among its deployments
// (model_groups[].routing). Every field is optional; absent fields take
// the defaults (the weighted strategy). docs/routing.md explains the
// strategies.
type RoutingSpec struct {
	// Strategy is weighted (default), cost, latency or least_busy.
	Strategy string `yaml:"strategy" json:"strategy,omitempty"`
	// MaxTTFT, with strategy cost, is the bound on a deployment's recent
	// p90 time to first token: the cheapest deployment within it is
	// chosen, or the fastest when none is (a Go duration).
	MaxTTFT time.Duration `yaml:"max_ttft" json:"max_ttft,omitempty"`
	// ExpectedOutputTokens is the output the cost strategy assumes when a
	// request sets neither max_tokens nor max_completion_tokens (default
	// 256).
	ExpectedOutputTokens int64 `yaml:"expected_output_tokens" json:"expected_output_tokens,omitempty"`
	// UnknownCost is what the cost strategy does with a deployment whose
	// price is unknown: last (default: after every deployment of known
	// price in its tier) or exclude.
	UnknownCost string `yaml:"unknown_cost" json:"unknown_cost,omitempty"`
	// Explore is the share of requests (0 to 1, default 0.05) on which the
	// latency strategy, and cost with max_ttft, measure a deployment whose
	// newest latency sample is older than stale_after; 0 turns it off.
	Explore *float64 `yaml:"explore" json:"explore,omitempty"`
	// StaleAfter is that age (default 60s).
	StaleAfter time.Duration `yaml:"stale_after" json:"stale_after,omitempty"`
	// Health says when a deployment is cooled down.
	Health HealthSpec `yaml:"health" json:"health,omitzero"`
}

// HealthSpec is passive health checking for a group's deployments
// (model_groups[].routing.health).
type HealthSpec struct {
	// Failures within Window that start a cooldown (default 3, at most
	// 100).
	Failures int `yaml:"failures" json:"failures,omitempty"`
	// Window is how far back failures count (default 60s).
	Window time.Duration `yaml:"window" json:"window,omitempty"`
	// Cooldown is the first cooldown's length (default 30s); it doubles
	// on each consecutive cooldown.
	Cooldown time.Duration `yaml:"cooldown" json:"cooldown,omitempty"`
	// MaxCooldown bounds every cooldown, including one a provider's
	// retry-after asks for (default 5m, at least cooldown).
	MaxCooldown time.Duration `yaml:"max_cooldown" json:"max_cooldown,omitempty"`
}

// Bounds of the routing settings.
const (
	maxRoutingDuration      = time.Hour
	maxCooldownLimit        = 24 * time.Hour
	maxExpectedOutputTokens = 10_000_000
	minRoutingDuration      = time.Millisecond
	minHealthDuration       = time.Second
)

// compileRouting validates a group's routing at path and returns its
// policy with defaults applied.
func compileRouting(c *errs, path string, rs RoutingSpec) route.Policy {
	p := rs.apply(c, path, route.Policy{})
	h := rs.Health
	if h.Failures < 0 || h.Failures > route.MaxFailures {
		c.add(path+".health.failures", "must be between 1 and %d, got %d", route.MaxFailures, h.Failures)
	}
	p.Health.Failures = h.Failures
	setDuration(c, path+".health.window", h.Window, minHealthDuration, maxRoutingDuration, &p.Health.Window)
	setDuration(c, path+".health.cooldown", h.Cooldown, minHealthDuration, maxRoutingDuration, &p.Health.Cooldown)
	setDuration(c, path+".health.max_cooldown", h.MaxCooldown, minHealthDuration, maxCooldownLimit, &p.Health.MaxCooldown)
	switch {
	case h.MaxCooldown != 0 && h.Cooldown != 0 && h.MaxCooldown < h.Cooldown:
		c.add(path+".health.max_cooldown", "%s is less than cooldown (%s)", h.MaxCooldown, h.Cooldown)
	case h.MaxCooldown != 0 && h.Cooldown == 0 && h.MaxCooldown < route.DefaultCooldown:
		c.add(path+".health.max_cooldown", "%s is less than the default cooldown (%s)", h.MaxCooldown, route.DefaultCooldown)
	}
	return p.WithDefaults()
}

// setDuration checks an optional duration (0: unset) against [lo, hi] and
// stores a valid one in dst.
func setDuration(c *errs, path string, d, lo, hi time.Duration, dst *time.Duration) {
	switch {
	case d == 0:
	case d < lo || d > hi:
		c.add(path, "must be between %s and %s, got %s", lo, hi, d)
	default:
		*dst = d
	}
}

// apply validates the strategy settings of rs at path and sets those that
// are present on base.
func (rs RoutingSpec) apply(c *errs, path string, base route.Policy) route.Policy {
	p := base
	if rs.Strategy != "" {
		s, ok := route.ParseStrategy(rs.Strategy)
		if !ok {
			c.add(path+".strategy", "unknown strategy %q (want one of: %s)", rs.Strategy, strings.Join(route.StrategyNames(), ", "))
		}
		p.Strategy = s
	}
	setDuration(c, path+".max_ttft", rs.MaxTTFT, minRoutingDuration, maxRoutingDuration, &p.MaxTTFT)
	switch n := rs.ExpectedOutputTokens; {
	case n == 0:
	case n < 0 || n > maxExpectedOutputTokens:
		c.add(path+".expected_output_tokens", "must be between 1 and %d, got %d", maxExpectedOutputTokens, n)
	default:
		p.ExpectedOutputTokens = n
	}
	if rs.UnknownCost != "" {
		u, ok := route.ParseUnknownCost(rs.UnknownCost)
		if !ok {
			c.add(path+".unknown_cost", "unknown value %q (want last or exclude)", rs.UnknownCost)
		}
		p.UnknownCost = u
	}
	if e := rs.Explore; e != nil {
		switch {
		case !(*e >= 0 && *e <= 1):
			c.add(path+".explore", "must be between 0 and 1, got %v", *e)
		case *e == 0:
			p.Explore = -1 // off
		default:
			p.Explore = *e
		}
	}
	setDuration(c, path+".stale_after", rs.StaleAfter, minHealthDuration, maxRoutingDuration, &p.StaleAfter)
	return p
}

// RouteOverride is a routing override from an Envoy route's metadata
// (filter_metadata.<namespace>.routing): the same keys as
// model_groups[].routing but health, and each key present replaces the
// group's setting.
type RouteOverride struct {
	spec  RoutingSpec  // what the route set
	delta route.Policy // its values, validated
}

// ParseRouteOverride reads an override from JSON (or YAML), strictly: an
// unknown key, a value of the wrong type or out of bounds is an error
// naming the key (under "routing").
func ParseRouteOverride(data []byte) (*RouteOverride, error) {
	c := &errs{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("routing: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var o RouteOverride
	if root.Kind != 0 {
		if root.Kind != yaml.MappingNode {
			return nil, errors.New("routing: expected a mapping")
		}
		decodeNode(root, reflect.ValueOf(&o.spec).Elem(), "routing", c, 0)
	}
	if o.spec.Health != (HealthSpec{}) {
		c.add("routing.health", "health is a model group's setting (model_groups[].routing.health); a route cannot change it")
	}
	o.delta = o.spec.apply(c, "routing", route.Policy{})
	if err := c.result(); err != nil {
		return nil, err
	}
	return &o, nil
}

// Apply returns base with the override's settings in place. It does not
// allocate.
func (o *RouteOverride) Apply(base route.Policy) route.Policy {
	if o == nil {
		return base
	}
	s, d := &o.spec, &o.delta
	if s.Strategy != "" {
		base.Strategy = d.Strategy
	}
	if s.MaxTTFT != 0 {
		base.MaxTTFT = d.MaxTTFT
	}
	if s.ExpectedOutputTokens != 0 {
		base.ExpectedOutputTokens = d.ExpectedOutputTokens
	}
	if s.UnknownCost != "" {
		base.UnknownCost = d.UnknownCost
	}
	if s.Explore != nil {
		base.Explore = d.Explore
	}
	if s.StaleAfter != 0 {
		base.StaleAfter = d.StaleAfter
	}
	return base.WithDefaults()
}
