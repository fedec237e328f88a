package sse

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// collect feeds chunks and returns every event's data, in order.
func collect(t *testing.T, s *Scanner, chunks ...[]byte) []string {
	t.Helper()
	var got []string
	for _, c := range chunks {
		if err := s.Push(c); err != nil {
			t.Fatalf("push: %v", err)
		}
		for {
			ev, ok := s.Next()
			if !ok {
				break
			}
			f := s.Parse(ev)
			got = append(got, string(f.Event)+"|"+string(f.Data))
		}
	}
	return got
}

const stream = "data: {\"a\":1}\n\n" +
	"event: message_start\r\ndata: {\"b\":2}\r\n\r\n" +
	": keep-alive comment\n\n" +
	"data: line one\ndata: line two\n\n" +
	"data:nospace\n\n" +
	"data: [DONE]\n\n"

var want = []string{`|{"a":1}`, `message_start|{"b":2}`, "|", "|line one\nline two", "|nospace", "|[DONE]"}

func TestWhole(t *testing.T) {
	got := collect(t, &Scanner{}, []byte(stream))
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

// TestEverySplit cuts the stream at every byte (and into three pieces at
// every pair of points) and expects the same events.
func TestEverySplit(t *testing.T) {
	b := []byte(stream)
	for i := 0; i <= len(b); i++ {
		got := collect(t, &Scanner{}, b[:i], b[i:])
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("split at %d: got %q", i, got)
		}
	}
	for i := 0; i <= len(b); i += 3 {
		for j := i; j <= len(b); j += 5 {
			got := collect(t, &Scanner{}, b[:i], b[i:j], b[j:])
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Fatalf("split at %d,%d: got %q", i, j, got)
			}
		}
	}
}

func TestByteAtATime(t *testing.T) {
	s := &Scanner{}
	var chunks [][]byte
	for i := range len(stream) {
		chunks = append(chunks, []byte{stream[i]})
	}
	got := collect(t, s, chunks...)
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("got %q", got)
	}
	if s.Buffered() != 0 {
		t.Fatalf("buffered %d after a complete stream", s.Buffered())
	}
}

func TestRest(t *testing.T) {
	s := &Scanner{}
	got := collect(t, s, []byte("data: one\n\ndata: {\"trunc"))
	if len(got) != 1 {
		t.Fatalf("got %q", got)
	}
	if rest := s.Rest(); string(rest) != `data: {"trunc` {
		t.Fatalf("rest %q", rest)
	}
	if s.Buffered() != 0 {
		t.Fatal("rest did not clear")
	}
}

func TestMaxEvent(t *testing.T) {
	s := &Scanner{Max: 16}
	if err := s.Push([]byte("data: 0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Next(); ok {
		t.Fatal("unexpected event")
	}
	err := s.Push(bytes.Repeat([]byte("x"), 32))
	if !errors.Is(err, ErrEventTooLarge) {
		t.Fatalf("want ErrEventTooLarge, got %v", err)
	}
}

func FuzzScanner(f *testing.F) {
	f.Add([]byte(stream), 7)
	f.Add([]byte("data: x\r\n\r\ndata: y\n\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		whole := collectNoFail(&Scanner{Max: 1 << 16}, b)
		if cut < 0 {
			cut = -cut
		}
		if len(b) > 0 {
			cut %= len(b) + 1
		} else {
			cut = 0
		}
		split := collectNoFail(&Scanner{Max: 1 << 16}, b[:cut], b[cut:])
		if whole != nil && split != nil && strings.Join(whole, "\x00") != strings.Join(split, "\x00") {
			t.Fatalf("split at %d differs: %q vs %q", cut, whole, split)
		}
	})
}

func collectNoFail(s *Scanner, chunks ...[]byte) []string {
	var got []string
	for _, c := range chunks {
		if err := s.Push(c); err != nil {
			return nil
		}
		for {
			ev, ok := s.Next()
			if !ok {
				break
			}
			f := s.Parse(ev)
			got = append(got, string(f.Event)+"|"+string(f.Data))
		}
	}
	return got
}
