package processor

import "sync/atomic"

// budget bounds the request body bytes llmux holds across all streams in
// the request-body phase (server.max_buffered_bytes). Each request takes
// its body's size when the body arrives and gives it back once the reply
// carrying the translated body is sent, or on whatever path the phase
// ends.
type budget struct {
	used atomic.Int64
}

// acquire takes n bytes if that keeps the total within limit.
func (b *budget) acquire(n, limit int64) bool {
	for {
		cur := b.used.Load()
		if cur+n > limit {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// release gives n bytes back.
func (b *budget) release(n int64) { b.used.Add(-n) }

// Buffered is the number of request body bytes held now across all
// streams (for tests and the admin page).
func (s *Server) Buffered() int64 { return s.buffered.used.Load() }

// holdBody takes the body's bytes from the server's budget; false means
// the budget is spent and the request must be refused.
func (h *handler) holdBody(n int64) bool {
	if n == 0 {
		return true
	}
	if !h.s.buffered.acquire(n, h.cfg.Server().MaxBufferedBytes) {
		return false
	}
	h.held = n
	return true
}

// releaseBody gives back what holdBody took; it is safe to call twice.
func (h *handler) releaseBody() {
	if h.held != 0 {
		h.s.buffered.release(h.held)
		h.held = 0
	}
}

// releaseUnlessKept gives back the body's bytes when the request phase
// ends, unless failover or repair keeps the body for another call: then
// they stay counted until dropFailoverBody (failover.go) and dropRepairBody
// (ownedrepair.go) both ran.
func (h *handler) releaseUnlessKept() {
	if h.fo.body == nil && h.rp.body == nil {
		h.releaseBody()
	}
}
