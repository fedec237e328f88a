package envoysim

import "sync"

// ubq is an unbounded FIFO drained by one goroutine, so that the request
// loop never blocks on a slow consumer (a gRPC Send or an upstream body
// write).
type ubq[T any] struct {
	mu     sync.Mutex
	items  []T
	closed bool
	notify chan struct{}
}

func newUBQ[T any]() *ubq[T] { return &ubq[T]{notify: make(chan struct{}, 1)} }

func (q *ubq[T]) push(v T) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, v)
	}
	q.mu.Unlock()
	q.signal()
}

func (q *ubq[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *ubq[T]) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take blocks until items are available or the queue is closed and
// drained; ok is false then. abort ends the wait early.
func (q *ubq[T]) take(abort <-chan struct{}) (items []T, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			items, q.items = q.items, nil
			q.mu.Unlock()
			return items, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.notify:
		case <-abort:
			return nil, false
		}
	}
}
