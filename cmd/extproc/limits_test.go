package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/ratelimit"
	"github.com/llmux/llmux/ratelimit/redistest"
	"github.com/llmux/llmux/translate"
)

// TestNewLimiter builds the limiter from limits.redis: on Redis when an
// address is given (its scripts loaded), in memory with a warning when
// policies exist but no address does.
func TestNewLimiter(t *testing.T) {
	srv := redistest.Start(t)
	parse := func(redis string) *config.LimitSet {
		t.Helper()
		rt, err := config.Parse([]byte(`
providers: [{name: p, kind: openai, cluster: c}]
deployments: [{name: d, provider: p, model: m}]
model_groups: [{name: g, deployments: [d]}]
limits:
  redis: {addresses_env: TEST_REDIS}
  policies: [{name: t, scope: tenant, requests_per_minute: 1}]
`), config.LoadOptions{Kinds: translate.KnownKinds, Getenv: func(string) (string, bool) { return redis, redis != "" }})
		if err != nil {
			t.Fatal(err)
		}
		return rt.Limits()
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ls := parse(srv.Addr)
	lim, closeLim := newLimiter(context.Background(), ls, log)
	defer closeLim()
	if lim.Mode() != "redis" || !strings.Contains(buf.String(), "limits: counters in Redis") {
		t.Fatalf("mode %s, log %s", lim.Mode(), buf.String())
	}
	p := ls.For(nil, config.ScopeTenant, "a")
	d := lim.Reserve(context.Background(), &ratelimit.Request{ID: "1", Claims: []ratelimit.Claim{{Policy: p[0], Subject: "a"}}}, &ratelimit.Reservation{})
	if !d.Allowed || d.Source != ratelimit.SourceRedis {
		t.Fatalf("%+v", d)
	}
	buf.Reset()
	mem, closeMem := newLimiter(context.Background(), parse(""), log)
	defer closeMem()
	if mem.Mode() != "memory" || !strings.Contains(buf.String(), "kept in this process's memory") {
		t.Fatalf("mode %s, log %s", mem.Mode(), buf.String())
	}
	if redisChanged(ls, ls) || !redisChanged(ls, parse("")) {
		t.Fatal("redisChanged")
	}
}
