package route

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/llmux/llmux/translate"
)

// simDeployment is a simulated deployment: a price, a latency
// distribution and, optionally, a failure burst.
type simDeployment struct {
	Candidate
	// ttft is the median time to first token; each sample is log-normal
	// around it (sigma 0.25), and one in 100 is a 20x outlier.
	ttft time.Duration
	// failing reports whether a request at now fails (503).
	failing func(now time.Time) bool
}

// sim drives a Router with one request every step.
type sim struct {
	t     *testing.T
	clock *clock
	r     *Router
	rng   *rand.Rand // the deployments' randomness, apart from the router's
	deps  []simDeployment
	cands []Candidate
	p     Policy
	step  time.Duration
}

func newSim(t *testing.T, p Policy, deps ...simDeployment) *sim {
	c := newClock()
	s := &sim{t: t, clock: c, r: newRouter(c, 42), rng: rand.New(rand.NewPCG(7, 11)), deps: deps, p: p.WithDefaults(), step: 200 * time.Millisecond}
	for _, d := range deps {
		s.cands = append(s.cands, d.Candidate)
	}
	return s
}

// sample draws a latency around d.
func (s *sim) sample(d time.Duration) time.Duration {
	f := math.Exp(0.25 * s.rng.NormFloat64())
	if s.rng.IntN(100) == 0 {
		f *= 20
	}
	return time.Duration(float64(d) * f)
}

// request runs one streamed request and returns the deployment and reason.
func (s *sim) request() (string, Reason) {
	s.clock.Advance(s.step)
	var a Attempt
	if !s.r.Pick(&a, &Request{Policy: &s.p, Candidates: s.cands, Stream: true, InputTokens: 2000}) {
		s.t.Fatal("no candidate")
	}
	d := s.deps[a.Current()]
	if d.failing != nil && d.failing(s.clock.Now()) {
		a.Report(Outcome{Code: translate.CodeUpstreamUnavailable})
	} else {
		ttft := s.sample(d.ttft)
		a.Report(Outcome{TTFT: ttft, Duration: 4 * ttft, OutputTokens: 100})
	}
	return d.Name, a.Reason()
}

// TestSimCost: the cost strategy takes the cheapest healthy deployment of
// the best tier, moves away while it cools down, and comes back after.
func TestSimCost(t *testing.T) {
	start := newClock().Now()
	burstFrom, burstTo := start.Add(60*time.Second), start.Add(120*time.Second)
	s := newSim(t, Policy{Strategy: Cost, Health: Health{Failures: 3, Window: 30 * time.Second, Cooldown: 20 * time.Second, MaxCooldown: 80 * time.Second}},
		simDeployment{Candidate: Candidate{Name: "cheap", Weight: 1, Price: perToken{0.15e-6, 0.6e-6}}, ttft: 300 * time.Millisecond,
			failing: func(now time.Time) bool { return !now.Before(burstFrom) && now.Before(burstTo) }},
		simDeployment{Candidate: Candidate{Name: "mid", Weight: 1, Price: perToken{1e-6, 4e-6}}, ttft: 300 * time.Millisecond},
		simDeployment{Candidate: Candidate{Name: "dear", Weight: 1, Price: perToken{3e-6, 15e-6}}, ttft: 300 * time.Millisecond},
		simDeployment{Candidate: Candidate{Name: "free", Weight: 0, Price: perToken{}}, ttft: time.Millisecond},                           // out of rotation
		simDeployment{Candidate: Candidate{Name: "backup", Weight: 1, Priority: 1, Price: perToken{0.01e-6, 0.01e-6}}, ttft: time.Second}, // a lower tier
	)
	var cheapInBurst, n int
	for s.clock.Now().Before(burstTo.Add(3 * time.Minute)) {
		name, reason := s.request()
		now := s.clock.Now()
		n++
		if name == "free" || name == "backup" {
			t.Fatalf("request %d at +%s went to %s", n, now.Sub(start), name)
		}
		if reason != ReasonCost {
			t.Fatalf("request %d: reason %v", n, reason)
		}
		switch {
		case now.Before(burstFrom):
			if name != "cheap" {
				t.Fatalf("before the burst, request %d went to %s", n, name)
			}
		case now.Before(burstTo):
			if name == "cheap" {
				cheapInBurst++
			} else if name != "mid" {
				t.Fatalf("during the burst, request %d went to %s, not the cheapest healthy one", n, name)
			}
		case now.After(burstTo.Add(80 * time.Second)):
			// The longest cooldown (max_cooldown) is over: back to cheap.
			if name != "cheap" {
				t.Fatalf("after the burst and the last cooldown, request %d at +%s went to %s", n, now.Sub(start), name)
			}
		}
	}
	// Three failures start the first cooldown (20s); each probe that fails
	// doubles it (40s, 80s). The 60s burst sees the three failures and at
	// most two probes; the rest of its 300 requests go to mid.
	if cheapInBurst < 3 || cheapInBurst > 5 {
		t.Errorf("cheap got %d requests during its failure burst, want 3 failures and at most 2 probes", cheapInBurst)
	}
	t.Logf("%d requests; cheap tried %d times during its burst", n, cheapInBurst)
}

