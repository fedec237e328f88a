package fakeprovider

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"time"
)

// frameWriter writes response frames (SSE events, or binary event-stream
// messages) and flushes after each one so nothing sits in a buffer.
type frameWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newFrameWriter(w http.ResponseWriter) *frameWriter {
	return &frameWriter{w: w, rc: http.NewResponseController(w)}
}

// write writes one frame and flushes it.
func (fw *frameWriter) write(frame []byte) error {
	if _, err := fw.w.Write(frame); err != nil {
		return err
	}
	return fw.rc.Flush()
}

// flush flushes headers (and anything written so far).
func (fw *frameWriter) flush() error { return fw.rc.Flush() }

// sseData formats an SSE event carrying only a data field. payload must not
// contain newlines (compact JSON never does).
func sseData(payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(payload) + 8)
	b.WriteString("data: ")
	b.Write(payload)
	b.WriteString("\n\n")
	return b.Bytes()
}

// sseEvent formats an SSE event with an event name and a data field.
func sseEvent(event string, payload []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(payload) + len(event) + 16)
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(payload)
	b.WriteString("\n\n")
	return b.Bytes()
}

// streamPlan is a complete streamed response, prepared in advance so that
// faults can cut it at any frame.
type streamPlan struct {
	// contentType is the response Content-Type.
	contentType string
	// header holds extra response headers.
	header http.Header
	// frames are the body frames in order, including the finishing ones.
	frames [][]byte
	// tail is how many trailing frames finish the stream (finish reason,
	// usage, terminator); truncate never sends them.
	tail int
	// inband is the in-band error frame for FaultInbandError.
	inband []byte
}

// stream writes p, applying holds and faults between frames. The fault f
// must not carry a Status (those are answered before streaming starts).
func (s *Server) stream(w http.ResponseWriter, r *http.Request, f Fault, p streamPlan) {
	h := w.Header()
	for k, vs := range p.header {
		h[k] = vs
	}
	h.Set("Content-Type", p.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fw := newFrameWriter(w)
	if err := fw.flush(); err != nil {
		return
	}
	body := len(p.frames) - p.tail
	faultAt := -1
	if f.Kind != "" {
		faultAt = f.After
		if f.Kind == FaultTruncate || f.Kind == FaultInbandError {
			faultAt = min(faultAt, body)
		}
	}
	for i := 0; ; i++ {
		if f.Hold != "" && f.Kind != FaultStall && i == min(f.HoldAfter, len(p.frames)) {
			if !s.gates.block(r.Context(), f.Hold) {
				return
			}
		}
		if i > 0 && i < len(p.frames) && f.Delay > 0 && !s.pause(r.Context(), f.Delay) {
			return
		}
		if i == faultAt || (faultAt > len(p.frames) && i == len(p.frames)) {
			switch f.Kind {
			case FaultTruncate:
				return
			case FaultInbandError:
				_ = fw.write(p.inband)
				return
			case FaultStall:
				s.gates.block(r.Context(), f.stallGate())
				return
			case FaultReset:
				var partial []byte
				whole := 0
				if i < len(p.frames) {
					whole = len(p.frames[i])
					partial = p.frames[i][:whole/2]
				}
				abortConn(w, r, partial, whole, r.ProtoAtLeast(1, 1))
			}
		}
		if i == len(p.frames) {
			return
		}
		if err := fw.write(p.frames[i]); err != nil {
			return
		}
	}
}

// writeBody writes a complete non-streamed body, applying holds and faults.
// status is the HTTP status to use (normally 200).
func (s *Server) writeBody(w http.ResponseWriter, r *http.Request, f Fault, status int, contentType string, body []byte) {
	if f.Hold != "" && f.Kind != FaultStall {
		if !s.gates.block(r.Context(), f.Hold) {
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	switch f.Kind {
	case FaultStall:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if newFrameWriter(w).flush() != nil {
			return
		}
		s.gates.block(r.Context(), f.stallGate())
		return
	case FaultTruncate:
		half := body[:len(body)/2]
		h.Set("Content-Length", strconv.Itoa(len(half)))
		w.WriteHeader(status)
		_, _ = w.Write(half)
		return
	case FaultReset:
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		abortConn(w, r, body[:len(body)/2], len(body), false)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// pause waits d, or until ctx ends or the server closes; it reports whether
// the whole delay elapsed.
func (s *Server) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}
