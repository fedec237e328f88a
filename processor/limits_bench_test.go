package processor

import (
	"testing"
	"time"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/ratelimit"
	"github.com/llmux/llmux/ratelimit/redistest"
)

// BenchmarkRequestPhasesLimits is BenchmarkRequestPhases/llmux with a
// key policy (requests, tokens and concurrency per minute) and a tenant
// spend budget: the limits' cost in the request phase, in memory and
// against a local redis-server (one round trip). The streams end without
// a response, so each also settles (a second round trip).
func BenchmarkRequestPhasesLimits(b *testing.B) {
	cfg := limitsConfig(b, `
limits:
  policies:
  - {name: key, scope: key, requests_per_minute: 1000000000, tokens_per_minute: 1000000000000, concurrent_requests: 1000}
  - {name: tenant, scope: tenant, spend_usd_per_day: 1000000000}
`)
	srv := redistest.Start(b)
	for name, lim := range map[string]*ratelimit.Limiter{
		"memory": ratelimit.New(ratelimit.Options{}),
		"redis":  ratelimit.New(ratelimit.Options{Redis: srv.Client(b), Timeout: time.Second}),
	} {
		b.Run(name, func(b *testing.B) {
			benchRequestPhases(b, New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger(), Limiter: lim}))
		})
	}
}
