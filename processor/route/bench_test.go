package route

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkPick is one request's routing at 20 deployments in a group
// (two tiers): Pick, then Report. Warm statistics, nothing cooling down.
func BenchmarkPick(b *testing.B) {
	for _, s := range []Strategy{Weighted, Cost, Latency, LeastBusy} {
		for _, bounded := range []bool{false, true} {
			if bounded && s != Cost {
				continue
			}
			name := s.String()
			if bounded {
				name += "_max_ttft"
			}
			b.Run(name, func(b *testing.B) {
				c := newClock()
				r := New(Options{Now: c.Now, Rand: rand.NewChaCha8([32]byte{1})})
				cands := make([]Candidate, 20)
				for i := range cands {
					cands[i] = Candidate{Name: fmt.Sprintf("deployment-%02d", i), Weight: 1 + i%3, Priority: i / 15,
						Price: perToken{float64(i+1) * 1e-7, float64(i+1) * 4e-7}}
				}
				p := Policy{Strategy: s}.WithDefaults()
				if bounded {
					p.MaxTTFT = time.Second
				}
				// Warm every deployment's statistics.
				for i := range cands {
					for range minSamples {
						samples(r, c, cands[i].Name, 0.1+float64(i)/20, 1)
					}
				}
				req := &Request{Policy: &p, Candidates: cands, Stream: true, InputTokens: 1200, MaxOutputTokens: 300}
				out := Outcome{TTFT: 300 * time.Millisecond, Duration: time.Second, OutputTokens: 300}
				var a Attempt
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					r.Pick(&a, req)
					a.Report(out)
				}
			})
		}
	}
}
