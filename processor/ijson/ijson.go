// Package ijson checks that a JSON text is I-JSON (RFC 7493): valid JSON
// syntax, valid UTF-8, no unpaired UTF-16 surrogate escapes, and no object
// with two members of the same name (names compared after unescaping, so
// "model" and "mod\u0065l" are duplicates). It also bounds nesting depth.
//
// Why: parsers disagree on duplicate names. gjson (what llmux reads the
// body with) takes the first member of a name, most providers' parsers the
// last; a body with two "model" members would be routed and authorised on
// one model and served by another. Refusing every body a parser could read
// two ways gives the gateway and the provider one reading of it.
//
// Check makes a single pass over the input with an explicit stack (no
// recursion), allocates nothing on success (its scratch space is pooled)
// and compares member names in time linear in the object's size: a short
// object is checked by comparing names directly, a long one through a hash
// set keyed with a per-process random seed.
//
// CheckMembers is Check that also reports, in the same pass, where the
// values of some top-level members are, so that a caller reads its
// parameters without scanning the input again; Elements and Member walk
// a value Check accepted (an array's elements, an object's member).
package ijson

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"sync"
)

// MaxDepth is how deeply arrays and objects may nest: a top-level object
// is at depth 1.
const MaxDepth = 256

// MaxLen is the longest input Check reads (offsets are kept in 32 bits);
// a longer one is refused as TooLarge.
const MaxLen = 1<<32 - 2

// Kind is the class of an I-JSON violation.
type Kind uint8

// The kinds of violation Check reports.
const (
	// Syntax is input that is not JSON (RFC 8259).
	Syntax Kind = iota + 1
	// Duplicate is an object with two members of the same name, compared
	// after unescaping.
	Duplicate
	// UTF8 is a string holding bytes that are not valid UTF-8.
	UTF8
	// Surrogate is a \u escape of a UTF-16 surrogate that is not part of
	// a high-low pair.
	Surrogate
	// Depth is nesting deeper than MaxDepth.
	Depth
	// TooLarge is an input longer than MaxLen.
	TooLarge
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Syntax:
		return "syntax error"
	case Duplicate:
		return "duplicate member name"
	case UTF8:
		return "invalid UTF-8"
	case Surrogate:
		return "unpaired surrogate escape"
	case Depth:
		return "nesting too deep"
	case TooLarge:
		return "input too large"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Error reports where an input stops being I-JSON.
type Error struct {
	// Kind is the class of the violation.
	Kind Kind
	// Offset is the byte offset of the violation: the unexpected byte (or
	// the input's length when it ends early), the opening quote of the
	// second member of a duplicated name, the first invalid UTF-8 byte,
	// the backslash of an unpaired surrogate escape, or the bracket that
	// nests too deep.
	Offset int
	// Path locates the member or element the violation is in, as
	// messages[2].content[0].type; names that are not plain identifiers
	// are quoted (["a b"]), long names and long paths are cut (…). It is
	// empty for the top-level value. For a duplicate it names the
	// duplicated member.
	Path string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("ijson: %s at byte %d", e.Kind, e.Offset)
	}
	return fmt.Sprintf("ijson: %s at byte %d in %s", e.Kind, e.Offset, e.Path)
}

// Check reports whether data is one I-JSON text, surrounded by optional
// whitespace. It returns nil or an *Error.
func Check(data []byte) error {
	return CheckMembers(data, nil, nil)
}

// Span is where a value is in the input: data[Start:End], without the
// whitespace around it. The zero Span is no value.
type Span struct {
	Start, End int
}

// Found reports whether the span holds a value.
func (v Span) Found() bool { return v.End > 0 }

// CheckMembers is Check that also reports where the values of some
// members of the top-level object are, in the same pass: when data is an
// I-JSON object with a member named names[k] (compared after unescaping,
// so "mod\u0065l" is model), spans[k] is the span of its value; else
// spans[k] is the zero Span. spans must be at least as long as names.
// On error the spans are zero. It allocates nothing on success, and is
// meant for a few names (each member name is compared with every one).
func CheckMembers(data []byte, names []string, spans []Span) error {
	clear(spans[:len(names)])
	if uint64(len(data)) > MaxLen {
		return &Error{Kind: TooLarge, Offset: MaxLen}
	}
	s := pool.Get().(*scanner)
	err := s.check(data, names, spans)
	s.reset()
	pool.Put(s)
	if err != nil {
		clear(spans[:len(names)])
		return err
	}
	return nil
}

