package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, return neither a
// runtime nor an error, or show a secret. The seeds are every fixture in
// testdata plus the example (and testdata/fuzz/FuzzParse, go's own corpus).
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	seeds = append(seeds, "example.yaml")
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "~", "[]", "a: &x [*x]\n", "{<<: {<<: 1}}", "providers: [{headers: {a: [1]}}]", "\xff\xfe", "model_groups: [*x]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rt, err := Parse(b, testOpts())
		if (rt == nil) == (err == nil) {
			t.Fatalf("runtime %v, error %v", rt, err)
		}
		if err != nil {
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) && !strings.Contains(string(b), s) {
					t.Fatalf("secret %q in the error", s)
				}
			}
			return
		}
		if _, err := rt.Redacted(); err != nil {
			t.Fatal(err)
		}
		if len(rt.Groups()) == 0 {
			t.Fatal("a valid configuration without model groups")
		}
	})
}

// FuzzLimits checks the limits section on its own: any policy text is
// accepted (with every limit valid for the limiter) or rejected with
// field errors, never a panic.
func FuzzLimits(f *testing.F) {
	for _, s := range []string{
		"{name: a, scope: key, requests_per_minute: 1}",
		"{name: b, scope: tenant, spend_usd_per_day: 0.5, on_redis_error: fail_closed, local_share: 0.5}",
		"{name: c, scope: deployment, match: [d], tokens_per_minute: 9, concurrent_requests: 2}",
		"{name: d, scope: route, match: [x]}",
		"{name: 'e:f', scope: global, spend_usd_per_month: 1e300}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, policy string) {
		doc := "providers: [{name: p, kind: openai, cluster: c}]\ndeployments: [{name: d, provider: p, model: m}]\nmodel_groups: [{name: g, deployments: [d]}]\nlimits:\n  policies:\n  - " + policy + "\n"
		rt, err := Parse([]byte(doc), testOpts())
		if (rt == nil) == (err == nil) {
			t.Fatalf("runtime %v, error %v", rt, err)
		}
		if rt == nil {
			return
		}
		for _, scope := range scopes {
			for _, p := range rt.Limits().For(nil, scope, "d") {
				if err := p.Validate(); err != nil {
					t.Fatalf("accepted an invalid policy: %v", err)
				}
			}
		}
	})
}
