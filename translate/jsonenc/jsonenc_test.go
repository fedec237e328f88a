package jsonenc

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendStringRoundTrip(t *testing.T) {
	cases := []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\n\r\t", "héllo wörld ✓", "bad \xff utf8", "sep \u2028 \u2029", "<html>&amp;"}
	for _, s := range cases {
		out := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, out, err)
		}
		want := s
		if s == "bad \xff utf8" {
			want = "bad \ufffd utf8"
		}
		if got != want {
			t.Errorf("round trip %q: got %q", want, got)
		}
	}
}

func TestAppendStringOrNull(t *testing.T) {
	if got := string(AppendStringOrNull(nil, "")); got != "null" {
		t.Errorf("empty: %s", got)
	}
	if got := string(AppendStringOrNull(nil, "x")); got != `"x"` {
		t.Errorf("x: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello")
	f.Add("\xff\xfe\"\\\n")
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %s", s, out)
		}
		if want := appendStringBytewise(nil, s); string(out) != string(want) {
			t.Fatalf("%q: %s, byte by byte %s", s, out, want)
		}
	})
}

// appendStringBytewise is AppendString as it was before its eight-byte
// skip, byte by byte: the reference the fast path must agree with.
func appendStringBytewise(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\':
			dst = append(dst, c)
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '\r':
			dst = append(dst, '\\', 'r')
		case c == '\t':
			dst = append(dst, '\\', 't')
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size == 1:
				dst = append(dst, `\ufffd`...)
			case r == '\u2028' || r == '\u2029':
				dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			default:
				dst = append(dst, s[i:i+size]...)
			}
			i += size
			continue
		}
		i++
	}
	return append(dst, '"')
}

func TestAppendStringEightBytes(t *testing.T) {
	var cases []string
	for _, special := range []string{`"`, `\`, "\x00", "\x1f", "\x7f", " ", "\x80", "é", "\u2028", "\xff", "~", "!"} {
		for pos := range 17 {
			for _, n := range []int{8, 9, 15, 16, 17, 24} {
				if pos >= n {
					continue
				}
				b := []byte(strings.Repeat("abcdefgh", 3)[:n])
				s := string(b[:pos]) + special + string(b[pos:])
				cases = append(cases, s)
			}
		}
	}
	for _, s := range cases {
		got, want := string(AppendString(nil, s)), string(appendStringBytewise(nil, s))
		if got != want {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	}
	for _, c := range []struct{ s, want string }{
		{"0123456789abcdef", `"0123456789abcdef"`},
		{"01234567\"9abcdef", `"01234567\"9abcdef"`},
		{"0123456\x01", `"0123456\u0001"`},
		{"0123456789abcd\\f", `"0123456789abcd\\f"`},
		{"0123456789abcdé", `"0123456789abcdé"`},
	} {
		if got := string(AppendString(nil, c.s)); got != c.want {
			t.Errorf("%q: got %s, want %s", c.s, got, c.want)
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := strings.Repeat("An API gateway for language models sits between applications and providers. ", 8)
	buf := make([]byte, 0, 2*len(s))
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}
