package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llmux/llmux/ratelimit/redistest"
)

// benchClaims are a typical request's policies: a key's requests, tokens
// and concurrency, and a tenant's daily spend.
func benchClaims() []Claim {
	key := &Policy{Name: "key", LocalShare: 1, Limits: []Limit{{Kind: Requests, Window: Minute, Max: 1e9}, {Kind: Tokens, Window: Minute, Max: 1e12}, {Kind: Concurrency, Max: 1e6}}}
	tenant := &Policy{Name: "tenant", LocalShare: 1, Limits: []Limit{{Kind: Spend, Window: Day, Max: 1e15}}}
	return []Claim{{Policy: key, Subject: "k"}, {Policy: tenant, Subject: "t"}}
}

func benchReserveSettle(b *testing.B, l *Limiter) {
	ctx := context.Background()
	claims := benchClaims()
	req := &Request{ID: "bench", Claims: claims, Estimate: Usage{InputTokens: 500, OutputTokens: 256, SpendMicros: 300}}
	var r Reservation
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if d := l.Reserve(ctx, req, &r); !d.Allowed {
			b.Fatalf("denied: %+v", d)
		}
		lat = append(lat, time.Since(t0))
		if err := l.Settle(ctx, &r, Usage{InputTokens: 500, OutputTokens: 100, SpendMicros: 200}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "reserve-p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "reserve-p99-µs")
}

// BenchmarkReserveSettleRedis is a reserve and a settle (two round trips)
// against a local redis-server; the reserve's p50 and p99 are reported.
func BenchmarkReserveSettleRedis(b *testing.B) {
	srv := redistest.Start(b)
	l := New(Options{Redis: srv.Client(b), Timeout: time.Second})
	if err := l.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	benchReserveSettle(b, l)
}

// BenchmarkReserveSettleMemory is the same on the in-memory limiter.
func BenchmarkReserveSettleMemory(b *testing.B) {
	benchReserveSettle(b, New(Options{}))
}

// BenchmarkReserveSettleRedisParallel runs reserve+settle from many
// goroutines sharing one client: the throughput one llmux gets from one
// Redis.
func BenchmarkReserveSettleRedisParallel(b *testing.B) {
	srv := redistest.Start(b)
	l := New(Options{Redis: srv.Client(b), Timeout: time.Second})
	claims := benchClaims()
	b.SetParallelism(16)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		req := &Request{ID: fmt.Sprint("p", n.Add(1)), Claims: claims, Estimate: Usage{InputTokens: 500}}
		var r Reservation
		for pb.Next() {
			if d := l.Reserve(context.Background(), req, &r); !d.Allowed {
				b.Errorf("denied: %+v", d)
				return
			}
			_ = l.Settle(context.Background(), &r, Usage{InputTokens: 400})
		}
	})
}
