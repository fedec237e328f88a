package fakeprovider

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request headers understood by every fake. Header names are
// case-insensitive on the wire.
const (
	// HeaderStatus selects an HTTP error status (e.g. "429") answered with
	// the provider's real error body. A value below 300 means no error
	// (it cancels a scripted Status).
	HeaderStatus = "x-fake-status"
	// HeaderErrorCode picks which provider error accompanies HeaderStatus
	// (e.g. "insufficient_quota"); each status has a default.
	HeaderErrorCode = "x-fake-error-code"
	// HeaderRetryAfter overrides the retry-after value (seconds) sent with
	// 429 and 503 (default "1").
	HeaderRetryAfter = "x-fake-retry-after"
	// HeaderFault selects a response fault; see the Fault* constants.
	HeaderFault = "x-fake-fault"
	// HeaderFaultAfter is how many frames (stream events) are sent before
	// the fault happens (default 1).
	HeaderFaultAfter = "x-fake-fault-after"
	// HeaderHold names a gate: the response pauses after HeaderHoldAfter
	// frames until Server.Release(name) is called.
	HeaderHold = "x-fake-hold"
	// HeaderHoldAfter is how many frames are sent before a hold (default
	// 1). Non-streamed responses hold before anything is written.
	HeaderHoldAfter = "x-fake-hold-after"
	// HeaderDelay is a pause between stream frames, as a Go duration
	// ("25ms") or a whole number of milliseconds ("25"). Tests should
	// synchronise with holds rather than delays; this exists for
	// demonstrations and latency experiments.
	HeaderDelay = "x-fake-delay"
)

// Values of HeaderFault.
const (
	// FaultInbandError: the stream starts normally, then an in-band error
	// event is sent and the response ends. Non-streamed responses become a
	// 200 whose body is the provider's error object.
	FaultInbandError = "inband-error"
	// FaultTruncate: the stream ends cleanly after K frames, without the
	// finishing frames (no finish reason, usage or terminator). Non-streamed
	// responses are cut in half with a matching Content-Length.
	FaultTruncate = "truncate"
	// FaultStall: headers and the first K frames are sent, then the handler
	// blocks until the request context ends or the gate (HeaderHold, or
	// DefaultStallGate) is released; then the response ends without the
	// remaining frames.
	FaultStall = "stall"
	// FaultReset: the connection is aborted after headers, K frames and
	// half of the next frame (HTTP/1: the half frame goes out inside a
	// chunk announcing the whole one, then the TCP connection is closed
	// with a RST; HTTP/2: the stream is reset). Non-streamed responses are
	// aborted after half the body.
	FaultReset = "reset"
	// FaultResetBeforeHeaders: the connection is aborted before any
	// response byte is written.
	FaultResetBeforeHeaders = "reset-before-headers"
)

// DefaultStallGate is the gate a stall waits at when the request has no
// HeaderHold.
const DefaultStallGate = "stall"

// Fault is the per-request fault plan parsed from the x-fake-* headers.
type Fault struct {
	// Status is the HTTP error status to answer with, or 0.
	Status int
	// ErrorCode is the provider error code requested with Status, or "".
	ErrorCode string
	// RetryAfter is the retry-after value for 429/503.
	RetryAfter string
	// Kind is one of the Fault* constants, or "".
	Kind string
	// After is the number of frames before the fault.
	After int
	// Hold is the gate name to pause at, or "".
	Hold string
	// HoldAfter is the number of frames before the hold.
	HoldAfter int
	// Delay is a pause before every stream frame but the first; it does not
	// apply to non-streamed responses.
	Delay time.Duration
}

// DefaultFault is the plan of a request without x-fake-* headers: no fault,
// with the header defaults (After and HoldAfter 1, RetryAfter "1"). Start
// scripted plans from it, e.g.
//
//	f := fakeprovider.DefaultFault()
//	f.Kind = fakeprovider.FaultTruncate
func DefaultFault() Fault { return Fault{After: 1, HoldAfter: 1, RetryAfter: "1"} }

// ParseFault reads the x-fake-* headers of h on top of DefaultFault. It
// returns an error naming the offending header when a value is malformed.
func ParseFault(h http.Header) (Fault, error) { return parseFaultOver(DefaultFault(), h) }

// parseFaultOver reads the x-fake-* headers of h; each header present
// replaces the matching field of base.
func parseFaultOver(base Fault, h http.Header) (Fault, error) {
	f := base
	if f.RetryAfter == "" {
		f.RetryAfter = "1"
	}
	if v := strings.TrimSpace(h.Get(HeaderStatus)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 || n > 999 {
			return f, fmt.Errorf("fakeprovider: invalid %s %q", HeaderStatus, v)
		}
		f.Status = 0
		if n >= 300 {
			f.Status = n
		}
	}
	if v := strings.TrimSpace(h.Get(HeaderErrorCode)); v != "" {
		f.ErrorCode = v
	}
	if v := strings.TrimSpace(h.Get(HeaderRetryAfter)); v != "" {
		f.RetryAfter = v
	}
	switch v := strings.ToLower(strings.TrimSpace(h.Get(HeaderFault))); v {
	case "":
	case "none":
		f.Kind = ""
	case FaultInbandError, FaultTruncate, FaultStall, FaultReset, FaultResetBeforeHeaders:
		f.Kind = v
	default:
		return f, fmt.Errorf("fakeprovider: invalid %s %q", HeaderFault, v)
	}
	var err error
	if f.After, err = nonNegHeader(h, HeaderFaultAfter, f.After); err != nil {
		return f, err
	}
	if f.HoldAfter, err = nonNegHeader(h, HeaderHoldAfter, f.HoldAfter); err != nil {
		return f, err
	}
	if v := strings.TrimSpace(h.Get(HeaderHold)); v != "" {
		f.Hold = v
	}
	if v := strings.TrimSpace(h.Get(HeaderDelay)); v != "" {
		d, err := parseDelay(v)
		if err != nil {
			return f, err
		}
		f.Delay = d
	}
	return f, nil
}