// tableFrom is the member count from which an object's names are checked
// through a hash set rather than by comparing with every earlier name.
const tableFrom = 16

// Retained scratch is dropped past these sizes, so one huge body does not
// pin its scratch space in the pool.
const (
	keepBytes = 1 << 16
	keepSlots = 1 << 16
)

var (
	pool = sync.Pool{New: func() any { return new(scanner) }}
	seed = maphash.MakeSeed()
)

// frame is one open object or array.
type frame struct {
	obj bool
	// idx is the current element's index (arrays), -1 before the first.
	idx int
	// key is the current member's name (objects), valid when hasKey.
	key    name
	hasKey bool
	// names and esc are where this object's names start in scanner.names
	// and scanner.esc.
	names, esc int
	// table is this object's hash set in scanner.tables, or -1.
	table int
}

// name is a member name: bytes of the input when it has no escapes, else
// bytes of scanner.esc (the unescaped name).
type name struct {
	lo, hi  int
	at      int // offset of the opening quote in the input
	escaped bool
}

// table is an open-addressing hash set of the names of one object. A slot
// holds a name's 32-bit hash in its high half and the offset of its
// opening quote in the input plus one in its low half; 0 is an empty slot.
// A name is read again from the input only when its hash matches, so an
// object of any size costs 16 to 32 bytes per member and nothing else.
type table struct {
	slots []uint64
	n     int
}

// scanner is Check's state and scratch space, pooled.
//
// Memory: names holds the names of objects that have no hash set yet (at
// most tableFrom per open object, so at most tableFrom*MaxDepth); esc the
// unescaped bytes of those names and of each object's current member; an
// object past tableFrom members holds its names in one table.
type scanner struct {
	stack  []frame
	names  []name
	esc    []byte
	tmp    []byte
	tables []table
	ntab   int
	// pending is the raw text of a member name that failed to scan, for
	// the error's path.
	pending []byte
}

func (s *scanner) reset() {
	s.stack = s.stack[:0]
	s.pending = nil
	s.names = s.names[:0]
	if cap(s.esc) > keepBytes {
		s.esc = nil
	}
	s.esc = s.esc[:0]
	if cap(s.tmp) > keepBytes {
		s.tmp = nil
	}
	for i := range s.tables[:s.ntab] {
		clear(s.tables[i].slots)
		s.tables[i].n = 0
	}
	s.ntab = 0
	for i := range s.tables {
		if len(s.tables[i].slots) > keepSlots {
			s.tables[i].slots = nil
		}
	}
}

