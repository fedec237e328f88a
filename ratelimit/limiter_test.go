package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/llmux/llmux/ratelimit/redistest"
)

// clock is a settable clock for the in-memory limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func policy(name string, mode Mode, limits ...Limit) *Policy {
	p := &Policy{Name: name, Limits: limits, OnRedisError: mode, LocalShare: 1}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// backends runs f against the in-memory limiter and against a real Redis.
func backends(t *testing.T, f func(t *testing.T, l *Limiter)) {
	t.Run("memory", func(t *testing.T) { f(t, New(Options{Now: newClock().Now})) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		f(t, New(Options{Redis: srv.Client(t), Timeout: 5 * time.Second}))
	})
}

func reserve(t *testing.T, l *Limiter, id string, est Usage, claims ...Claim) (Decision, *Reservation) {
	t.Helper()
	r := &Reservation{}
	d := l.Reserve(context.Background(), &Request{ID: id, Claims: claims, Estimate: est}, r)
	if d.Allowed != r.Held() {
		t.Fatalf("allowed %v but held %v", d.Allowed, r.Held())
	}
	return d, r
}

func TestRequestsPerMinute(t *testing.T) {
	backends(t, func(t *testing.T, l *Limiter) {
		p := policy("rpm", FailOpen, Limit{Kind: Requests, Window: Minute, Max: 3})
		c := Claim{Policy: p, Subject: "alice"}
		for i, want := range []int64{2, 1, 0} {
			d, r := reserve(t, l, "r", Usage{}, c)
			if !d.Allowed || d.Requests.Remaining != want || d.Requests.Max != 3 || d.Requests.Policy != "rpm" {
				t.Fatalf("request %d: %+v", i, d)
			}
			if d.Requests.Reset <= 0 || d.Requests.Reset > Minute+Minute/Buckets {
				t.Fatalf("reset %v", d.Requests.Reset)
			}
			if err := l.Settle(context.Background(), r, Usage{}); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 { // a denied request consumes nothing: the next is denied the same way
			d, _ := reserve(t, l, "r", Usage{}, c)
			if d.Allowed || d.Denied.Limit.Kind != Requests || d.Denied.Claim.Subject != "alice" || d.Denied.Budget() || d.Denied.Unavailable {
				t.Fatalf("4th request: %+v", d)
			}
			if d.Denied.RetryAfter <= 0 || d.Denied.RetryAfter > Minute+Minute/Buckets {
				t.Fatalf("retry after %v", d.Denied.RetryAfter)
			}
		}
		// Another subject has its own counter.
		if d, _ := reserve(t, l, "r", Usage{}, Claim{Policy: p, Subject: "bob"}); !d.Allowed {
			t.Fatalf("bob: %+v", d)
		}
	})
}

func TestTokensSettleToUsage(t *testing.T) {
	backends(t, func(t *testing.T, l *Limiter) {
		p := policy("tpm", FailOpen, Limit{Kind: Tokens, Window: Minute, Max: 1000}, Limit{Kind: Spend, Window: Day, Max: 5000})
		c := Claim{Policy: p, Subject: "t"}
		d, r := reserve(t, l, "a", Usage{InputTokens: 100, OutputTokens: 500, SpendMicros: 3000}, c)
		if !d.Allowed || d.Tokens.Remaining != 400 {
			t.Fatalf("%+v", d)
		}
		// The estimate holds: 600 + 500 > 1000, and 3000 + 3000 > 5000; the
		// denial names the limit that frees last (the day's spend).
		if d, _ := reserve(t, l, "b", Usage{InputTokens: 100, OutputTokens: 500, SpendMicros: 3000}, c); d.Allowed || d.Denied.Limit.Kind != Spend || d.Denied.RetryAfter < Day {
			t.Fatalf("over the estimate: %+v", d)
		}
		if d, _ := reserve(t, l, "b", Usage{InputTokens: 100, OutputTokens: 500, SpendMicros: 1}, c); d.Allowed || d.Denied.Limit.Kind != Tokens {
			t.Fatalf("over the estimate: %+v", d)
		}
		if err := l.Settle(context.Background(), r, Usage{InputTokens: 100, OutputTokens: 20, SpendMicros: 100}); err != nil {
			t.Fatal(err)
		}
		if err := l.Settle(context.Background(), r, Usage{InputTokens: 1000}); err != nil { // a second settle does nothing
			t.Fatal(err)
		}
		// Settled to 120 tokens and 100 micro-USD.
		d, _ = reserve(t, l, "c", Usage{InputTokens: 1, SpendMicros: 1}, c)
		if !d.Allowed || d.Tokens.Remaining != 1000-120-1 {
			t.Fatalf("after settle: %+v", d)
		}
		d, _ = reserve(t, l, "d", Usage{InputTokens: 1, SpendMicros: 4900}, c)
		if d.Allowed || !d.Denied.Budget() {
			t.Fatalf("spend: %+v", d)
		}
	})
}

func TestConcurrencySlot(t *testing.T) {
	backends(t, func(t *testing.T, l *Limiter) {
		p := policy("conc", FailOpen, Limit{Kind: Concurrency, Max: 2})
		c := Claim{Policy: p, Subject: "k"}
		_, r1 := reserve(t, l, "1", Usage{}, c)
		_, r2 := reserve(t, l, "2", Usage{}, c)
		if d, _ := reserve(t, l, "3", Usage{}, c); d.Allowed || d.Denied.Limit.Kind != Concurrency {
			t.Fatalf("third slot: %+v", d)
		}
		if !r1.Held() || !r2.Held() {
			t.Fatal("not held")
		}
		if err := l.Settle(context.Background(), r1, Usage{}); err != nil {
			t.Fatal(err)
		}
		if d, _ := reserve(t, l, "3", Usage{}, c); !d.Allowed {
			t.Fatalf("after a settle: %+v", d)
		}
	})
}

func TestLeaseExpires(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now, Lease: time.Minute})
	c := Claim{Policy: policy("conc", FailOpen, Limit{Kind: Concurrency, Max: 1}), Subject: "k"}
	reserve(t, l, "lost", Usage{}, c) // never settled
	if d, _ := reserve(t, l, "next", Usage{}, c); d.Allowed {
		t.Fatal("slot free before its lease ended")
	}
	clk.Add(time.Minute)
	if d, _ := reserve(t, l, "next", Usage{}, c); !d.Allowed {
		t.Fatalf("slot held past its lease: %+v", d)
	}
}

