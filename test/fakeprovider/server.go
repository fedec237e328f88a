package fakeprovider

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// maxBodyBytes bounds how much of a request body a fake reads.
const maxBodyBytes = 32 << 20

// ErrClosed is returned by Server.WaitHeld and Server.WaitRequests when the
// server is closed before the awaited event.
var ErrClosed = errors.New("fakeprovider: server closed")

// Recorded is one request as the fake received it.
type Recorded struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path.
	Path string
	// RawQuery is the URL query without the leading '?'.
	RawQuery string
	// Proto is the request protocol, e.g. "HTTP/1.1" or "HTTP/2.0".
	Proto string
	// Header is a copy of the request headers.
	Header http.Header
	// Body is the full request body (up to 32 MiB).
	Body []byte
	// Time is when the request was received.
	Time time.Time
}

// Server is a running fake provider. Its methods are safe for concurrent use.
type Server struct {
	name     string
	ln       net.Listener
	hs       *http.Server
	handler  http.Handler
	serveErr chan error

	mu       sync.Mutex
	closed   bool
	requests []Recorded
	recorded chan struct{} // closed and replaced whenever a request is recorded
	seq      uint64
	inflight sync.WaitGroup

	closing   chan struct{}
	closeOnce sync.Once

	scriptMu sync.Mutex
	script   []Fault // queued plans, consumed one per routed request

	gates gateSet
}

// newServer listens on addr and serves h, which receives requests after they
// have been recorded (with the body re-readable from r.Body).
func newServer(name, addr string, h func(s *Server) http.Handler) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		name:     name,
		ln:       ln,
		serveErr: make(chan error, 1),
		closing:  make(chan struct{}),
		recorded: make(chan struct{}),
	}
	s.gates.init(s.closing)
	s.handler = h(s)
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s.hs = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	go func() { s.serveErr <- s.hs.Serve(ln) }()
	return s, nil
}

// newTestServer is newServer on 127.0.0.1:0 bound to t's lifetime.
func newTestServer(t testing.TB, name string, h func(s *Server) http.Handler) *Server {
	t.Helper()
	s, err := newServer(name, "127.0.0.1:0", h)
	if err != nil {
		t.Fatalf("fakeprovider: listen: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Header().Set("Connection", "close")
		http.Error(w, "fakeprovider: server closed", http.StatusServiceUnavailable)
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		// The client went away mid-body; nothing sensible can be answered.
		return
	}
	if len(body) > maxBodyBytes {
		body = body[:maxBodyBytes]
	}
	rec := Recorded{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Proto:    r.Proto,
		Header:   r.Header.Clone(),
		Body:     bytes.Clone(body),
		Time:     time.Now(),
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	close(s.recorded)
	s.recorded = make(chan struct{})
	s.mu.Unlock()
	r = withBody(r, body) // continuation.go
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.handler.ServeHTTP(w, r)
}

// Enqueue appends fault plans to the server's script. Each request that
// reaches a known endpoint with an allowed method (404 and 405 answers do
// not count) takes the next plan, in arrival order, as the base that its
// x-fake-* headers then override field by field; once the script is empty,
// requests start from DefaultFault. Scripted plans are used as given: build
// them from DefaultFault to keep the header defaults.
func (s *Server) Enqueue(plans ...Fault) {
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	s.script = append(s.script, plans...)
}

// ScriptLen returns how many scripted plans have not been used yet.
func (s *Server) ScriptLen() int {
	s.scriptMu.Lock()
	defer s.scriptMu.Unlock()
	return len(s.script)
}

// planFault returns the fault plan of r: the next scripted plan (or
// DefaultFault), overridden by the plan registered for r's request id
// (PlanFor), then by r's own x-fake-* headers. A malformed header is
// an error, and the scripted plan is consumed anyway.
func (s *Server) planFault(r *http.Request) (Fault, error) {
	base := DefaultFault()
	s.scriptMu.Lock()
	if len(s.script) > 0 {
		base = s.script[0]
		s.script[0] = Fault{}
		s.script = s.script[1:]
	}
	s.scriptMu.Unlock()
	if reg := registeredPlan(r); reg != nil {
		var err error
		if base, err = parseFaultOver(base, reg); err != nil {
			return base, err
		}
	}
	return parseFaultOver(base, r.Header)
}

// nextID returns a per-server sequence number for response ids.
func (s *Server) nextID() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return s.seq
}

// requestID returns a string usable as a provider request id.
func (s *Server) requestID() string {
	return "req_fake" + strconv.FormatUint(s.nextID(), 10)
}

// Name returns the provider name of the fake, e.g. "openai".
func (s *Server) Name() string { return s.name }

// URL returns the base URL of the server, e.g. "http://127.0.0.1:41234".
func (s *Server) URL() string { return "http://" + s.Addr() }

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Requests returns a copy of every request received so far, oldest first.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Recorded, len(s.requests))
	for i, r := range s.requests {
		out[i] = r.clone()
	}
	return out
}

// Last returns a copy of the most recent request, if any.
func (s *Server) Last() (Recorded, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Recorded{}, false
	}
	return s.requests[len(s.requests)-1].clone(), true
}

// WaitRequests blocks until at least n requests have been recorded since the
// server started (or since ResetRequests), ctx ends (returning ctx.Err()) or
// the server closes (returning ErrClosed).
func (s *Server) WaitRequests(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := len(s.requests), s.recorded
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		}
	}
}

func (r Recorded) clone() Recorded {
	r.Header = r.Header.Clone()
	r.Body = bytes.Clone(r.Body)
	return r
}

// JSON returns the value at a gjson path in the recorded body, e.g.
// r.JSON("messages.0.content").
func (r Recorded) JSON(path string) gjson.Result { return gjson.GetBytes(r.Body, path) }

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// Close releases every hold, closes the listener and all connections, and
// waits for every handler and the serving goroutine to return. It is
// idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		_ = s.hs.Close()
		s.inflight.Wait()
		<-s.serveErr
	})
}
