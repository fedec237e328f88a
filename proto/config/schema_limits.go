package config

import (
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/llmux/llmux/ratelimit"
)

// Limits are the limits and budgets llmux enforces before a request goes
// upstream (docs/limits.md).
type Limits struct {
	// Redis holds the counters shared by every llmux replica. Without
	// addresses, limits are kept in each process's memory (one replica,
	// or a demo).
	Redis RedisSpec `yaml:"redis" json:"redis,omitzero"`
	// KeyPrefix starts every Redis key (default llmux:rl).
	KeyPrefix string `yaml:"key_prefix" json:"key_prefix,omitempty"`
	// HashTag is the Redis Cluster hash tag of every key (default llmux):
	// all limit keys share one slot, so that one script reserves all of a
	// request's policies atomically.
	HashTag string `yaml:"hash_tag" json:"hash_tag,omitempty"`
	// Timeout bounds each Redis call (default 100ms, at most 10s).
	Timeout time.Duration `yaml:"timeout" json:"timeout,omitempty"`
	// Lease is how long a concurrency slot outlives a request that never
	// settles (default 15m; keep it above the longest response).
	Lease time.Duration `yaml:"lease" json:"lease,omitempty"`
	// Breaker stops calling a Redis that keeps failing.
	Breaker BreakerSpec `yaml:"breaker" json:"breaker,omitzero"`
	// ExpectedOutputTokens is the output estimate of a request without
	// max_tokens (default 1024).
	ExpectedOutputTokens int64 `yaml:"expected_output_tokens" json:"expected_output_tokens,omitempty"`
	// Policies are the named limits and what they attach to.
	Policies []PolicySpec `yaml:"policies" json:"policies,omitempty"`
}

// RedisSpec says how to reach Redis. One address is a single server;
// several are a Redis Cluster's seed nodes, or Sentinels when MasterName
// is set.
type RedisSpec struct {
	// Addresses are host:port pairs.
	Addresses []string `yaml:"addresses" json:"addresses,omitempty"`
	// AddressesEnv names an environment variable holding comma-separated
	// addresses, used when it is set and not empty (it then replaces
	// Addresses); unset or empty, Addresses apply (none: limits in
	// memory). `make run` sets it when it starts a local redis-server.
	AddressesEnv string `yaml:"addresses_env" json:"addresses_env,omitempty"`
	// MasterName is the Sentinel master name (Sentinel only).
	MasterName string `yaml:"master_name" json:"master_name,omitempty"`
	// Username is the ACL user, if any.
	Username string `yaml:"username" json:"username,omitempty"`
	// PasswordEnv names an environment variable holding the password.
	PasswordEnv string `yaml:"password_env" json:"password_env,omitempty"`
	// DB is the database number (single server and Sentinel only).
	DB int `yaml:"db" json:"db,omitempty"`
}

// BreakerSpec configures the circuit breaker in front of Redis.
type BreakerSpec struct {
	// Failures is how many consecutive failures open it (default 3).
	Failures int `yaml:"failures" json:"failures,omitempty"`
	// OpenFor is how long it stays open before a probe (default 5s).
	OpenFor time.Duration `yaml:"open_for" json:"open_for,omitempty"`
}