func TestRedisLeaseTTL(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	l := New(Options{Redis: rdb, Lease: 90 * time.Second, Timeout: 5 * time.Second})
	c := Claim{Policy: policy("conc", FailOpen, Limit{Kind: Concurrency, Max: 1}), Subject: "k"}
	reserve(t, l, "lost", Usage{}, c)
	ctx := context.Background()
	key := "llmux:rl:{llmux}:conc:k:concurrency"
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil || ttl <= 0 || ttl > 90*time.Second {
		t.Fatalf("ttl %v %v", ttl, err)
	}
	// The lease's end is the member's score: expire it by hand, as time
	// would, and the slot is free.
	if err := rdb.ZAdd(ctx, key, redis.Z{Score: 1, Member: "lost"}).Err(); err != nil {
		t.Fatal(err)
	}
	if d, _ := reserve(t, l, "next", Usage{}, c); !d.Allowed {
		t.Fatalf("expired lease still counted: %+v", d)
	}
}

func TestSlidingWindowMemory(t *testing.T) {
	clk := newClock()
	l := New(Options{Now: clk.Now})
	c := Claim{Policy: policy("rpm", FailOpen, Limit{Kind: Requests, Window: Minute, Max: 2}), Subject: "s"}
	reserve(t, l, "a", Usage{}, c)
	clk.Add(30 * time.Second)
	reserve(t, l, "b", Usage{}, c)
	d, _ := reserve(t, l, "c", Usage{}, c)
	if d.Allowed {
		t.Fatal("third request in a minute admitted")
	}
	// The first request leaves the window one sub-bucket after a minute
	// at most: retry-after says when.
	if d.Denied.RetryAfter <= 30*time.Second || d.Denied.RetryAfter > 31*time.Second+Minute/Buckets {
		t.Fatalf("retry after %v", d.Denied.RetryAfter)
	}
	clk.Add(d.Denied.RetryAfter)
	if d, _ := reserve(t, l, "c", Usage{}, c); !d.Allowed {
		t.Fatalf("after retry-after: %+v", d)
	}
	if d, _ := reserve(t, l, "d", Usage{}, c); d.Allowed {
		t.Fatal("the second request left the window early")
	}
}