// check scans data, noting the spans of the top-level members named in
// names. Its loop parses one value per turn, then closes every container
// that ends after it.
func (s *scanner) check(data []byte, names []string, spans []Span) *Error {
	// top is the index in names of the top-level member whose value is
	// being scanned, or -1.
	top := -1
	i := skipSpace(data, 0)
	for {
		if i >= len(data) {
			return s.fail(Syntax, len(data), data)
		}
		switch c := data[i]; c {
		case '{', '[':
			if len(s.stack) == MaxDepth {
				return s.fail(Depth, i, data)
			}
			s.stack = slices.Grow(s.stack, 1)[:len(s.stack)+1]
			f := &s.stack[len(s.stack)-1]
			f.obj, f.idx, f.hasKey, f.names, f.esc, f.table = c == '{', -1, false, len(s.names), len(s.esc), -1
			i = skipSpace(data, i+1)
			if i < len(data) && (c == '{' && data[i] == '}' || c == '[' && data[i] == ']') {
				s.stack = s.stack[:len(s.stack)-1]
				i++
				break
			}
			if c == '[' {
				s.stack[len(s.stack)-1].idx = 0
				continue
			}
			var err *Error
			if i, err = s.member(data, i); err != nil {
				return err
			}
			if len(s.stack) == 1 && len(names) > 0 {
				top = s.named(data, names, spans, i)
			}
			continue
		case '"':
			j, _, kind, at := scanString(data, i)
			if kind != 0 {
				return s.fail(kind, at, data)
			}
			i = j
		case 't':
			if !hasLit(data, i, "true") {
				return s.fail(Syntax, litEnd(data, i, "true"), data)
			}
			i += 4
		case 'f':
			if !hasLit(data, i, "false") {
				return s.fail(Syntax, litEnd(data, i, "false"), data)
			}
			i += 5
		case 'n':
			if !hasLit(data, i, "null") {
				return s.fail(Syntax, litEnd(data, i, "null"), data)
			}
			i += 4
		default:
			j, ok := scanNumber(data, i)
			if !ok {
				return s.fail(Syntax, j, data)
			}
			i = j
		}
		// A value ended at i: close containers until one continues.
		for {
			if top >= 0 && len(s.stack) == 1 {
				spans[top].End = i
				top = -1
			}
			i = skipSpace(data, i)
			if len(s.stack) == 0 {
				if i != len(data) {
					return s.fail(Syntax, i, data)
				}
				return nil
			}
			if i >= len(data) {
				return s.fail(Syntax, i, data)
			}
			f := &s.stack[len(s.stack)-1]
			c := data[i]
			if c == ',' {
				i = skipSpace(data, i+1)
				if !f.obj {
					f.idx++
					break
				}
				var err *Error
				if i, err = s.member(data, i); err != nil {
					return err
				}
				if len(s.stack) == 1 && len(names) > 0 {
					top = s.named(data, names, spans, i)
				}
				break
			}
			if f.obj && c != '}' || !f.obj && c != ']' {
				return s.fail(Syntax, i, data)
			}
			s.close()
			i++
		}
	}
}

// close pops the innermost container, dropping its names.
func (s *scanner) close() {
	f := &s.stack[len(s.stack)-1]
	if f.obj {
		s.names = s.names[:f.names]
		s.esc = s.esc[:f.esc]
		if f.table >= 0 {
			t := &s.tables[f.table]
			clear(t.slots)
			t.n = 0
			s.ntab--
		}
	}
	s.stack = s.stack[:len(s.stack)-1]
}

// member scans a member name at data[i:], checks it against the object's
// other names, and the colon after it. It returns the offset of the value.
func (s *scanner) member(data []byte, i int) (int, *Error) {
	f := &s.stack[len(s.stack)-1]
	f.hasKey = false
	if f.table < 0 && len(s.names)-f.names >= tableFrom {
		s.newTable(data, f)
	}
	if f.table >= 0 {
		s.esc = s.esc[:f.esc] // the previous member's unescaped name
	}
	if i >= len(data) || data[i] != '"' {
		return 0, s.fail(Syntax, i, data)
	}
	j, escaped, kind, at := scanString(data, i)
	if kind != 0 {
		// The path shows the name up to and including what is wrong.
		end := at
		switch kind {
		case UTF8:
			end = at + 1
		case Surrogate:
			end = at + 6
		}
		s.pending = data[i+1 : min(end, len(data))]
		return 0, s.fail(kind, at, data)
	}
	n := name{lo: i + 1, hi: j - 1, at: i}
	if escaped {
		n.lo = len(s.esc)
		s.esc = unescape(s.esc, data[i+1:j-1])
		n.hi, n.escaped = len(s.esc), true
	}
	dup := s.seen(data, f, &n)
	f.key, f.hasKey = n, true
	if dup {
		return 0, s.fail(Duplicate, i, data)
	}
	if f.table < 0 {
		s.names = append(s.names, n)
	}
	j = skipSpace(data, j)
	if j >= len(data) || data[j] != ':' {
		return 0, s.fail(Syntax, j, data)
	}
	return skipSpace(data, j+1), nil
}

// named looks the top-level object's current member up in names. When it
// is there, it notes that the member's value starts at data[i] and
// returns its index; else it returns -1.
func (s *scanner) named(data []byte, names []string, spans []Span, i int) int {
	b := s.bytes(data, &s.stack[0].key)
	for k, n := range names {
		if n == string(b) {
			spans[k].Start = i
			return k
		}
	}
	return -1
}

