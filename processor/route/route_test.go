package route

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/llmux/llmux/translate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a manual clock.
type clock struct{ t time.Time }

func newClock() *clock                   { return &clock{t: time.Unix(1_700_000_000, 0)} }
func (c *clock) Now() time.Time          { return c.t }
func (c *clock) Advance(d time.Duration) { c.t = c.t.Add(d) }
func newRouter(c *clock, seed uint64) *Router {
	return New(Options{Now: c.Now, Rand: rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)})
}

// perToken is a linear price: USD per input and per output token.
type perToken struct{ in, out float64 }

func (p perToken) Estimate(in, out int64) float64 { return float64(in)*p.in + float64(out)*p.out }

func policy(s Strategy) *Policy {
	p := Policy{Strategy: s}.WithDefaults()
	return &p
}

func names(cands []Candidate, a *Attempt) []string {
	out := make([]string, a.Len())
	for i := range out {
		out[i] = cands[a.At(i)].Name
	}
	return out
}

func TestPolicyDefaults(t *testing.T) {
	p := Policy{}.WithDefaults()
	if p.Strategy != Weighted || p.ExpectedOutputTokens != DefaultExpectedOutputTokens || p.Explore != DefaultExplore ||
		p.StaleAfter != DefaultStaleAfter || p.Health != (Health{DefaultFailures, DefaultWindow, DefaultCooldown, DefaultMaxCooldown}) {
		t.Errorf("defaults: %+v", p)
	}
	if p := (Policy{Explore: -1}).WithDefaults().WithDefaults(); p.Explore != -1 {
		t.Errorf("explore -1 → %v, want -1 (off)", p.Explore)
	}
	if h := (Health{Cooldown: time.Hour}).WithDefaults(); h.MaxCooldown != time.Hour {
		t.Errorf("max_cooldown below cooldown: %v", h.MaxCooldown)
	}
	for _, n := range StrategyNames() {
		s, ok := ParseStrategy(n)
		if !ok || s.String() != n {
			t.Errorf("strategy %q round trip: %v %v", n, s, ok)
		}
	}
	if _, ok := ParseStrategy("fastest"); ok {
		t.Error("unknown strategy parsed")
	}
	for _, n := range []string{"last", "exclude"} {
		if u, ok := ParseUnknownCost(n); !ok || u.String() != n {
			t.Errorf("unknown_cost %q round trip", n)
		}
	}
}