func TestAlternatives(t *testing.T) {
	backends(t, func(t *testing.T, l *Limiter) {
		key := Claim{Policy: policy("key", FailOpen, Limit{Kind: Requests, Window: Minute, Max: 10}), Subject: "k"}
		dep := policy("quota", FailOpen, Limit{Kind: Requests, Window: Minute, Max: 1})
		alts := [][]Claim{{{Policy: dep, Subject: "dep-a"}}, {{Policy: dep, Subject: "dep-b"}}}
		for i, want := range []int{0, 1} {
			r := &Reservation{}
			d := l.Reserve(context.Background(), &Request{ID: "x", Claims: []Claim{key}, Alternatives: alts}, r)
			if !d.Allowed || d.Alternative != want {
				t.Fatalf("request %d: %+v", i, d)
			}
			if d.Requests.Remaining != 0 || d.Requests.Policy != "quota" {
				t.Fatalf("tightest: %+v", d.Requests)
			}
		}
		r := &Reservation{}
		d := l.Reserve(context.Background(), &Request{ID: "x", Claims: []Claim{key}, Alternatives: alts}, r)
		if d.Allowed || d.Denied.Claim.Policy != dep {
			t.Fatalf("no headroom: %+v", d)
		}
		// The denial consumed nothing of the key's policy: 2 of 10 used.
		d, _ = reserve(t, l, "y", Usage{}, key)
		if d.Requests.Remaining != 7 {
			t.Fatalf("key remaining %d", d.Requests.Remaining)
		}
	})
}

func TestOneRoundTripEach(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	hook := &redistest.Counter{}
	rdb.AddHook(hook)
	l := New(Options{Redis: rdb, Timeout: 5 * time.Second})
	ctx := context.Background()
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	claims := []Claim{
		{Policy: policy("a", FailOpen, Limit{Kind: Requests, Window: Minute, Max: 10}, Limit{Kind: Tokens, Window: Day, Max: 1e6}, Limit{Kind: Concurrency, Max: 5}), Subject: "k"},
		{Policy: policy("b", FailOpen, Limit{Kind: Spend, Window: Month, Max: 1e9}), Subject: "tenant"},
	}
	hook.N.Store(0)
	r := &Reservation{}
	if d := l.Reserve(ctx, &Request{ID: "1", Claims: claims, Estimate: Usage{InputTokens: 5}}, r); !d.Allowed {
		t.Fatalf("%+v", d)
	}
	if n := hook.N.Load(); n != 1 {
		t.Fatalf("reserve: %d round trips", n)
	}
	if err := l.Settle(ctx, r, Usage{InputTokens: 7}); err != nil {
		t.Fatal(err)
	}
	if n := hook.N.Load(); n != 2 {
		t.Fatalf("reserve + settle: %d round trips", n)
	}
	// After SCRIPT FLUSH (a Redis restart), the script is reloaded.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if d := l.Reserve(ctx, &Request{ID: "2", Claims: claims}, r); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("after SCRIPT FLUSH: %+v", d)
	}
}