// TestSimCostLowerTier: when every deployment of the best tier cools
// down, the next tier serves; when every deployment does, the one whose
// cooldown ends first.
func TestSimCostLowerTier(t *testing.T) {
	down := func(time.Time) bool { return true }
	s := newSim(t, Policy{Strategy: Cost, Health: Health{Failures: 1, Cooldown: time.Minute}},
		simDeployment{Candidate: Candidate{Name: "a", Weight: 1, Price: perToken{1e-6, 1e-6}}, failing: down},
		simDeployment{Candidate: Candidate{Name: "b", Weight: 1, Price: perToken{2e-6, 2e-6}}, failing: down},
		simDeployment{Candidate: Candidate{Name: "backup", Weight: 1, Priority: 1, Price: perToken{9e-6, 9e-6}}, failing: down},
	)
	want := []struct {
		name   string
		reason Reason
	}{{"a", ReasonCost}, {"b", ReasonCost}, {"backup", ReasonCost}, {"a", ReasonCooldownAll}}
	for i, w := range want {
		name, reason := s.request()
		if name != w.name || reason != w.reason {
			t.Errorf("request %d: %s (%v), want %s (%v)", i, name, reason, w.name, w.reason)
		}
	}
}

// TestSimLatency: the latency strategy converges to the fastest
// deployment within 10 requests (3 to measure each cold one, then the
// best), notices within 20 requests when it slows down, and comes back to
// it within StaleAfter plus 10 requests once it is fast again.
func TestSimLatency(t *testing.T) {
	fast := &simDeployment{Candidate: Candidate{Name: "fast", Weight: 1}, ttft: 200 * time.Millisecond}
	s := newSim(t, Policy{Strategy: Latency, StaleAfter: 10 * time.Second},
		simDeployment{Candidate: Candidate{Name: "slow", Weight: 1}, ttft: time.Second},
		*fast,
		simDeployment{Candidate: Candidate{Name: "mid", Weight: 1}, ttft: 500 * time.Millisecond},
	)
	share := func(from, to int, want string) float64 {
		hits := 0
		for range to - from {
			if name, _ := s.request(); name == want {
				hits++
			}
		}
		return float64(hits) / float64(to-from)
	}
	share(0, 10, "")
	if got := share(10, 200, "fast"); got < 0.9 {
		t.Errorf("after 10 requests, fast got %.2f of the traffic, want >= 0.9", got)
	}
	s.deps[1].ttft = 2 * time.Second // fast slows down
	share(200, 220, "")
	if got := share(220, 400, "mid"); got < 0.85 {
		t.Errorf("20 requests after fast slowed down, mid got %.2f, want >= 0.85", got)
	}
	s.deps[1].ttft = 100 * time.Millisecond // and recovers
	steps := int(s.p.StaleAfter/s.step) + 10
	share(400, 400+steps, "")
	if got := share(400+steps, 600+steps, "fast"); got < 0.85 {
		t.Errorf("after recovering, fast got %.2f, want >= 0.85", got)
	}
}