// maxDelay bounds HeaderDelay so a typo cannot wedge a test for hours.
const maxDelay = time.Minute

func parseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		ms, aerr := strconv.Atoi(v)
		if aerr != nil {
			return 0, fmt.Errorf("fakeprovider: invalid %s %q", HeaderDelay, v)
		}
		d = time.Duration(ms) * time.Millisecond
	}
	if d < 0 || d > maxDelay {
		return 0, fmt.Errorf("fakeprovider: invalid %s %q (want 0 to %v)", HeaderDelay, v, maxDelay)
	}
	return d, nil
}

func nonNegHeader(h http.Header, name string, def int) (int, error) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return def, fmt.Errorf("fakeprovider: invalid %s %q", name, v)
	}
	return n, nil
}

// stallGate is the gate a stall waits at.
func (f Fault) stallGate() string {
	if f.Hold != "" {
		return f.Hold
	}
	return DefaultStallGate
}

// abortConn aborts the response after writing partial, the first bytes of
// a frame that will never be completed. Whatever has been written before is
// flushed to the wire first. On HTTP/1 the connection is hijacked, partial
// is written raw (inside a chunk header announcing the whole frame when the
// body is chunked, so the client sees a truncated chunk) and the TCP
// connection is closed with a RST. On HTTP/2 (or if hijacking is
// impossible) partial is written through w and the handler panics with
// http.ErrAbortHandler, which makes the server reset the stream. chunked
// tells whether the HTTP/1 body uses chunked transfer coding, and whole is
// the length of the frame partial was cut from. It never returns.
func abortConn(w http.ResponseWriter, r *http.Request, partial []byte, whole int, chunked bool) {
	rc := http.NewResponseController(w)
	if r.ProtoMajor == 1 {
		_ = rc.Flush()
		conn, buf, err := rc.Hijack()
		if err == nil {
			if buf != nil {
				if len(partial) > 0 {
					if chunked {
						fmt.Fprintf(buf, "%x\r\n", whole)
					}
					_, _ = buf.Write(partial)
				}
				_ = buf.Flush()
			}
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			// The handler must not touch w after hijacking; unwinding with
			// ErrAbortHandler is the quietest way out that also never
			// returns to the caller.
			panic(http.ErrAbortHandler)
		}
	}
	if len(partial) > 0 {
		_, _ = w.Write(partial)
	}
	_ = rc.Flush()
	panic(http.ErrAbortHandler)
}

// abortBeforeHeaders aborts the connection without writing any response.
func abortBeforeHeaders(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			panic(http.ErrAbortHandler)
		}
	}
	panic(http.ErrAbortHandler)
}

// needsRetryAfter reports whether responses with status carry retry-after.
func needsRetryAfter(status int) bool {
	return status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable
}

// plans holds fault plans registered by request id: request id → the
// x-fake-* headers that make up the plan. A gateway forwards only the
// headers it allows (never x-fake-*), but it does forward its request id,
// so tests that go through the gateway register their faults here.
var plans struct {
	sync.Mutex
	m map[string]http.Header
}

// PlanFor registers a fault header (an x-fake-* name and value, as the
// Header* constants describe) for every request that carries request id
// id, in any fake of this process. It adds to the headers registered
// before for id. Call ForgetPlan when the test ends.
func PlanFor(id string, name, value string) {
	plans.Lock()
	defer plans.Unlock()
	if plans.m == nil {
		plans.m = map[string]http.Header{}
	}
	h := plans.m[id]
	if h == nil {
		h = http.Header{}
		plans.m[id] = h
	}
	h.Set(name, value)
}

// ForgetPlan drops the fault plan registered for request id id.
func ForgetPlan(id string) {
	plans.Lock()
	defer plans.Unlock()
	delete(plans.m, id)
}

// registeredPlan returns a copy of the fault headers registered for r's
// request id, or nil.
func registeredPlan(r *http.Request) http.Header {
	id := r.Header.Get("x-request-id")
	if id == "" {
		return nil
	}
	plans.Lock()
	defer plans.Unlock()
	return plans.m[id].Clone()
}

// fakeHeader reads an x-fake-* setting of r: the request's own header, or
// else the plan registered for its request id.
func fakeHeader(r *http.Request, name string) string {
	if v := r.Header.Get(name); v != "" {
		return v
	}
	return registeredPlan(r).Get(name)
}
