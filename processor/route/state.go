package route

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// statWindow is how many recent samples a latency statistic keeps, and
// minSamples how many it needs before a strategy trusts it.
const (
	statWindow = 32
	minSamples = 3
)

// stat is a moving latency statistic: the median and p90 of the last
// statWindow samples. A median moves only when half the window moves, so
// one slow outlier changes nothing. Writers hold the deployment's mutex;
// readers (Pick) read the atomics without locking.
type stat struct {
	buf    [statWindow]float64 // seconds, a ring in arrival order
	sorted [statWindow]float64 // the same samples, ascending
	n      int
	next   int

	p50, p90 atomic.Uint64 // math.Float64bits
	count    atomic.Int32  // samples held, at most statWindow
	last     atomic.Int64  // Router.mono of the newest sample
}

// add records v at now; a window whose newest sample is older than
// staleAfter is dropped first.
func (s *stat) add(v float64, now, staleAfter int64) {
	if s.n > 0 && now-s.last.Load() > staleAfter {
		// The window describes a deployment as it was: measure it afresh
		// (it is cold again until minSamples new samples are in).
		s.n, s.next = 0, 0
	}
	sorted := s.sorted[:s.n]
	if s.n == statWindow {
		// Drop the oldest sample from the sorted copy.
		old := s.buf[s.next]
		i := 0
		for sorted[i] != old {
			i++
		}
		copy(sorted[i:], sorted[i+1:])
		sorted = sorted[:len(sorted)-1]
	} else {
		s.n++
	}
	s.buf[s.next] = v
	s.next = (s.next + 1) % statWindow
	i := len(sorted)
	for i > 0 && sorted[i-1] > v {
		i--
	}
	sorted = sorted[:len(sorted)+1]
	copy(sorted[i+1:], sorted[i:])
	sorted[i] = v
	n := len(sorted)
	s.p50.Store(math.Float64bits((sorted[(n-1)/2] + sorted[n/2]) / 2))
	s.p90.Store(math.Float64bits(sorted[(9*n+9)/10-1]))
	s.count.Store(int32(n))
	s.last.Store(now)
}

// warm reports whether the statistic has enough samples to be trusted.
func (s *stat) warm() bool { return s.count.Load() >= minSamples }

func (s *stat) median() float64 { return math.Float64frombits(s.p50.Load()) }

func (s *stat) percentile90() float64 { return math.Float64frombits(s.p90.Load()) }

// state is what one llmux process knows about a deployment: requests in
// flight, recent failures, its cooldown, and latency statistics. It is
// keyed by deployment name in the Router, outside the configuration, so
// it survives reloads.
type state struct {
	name string

	inflight atomic.Int64
	// coolUntil is the end of the current cooldown (Router.mono); 0 when the
	// deployment never cooled down.
	coolUntil atomic.Int64
	// halfOpen: a cooldown was entered and no success has been seen since;
	// once coolUntil passes, one request at a time (the probe) may go.
	halfOpen atomic.Bool
	probing  atomic.Bool

	ttft stat // streams: seconds to the first content
	tpot stat // whole responses: seconds per output token

	mu          sync.Mutex
	fails       []int64 // a ring of recent failure times (Router.mono)
	failNext    int
	cooledAt    int64 // when the current cooldown started (Router.mono)
	consecutive int   // cooldowns without a success in between
}

// availability of a deployment at one instant.
type availability uint8

const (
	available   availability = iota // healthy, or half-open with no probe in flight
	probeFree                       // half-open: available to one probe
	unavailable                     // cooling down, or half-open with its probe in flight
)

func (s *state) availability(now int64) availability {
	if !s.halfOpen.Load() {
		return available
	}
	if s.coolUntil.Load() > now || s.probing.Load() {
		return unavailable
	}
	return probeFree
}

// failure records a failed request that started at started; it returns
// the end of a cooldown it started, or 0.
func (s *state) failure(now, started int64, retryAfter time.Duration, h Health) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.halfOpen.Load() {
		if started <= s.cooledAt {
			return 0 // began before the cooldown: already counted
		}
		// A probe (or a request sent while every deployment cooled down)
		// failed: cool down again, longer.
		return s.cool(now, retryAfter, h)
	}
	if len(s.fails) != h.Failures {
		s.fails, s.failNext = make([]int64, h.Failures), 0
	}
	s.fails[s.failNext] = now
	s.failNext = (s.failNext + 1) % len(s.fails)
	recent := 0
	for _, t := range s.fails {
		if t != 0 && now-t < int64(h.Window) {
			recent++
		}
	}
	if recent < h.Failures {
		return 0
	}
	return s.cool(now, retryAfter, h)
}

// cool starts a cooldown; s.mu is held.
func (s *state) cool(now int64, retryAfter time.Duration, h Health) int64 {
	d := h.Cooldown
	for i := 0; i < s.consecutive && d < h.MaxCooldown; i++ {
		d *= 2
	}
	d = max(d, retryAfter)
	d = min(d, h.MaxCooldown)
	s.consecutive++
	clear(s.fails)
	s.cooledAt = now
	until := now + int64(d)
	s.coolUntil.Store(until)
	s.halfOpen.Store(true)
	return until
}

// success records a request that the deployment answered (even with an
// error that is the request's fault) and that started at started.
func (s *state) success(started int64) {
	if !s.halfOpen.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.halfOpen.Load() || started <= s.cooledAt {
		return // a request older than the cooldown proves nothing
	}
	s.consecutive = 0
	clear(s.fails)
	s.coolUntil.Store(0)
	s.halfOpen.Store(false)
}

// sample records a latency sample.
func (s *state) sample(st *stat, v float64, now int64, staleAfter time.Duration) {
	s.mu.Lock()
	st.add(v, now, int64(staleAfter))
	s.mu.Unlock()
}