// TestSimCostBounded: cost with max_ttft keeps to deployments within the
// bound, and takes the fastest when none is.
func TestSimCostBounded(t *testing.T) {
	s := newSim(t, Policy{Strategy: Cost, MaxTTFT: time.Second},
		simDeployment{Candidate: Candidate{Name: "cheap-slow", Weight: 1, Price: perToken{0.1e-6, 0.1e-6}}, ttft: 1500 * time.Millisecond},
		simDeployment{Candidate: Candidate{Name: "mid", Weight: 1, Price: perToken{1e-6, 1e-6}}, ttft: 400 * time.Millisecond},
		simDeployment{Candidate: Candidate{Name: "dear-fast", Weight: 1, Price: perToken{5e-6, 5e-6}}, ttft: 150 * time.Millisecond},
	)
	count := func(n int) map[string]int {
		m := map[string]int{}
		for range n {
			name, reason := s.request()
			m[name]++
			m[reason.String()]++
		}
		return m
	}
	count(10) // each cold one measured
	m := count(500)
	if m["mid"] < 450 || m["dear-fast"] > m["latency_explore"] {
		t.Errorf("max_ttft 1s: %v, want mid (the cheapest within the bound) on >= 90%%, the others only to explore", m)
	}
	s.deps[1].ttft = 3 * time.Second // mid leaves the bound
	count(20)
	if m := count(500); m["dear-fast"] < 450 {
		t.Errorf("mid slowed down: %v, want dear-fast", m)
	}
	s.p.MaxTTFT = 50 * time.Millisecond // nothing is within
	if m := count(100); m["dear-fast"] < 90 || m["cost_fastest"] < 90 {
		t.Errorf("bound below every deployment: %v, want the fastest", m)
	}
}

// TestSimLeastBusy: with requests that last longer on one deployment,
// least_busy always picks one with the fewest in flight, and so sends
// more to the quicker one.
func TestSimLeastBusy(t *testing.T) {
	c := newClock()
	r := newRouter(c, 5)
	p := policy(LeastBusy)
	cands := []Candidate{{Name: "quick", Weight: 1}, {Name: "slow", Weight: 1}, {Name: "slower", Weight: 1}}
	durations := []time.Duration{time.Second, 3 * time.Second, 6 * time.Second}
	type running struct {
		a   *Attempt
		end time.Time
	}
	var live []running
	count := make([]int, len(cands))
	for range 3000 {
		c.Advance(100 * time.Millisecond)
		kept := live[:0]
		for _, x := range live {
			if x.end.After(c.Now()) {
				kept = append(kept, x)
				continue
			}
			x.a.Report(Outcome{})
		}
		live = kept
		inflight := map[string]int64{}
		least := int64(math.MaxInt64)
		for _, st := range r.Statuses() {
			inflight[st.Deployment] = st.InFlight
			least = min(least, st.InFlight)
		}
		if len(inflight) < len(cands) {
			least = 0
		}
		a := new(Attempt)
		r.Pick(a, &Request{Policy: p, Candidates: cands})
		if got := inflight[cands[a.Current()].Name]; got != least {
			t.Fatalf("picked %s with %d in flight; the least busy had %d", cands[a.Current()].Name, got, least)
		}
		count[a.Current()]++
		live = append(live, running{a, c.Now().Add(durations[a.Current()])})
	}
	if !(count[0] > count[1] && count[1] > count[2]) {
		t.Errorf("picks %v, want quick > slow > slower", count)
	}
	for _, x := range live {
		x.a.Cancel()
	}
	for _, st := range r.Statuses() {
		if st.InFlight != 0 {
			t.Errorf("%s: %d in flight after every end", st.Deployment, st.InFlight)
		}
	}
}