func TestFailureClasses(t *testing.T) {
	tests := []struct {
		code translate.Code
		want bool
	}{
		{"", false},
		{translate.CodeRateLimited, true},
		{translate.CodeQuotaExhausted, true},
		{translate.CodeOverloaded, true},
		{translate.CodeTimeout, true},
		{translate.CodeUpstreamUnavailable, true},
		{translate.CodeUpstreamError, true},
		{translate.CodeUpstreamProtocol, true},
		{translate.CodeUpstreamTruncated, true},
		{translate.CodeStreamStalled, true},
		{translate.CodeStreamInterrupted, false},
		{translate.CodeCanceled, false},
		{translate.CodeInvalidRequest, false},
		{translate.CodeContextLengthExceeded, false},
		{translate.CodeAuthentication, false},
		{translate.CodeInternal, false},
	}
	for _, tc := range tests {
		if got := Failure(tc.code); got != tc.want {
			t.Errorf("Failure(%q) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestStat(t *testing.T) {
	var s stat
	for i, v := range []float64{1, 1, 1, 100} { // one outlier
		s.add(v, int64(i), 100)
	}
	if s.median() != 1 || s.percentile90() != 100 || !s.warm() {
		t.Errorf("median %v p90 %v", s.median(), s.percentile90())
	}
	for i := range statWindow {
		s.add(float64(i+1), 10, 100)
	}
	// 1..32: median 16.5, p90 the 29th value.
	if s.median() != 16.5 || s.percentile90() != 29 || s.count.Load() != statWindow || s.last.Load() != 10 {
		t.Errorf("window: median %v p90 %v count %d", s.median(), s.percentile90(), s.count.Load())
	}
	// A sample after a long silence starts the window afresh.
	s.add(7, 200, 100)
	if s.median() != 7 || s.count.Load() != 1 || s.warm() {
		t.Errorf("after a stale gap: median %v count %d", s.median(), s.count.Load())
	}
}

// TestOrder checks the list each strategy returns for fixed states.
func TestOrder(t *testing.T) {
	cands := []Candidate{
		{Name: "a", Priority: 0, Weight: 1, Price: perToken{3e-6, 12e-6}},
		{Name: "b", Priority: 0, Weight: 1, Price: perToken{1e-6, 4e-6}},
		{Name: "c", Priority: 0, Weight: 0, Price: perToken{0, 0}}, // out of rotation
		{Name: "d", Priority: 1, Weight: 1, Price: perToken{0.1e-6, 0.4e-6}},
		{Name: "e", Priority: 0, Weight: 1}, // unknown price
	}
	tests := []struct {
		name    string
		policy  Policy
		setup   func(r *Router, c *clock)
		want    []string
		reason  Reason
		noFirst bool
	}{
		{name: "cost", policy: Policy{Strategy: Cost}, want: []string{"b", "a", "e", "d"}, reason: ReasonCost},
		{name: "cost exclude", policy: Policy{Strategy: Cost, UnknownCost: UnknownExclude}, want: []string{"b", "a", "d"}, reason: ReasonCost},
		{name: "cost, cheapest cooling", policy: Policy{Strategy: Cost},
			setup: func(r *Router, c *clock) { fail(r, c, "b", 3, 0) },
			want:  []string{"a", "e", "d", "b"}, reason: ReasonCost},
		{name: "cost, only unknown left in tier", policy: Policy{Strategy: Cost},
			setup: func(r *Router, c *clock) { fail(r, c, "a", 3, 0); fail(r, c, "b", 3, 0) },
			want:  []string{"e", "d", "a", "b"}, reason: ReasonCostUnknown},
		{name: "lower tier when the top one is cooling", policy: Policy{Strategy: Cost, UnknownCost: UnknownExclude},
			setup: func(r *Router, c *clock) { fail(r, c, "a", 3, 0); c.Advance(time.Second); fail(r, c, "b", 3, 0) },
			want:  []string{"d", "a", "b"}, reason: ReasonCost},
		{name: "cooldown_all: the earliest end first", policy: Policy{Strategy: Cost, UnknownCost: UnknownExclude},
			setup: func(r *Router, c *clock) {
				fail(r, c, "b", 3, 0)
				c.Advance(time.Second)
				fail(r, c, "a", 3, 0)
				c.Advance(time.Second)
				fail(r, c, "d", 3, 0)
			},
			want: []string{"b", "a", "d"}, reason: ReasonCooldownAll},
		{name: "least busy", policy: Policy{Strategy: LeastBusy},
			setup: func(r *Router, c *clock) { hold(r, "a", 2); hold(r, "b", 1) },
			want:  []string{"e", "b", "a", "d"}, reason: ReasonLeastBusy},
		{name: "latency", policy: Policy{Strategy: Latency, Explore: -1},
			setup: func(r *Router, c *clock) {
				samples(r, c, "a", 0.5, 3)
				samples(r, c, "b", 0.2, 3)
				samples(r, c, "e", 0.9, 3)
			},
			want: []string{"b", "a", "e", "d"}, reason: ReasonLatency},
		{name: "latency, a cold one is measured", policy: Policy{Strategy: Latency, Explore: -1},
			setup: func(r *Router, c *clock) {
				samples(r, c, "a", 0.5, 3)
				samples(r, c, "b", 0.2, 3)
			},
			want: []string{"e", "b", "a", "d"}, reason: ReasonLatencyExplore},
		{name: "cost within max_ttft", policy: Policy{Strategy: Cost, MaxTTFT: time.Second, Explore: -1},
			setup: func(r *Router, c *clock) {
				samples(r, c, "a", 0.5, 3)
				samples(r, c, "b", 1.5, 3)
				samples(r, c, "e", 0.3, 3)
			},
			want: []string{"a", "e", "b", "d"}, reason: ReasonCost},
		{name: "cost with max_ttft, none within: the fastest", policy: Policy{Strategy: Cost, MaxTTFT: 100 * time.Millisecond, Explore: -1},
			setup: func(r *Router, c *clock) {
				samples(r, c, "a", 0.5, 3)
				samples(r, c, "b", 1.5, 3)
				samples(r, c, "e", 0.3, 3)
			},
			want: []string{"e", "a", "b", "d"}, reason: ReasonCostFastest},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			r := newRouter(c, 1)
			if tc.setup != nil {
				tc.setup(r, c)
			}
			p := tc.policy.WithDefaults()
			var a Attempt
			if !r.Pick(&a, &Request{Policy: &p, Candidates: cands, Stream: true, InputTokens: 1000}) {
				t.Fatal("no pick")
			}
			defer a.Cancel()
			if got := names(cands, &a); !slices.Equal(got, tc.want) {
				t.Errorf("order %v, want %v", got, tc.want)
			}
			if a.Reason() != tc.reason {
				t.Errorf("reason %v, want %v", a.Reason(), tc.reason)
			}
		})
	}
}

// fail reports n failures of deployment name (retry-after ra).
func fail(r *Router, c *clock, name string, n int, ra time.Duration) {
	p := Policy{Strategy: Weighted}.WithDefaults()
	cands := []Candidate{{Name: name, Weight: 1}}
	for range n {
		var a Attempt
		r.Pick(&a, &Request{Policy: &p, Candidates: cands})
		a.Report(Outcome{Code: translate.CodeUpstreamError, RetryAfter: ra})
	}
}

// hold starts n tries on name and leaves them in flight.
func hold(r *Router, name string, n int) {
	p := Policy{}.WithDefaults()
	cands := []Candidate{{Name: name, Weight: 1}}
	for range n {
		var a Attempt
		r.Pick(&a, &Request{Policy: &p, Candidates: cands})
	}
}

// samples reports n successful streams of name with a TTFT of secs.
func samples(r *Router, c *clock, name string, secs float64, n int) {
	p := Policy{}.WithDefaults()
	cands := []Candidate{{Name: name, Weight: 1}}
	for range n {
		var a Attempt
		r.Pick(&a, &Request{Policy: &p, Candidates: cands, Stream: true})
		d := time.Duration(secs * float64(time.Second))
		a.Report(Outcome{TTFT: d, Duration: 2 * d, OutputTokens: 10})
	}
}

func TestNoCandidate(t *testing.T) {
	r := newRouter(newClock(), 1)
	var a Attempt
	p := policy(Cost)
	p.UnknownCost = UnknownExclude
	if r.Pick(&a, &Request{Policy: p, Candidates: []Candidate{{Name: "x", Weight: 1}, {Name: "y", Weight: 0, Price: perToken{}}}}) {
		t.Errorf("picked %d with no eligible candidate", a.Current())
	}
	if a.Reason() != ReasonNone || a.Len() != 0 || a.Current() != -1 {
		t.Errorf("empty attempt: reason %v len %d", a.Reason(), a.Len())
	}
	a.Report(Outcome{}) // harmless
	if _, ok := a.Next(); ok {
		t.Error("Next on an empty list")
	}
}

func TestCooldown(t *testing.T) {
	c := newClock()
	var cooled []string
	r := New(Options{Now: c.Now, Rand: rand.NewPCG(1, 2), OnCooldown: func(d string, until time.Time, n int) {
		cooled = append(cooled, fmt.Sprintf("%s %s %d", d, until.Sub(c.Now()), n))
	}})
	h := Health{Failures: 2, Window: 10 * time.Second, Cooldown: 5 * time.Second, MaxCooldown: 40 * time.Second}
	p := Policy{Strategy: Weighted, Health: h}.WithDefaults()
	cands := []Candidate{{Name: "x", Weight: 1}, {Name: "y", Weight: 1, Priority: 1}}
	try := func(code translate.Code, ra time.Duration) string {
		t.Helper()
		var a Attempt
		if !r.Pick(&a, &Request{Policy: &p, Candidates: cands}) {
			t.Fatal("no pick")
		}
		name := cands[a.Current()].Name
		a.Report(Outcome{Code: code, RetryAfter: ra})
		return name
	}
	// Two failures more than a window apart do not cool x down.
	try(translate.CodeOverloaded, 0)
	c.Advance(11 * time.Second)
	try(translate.CodeOverloaded, 0)
	if got := try("", 0); got != "x" || len(cooled) != 0 {
		t.Fatalf("x cooled down on failures outside the window: %s %v", got, cooled)
	}
	// Neutral outcomes and client errors count for nothing.
	try(translate.CodeCanceled, 0)
	try(translate.CodeStreamInterrupted, 0)
	try(translate.CodeInvalidRequest, 0)
	// The second failure within the window: cooldown, 5s.
	try(translate.CodeRateLimited, 0)
	if len(cooled) != 1 || cooled[0] != "x 5s 1" {
		t.Fatalf("cooldowns %v", cooled)
	}
	if got := try("", 0); got != "y" {
		t.Fatalf("during x's cooldown: %s", got)
	}
	if r.CoolingDown() != 1 {
		t.Errorf("CoolingDown = %d", r.CoolingDown())
	}
	// After it, one probe at a time.
	c.Advance(5 * time.Second)
	var probe, other Attempt
	r.Pick(&probe, &Request{Policy: &p, Candidates: cands})
	r.Pick(&other, &Request{Policy: &p, Candidates: cands})
	if cands[probe.Current()].Name != "x" || cands[other.Current()].Name != "y" {
		t.Fatalf("probe on %s, concurrent request on %s", cands[probe.Current()].Name, cands[other.Current()].Name)
	}
	other.Report(Outcome{})
	// The probe fails: cooldown again, twice as long.
	probe.Report(Outcome{Code: translate.CodeTimeout})
	if cooled[1] != "x 10s 2" {
		t.Fatalf("second cooldown %v", cooled)
	}
	// A retry-after longer than the doubled cooldown is honoured, up to
	// max_cooldown.
	c.Advance(10 * time.Second)
	try(translate.CodeRateLimited, 30*time.Second)
	c.Advance(30 * time.Second)
	try(translate.CodeRateLimited, time.Hour)
	if cooled[2] != "x 30s 3" || cooled[3] != "x 40s 4" {
		t.Fatalf("retry-after cooldowns %v", cooled)
	}
	// A successful probe ends it all.
	c.Advance(40 * time.Second)
	if got := try("", 0); got != "x" {
		t.Fatalf("probe went to %s", got)
	}
	for range 5 {
		if got := try("", 0); got != "x" {
			t.Fatalf("after recovery: %s", got)
		}
	}
	if r.CoolingDown() != 0 {
		t.Errorf("CoolingDown = %d after recovery", r.CoolingDown())
	}
	// A request that started before a cooldown proves nothing when it
	// ends well after it.
	var old Attempt
	r.Pick(&old, &Request{Policy: &p, Candidates: cands})
	try(translate.CodeUpstreamError, 0)
	try(translate.CodeUpstreamError, 0)
	old.Report(Outcome{})
	if got := try("", 0); got != "y" {
		t.Errorf("a stale success ended the cooldown: %s", got)
	}
}

func TestInFlight(t *testing.T) {
	c := newClock()
	r := newRouter(c, 3)
	p := policy(LeastBusy)
	cands := make([]Candidate, 4)
	for i := range cands {
		cands[i] = Candidate{Name: fmt.Sprint("d", i), Weight: 1 + i} // weights do not matter to least_busy
	}
	var held [40]Attempt
	count := map[string]int{}
	for i := range held {
		r.Pick(&held[i], &Request{Policy: p, Candidates: cands})
		count[cands[held[i].Current()].Name]++
	}
	for _, cd := range cands {
		if count[cd.Name] != 10 {
			t.Fatalf("least_busy spread %v, want 10 each", count)
		}
	}
	// Every end leaves the count: report, cancel, a failover's Next.
	for i := range held {
		if cands[held[i].Current()].Name != "d2" {
			continue
		}
		switch i % 3 {
		case 0:
			held[i].Cancel()
		case 1:
			held[i].Report(Outcome{})
		default:
			held[i].Next()
			held[i].Cancel()
		}
	}
	for _, s := range r.Statuses() {
		want := int64(10)
		if s.Deployment == "d2" {
			want = 0
		}
		if s.InFlight != want {
			t.Errorf("%s in flight %d, want %d", s.Deployment, s.InFlight, want)
		}
	}
	for range 10 {
		var a Attempt
		r.Pick(&a, &Request{Policy: p, Candidates: cands})
		if got := cands[a.Current()].Name; got != "d2" {
			t.Fatalf("least busy picked %s, want d2", got)
		}
		defer a.Cancel()
	}
	for i := range held {
		held[i].Cancel()
	}
}

func TestNextWalksTheList(t *testing.T) {
	c := newClock()
	r := newRouter(c, 1)
	p := policy(Cost)
	cands := []Candidate{
		{Name: "mid", Weight: 1, Price: perToken{2, 2}},
		{Name: "cheap", Weight: 1, Price: perToken{1, 1}},
		{Name: "dear", Weight: 1, Price: perToken{3, 3}},
	}
	var a Attempt
	r.Pick(&a, &Request{Policy: p, Candidates: cands})
	var got []string
	for i := a.Current(); ; {
		got = append(got, cands[i].Name)
		a.Report(Outcome{Code: translate.CodeOverloaded})
		var ok bool
		if i, ok = a.Next(); !ok {
			break
		}
	}
	if !slices.Equal(got, []string{"cheap", "mid", "dear"}) {
		t.Errorf("failover order %v", got)
	}
}

func TestWeighted(t *testing.T) {
	c := newClock()
	r := newRouter(c, 7)
	p := policy(Weighted)
	cands := []Candidate{{Name: "a", Weight: 3}, {Name: "b", Weight: 1}, {Name: "off", Weight: 0}, {Name: "low", Weight: 5, Priority: 2}}
	count := map[string]int{}
	for range 4000 {
		var a Attempt
		r.Pick(&a, &Request{Policy: p, Candidates: cands})
		if a.Reason() != ReasonWeighted {
			t.Fatalf("reason %v", a.Reason())
		}
		count[cands[a.Current()].Name]++
		a.Report(Outcome{})
	}
	if count["off"] != 0 || count["low"] != 0 || count["a"] < 2800 || count["a"] > 3200 {
		t.Errorf("weighted 3:1 over 4000: %v", count)
	}
}

func TestRetain(t *testing.T) {
	c := newClock()
	r := newRouter(c, 1)
	fail(r, c, "gone", 3, 0)
	fail(r, c, "kept", 3, 0)
	r.Retain([]string{"kept", "new"})
	st := r.Statuses()
	if len(st) != 1 || st[0].Deployment != "kept" || st[0].CoolUntil.IsZero() {
		t.Errorf("after Retain: %+v", st)
	}
}

// Two requests race for the only deployment's probe: the loser still gets
// a try (without the probe) rather than nothing.
func TestProbeRace(t *testing.T) {
	c := newClock()
	r := newRouter(c, 1)
	fail(r, c, "only", 3, 0)
	c.Advance(DefaultCooldown)
	p := policy(Weighted)
	cands := []Candidate{{Name: "only", Weight: 1}}
	var first, second Attempt
	r.Pick(&first, &Request{Policy: p, Candidates: cands})
	if !first.probe {
		t.Fatal("the first request after the cooldown did not take the probe")
	}
	if !r.Pick(&second, &Request{Policy: p, Candidates: cands}) || second.Current() != 0 || second.probe {
		t.Fatalf("second: current %d probe %v", second.Current(), second.probe)
	}
	if second.Reason() != ReasonCooldownAll {
		t.Errorf("reason %v", second.Reason())
	}
	// Its failure starts the next cooldown; the probe, which started
	// before that, proves nothing when it ends well.
	second.Report(Outcome{Code: translate.CodeOverloaded})
	first.Report(Outcome{})
	if r.CoolingDown() != 1 {
		t.Error("a failure after the cooldown did not start the next one")
	}
}

// Many requests at once on one Router (run with -race): every try ends,
// so nothing stays in flight.
func TestConcurrentPicks(t *testing.T) {
	c := newClock()
	r := New(Options{Now: c.Now}) // the global source: safe for concurrent use
	cands := make([]Candidate, 6)
	for i := range cands {
		cands[i] = Candidate{Name: fmt.Sprint("d", i), Weight: 1 + i%2, Priority: i / 4, Price: perToken{float64(i), 1}}
	}
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			p := Policy{Strategy: Strategy(g % 4), MaxTTFT: time.Duration(g%2) * time.Second, Health: Health{Failures: 2}}.WithDefaults()
			for i := range 500 {
				var a Attempt
				if !r.Pick(&a, &Request{Policy: &p, Candidates: cands, Stream: i%2 == 0, InputTokens: 100}) {
					t.Error("no pick")
					return
				}
				switch i % 5 {
				case 0:
					a.Report(Outcome{Code: translate.CodeOverloaded, RetryAfter: time.Millisecond})
					a.Next()
					a.Cancel()
				case 1:
					a.Cancel()
				default:
					a.Report(Outcome{TTFT: time.Duration(i) * time.Millisecond, Duration: time.Second, OutputTokens: 10})
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
	for _, s := range r.Statuses() {
		if s.InFlight != 0 {
			t.Errorf("%s: %d in flight", s.Deployment, s.InFlight)
		}
	}
}

// TestMonotonicClock: cooldowns run on the monotonic clock. The wall clock
// steps back an hour and then forward two (NTP) while 31 monotonic
// seconds pass: the 30s cooldown ends after 30 monotonic seconds, neither
// an hour late nor at once; the wall-clock end that Status and OnCooldown
// show follows the wall clock.
func TestMonotonicClock(t *testing.T) {
	wall := time.Unix(1_700_000_000, 0)
	var mono time.Duration
	var until time.Time
	r := New(Options{Now: func() time.Time { return wall }, Elapsed: func() time.Duration { return mono },
		Rand:       rand.NewPCG(1, 2),
		OnCooldown: func(_ string, u time.Time, _ int) { until = u }})
	p := Policy{Health: Health{Failures: 1, Window: time.Minute, Cooldown: 30 * time.Second}}.WithDefaults()
	cands := []Candidate{{Name: "a", Weight: 1}, {Name: "b", Weight: 1, Priority: 1}}
	pick := func() string {
		t.Helper()
		var a Attempt
		if !r.Pick(&a, &Request{Policy: &p, Candidates: cands}) {
			t.Fatal("no pick")
		}
		defer a.Report(Outcome{})
		return cands[a.Current()].Name
	}
	var a Attempt
	r.Pick(&a, &Request{Policy: &p, Candidates: cands})
	a.Report(Outcome{Code: translate.CodeOverloaded})
	if want := wall.Add(30 * time.Second); !until.Equal(want) {
		t.Errorf("OnCooldown until %v, want %v", until, want)
	}
	steps := []struct {
		wallStep, monoStep time.Duration
		want               string
	}{
		{-time.Hour, 10 * time.Second, "b"},
		{2 * time.Hour, 10 * time.Second, "b"}, // wall-clock time is long past the cooldown's end
		{0, 11 * time.Second, "a"},             // an hour early by the wall clock
	}
	for i, s := range steps {
		wall, mono = wall.Add(s.wallStep), mono+s.monoStep
		if i == 1 {
			st := r.Statuses()
			for _, x := range st {
				if x.Deployment == "a" && !x.CoolUntil.Equal(wall.Add(10*time.Second)) {
					t.Errorf("status cool_until %v, want %v (10s from the wall clock's now)", x.CoolUntil, wall.Add(10*time.Second))
				}
			}
			if n := r.CoolingDown(); n != 1 {
				t.Errorf("cooling down %d, want 1", n)
			}
		}
		if got := pick(); got != s.want {
			t.Fatalf("step %d (wall %+v, monotonic %s): %s, want %s", i, s.wallStep, mono, got, s.want)
		}
	}
}