// bytes returns a name's unescaped bytes.
func (s *scanner) bytes(data []byte, n *name) []byte {
	if n.escaped {
		return s.esc[n.lo:n.hi]
	}
	return data[n.lo:n.hi]
}

// seen reports whether the object f already has a member named n, and
// records n in the object's hash set when it has one.
func (s *scanner) seen(data []byte, f *frame, n *name) bool {
	b := s.bytes(data, n)
	if f.table < 0 {
		prev := s.names[f.names:]
		for k := range prev {
			if string(s.bytes(data, &prev[k])) == string(b) {
				return true
			}
		}
		return false
	}
	t := &s.tables[f.table]
	h := uint32(maphash.Bytes(seed, b))
	mask := uint32(len(t.slots) - 1)
	for p := h & mask; ; p = (p + 1) & mask {
		v := t.slots[p]
		if v == 0 {
			break
		}
		if uint32(v>>32) == h && string(s.nameAt(data, int(uint32(v))-1)) == string(b) {
			return true
		}
	}
	if (t.n+1)*2 > len(t.slots) {
		t.grow()
	}
	t.insert(h, n.at)
	return false
}

// nameAt returns the unescaped name whose opening quote is at data[at],
// which scanString has checked.
func (s *scanner) nameAt(data []byte, at int) []byte {
	end, escaped, _, _ := scanString(data, at)
	if !escaped {
		return data[at+1 : end-1]
	}
	s.tmp = unescape(s.tmp[:0], data[at+1:end-1])
	return s.tmp
}

// newTable moves the names of the object f into a hash set.
func (s *scanner) newTable(data []byte, f *frame) {
	if s.ntab == len(s.tables) {
		s.tables = append(s.tables, table{})
	}
	f.table = s.ntab
	s.ntab++
	t := &s.tables[f.table]
	if len(t.slots) < 4*tableFrom {
		t.slots = make([]uint64, 4*tableFrom)
	}
	for k := f.names; k < len(s.names); k++ {
		n := &s.names[k]
		t.insert(uint32(maphash.Bytes(seed, s.bytes(data, n))), n.at)
	}
	s.names = s.names[:f.names]
	s.esc = s.esc[:f.esc]
}

// grow doubles t's slots.
func (t *table) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	t.n = 0
	for _, v := range old {
		if v != 0 {
			t.insert(uint32(v>>32), int(uint32(v))-1)
		}
	}
}

// insert adds the name whose quote is at offset at, with hash h.
func (t *table) insert(h uint32, at int) {
	mask := uint32(len(t.slots) - 1)
	for p := h & mask; ; p = (p + 1) & mask {
		if t.slots[p] == 0 {
			t.slots[p] = uint64(h)<<32 | uint64(uint32(at+1))
			t.n++
			return
		}
	}
}

// skipSpace returns the offset of the first non-whitespace byte at or
// after i.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func hasLit(data []byte, i int, lit string) bool {
	return len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit
}

// litEnd is the offset of the first byte where data[i:] stops matching lit.
func litEnd(data []byte, i int, lit string) int {
	k := 0
	for k < len(lit) && i+k < len(data) && data[i+k] == lit[k] {
		k++
	}
	return i + k
}

// scanNumber scans a JSON number at data[i:]. It returns the offset after
// it, or the offset of the offending byte and false.
func scanNumber(data []byte, i int) (int, bool) {
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i >= len(data):
		return i, false
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = digits(data, i+1)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return i, false
		}
		i = digits(data, i+1)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return i, false
		}
		i = digits(data, i+1)
	}
	return i, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

// plain marks the bytes a string may hold as they are: ASCII except
// control characters, the quote and the backslash.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special marks the bytes of w (8 bytes, little-endian) that are control
// characters, quotes, backslashes or non-ASCII with their high bit; 0 when
// there are none. A byte above a marked one may be marked wrongly (a
// subtraction borrows from it), so only the lowest mark locates a byte.
func special(w uint64) uint64 {
	ctl := (w - 0x20*ones) &^ w
	q := w ^ '"'*ones
	q = (q - ones) &^ q
	bs := w ^ '\\'*ones
	bs = (bs - ones) &^ bs
	return (ctl | q | bs | w) & highs
}

