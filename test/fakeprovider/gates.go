package fakeprovider

import (
	"context"
	"sync"
)

// gate is one named rendezvous between a handler and a test.
type gate struct {
	held     chan struct{} // closed when a handler first blocks here
	heldOnce sync.Once
	released chan struct{} // closed by Release
	relOnce  sync.Once
	waiting  int // handlers currently blocked
}

// gateSet holds the named gates of a server.
type gateSet struct {
	mu      sync.Mutex
	gates   map[string]*gate
	closing <-chan struct{}
}

func (g *gateSet) init(closing <-chan struct{}) {
	g.gates = make(map[string]*gate)
	g.closing = closing
}

func (g *gateSet) get(name string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	gt, ok := g.gates[name]
	if !ok {
		gt = &gate{held: make(chan struct{}), released: make(chan struct{})}
		g.gates[name] = gt
	}
	return gt
}

// block parks the caller at gate name until the gate is released, ctx ends
// or the server closes. It reports whether the gate was released (as opposed
// to the request or server going away).
func (g *gateSet) block(ctx context.Context, name string) bool {
	gt := g.get(name)
	g.mu.Lock()
	gt.waiting++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		gt.waiting--
		g.mu.Unlock()
	}()
	gt.heldOnce.Do(func() { close(gt.held) })
	select {
	case <-gt.released:
		return true
	case <-ctx.Done():
		return false
	case <-g.closing:
		return false
	}
}

// Release opens the gate called name: every handler blocked there resumes,
// and later arrivals pass through without blocking (a release is sticky, so
// calling it before the handler reaches the gate is not a race). Use a
// distinct name per hold in a test. Releasing twice is harmless.
func (s *Server) Release(name string) {
	gt := s.gates.get(name)
	gt.relOnce.Do(func() { close(gt.released) })
}

// WaitHeld blocks until some handler has blocked at gate name (an x-fake-hold
// or a stall), ctx ends (returning ctx.Err()) or the server closes
// (returning ErrClosed). Once a handler has been held at name, WaitHeld
// returns nil immediately, even after the gate has been released.
func (s *Server) WaitHeld(ctx context.Context, name string) error {
	gt := s.gates.get(name)
	select {
	case <-gt.held:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return ErrClosed
	}
}

// Held reports how many handlers are currently blocked at gate name.
func (s *Server) Held(name string) int {
	gt := s.gates.get(name)
	s.gates.mu.Lock()
	defer s.gates.mu.Unlock()
	return gt.waiting
}
