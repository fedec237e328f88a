package processor

import (
	"crypto/rand"
	"encoding/hex"
	"unicode/utf8"
)

// maxRequestIDLen is the longest client x-request-id llmux adopts.
const maxRequestIDLen = 64

// validRequestID reports whether a client's x-request-id is short and well
// formed enough to be llmux's request id (logs, metadata, the access log,
// the provider's request and the client's response): 1 to 64 characters
// of A-Z a-z 0-9 . _ : -. Envoy's own UUIDs qualify. Anything else is
// replaced by an id llmux makes.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns a random version 4 UUID, the format Envoy's
// generate_request_id uses.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// maxEcho bounds the bytes of a client-supplied value (a model name, a
// path, a method) that an error message quotes, escapes included.
const maxEcho = 96

// echo makes a client-supplied value safe to quote in an error message:
// control characters, invalid UTF-8 and the Unicode line separators are
// escaped (\xNN, \uNNNN), and the result is cut at a character boundary
// to at most maxEcho bytes, "…" marking the cut.
func echo(s string) string {
	const hexd = "0123456789abcdef"
	clean := len(s) <= maxEcho
	for i := 0; clean && i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
		}
	}
	if clean {
		return s
	}
	out := make([]byte, 0, maxEcho+len("…"))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		var piece []byte
		switch {
		case r == utf8.RuneError && n <= 1:
			piece = []byte{'\\', 'x', hexd[s[i]>>4], hexd[s[i]&0xf]}
		case r < 0x20 || r == 0x7f:
			piece = []byte{'\\', 'x', hexd[r>>4], hexd[r&0xf]}
		case r >= 0x80 && r < 0xa0 || r == 0x2028 || r == 0x2029:
			piece = []byte{'\\', 'u', hexd[r>>12&0xf], hexd[r>>8&0xf], hexd[r>>4&0xf], hexd[r&0xf]}
		default:
			piece = []byte(s[i : i+n])
		}
		if len(out)+len(piece) > maxEcho {
			return string(append(out, "…"...))
		}
		out = append(out, piece...)
		i += n
	}
	return string(out)
}
