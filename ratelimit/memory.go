package ratelimit

import (
	"sync"
	"time"
)

// memory is the in-process limiter: the same sliding windows and leases
// as the Redis scripts, on the process's clock. It serves when no Redis is
// configured, and for fail_open policies while Redis fails (at each
// policy's local share).
type memory struct {
	now func() time.Time

	mu       sync.Mutex
	windows  map[string]*memWindow
	slots    map[string]map[string]int64 // key → member → lease end (ms)
	sweepAt  int64
	sweepGap int64
}

// memWindow is one window counter: sub-bucket index → amount.
type memWindow struct {
	buckets map[int64]int64
	last    int64 // the newest sub-bucket written
	window  int64 // ms
}

func newMemory(now func() time.Time) *memory {
	return &memory{now: now, windows: map[string]*memWindow{}, slots: map[string]map[string]int64{}, sweepGap: time.Minute.Milliseconds()}
}

// read returns c's usage and, for a window, its sorted live sub-buckets
// and the current index.
func (m *memory) read(c *check, now int64) (used int64, cur, width int64, w *memWindow) {
	if !c.limit.Kind.Windowed() {
		s := m.slots[c.key]
		for id, end := range s {
			if end <= now {
				delete(s, id)
			}
		}
		return int64(len(s)), 0, 0, nil
	}
	width = c.limit.Window.Milliseconds() / Buckets
	cur = now / width
	w = m.windows[c.key]
	if w == nil {
		return 0, cur, width, nil
	}
	for b, v := range w.buckets {
		if b < cur-Buckets {
			delete(w.buckets, b)
			continue
		}
		used += v
	}
	return used, cur, width, w
}

// retry is the ms until c could admit its amount.
func retryMs(c *check, used, cur, width int64, w *memWindow, now int64) int64 {
	if !c.limit.Kind.Windowed() {
		return 1000
	}
	amt := max(c.amount, 1)
	if amt > c.max || w == nil {
		return c.limit.Window.Milliseconds()
	}
	need := used + amt - c.max
	var freed int64
	for b := cur - Buckets; b <= cur; b++ {
		freed += w.buckets[b]
		if freed >= need {
			return max((b+Buckets+1)*width-now, 1)
		}
	}
	return c.limit.Window.Milliseconds()
}

// reserve evaluates p as the reserve script does.
func (m *memory) reserve(id string, lease time.Duration, p *plan, o *outcome) {
	now := m.now().UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweep(now)
	*o = outcome{nowMs: now, rem: o.rem[:0], reset: o.reset[:0]}
	for range p.checks {
		o.rem = append(o.rem, -1)
		o.reset = append(o.reset, -1)
	}
	fits := func(from, to int) (bad int, retry int64) {
		bad, retry = -1, -1
		for i := from; i < to; i++ {
			c := &p.checks[i]
			used, cur, width, w := m.read(c, now)
			if used+max(c.amount, 1) > c.max {
				if r := retryMs(c, used, cur, width, w, now); r > retry {
					bad, retry = i, r
				}
			}
		}
		return bad, retry
	}
	n0 := p.groups[0]
	if bad, r := fits(0, n0); bad >= 0 {
		o.fail, o.retry = bad, r
		return
	}
	chosen, start := 0, n0
	if len(p.groups) > 1 {
		best, bestR := -1, int64(-1)
		for g := 1; g < len(p.groups); g++ {
			n := p.groups[g]
			bad, r := fits(start, start+n)
			if bad < 0 {
				chosen = g
				break
			}
			if bestR < 0 || r < bestR {
				best, bestR = bad, r
			}
			start += n
		}
		if chosen == 0 {
			o.fail, o.retry = best, bestR
			return
		}
	}
	o.ok, o.chosen = true, chosen
	m.apply(id, lease, p, 0, n0, now, o)
	if chosen > 0 {
		m.apply(id, lease, p, start, start+p.groups[chosen], now, o)
	}
}

func (m *memory) apply(id string, lease time.Duration, p *plan, from, to int, now int64, o *outcome) {
	for i := from; i < to; i++ {
		c := &p.checks[i]
		used, cur, width, w := m.read(c, now)
		if !c.limit.Kind.Windowed() {
			s := m.slots[c.key]
			if s == nil {
				s = map[string]int64{}
				m.slots[c.key] = s
			}
			s[id] = now + lease.Milliseconds()
			o.rem[i], o.reset[i] = c.max-used-1, 0
			continue
		}
		if w == nil {
			w = &memWindow{buckets: map[int64]int64{}, window: c.limit.Window.Milliseconds()}
			m.windows[c.key] = w
		}
		w.buckets[cur] += c.amount
		w.last = cur
		first := cur
		for b := cur - Buckets; b < cur; b++ {
			if w.buckets[b] != 0 {
				first = b
				break
			}
		}
		o.rem[i], o.reset[i] = c.max-used-c.amount, (first+Buckets+1)*width-now
	}
}

// settle applies the difference and frees the slots, as the settle
// script does.
func (m *memory) settle(r *Reservation, actual Usage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range r.checks {
		if !c.limit.Kind.Windowed() {
			delete(m.slots[c.key], r.id)
			continue
		}
		diff := actual.settleAmount(c.limit.Kind) - r.est.settleAmount(c.limit.Kind)
		if diff == 0 {
			continue
		}
		w := m.windows[c.key]
		if w == nil {
			continue
		}
		b := r.nowMs / (c.limit.Window.Milliseconds() / Buckets)
		if _, ok := w.buckets[b]; ok {
			w.buckets[b] += diff
		}
	}
}

// sweep drops counters that have left their windows, at most once a
// minute, so that memory follows the subjects in use.
func (m *memory) sweep(now int64) {
	if now < m.sweepAt {
		return
	}
	m.sweepAt = now + m.sweepGap
	for k, w := range m.windows {
		width := w.window / Buckets
		if w.last < now/width-Buckets {
			delete(m.windows, k)
		}
	}
	for k, s := range m.slots {
		for id, end := range s {
			if end <= now {
				delete(s, id)
			}
		}
		if len(s) == 0 {
			delete(m.slots, k)
		}
	}
}