// PolicySpec is a named set of limits attached to API keys, tenants,
// model groups, deployments, every request, or the Envoy routes that name
// it in their metadata (limits: [names]). Each subject (each key, each
// tenant, ...) has its own counters. Unset limits do not apply; at least
// one must be set.
type PolicySpec struct {
	// Name identifies the policy in keys, metadata and route metadata.
	Name string `yaml:"name" json:"name"`
	// Scope is what the policy attaches to: key, tenant, model_group,
	// deployment, route or global.
	Scope string `yaml:"scope" json:"scope"`
	// Match lists the subjects of the scope the policy applies to (key
	// names, tenants, model groups, deployments); empty: every one. Not
	// for route and global.
	Match []string `yaml:"match" json:"match,omitempty"`

	// RequestsPerMinute and RequestsPerDay bound the requests started.
	RequestsPerMinute int64 `yaml:"requests_per_minute" json:"requests_per_minute,omitempty"`
	RequestsPerDay    int64 `yaml:"requests_per_day" json:"requests_per_day,omitempty"`
	// TokensPerMinute and TokensPerDay bound input + output tokens.
	TokensPerMinute int64 `yaml:"tokens_per_minute" json:"tokens_per_minute,omitempty"`
	TokensPerDay    int64 `yaml:"tokens_per_day" json:"tokens_per_day,omitempty"`
	// InputTokensPerMinute and InputTokensPerDay bound input tokens alone.
	InputTokensPerMinute int64 `yaml:"input_tokens_per_minute" json:"input_tokens_per_minute,omitempty"`
	InputTokensPerDay    int64 `yaml:"input_tokens_per_day" json:"input_tokens_per_day,omitempty"`
	// OutputTokensPerMinute and OutputTokensPerDay bound output tokens alone.
	OutputTokensPerMinute int64 `yaml:"output_tokens_per_minute" json:"output_tokens_per_minute,omitempty"`
	OutputTokensPerDay    int64 `yaml:"output_tokens_per_day" json:"output_tokens_per_day,omitempty"`
	// ConcurrentRequests bounds the requests in flight.
	ConcurrentRequests int64 `yaml:"concurrent_requests" json:"concurrent_requests,omitempty"`
	// SpendUSDPerDay and SpendUSDPerMonth (30 days, sliding) are budgets
	// in USD, from the deployments' prices (docs/pricing.md).
	SpendUSDPerDay   float64 `yaml:"spend_usd_per_day" json:"spend_usd_per_day,omitempty"`
	SpendUSDPerMonth float64 `yaml:"spend_usd_per_month" json:"spend_usd_per_month,omitempty"`

	// OnRedisError is fail_open (default: this process enforces
	// local_share of each limit in memory) or fail_closed (503).
	OnRedisError string `yaml:"on_redis_error" json:"on_redis_error,omitempty"`
	// LocalShare is the share of each limit one process allows under
	// fail_open (default 1; set 1/replicas to keep the fleet within the
	// global limit).
	LocalShare *float64 `yaml:"local_share" json:"local_share,omitempty"`
}

// The scopes a policy attaches to.
const (
	ScopeKey        = "key"
	ScopeTenant     = "tenant"
	ScopeModelGroup = "model_group"
	ScopeDeployment = "deployment"
	ScopeRoute      = "route"
	ScopeGlobal     = "global"
)

var scopes = []string{ScopeKey, ScopeTenant, ScopeModelGroup, ScopeDeployment, ScopeRoute, ScopeGlobal}

// Defaults of the limits settings.
const (
	DefaultExpectedOutputTokens = 1024
	MaxLimitsTimeout            = 10 * time.Second
)

// LimitSet is the compiled limits section: the policies by scope and
// subject.
type LimitSet struct {
	// Spec is the section with defaults applied.
	Spec Limits
	// Password is the Redis password (from password_env).
	Password Secret

	byName map[string]*ratelimit.Policy
	scope  map[string]*scopeIndex
}

// scopeIndex holds one scope's policies: those for every subject, and
// those for named subjects.
type scopeIndex struct {
	all []*ratelimit.Policy
	by  map[string][]*ratelimit.Policy
}

// Enabled reports whether any policy is configured.
func (s *LimitSet) Enabled() bool { return s != nil && len(s.byName) > 0 }

// For appends to dst the policies of scope that apply to subject, in
// configuration order; global policies take subject "".
func (s *LimitSet) For(dst []*ratelimit.Policy, scope, subject string) []*ratelimit.Policy {
	if s == nil {
		return dst
	}
	x := s.scope[scope]
	if x == nil {
		return dst
	}
	dst = append(dst, x.all...)
	return append(dst, x.by[subject]...)
}

// HasScope reports whether any policy attaches to scope.
func (s *LimitSet) HasScope(scope string) bool {
	return s != nil && s.scope[scope] != nil
}

// RoutePolicy returns the route-scope policy an Envoy route names.
func (s *LimitSet) RoutePolicy(name string) (*ratelimit.Policy, bool) {
	if s == nil {
		return nil, false
	}
	p, ok := s.byName[name]
	if !ok || s.scope[ScopeRoute] == nil || !slices.Contains(s.scope[ScopeRoute].all, p) {
		return nil, false
	}
	return p, true
}

// Limits returns the compiled limits section (never nil).
func (r *Runtime) Limits() *LimitSet { return r.limits }

