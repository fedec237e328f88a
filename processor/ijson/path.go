package ijson

import (
	"strconv"
	"unicode/utf8"
)

// Bounds on what an Error's path repeats of the input.
const (
	// maxName is the most bytes of one member name a path shows.
	maxName = 32
	// maxPath is the most bytes of a path; a longer one keeps its end.
	maxPath = 160
)

// fail builds the error for a violation at offset at, with the path of
// the member or element being scanned.
func (s *scanner) fail(kind Kind, at int, data []byte) *Error {
	var p []byte
	for k := range s.stack {
		f := &s.stack[k]
		switch {
		case f.obj && f.hasKey:
			p = appendName(p, s.bytes(data, &f.key), false)
		case !f.obj && f.idx >= 0:
			p = append(p, '[')
			p = strconv.AppendInt(p, int64(f.idx), 10)
			p = append(p, ']')
		}
	}
	if s.pending != nil {
		p = appendName(p, s.pending, true)
	}
	return &Error{Kind: kind, Offset: at, Path: string(cut(p))}
}

// appendName appends a path segment for a member name: .name for a plain
// identifier (no dot at the start of the path), else ["name"] with the
// name escaped and cut. A partial name (one that failed to scan) is
// always quoted and ends with an ellipsis.
func appendName(p, name []byte, partial bool) []byte {
	if !partial && ident(name) {
		if len(p) > 0 {
			p = append(p, '.')
		}
		return append(p, name...)
	}
	p = append(p, `["`...)
	for i := 0; i < len(name) || partial; {
		if i >= maxName || i >= len(name) {
			p = append(p, "…"...)
			break
		}
		r, n := utf8.DecodeRune(name[i:])
		switch {
		case r == '"' || r == '\\':
			p = append(p, '\\', byte(r))
		case r < 0x20:
			p = append(p, `\u00`...)
			p = append(p, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&0xF])
		default:
			p = utf8.AppendRune(p, r) // invalid bytes become U+FFFD
		}
		i += n
	}
	return append(p, `"]`...)
}

// ident reports whether a name can stand in a path unquoted.
func ident(b []byte) bool {
	if len(b) == 0 || len(b) > maxName {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cut keeps the last maxPath bytes of a path, from a rune boundary, after
// an ellipsis.
func cut(p []byte) []byte {
	if len(p) <= maxPath {
		return p
	}
	i := len(p) - maxPath
	for i < len(p) && !utf8.RuneStart(p[i]) {
		i++
	}
	return append([]byte("…"), p[i:]...)
}
