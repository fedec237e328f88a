// Package sse splits a Server-Sent Events byte stream into events,
// incrementally and without copying where it can.
//
// Chunks may end anywhere, even inside a line terminator; the scanner keeps
// the unfinished tail (bounded by a maximum event size) and completes it with
// the next chunk. Lines end with LF or CRLF (a lone CR line ending, which the
// SSE grammar also allows, is not used by any LLM provider and is not
// supported).
package sse

import (
	"bytes"
	"errors"
	"fmt"
)

// DefaultMaxEvent bounds the size of one event (and so the carry-over
// buffer).
const DefaultMaxEvent = 4 << 20

// ErrEventTooLarge is returned when an event exceeds the maximum size.
var ErrEventTooLarge = errors.New("sse: event exceeds the maximum size")

// Scanner yields complete events from pushed chunks.
//
// Use: Push a chunk, then call Next until it reports false. Events returned
// by Next alias the pushed chunk or the scanner's buffer and are valid only
// until the next Push.
type Scanner struct {
	// Max is the maximum event size; zero means DefaultMaxEvent.
	Max int

	carry   []byte
	cur     []byte
	off     int
	scratch []byte
	err     error
	inCarry bool
}

// Push makes the next chunk available to Next. It returns an error once the
// unfinished event grows beyond the maximum size.
func (s *Scanner) Push(chunk []byte) error {
	if s.err != nil {
		return s.err
	}
	if len(s.carry) == 0 {
		s.cur, s.off, s.inCarry = chunk, 0, false
		return nil
	}
	max := s.Max
	if max == 0 {
		max = DefaultMaxEvent
	}
	if len(s.carry)+len(chunk) > max+2 {
		s.err = fmt.Errorf("%w (%d bytes)", ErrEventTooLarge, len(s.carry)+len(chunk))
		return s.err
	}
	s.carry = append(s.carry, chunk...)
	s.cur, s.off, s.inCarry = s.carry, 0, true
	return nil
}

// Next returns the next complete event (its lines, without the blank line
// that ends it). When no complete event is left it keeps the remainder for
// the next Push and reports false.
func (s *Scanner) Next() ([]byte, bool) {
	for s.off < len(s.cur) {
		buf := s.cur[s.off:]
		end, next := eventEnd(buf)
		if end < 0 {
			break
		}
		ev := buf[:end]
		s.off += next
		if len(ev) == 0 {
			continue // stray blank lines
		}
		return ev, true
	}
	s.keep()
	return nil, false
}

// Rest returns and clears the bytes of an unfinished event (what a stream
// that ended without its final blank line left behind).
func (s *Scanner) Rest() []byte {
	s.keep()
	rest := bytes.TrimRight(s.carry, "\r\n")
	s.carry = s.carry[:0]
	return rest
}

// Buffered reports how many bytes of an unfinished event are held.
func (s *Scanner) Buffered() int { return len(s.carry) }

// keep moves the unread part of cur into carry.
func (s *Scanner) keep() {
	if s.cur == nil {
		return
	}
	rest := s.cur[s.off:]
	switch {
	case s.inCarry:
		n := copy(s.carry, rest)
		s.carry = s.carry[:n]
	default:
		s.carry = append(s.carry[:0], rest...)
	}
	s.cur, s.off, s.inCarry = nil, 0, false
}

// eventEnd finds the blank line that ends the first event of buf. It returns
// the length of the event and the offset just past the blank line, or -1.
func eventEnd(buf []byte) (end, next int) {
	lineStart := 0
	for {
		i := bytes.IndexByte(buf[lineStart:], '\n')
		if i < 0 {
			return -1, 0
		}
		i += lineStart
		line := buf[lineStart:i]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			// A blank line: the event is everything before it.
			end = lineStart
			for end > 0 && (buf[end-1] == '\n' || buf[end-1] == '\r') {
				end--
			}
			return end, i + 1
		}
		lineStart = i + 1
	}
}

// Fields holds the parsed fields of one event.
type Fields struct {
	// Event is the event type ("" when the event has no event: line).
	Event []byte
	// Data is the event's data, multiple data lines joined by "\n".
	Data []byte
	// HasData reports whether the event had a data field.
	HasData bool
}

// Parse splits an event into its fields. The result aliases ev, or the
// scanner's scratch buffer when several data lines must be joined.
func (s *Scanner) Parse(ev []byte) Fields {
	var f Fields
	dataLines := 0
	for len(ev) > 0 {
		var line []byte
		if i := bytes.IndexByte(ev, '\n'); i >= 0 {
			line, ev = ev[:i], ev[i+1:]
		} else {
			line, ev = ev, nil
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 || line[0] == ':' {
			continue // comment
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(name) {
		case "event":
			f.Event = value
		case "data":
			f.HasData = true
			switch dataLines {
			case 0:
				f.Data = value
			case 1:
				s.scratch = append(append(append(s.scratch[:0], f.Data...), '\n'), value...)
				f.Data = s.scratch
			default:
				s.scratch = append(append(s.scratch, '\n'), value...)
				f.Data = s.scratch
			}
			dataLines++
		}
	}
	return f
}