// validateLimits checks the limits section and compiles it into rt.
func validateLimits(c *errs, f *File, rt *Runtime, opts LoadOptions, deployments map[string]*Deployment) {
	l := f.Limits
	const p = "limits"
	set := &LimitSet{byName: map[string]*ratelimit.Policy{}, scope: map[string]*scopeIndex{}}
	rt.limits = set
	if name := l.Redis.AddressesEnv; name != "" {
		if !envName.MatchString(name) {
			c.add(p+".redis.addresses_env", "not a valid environment variable name")
		} else if v, ok := opts.Getenv(name); ok && strings.TrimSpace(v) != "" {
			l.Redis.Addresses = nil
			for _, a := range strings.Split(v, ",") {
				l.Redis.Addresses = append(l.Redis.Addresses, strings.TrimSpace(a))
			}
		}
	}
	for i, a := range l.Redis.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			c.add(fmt.Sprintf("%s.redis.addresses[%d]", p, i), "%q: want host:port", a)
		}
	}
	if l.Redis.MasterName != "" && len(l.Redis.Addresses) == 0 {
		c.add(p+".redis.master_name", "needs the Sentinels' addresses")
	}
	if l.Redis.DB < 0 || l.Redis.DB > 15 && l.Redis.DB != 0 {
		c.add(p+".redis.db", "must be between 0 and 15")
	}
	if l.Redis.DB != 0 && len(l.Redis.Addresses) > 1 && l.Redis.MasterName == "" {
		c.add(p+".redis.db", "a Redis Cluster has only database 0")
	}
	if l.Redis.PasswordEnv != "" {
		if v, ok := readEnv(c, opts, p+".redis.password_env", l.Redis.PasswordEnv); ok {
			set.Password = NewSecret(v)
		}
	}
	if l.KeyPrefix == "" {
		l.KeyPrefix = ratelimit.DefaultKeyPrefix
	} else if strings.ContainsAny(l.KeyPrefix, "{} \t\n") {
		c.add(p+".key_prefix", "%q must not contain braces or spaces", l.KeyPrefix)
	}
	if l.HashTag == "" {
		l.HashTag = ratelimit.DefaultHashTag
	} else if strings.ContainsAny(l.HashTag, "{} \t\n") {
		c.add(p+".hash_tag", "%q must not contain braces or spaces", l.HashTag)
	}
	switch {
	case l.Timeout == 0:
		l.Timeout = ratelimit.DefaultTimeout
	case l.Timeout < time.Millisecond || l.Timeout > MaxLimitsTimeout:
		c.add(p+".timeout", "must be between 1ms and %s, got %s", MaxLimitsTimeout, l.Timeout)
	}
	switch {
	case l.Lease == 0:
		l.Lease = ratelimit.DefaultLease
	case l.Lease < time.Second:
		c.add(p+".lease", "must be at least 1s, got %s", l.Lease)
	}
	switch {
	case l.Breaker.Failures == 0:
		l.Breaker.Failures = ratelimit.DefaultBreakerFailures
	case l.Breaker.Failures < 0:
		c.add(p+".breaker.failures", "must be at least 1")
	}
	switch {
	case l.Breaker.OpenFor == 0:
		l.Breaker.OpenFor = ratelimit.DefaultBreakerOpenFor
	case l.Breaker.OpenFor < 0:
		c.add(p+".breaker.open_for", "must be positive")
	}
	switch {
	case l.ExpectedOutputTokens == 0:
		l.ExpectedOutputTokens = DefaultExpectedOutputTokens
	case l.ExpectedOutputTokens < 0:
		c.add(p+".expected_output_tokens", "must be positive")
	}
	groups := map[string]bool{}
	for _, g := range f.ModelGroups {
		groups[g.Name] = true
	}
	keys := map[string]bool{}
	for _, k := range f.Auth.Keys {
		keys[k.Name] = true
	}
	for i, ps := range l.Policies {
		pp := fmt.Sprintf("%s.policies[%d]", p, i)
		pol := compilePolicy(c, pp, ps)
		if pol == nil {
			continue
		}
		if _, dup := set.byName[pol.Name]; dup {
			c.add(pp+".name", "duplicate policy name %q", pol.Name)
			continue
		}
		set.byName[pol.Name] = pol
		if !slices.Contains(scopes, ps.Scope) {
			c.add(pp+".scope", "%q: want one of %s", ps.Scope, strings.Join(scopes, ", "))
			continue
		}
		x := set.scope[ps.Scope]
		if x == nil {
			x = &scopeIndex{by: map[string][]*ratelimit.Policy{}}
			set.scope[ps.Scope] = x
		}
		if len(ps.Match) == 0 {
			x.all = append(x.all, pol)
			continue
		}
		if ps.Scope == ScopeRoute || ps.Scope == ScopeGlobal {
			c.add(pp+".match", "not for scope %s (a route names its policies in its metadata: limits: [names])", ps.Scope)
			continue
		}
		for j, m := range ps.Match {
			mp := fmt.Sprintf("%s.match[%d]", pp, j)
			known := true
			switch ps.Scope {
			case ScopeKey:
				known = keys[m]
			case ScopeModelGroup:
				known = groups[m]
			case ScopeDeployment:
				_, known = deployments[m]
				if !known {
					for _, d := range f.Deployments {
						known = known || d.Name == m
					}
				}
			}
			if m == "" || !known {
				c.add(mp, "%q is not a configured %s", m, strings.ReplaceAll(ps.Scope, "_", " "))
				continue
			}
			x.by[m] = append(x.by[m], pol)
		}
	}
	set.Spec = l
}