// TestSharedRedisNeverOverAdmits: goroutines on three limiters sharing
// one Redis never hold more slots, nor start more requests, than allowed.
func TestSharedRedisNeverOverAdmits(t *testing.T) {
	srv := redistest.Start(t)
	var ls []*Limiter
	for range 3 {
		ls = append(ls, New(Options{Redis: redis.NewClient(&redis.Options{Addr: srv.Addr}), Timeout: 10 * time.Second}))
	}
	t.Cleanup(func() {
		for _, l := range ls {
			_ = l.opts.Redis.Close()
		}
	})
	const conc, rpm, workers, each = 4, 60, 24, 5
	p := policy("shared", FailClosed, Limit{Kind: Concurrency, Max: conc}, Limit{Kind: Requests, Window: Minute, Max: rpm})
	c := Claim{Policy: p, Subject: "all"}
	var inflight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ls[w%3]
			for i := range each {
				r := &Reservation{}
				d := l.Reserve(context.Background(), &Request{ID: string(rune('a'+w)) + string(rune('a'+i)), Claims: []Claim{c}}, r)
				if d.Source != SourceRedis {
					t.Errorf("source %v", d.Source)
				}
				if !d.Allowed {
					continue
				}
				admitted.Add(1)
				n := inflight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				inflight.Add(-1)
				if err := l.Settle(context.Background(), r, Usage{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if peak.Load() > conc {
		t.Fatalf("peak in flight %d > %d", peak.Load(), conc)
	}
	if admitted.Load() > rpm || admitted.Load() == 0 {
		t.Fatalf("admitted %d (limit %d per minute)", admitted.Load(), rpm)
	}
	// Every slot was freed.
	n, err := ls[0].opts.Redis.ZCard(context.Background(), "llmux:rl:{llmux}:shared:all:concurrency").Result()
	if err != nil || n != 0 {
		t.Fatalf("slots left: %d %v", n, err)
	}
}

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	l := New(Options{Redis: cl.Client(t), Timeout: 5 * time.Second})
	a := Claim{Policy: policy("a", FailClosed, Limit{Kind: Requests, Window: Minute, Max: 2}), Subject: "x"}
	b := Claim{Policy: policy("b", FailClosed, Limit{Kind: Tokens, Window: Day, Max: 100}, Limit{Kind: Concurrency, Max: 5}), Subject: "y"}
	for i := range 2 {
		d, r := reserve(t, l, "id", Usage{InputTokens: 10}, a, b)
		if !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("request %d: %+v", i, d)
		}
		if err := l.Settle(context.Background(), r, Usage{InputTokens: 20}); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := reserve(t, l, "id", Usage{InputTokens: 10}, a, b)
	if d.Allowed || d.Denied.Claim.Policy.Name != "a" {
		t.Fatalf("third: %+v", d)
	}
	d, _ = reserve(t, l, "id", Usage{InputTokens: 10}, b)
	if !d.Allowed || d.Tokens.Remaining != 100-40-10 {
		t.Fatalf("tokens: %+v", d)
	}
}

// TestRedisDown follows each policy's mode while Redis is down, opens the
// breaker, probes Redis back after a restart, and counts nothing twice.
func TestRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	clk := newClock()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &redistest.Counter{}
	rdb.AddHook(hook)
	l := New(Options{Redis: rdb, Now: clk.Now, Timeout: 2 * time.Second, BreakerFailures: 2, BreakerOpenFor: 10 * time.Second})
	open := Claim{Policy: &Policy{Name: "open", Limits: []Limit{{Kind: Requests, Window: Minute, Max: 10}}, OnRedisError: FailOpen, LocalShare: 0.2}, Subject: "s"}
	closed := Claim{Policy: policy("closed", FailClosed, Limit{Kind: Requests, Window: Minute, Max: 10}), Subject: "s"}
	ctx := context.Background()

	d, held := reserve(t, l, "before", Usage{}, open)
	if !d.Allowed || d.Source != SourceRedis || l.Mode() != "redis" {
		t.Fatalf("before: %+v", d)
	}
	srv.Stop()
	// fail_closed: 503-shaped denial.
	if d, _ := reserve(t, l, "c", Usage{}, closed); d.Allowed || !d.Denied.Unavailable || d.Source != SourceFailed {
		t.Fatalf("fail_closed: %+v", d)
	}
	// fail_open: the local limiter at 20% of 10.
	for i := range 3 {
		d, _ := reserve(t, l, "o", Usage{}, open)
		if d.Allowed != (i < 2) || d.Source != SourceLocal {
			t.Fatalf("fail_open %d: %+v", i, d)
		}
	}
	if l.Mode() != "fallback" || l.RedisErrors() != 2 {
		t.Fatalf("mode %s, %d errors", l.Mode(), l.RedisErrors())
	}
	// The breaker is open: no call reaches Redis.
	calls := hook.N.Load()
	reserve(t, l, "o", Usage{}, open)
	if hook.N.Load() != calls {
		t.Fatal("a call went to Redis while the breaker was open")
	}
	// A reservation made in Redis settles in Redis only: with the breaker
	// open it is dropped (its slot would end with its lease), never
	// applied to the local limiter.
	if err := l.Settle(ctx, held, Usage{}); err == nil {
		t.Fatal("settle with the breaker open succeeded")
	}

	srv.Restart(t)
	clk.Add(10 * time.Second) // the breaker lets one probe through
	d, r := reserve(t, l, "after", Usage{}, closed)
	if !d.Allowed || d.Source != SourceRedis || l.Mode() != "redis" {
		t.Fatalf("after restart: %+v mode %s", d, l.Mode())
	}
	if d.Requests.Remaining != 9 {
		t.Fatalf("counted twice: remaining %d", d.Requests.Remaining)
	}
	if err := l.Settle(ctx, r, Usage{}); err != nil {
		t.Fatal(err)
	}
}