// scanString scans the string whose opening quote is at data[i]. It
// returns the offset after the closing quote and whether the string has
// escapes, or the kind and offset of the violation.
func scanString(data []byte, i int) (end int, escaped bool, kind Kind, at int) {
	j := i + 1
	for {
		for j+8 <= len(data) {
			if m := special(binary.LittleEndian.Uint64(data[j:])); m != 0 {
				j += bits.TrailingZeros64(m) / 8 // the first special byte
				break
			}
			j += 8
		}
		for j < len(data) && plain[data[j]] {
			j++
		}
		if j >= len(data) {
			return 0, false, Syntax, len(data)
		}
		switch c := data[j]; {
		case c == '"':
			return j + 1, escaped, 0, 0
		case c == '\\':
			escaped = true
			if j+1 >= len(data) {
				return 0, false, Syntax, len(data)
			}
			switch data[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				r, ok := hex4(data, j+2)
				if !ok {
					return 0, false, Syntax, j
				}
				switch {
				case r >= 0xDC00 && r < 0xE000:
					return 0, false, Surrogate, j
				case r >= 0xD800 && r < 0xDC00:
					if j+8 > len(data) || data[j+6] != '\\' || data[j+7] != 'u' {
						return 0, false, Surrogate, j
					}
					lo, ok := hex4(data, j+8)
					if !ok {
						return 0, false, Syntax, j + 6
					}
					if lo < 0xDC00 || lo >= 0xE000 {
						return 0, false, Surrogate, j
					}
					j += 12
				default:
					j += 6
				}
			default:
				return 0, false, Syntax, j + 1
			}
		case c < 0x20:
			return 0, false, Syntax, j
		default:
			n := utf8Len(data[j:])
			if n == 0 {
				return 0, false, UTF8, j
			}
			j += n
		}
	}
}

// hex4 decodes the four hex digits at data[i:].
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	var r rune
	for _, c := range data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// utf8Len returns the length of the valid UTF-8 sequence that b starts
// with (b[0] is not ASCII), or 0. It refuses overlong forms, encoded
// surrogates and code points past U+10FFFF, as unicode/utf8 does.
func utf8Len(b []byte) int {
	c := b[0]
	var n int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c < 0xC2:
		return 0
	case c < 0xE0:
		n = 2
	case c < 0xF0:
		n = 3
		if c == 0xE0 {
			lo = 0xA0
		} else if c == 0xED {
			hi = 0x9F
		}
	case c < 0xF5:
		n = 4
		if c == 0xF0 {
			lo = 0x90
		} else if c == 0xF4 {
			hi = 0x8F
		}
	default:
		return 0
	}
	if len(b) < n || b[1] < lo || b[1] > hi {
		return 0
	}
	for _, c := range b[2:n] {
		if c&0xC0 != 0x80 {
			return 0
		}
	}
	return n
}

// unescape appends the unescaped form of a string's contents, whose
// escapes scanString has checked.
func unescape(dst, src []byte) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch src[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(src, i+2)
			if r >= 0xD800 && r < 0xDC00 {
				lo, _ := hex4(src, i+8)
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				i += 6
			}
			dst = appendRune(dst, r)
			i += 6
			continue
		default: // " \ /
			dst = append(dst, src[i+1])
		}
		i += 2
	}
	return dst
}

func appendRune(dst []byte, r rune) []byte {
	switch {
	case r < 0x80:
		return append(dst, byte(r))
	case r < 0x800:
		return append(dst, 0xC0|byte(r>>6), 0x80|byte(r)&0x3F)
	case r < 0x10000:
		return append(dst, 0xE0|byte(r>>12), 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
	}
	return append(dst, 0xF0|byte(r>>18), 0x80|byte(r>>12)&0x3F, 0x80|byte(r>>6)&0x3F, 0x80|byte(r)&0x3F)
}