// compilePolicy checks one policy and builds it; nil when it is invalid.
func compilePolicy(c *errs, pp string, ps PolicySpec) *ratelimit.Policy {
	ok := checkName(c, pp+".name", ps.Name)
	if ok && strings.ContainsAny(ps.Name, ":{}") {
		c.add(pp+".name", "%q must not contain ':', '{' or '}'", ps.Name)
		ok = false
	}
	pol := &ratelimit.Policy{Name: ps.Name, LocalShare: 1}
	count := func(field string, v int64, k ratelimit.Kind, w time.Duration) {
		switch {
		case v == 0:
		case v < 0:
			c.add(pp+"."+field, "must be positive, got %d", v)
			ok = false
		default:
			pol.Limits = append(pol.Limits, ratelimit.Limit{Kind: k, Window: w, Max: v})
		}
	}
	count("requests_per_minute", ps.RequestsPerMinute, ratelimit.Requests, ratelimit.Minute)
	count("requests_per_day", ps.RequestsPerDay, ratelimit.Requests, ratelimit.Day)
	count("tokens_per_minute", ps.TokensPerMinute, ratelimit.Tokens, ratelimit.Minute)
	count("tokens_per_day", ps.TokensPerDay, ratelimit.Tokens, ratelimit.Day)
	count("input_tokens_per_minute", ps.InputTokensPerMinute, ratelimit.InputTokens, ratelimit.Minute)
	count("input_tokens_per_day", ps.InputTokensPerDay, ratelimit.InputTokens, ratelimit.Day)
	count("output_tokens_per_minute", ps.OutputTokensPerMinute, ratelimit.OutputTokens, ratelimit.Minute)
	count("output_tokens_per_day", ps.OutputTokensPerDay, ratelimit.OutputTokens, ratelimit.Day)
	count("concurrent_requests", ps.ConcurrentRequests, ratelimit.Concurrency, 0)
	spend := func(field string, usd float64, w time.Duration) {
		switch {
		case usd == 0:
		case usd < 0 || math.IsNaN(usd) || math.IsInf(usd, 0) || usd > 1e9:
			c.add(pp+"."+field, "must be a positive amount of USD up to 1e9, got %v", usd)
			ok = false
		default:
			pol.Limits = append(pol.Limits, ratelimit.Limit{Kind: ratelimit.Spend, Window: w, Max: ratelimit.MicroUSD(usd)})
		}
	}
	spend("spend_usd_per_day", ps.SpendUSDPerDay, ratelimit.Day)
	spend("spend_usd_per_month", ps.SpendUSDPerMonth, ratelimit.Month)
	if len(pol.Limits) == 0 && ok {
		c.add(pp, "sets no limit (requests_per_minute, tokens_per_day, concurrent_requests, spend_usd_per_day, ...)")
		ok = false
	}
	switch ps.OnRedisError {
	case "", "fail_open":
	case "fail_closed":
		pol.OnRedisError = ratelimit.FailClosed
	default:
		c.add(pp+".on_redis_error", "%q: want fail_open or fail_closed", ps.OnRedisError)
		ok = false
	}
	if ps.LocalShare != nil {
		if s := *ps.LocalShare; s <= 0 || s > 1 || math.IsNaN(s) {
			c.add(pp+".local_share", "must be in (0, 1], got %v", s)
			ok = false
		} else {
			pol.LocalShare = s
		}
	}
	if !ok {
		return nil
	}
	if err := pol.Validate(); err != nil {
		c.add(pp, "%v", err)
		return nil
	}
	return pol
}
