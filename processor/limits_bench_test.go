package processor

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

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

// BenchmarkLimitsLoad2000 is the bounded load run: request phases
// (headers, body, end of stream: reserve and settle) sent to one llmux
// server at a fixed 2,000 requests/s for b.N requests, with a key and a
// tenant policy in a local redis-server. It reports the request phase's
// p50 and p99 and the rate achieved (docs/performance.md, "Limits").
func BenchmarkLimitsLoad2000(b *testing.B) {
	cfg := limitsConfig(b, `
limits:
  policies:
  - {name: key, scope: key, requests_per_minute: 1000000000, tokens_per_minute: 1000000000000, concurrent_requests: 100000}
  - {name: tenant, scope: tenant, spend_usd_per_day: 1000000000}
`)
	srv := redistest.Start(b)
	for _, v := range []struct {
		name string
		cfg  *config.Runtime
		lim  *ratelimit.Limiter
	}{
		{"none", testConfig(b), nil},
		{"memory", cfg, ratelimit.New(ratelimit.Options{})},
		{"redis", cfg, ratelimit.New(ratelimit.Options{Redis: srv.Client(b), Timeout: time.Second})},
	} {
		b.Run(v.name, func(b *testing.B) {
			loadRun(b, New(Options{Config: func() *config.Runtime { return v.cfg }, Logger: discardLogger(), Limiter: v.lim}))
		})
	}
}

// loadRun sends b.N request phases to srv at 2,000 requests/s.
func loadRun(b *testing.B, srv extprocv3.ExternalProcessorServer) {
	client := benchConn(b, srv)
	hdr := post("/v1/chat/completions", bearer()...)
	body := reqBody(benchChatBody)
	const rate = 2000
	lat := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		// Pace by schedule, not by ticks: a late wake-up sends the
		// requests it owes at once, so the mean rate stays 2,000/s.
		if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			s, err := client.Process(context.Background())
			if err != nil {
				b.Error(err)
				return
			}
			for _, m := range []*extprocv3.ProcessingRequest{hdr, body} {
				if err := s.Send(m); err != nil {
					b.Error(err)
					return
				}
				if _, err := s.Recv(); err != nil {
					b.Error(err)
					return
				}
			}
			lat[i] = time.Since(t0)
			_ = s.CloseSend()
			for {
				if _, err := s.Recv(); err != nil {
					break
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
