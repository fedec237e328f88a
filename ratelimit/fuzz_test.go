package ratelimit

import (
	"context"
	"testing"
	"time"
)

// FuzzMemoryNeverOverAdmits drives the in-memory limiter (the Redis
// script's twin) with a sequence of reserves, settles and clock steps
// read from the input, and checks that what is held never exceeds the
// bounds: the concurrency slots in use, and the requests admitted within
// any window-long stretch.
func FuzzMemoryNeverOverAdmits(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0, 0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 255, 1, 255, 1, 255, 2, 2, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		clk := newClock()
		l := New(Options{Now: clk.Now, Lease: time.Hour})
		const conc, rpm = 3, 5
		p := &Policy{Name: "f", LocalShare: 1, Limits: []Limit{{Kind: Concurrency, Max: conc}, {Kind: Requests, Window: Minute, Max: rpm}, {Kind: Tokens, Window: Minute, Max: 1000}}}
		c := []Claim{{Policy: p, Subject: "s"}}
		var held []*Reservation
		var admitted []time.Time
		for _, op := range ops {
			switch op % 4 {
			case 0, 1: // reserve
				r := &Reservation{}
				d := l.Reserve(context.Background(), &Request{ID: string(rune('a' + len(admitted)%26)), Claims: c, Estimate: Usage{InputTokens: int64(op)}}, r)
				if d.Allowed {
					held = append(held, r)
					admitted = append(admitted, clk.Now())
				} else if d.Denied.RetryAfter <= 0 {
					t.Fatalf("denied without a retry-after: %+v", d)
				}
			case 2: // settle the oldest
				if len(held) > 0 {
					_ = l.Settle(context.Background(), held[0], Usage{InputTokens: int64(op) / 3})
					held = held[1:]
				}
			case 3: // time passes
				clk.Add(time.Duration(op) * 100 * time.Millisecond)
			}
			if len(held) > conc {
				t.Fatalf("%d slots held, limit %d", len(held), conc)
			}
		}
		for i := range admitted {
			n := 0
			for j := i; j < len(admitted) && admitted[j].Sub(admitted[i]) < Minute; j++ {
				n++
			}
			if n > rpm {
				t.Fatalf("%d requests within a minute from %v, limit %d", n, admitted[i], rpm)
			}
		}
	})
}
