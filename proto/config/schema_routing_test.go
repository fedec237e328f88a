package config

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/llmux/llmux/processor/route"
)

func TestRoutingCompiled(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/routing.yaml")
	tests := []struct {
		group string
		want  route.Policy
	}{
		{"gpt-4o", route.Policy{}.WithDefaults()},
		{"cheap", route.Policy{Strategy: route.Cost, ExpectedOutputTokens: 500, UnknownCost: route.UnknownExclude}.WithDefaults()},
		{"cheap-fast", route.Policy{Strategy: route.Cost, MaxTTFT: 1500 * time.Millisecond}.WithDefaults()},
		{"fast", route.Policy{Strategy: route.Latency, Explore: 0.1, StaleAfter: 30 * time.Second,
			Health: route.Health{Failures: 5, Window: 30 * time.Second, Cooldown: 10 * time.Second, MaxCooldown: 2 * time.Minute}}.WithDefaults()},
		{"llama", route.Policy{Strategy: route.LeastBusy, Explore: -1}.WithDefaults()},
	}
	for _, tc := range tests {
		g, ok := rt.Group(tc.group)
		if !ok {
			t.Fatalf("no group %s", tc.group)
		}
		if g.Routing != tc.want {
			t.Errorf("%s: routing %+v\nwant %+v", tc.group, g.Routing, tc.want)
		}
	}
}

func TestRouteOverride(t *testing.T) {
	base := route.Policy{Strategy: route.Latency, MaxTTFT: time.Second, Explore: -1,
		Health: route.Health{Failures: 9}}.WithDefaults()
	tests := []struct {
		in      string
		want    route.Policy
		wantErr string
	}{
		{in: `{}`, want: base},
		{in: `{"strategy":"cost"}`, want: func() route.Policy { p := base; p.Strategy = route.Cost; return p }()},
		{in: `{"strategy":"cost","max_ttft":"250ms","unknown_cost":"exclude","expected_output_tokens":64,"explore":0.5,"stale_after":"10s"}`,
			want: func() route.Policy {
				p := base
				p.Strategy, p.MaxTTFT, p.UnknownCost, p.ExpectedOutputTokens, p.Explore, p.StaleAfter = route.Cost, 250*time.Millisecond, route.UnknownExclude, 64, 0.5, 10*time.Second
				return p
			}()},
		{in: `{"strategy":"fast"}`, wantErr: `routing.strategy: unknown strategy "fast"`},
		{in: `{"max_ttft":5}`, wantErr: `routing.max_ttft: expected a duration`},
		{in: `{"strategy":"cost","colour":"red"}`, wantErr: `routing.colour: unknown field`},
		{in: `{"health":{"failures":2}}`, wantErr: `routing.health: health is a model group's setting`},
		{in: `"cost"`, wantErr: `routing: expected a mapping`},
	}
	for _, tc := range tests {
		o, err := ParseRouteOverride([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := o.Apply(base); got != tc.want {
			t.Errorf("%s: %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
	var none *RouteOverride
	if none.Apply(base) != base {
		t.Error("a nil override changed the policy")
	}
}

func TestFailoverCompiled(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/routing.yaml")
	names := func(gs []*Group) []string {
		var out []string
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return out
	}
	tests := []struct {
		group          string
		attempts       int
		budget         time.Duration
		window, policy []string
	}{
		{"gpt-4o", DefaultFailoverAttempts, DefaultFailoverBudget, nil, nil},
		{"long", 4, 30 * time.Second, []string{"fast"}, []string{"llama"}},
	}
	for _, tc := range tests {
		g, ok := rt.Group(tc.group)
		if !ok {
			t.Fatalf("no group %s", tc.group)
		}
		f := g.Failover
		if f.MaxAttempts != tc.attempts || f.Budget != tc.budget {
			t.Errorf("%s: max_attempts %d budget %s, want %d %s", tc.group, f.MaxAttempts, f.Budget, tc.attempts, tc.budget)
		}
		if got := names(f.ContextWindow); !slices.Equal(got, tc.window) {
			t.Errorf("%s: context window fallbacks %v, want %v", tc.group, got, tc.window)
		}
		if got := names(f.ContentPolicy); !slices.Equal(got, tc.policy) {
			t.Errorf("%s: content policy fallbacks %v, want %v", tc.group, got, tc.policy)
		}
	}
}
