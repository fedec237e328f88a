package config

import (
	"strings"
	"testing"
	"time"

	"github.com/llmux/llmux/ratelimit"
)

func TestLimitsCompiled(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/limits.yaml")
	ls := rt.Limits()
	if !ls.Enabled() || ls.Spec.Timeout != 50*time.Millisecond || ls.Spec.ExpectedOutputTokens != 256 || ls.Spec.HashTag != "llmux" {
		t.Fatalf("spec %+v", ls.Spec)
	}
	names := func(ps []*ratelimit.Policy) string {
		var s []string
		for _, p := range ps {
			s = append(s, p.Name)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct{ scope, subject, want string }{
		{ScopeKey, "demo", "per-key"},
		{ScopeKey, "other", ""},
		{ScopeTenant, "anyone", "per-tenant"},
		{ScopeModelGroup, "g", "group"},
		{ScopeDeployment, "d1", "quota"},
		{ScopeDeployment, "d2", ""},
		{ScopeGlobal, "", "everyone"},
	} {
		if got := names(ls.For(nil, tc.scope, tc.subject)); got != tc.want {
			t.Errorf("%s %q: %q, want %q", tc.scope, tc.subject, got, tc.want)
		}
	}
	p, ok := ls.RoutePolicy("research")
	if !ok || len(p.Limits) != 5 {
		t.Fatalf("route policy %+v %v", p, ok)
	}
	if _, ok := ls.RoutePolicy("per-key"); ok {
		t.Fatal("a key policy served as a route policy")
	}
	tenant := ls.For(nil, ScopeTenant, "x")[0]
	if tenant.OnRedisError != ratelimit.FailClosed || tenant.Limits[1] != (ratelimit.Limit{Kind: ratelimit.Spend, Window: ratelimit.Day, Max: 25_000_000}) {
		t.Fatalf("tenant policy %+v", tenant)
	}
	if q := ls.For(nil, ScopeDeployment, "d1")[0]; q.LocalShare != 0.25 {
		t.Fatalf("local share %v", q.LocalShare)
	}
	// Without a limits section, nothing applies.
	if mustParseFile(t, "testdata/valid/minimal.yaml").Limits().Enabled() {
		t.Fatal("limits enabled by default")
	}
}
