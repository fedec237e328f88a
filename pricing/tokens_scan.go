package pricing

import (
	_ "embed" // the CJK bit sets
	"strings"
	"unicode"
	"unicode/utf8"
)

// The estimator mimics o200k_base without its vocabulary. o200k first
// splits text into pieces with a regular expression (words with an
// optional leading space or punctuation mark, groups of up to 3 digits,
// punctuation runs, whitespace runs), then encodes each piece with BPE.
// scanner reproduces the split in one pass and charges each piece the
// mean token count that o200k gives pieces of its class (script, case
// shape, prefix, length), from tables fitted against the real tokenizer
// (tokens_table.go, written by TestFitTokenTable; see docs/pricing.md).
// Costs are in 1/costUnit of a token so that fractions add up.

// costUnit is the fixed-point unit of the cost tables: 1/256 token.
const costUnit = 256

// Rune kinds, the classes of o200k's pre-tokenizer.
const (
	kPunct   uint8 = iota // neither letter, digit nor whitespace
	kUpper                // \p{Lu} \p{Lt}
	kLower                // \p{Ll}
	kLetter               // \p{Lm} \p{Lo}: upper and lower at once
	kMark                 // \p{M}: a letter in words, punctuation in punctuation runs
	kDigit                // \p{N}
	kSpace                // whitespace other than \r and \n
	kNewline              // \r \n
)

// Scripts of a word, by its first letter.
const (
	scLatin = iota
	scCyrillic
	scGreek
	scArabic
	scHebrew
	scIndic
	scThai
	scHan
	scKana
	scHangul
	scOther
	scLatinEU // Latin words of non-English text (the tables only)
	numScripts
)

// CJK rune classes: a CJK word costs per rune by class.
const (
	cjkOther = iota // anything else in the word (Latin letters, marks)
	cjkHan
	cjkHiragana
	cjkKatakana
	cjkHangul
	numCJK
)

// Word prefixes: o200k lets one non-letter, non-digit character other
// than a line break start a word.
const (
	preNone  = iota
	preSpace // ' '
	prePunct // ASCII punctuation
	preOther // any other (tab, non-ASCII punctuation or symbol)
	numPrefixes
)

// Case shapes of a word: o200k tokenizes "word", "Word" and "WORD"
// differently.
const (
	shLower = iota // no upper-case letter (or an uncased script)
	shTitle        // one leading upper-case letter
	shUpper        // two or more
	numShapes
)

// Symbol classes of non-ASCII punctuation runes.
const (
	symEmoji = iota // pictographs, dingbats, flags
	symCJK          // CJK and full-width punctuation
	symOther        // general punctuation, ZWJ, arrows, maths, …
	numSyms
)

// Table bounds: longer pieces are charged the last entry plus a slope
// per extra rune.
const (
	maxWordLen  = 32
	maxPunctLen = 16
	maxSpaceLen = 16
)

// asciiKind is the kind of every ASCII byte.
var asciiKind = func() (t [utf8.RuneSelf]uint8) {
	for c := range utf8.RuneSelf {
		switch {
		case c >= 'A' && c <= 'Z':
			t[c] = kUpper
		case c >= 'a' && c <= 'z':
			t[c] = kLower
		case c >= '0' && c <= '9':
			t[c] = kDigit
		case c == '\r' || c == '\n':
			t[c] = kNewline
		case c == ' ' || c == '\t' || c == '\v' || c == '\f':
			t[c] = kSpace
		default:
			t[c] = kPunct
		}
	}
	return t
}()

// piece describes one pre-tokenizer piece, for fitting the tables.
type piece struct {
	start, end int          // byte offsets in the scanned text
	kind       uint8        // kUpper for a word, kDigit, kPunct, kSpace, kNewline
	script     uint8        // word: script of the first letter
	prefix     uint8        // word: preNone…
	shape      uint8        // word: shLower…
	space      bool         // punctuation: led by a space
	ascii      bool         // digits: ASCII
	n          int          // word: letters; punctuation: ASCII runes; whitespace: runes
	syms       [numSyms]int // punctuation: non-ASCII runes by symbol class
	cjk        [numCJK]int  // word: non-ASCII letters by CJK class
	pairs      int          // word: adjacent CJK letters that o200k has in one token
	rare       int          // word: CJK letters that are not one token
	accented   bool         // word: has a non-ASCII Latin letter
}

// scanner counts the tokens of one text.
type scanner struct {
	b []byte
	// esc is '\\' when b is the inside of a JSON string literal, whose
	// escapes are decoded on the fly; else 0. Below 0x80, every byte but
	// esc stands for itself.
	esc byte
	// visit, when set, is called with every piece (fitting and tests).
	visit func(piece)
	// Latin words are costed apart (latinWord).
	latin           [2]int64
	words, accented int
	function        int // Latin words that are European function words
}

// countText estimates the o200k tokens of plain text.
func countText(text []byte) int64 {
	s := scanner{b: text}
	return (s.run() + costUnit/2) / costUnit
}

// countJSONString estimates the o200k tokens of the text a JSON string
// literal holds, raw being the literal without its quotes. A literal
// without escapes is scanned in place; else it is decoded into a stack
// buffer a chunk at a time, each cut where a piece ends regardless of
// what follows (a space between two ASCII letters, after a line break
// before a letter), so that the fast path scans every chunk.
func countJSONString(raw string) int64 {
	if strings.IndexByte(raw, '\\') < 0 {
		return countText(stringBytes(raw))
	}
	var buf [chunkLen]byte
	var s scanner
	var cost int64
	n := 0
	for i := 0; i < len(raw) || n > 0; {
		i, n = unescapeInto(&buf, n, raw, i)
		cut := n
		if i < len(raw) {
			cut = safeCut(buf[:n])
		}
		s.b = buf[:cut]
		cost += s.scan()
		n = copy(buf[:], buf[cut:n])
	}
	return (cost + s.latinCost() + costUnit/2) / costUnit
}

// chunkLen is the size of countJSONString's buffer.
const chunkLen = 4096

// unescapeInto decodes raw from i into buf after its first n bytes until
// buf is nearly full, and returns the new i and n.
func unescapeInto(buf *[chunkLen]byte, n int, raw string, i int) (int, int) {
	for i < len(raw) && n < chunkLen-utf8.UTFMax {
		if raw[i] != '\\' {
			// Up to the next escape: byte by byte while the span is
			// short (JSON in a string escapes every quote), then copy.
			k := 1
			for k < 16 && i+k < len(raw) && raw[i+k] != '\\' {
				k++
			}
			if k == 16 {
				if e := strings.IndexByte(raw[i+k:], '\\'); e < 0 {
					k = len(raw) - i
				} else {
					k += e
				}
			}
			m := copy(buf[n:chunkLen-utf8.UTFMax], raw[i:i+k])
			i, n = i+m, n+m
			continue
		}
		r, size := unescape(stringBytes(raw), i)
		if r < utf8.RuneSelf {
			buf[n] = byte(r)
			n++
		} else {
			n += utf8.EncodeRune(buf[n:], r)
		}
		i += size
	}
	return i, n
}

// safeCut returns an offset in the back half of b where the scan can stop
// and resume with the same pieces, or failing that the start of the
// last rune (which may split one piece in two).
func safeCut(b []byte) int {
	letter := func(c byte) bool { return (c|0x20)-'a' < 26 }
	for p := len(b) - 2; p > len(b)/2; p-- {
		if b[p] == ' ' && letter(b[p-1]) && letter(b[p+1]) || b[p-1] == '\n' && letter(b[p]) {
			return p
		}
	}
	p := len(b) - 1
	for p > 0 && !utf8.RuneStart(b[p]) {
		p--
	}
	return max(p, 1)
}

// at decodes the rune at i.
func (s *scanner) at(i int) (rune, int) {
	c := s.b[i]
	if c < utf8.RuneSelf {
		if c == '\\' && s.esc == '\\' {
			return s.escape(i)
		}
		return rune(c), 1
	}
	return decodeRune(s.b, i)
}

// decodeRune is utf8.DecodeRune(b[i:]) with the 2- and 3-byte sequences
// of the alphabets and CJK inline.
func decodeRune(b []byte, i int) (rune, int) {
	switch c := b[i]; {
	case c >= 0xC2 && c < 0xE0 && i+1 < len(b):
		if d := b[i+1]; d&0xC0 == 0x80 {
			return rune(c&0x1F)<<6 | rune(d&0x3F), 2
		}
	case c >= 0xE1 && c < 0xF0 && c != 0xED && i+2 < len(b): // not E0 (overlong) nor ED (surrogates)
		if d, e := b[i+1], b[i+2]; d&0xC0 == 0x80 && e&0xC0 == 0x80 {
			return rune(c&0x0F)<<12 | rune(d&0x3F)<<6 | rune(e&0x3F), 3
		}
	}
	return utf8.DecodeRune(b[i:])
}

// escape decodes the JSON escape at i; a malformed one is a backslash.
func (s *scanner) escape(i int) (rune, int) { return unescape(s.b, i) }

// unescape decodes the JSON escape at b[i]; a malformed one is a
// backslash.
func unescape(b []byte, i int) (rune, int) {
	if i+1 >= len(b) {
		return '\\', 1
	}
	switch b[i+1] {
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'u':
		r, ok := hex4(b, i+2)
		if !ok {
			return '\\', 1
		}
		if r >= 0xD800 && r < 0xDC00 && i+11 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if lo, ok := hex4(b, i+8); ok && lo >= 0xDC00 && lo < 0xE000 {
				return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), 12
			}
		}
		if r >= 0xD800 && r < 0xE000 {
			return utf8.RuneError, 6
		}
		return r, 6
	default: // \" \\ \/ and anything malformed
		return rune(b[i+1]), 2
	}
}

// hex4 decodes the 4 hexadecimal digits at i.
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// kindAt returns the kind of the rune at i and its size; past the end it
// is kNewline with size 0 (nothing continues a piece there).
func (s *scanner) kindAt(i int) (uint8, int) {
	if i >= len(s.b) {
		return kNewline, 0
	}
	if c := s.b[i]; c < utf8.RuneSelf && c != s.esc {
		return asciiKind[c], 1
	}
	return s.kindAtSlow(i)
}

// kindAtSlow is kindAt for a non-ASCII rune or an escape.
func (s *scanner) kindAtSlow(i int) (uint8, int) {
	r, n := s.at(i)
	return kindOf(r), n
}

// isLetter reports whether kind k is a letter kind.
func isLetter(k uint8) bool { return k >= kUpper && k <= kMark }

// scan scans the text and returns its cost in 1/costUnit tokens but for
// Latin words, which it adds up in s (latinCost). ASCII words, the bulk
// of most prompts, take a fast path; everything else, and every piece
// when visit is set, goes through piece.
func (s *scanner) scan() int64 {
	b, esc := s.b, s.esc
	var cost int64
	for i := 0; i < len(b); {
		c := b[i]
		if s.visit != nil || c >= utf8.RuneSelf || c == esc {
			j, k := s.piece(i)
			cost, i = cost+k, j
			continue
		}
		l, pre := i, uint8(preNone)
		switch asciiKind[c] {
		case kUpper, kLower:
		case kSpace, kPunct:
			if i+1 >= len(b) || (b[i+1]|0x20)-'a' >= 26 {
				j, k := 0, int64(0)
				switch next := byte(0); {
				case i+1 < len(b):
					next = b[i+1]
					if next >= utf8.RuneSelf || next == esc {
						j, k = s.piece(i) // a non-ASCII letter may follow
					} else if asciiKind[c] == kPunct {
						j, k = s.punct(i, i)
					} else if c == ' ' && asciiKind[next] == kPunct {
						j, k = s.punct(i, i+1)
					} else {
						j, k = s.spaces(i)
					}
				case asciiKind[c] == kPunct:
					j, k = s.punct(i, i)
				default:
					j, k = s.spaces(i)
				}
				cost, i = cost+k, j
				continue
			}
			l = i + 1
			switch {
			case c == ' ':
				pre = preSpace
			case asciiKind[c] == kPunct:
				pre = prePunct
			default:
				pre = preOther
			}
		case kDigit:
			j, k := s.digits(i, true)
			cost, i = cost+k, j
			continue
		default: // kNewline
			j, k := s.spaces(i)
			cost, i = cost+k, j
			continue
		}
		j := l
		for j < len(b) && b[j]-'A' < 26 {
			j++
		}
		uppers := j - l
		for j < len(b) && b[j]-'a' < 26 {
			j++
		}
		if j < len(b) && (b[j] >= utf8.RuneSelf || b[j] == esc || b[j] == '\'') {
			j, k := s.piece(i) // the word goes on past ASCII, or a contraction follows
			cost, i = cost+k, j
			continue
		}
		shape := shapeOf(uppers) // latinWord, inline
		s.latin[0] += wordCost(scLatin, pre, shape, j-l)
		s.latin[1] += wordCost(scLatinEU, pre, shape, j-l)
		s.words++
		if uppers == 0 && j-l >= 2 && j-l <= 4 && pre <= preSpace && functionWord(b[l:j]) {
			s.function++
		}
		i = j
	}
	return cost
}

// run scans the whole text and returns its cost in 1/costUnit tokens.
func (s *scanner) run() int64 { return s.scan() + s.latinCost() }

// piece scans the piece at i and returns its end and cost.
func (s *scanner) piece(i int) (int, int64) {
	var r rune
	var size int
	if c := s.b[i]; c < utf8.RuneSelf && c != s.esc {
		r, size = rune(c), 1
	} else {
		r, size = s.at(i)
	}
	k := kindOf(r)
	switch k {
	case kUpper, kLower, kLetter, kMark:
		return s.word(i, i, preNone)
	case kDigit:
		return s.digits(i, r < utf8.RuneSelf)
	case kPunct, kSpace:
		next, _ := s.kindAt(i + size)
		switch {
		case isLetter(next):
			pre := uint8(preOther)
			switch {
			case r == ' ':
				pre = preSpace
			case r < utf8.RuneSelf && k == kPunct:
				pre = prePunct
			}
			return s.word(i, i+size, pre)
		case k == kPunct:
			return s.punct(i, i)
		case r == ' ' && next == kPunct:
			return s.punct(i, i+1)
		}
	}
	return s.spaces(i)
}

// word scans a word whose letters start at l (after a prefix from i):
// upper-case (and uncased) letters, then lower-case (and uncased) ones.
func (s *scanner) word(i, l int, pre uint8) (int, int64) {
	b, esc := s.b, s.esc
	script := scLatin
	if c := b[l]; c >= utf8.RuneSelf || c == esc {
		r, _ := s.at(l)
		script = scriptOf(r)
	}
	var cjk [numCJK]int
	var prev rune // the previous CJK letter, or 0
	pairs, rare := 0, 0
	j, n, uppers, accented := l, 0, 0, false
	for phase := range 2 {
		// phase 0: [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*, phase 1: [\p{Ll}\p{Lm}\p{Lo}\p{M}]*
		lo, hi, same := byte('A'), byte('Z'), uint8(kUpper)
		if phase == 1 {
			lo, hi, same = 'a', 'z', kLower
		}
		for j < len(b) {
			c := b[j]
			if c >= lo && c <= hi {
				j, n = j+1, n+1
				uppers += 1 - phase
				continue
			}
			if c < utf8.RuneSelf && c != esc {
				break
			}
			r, size := s.at(j)
			k := kindOf(r)
			if k != same && k != kLetter && k != kMark {
				break
			}
			if k == kUpper {
				uppers++
			}
			if r >= utf8.RuneSelf {
				cl := cjkOf(r)
				cjk[cl]++
				accented = accented || r < 0x0370 || (r >= 0x1E00 && r <= 0x1EFF)
				if cl != cjkOther {
					if !cjkSingle(r) {
						rare++
					}
					if prev != 0 && cjkPair(prev, r) {
						pairs++
					}
					prev = r
				} else {
					prev = 0
				}
			} else {
				prev = 0
			}
			j, n = j+size, n+1
		}
	}
	letters := j
	if j < len(b) && b[j] == '\'' {
		j += s.contraction(j)
	}
	shape := shapeOf(uppers)
	isCJK := false
	if m := cjk[cjkHan] + cjk[cjkHiragana] + cjk[cjkKatakana] + cjk[cjkHangul]; m > 0 {
		cjk[cjkOther], isCJK = n-m, true
	}
	if s.visit != nil {
		s.visit(piece{start: i, end: j, kind: kUpper, script: uint8(script), prefix: pre, shape: shape, n: n,
			cjk: cjk, pairs: pairs, rare: rare, accented: accented})
	}
	if isCJK {
		c := int64(cjkBase[pre])
		for k, m := range cjk {
			c += int64(m) * int64(cjkRune[k])
		}
		c += int64(rare)*int64(cjkRare) - int64(pairs)*int64(cjkPairSaving)
		return j, max(c, costUnit)
	}
	if script == scLatin {
		s.latinWord(pre, shape, n)
		if accented {
			s.accented++
		}
		if uppers == 0 && n >= 2 && n <= 4 && letters-l == n && pre <= preSpace && functionWord(b[l:letters]) {
			s.function++
		}
		return j, 0
	}
	return j, wordCost(script, pre, shape, n)
}

// shapeOf returns the case shape of a word with the given number of
// upper-case letters.
func shapeOf(uppers int) uint8 {
	switch {
	case uppers == 1:
		return shTitle
	case uppers > 1:
		return shUpper
	}
	return shLower
}

// latinWord adds a Latin word's cost by the English table and by the
// table of the other European languages; run mixes them by the share of
// words with accented letters.
func (s *scanner) latinWord(pre, shape uint8, n int) {
	s.latin[0] += wordCost(scLatin, pre, shape, n)
	s.latin[1] += wordCost(scLatinEU, pre, shape, n)
	s.words++
}

// latinCost mixes the two Latin costs by how European the text looks:
// it is charged the European table in full when 1/accentNorm of its
// words have an accented letter, or 1/functionNorm of them are European
// function words ("de", "und", "che", …: languages with few accents),
// and the English table when neither.
func (s *scanner) latinCost() int64 {
	if s.words == 0 {
		return 0
	}
	w := max(int64(s.accented)*costUnit*accentNorm, int64(s.function)*costUnit*functionNorm) / int64(s.words)
	w = min(costUnit, w)
	return (s.latin[0]*(costUnit-w) + s.latin[1]*w) / costUnit
}

// functionWords are short, frequent words of French, Spanish, Italian,
// Portuguese, German and Dutch that are rare in English and in code.
var functionWords = [...]string{
	"de", "la", "le", "les", "et", "des", "une", "que", "pour", "dans", "est", "qui", "pas", "sur", "au", "aux",
	"di", "che", "il", "sono", "gli", "nel", "una", "della", "alla",
	"los", "las", "por", "para", "del", "con", "es", "lo", "al", "como",
	"der", "und", "das", "den", "ist", "mit", "ein", "eine", "sich", "auf", "dem", "zu", "nicht", "auch",
	"da", "um", "uma", "ao", "mais", "não",
	"het", "een", "dat", "niet", "voor", "zijn",
}

// functionSet is functionWords packed (up to 4 ASCII letters in a
// uint32) in an open-addressing table.
var functionSet = func() (t [256]uint32) {
	for _, w := range functionWords {
		if len(w) < 2 || len(w) > 4 {
			continue // not looked up: only 2–4 letter ASCII words are
		}
		k := packWord([]byte(w))
		h := (k * 0x9E3779B1) >> 24
		for t[h] != 0 {
			h = (h + 1) & 255
		}
		t[h] = k
	}
	return t
}()

// packWord packs a word of up to 4 bytes.
func packWord(w []byte) uint32 {
	var k uint32
	for i, c := range w {
		k |= uint32(c) << (8 * i)
	}
	return k
}

// functionWord reports whether w (2–4 lower-case ASCII letters) is one
// of functionWords.
func functionWord(w []byte) bool {
	k := packWord(w)
	for h := (k * 0x9E3779B1) >> 24; functionSet[h] != 0; h = (h + 1) & 255 {
		if functionSet[h] == k {
			return true
		}
	}
	return false
}

// contraction returns the length of an English contraction suffix at j
// ('s 't 're 've 'm 'll 'd, any case), which o200k keeps in the word.
func (s *scanner) contraction(j int) int {
	if j+1 >= len(s.b) || s.b[j] != '\'' {
		return 0
	}
	switch s.b[j+1] | 0x20 {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if j+2 < len(s.b) && s.b[j+2]|0x20 == 'e' {
			return 3
		}
	case 'l':
		if j+2 < len(s.b) && s.b[j+2]|0x20 == 'l' {
			return 3
		}
	}
	return 0
}

// wordCost is the cost of a word piece.
func wordCost(script int, pre, shape uint8, n int) int64 {
	if n <= maxWordLen {
		return int64(wordTable[script][pre][shape][n])
	}
	return int64(wordTable[script][pre][shape][maxWordLen]) + int64(n-maxWordLen)*int64(wordSlope[script])
}

// digits scans a group of up to 3 digits.
func (s *scanner) digits(i int, ascii bool) (int, int64) {
	j := i
	for range 3 {
		k, size := s.kindAt(j)
		if k != kDigit || size == 0 {
			break
		}
		j += size
	}
	if s.visit != nil {
		s.visit(piece{start: i, end: j, kind: kDigit, ascii: ascii})
	}
	if ascii {
		return j, digitCost[1]
	}
	return j, digitCost[0]
}

// punct scans a punctuation run from p (after an optional space from
// i) and the line breaks and slashes that follow it.
func (s *scanner) punct(i, p int) (int, int64) {
	var syms [numSyms]int
	n, j := 0, p
	for j < len(s.b) {
		c := s.b[j]
		if c < utf8.RuneSelf && c != s.esc {
			if asciiKind[c] != kPunct {
				break
			}
			j, n = j+1, n+1
			continue
		}
		r, size := s.at(j)
		if k := kindOf(r); k != kPunct && k != kMark {
			break
		}
		if r < utf8.RuneSelf {
			n++
		} else {
			syms[symbolOf(r)]++
		}
		j += size
	}
	for j < len(s.b) { // [\r\n/]*
		r, size := s.at(j)
		if r != '\r' && r != '\n' && r != '/' {
			break
		}
		j, n = j+size, n+1
	}
	space := p > i
	if s.visit != nil {
		s.visit(piece{start: i, end: j, kind: kPunct, space: space, n: n, syms: syms})
	}
	return j, punctCost(space, n, &syms)
}

// punctCost is the cost of a punctuation piece.
func punctCost(space bool, n int, syms *[numSyms]int) int64 {
	sp := 0
	if space {
		sp = 1
	}
	var c int64
	if n <= maxPunctLen {
		c = int64(punctTable[sp][n])
	} else {
		c = int64(punctTable[sp][maxPunctLen]) + int64(n-maxPunctLen)*int64(punctSlope)
	}
	if *syms != ([numSyms]int{}) {
		for k, m := range syms {
			c += int64(m) * int64(symCost[k])
		}
	}
	return c
}

// spaces scans a whitespace piece from i: up to the last line break of
// the run when it has one (\s*[\r\n]+); else the run but its last rune
// (\s+(?!\S)), which starts the next piece, unless the run is alone or
// ends the text (\s+).
func (s *scanner) spaces(i int) (int, int64) {
	j, n, lastNL, lastNLn, last := i, 0, -1, 0, i
	for j < len(s.b) {
		k, size := s.kindAt(j)
		if k != kSpace && k != kNewline {
			break
		}
		last = j
		j, n = j+size, n+1
		if k == kNewline {
			lastNL, lastNLn = j, n
		}
	}
	nl := 0
	switch {
	case lastNL >= 0:
		j, n, nl = lastNL, lastNLn, 1
	case j < len(s.b) && n > 1:
		j, n = last, n-1
	}
	if s.visit != nil {
		kind := kSpace
		if nl == 1 {
			kind = kNewline
		}
		s.visit(piece{start: i, end: j, kind: kind, n: n})
	}
	if n <= maxSpaceLen {
		return j, int64(spaceTable[nl][n])
	}
	return j, int64(spaceTable[nl][maxSpaceLen]) + int64(n-maxSpaceLen)*int64(spaceSlope)
}

// kindOf classifies a rune as o200k's pre-tokenizer does.
func kindOf(r rune) uint8 {
	if r < utf8.RuneSelf {
		return asciiKind[r&0x7F]
	}
	return kindOfRune(r)
}

// kindOfRune classifies a non-ASCII rune.
func kindOfRune(r rune) uint8 {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0xAC00 && r <= 0xD7A3,
		r >= 0x3041 && r <= 0x3096, r >= 0x30A1 && r <= 0x30FA,
		r >= 0x0621 && r <= 0x064A:
		return kLetter // Han, Hangul, kana, Arabic letters: \p{Lo}
	case r >= 0x0410 && r <= 0x042F:
		return kUpper
	case r >= 0x0430 && r <= 0x044F:
		return kLower
	case r >= 0xC0 && r <= 0xDE && r != 0xD7:
		return kUpper
	case r >= 0xDF && r <= 0xFF && r != 0xF7:
		return kLower
	case r >= 0x1F000 && r <= 0x1FAFF:
		return kPunct // emoji (So), and the regional indicators
	case r == '\u0085' || r == '\u00A0' || r == '\u2028' || r == '\u2029':
		return kSpace
	}
	switch {
	case unicode.IsLower(r):
		return kLower
	case unicode.IsUpper(r) || unicode.IsTitle(r):
		return kUpper
	case unicode.IsLetter(r):
		return kLetter
	case unicode.IsMark(r):
		return kMark
	case unicode.IsNumber(r):
		return kDigit
	case unicode.IsSpace(r):
		return kSpace
	}
	return kPunct
}

// scriptOf returns the script of a letter.
func scriptOf(r rune) int {
	switch {
	case r < 0x0370, r >= 0x1E00 && r <= 0x1EFF, r >= 0xFF21 && r <= 0xFF5A:
		return scLatin
	case r <= 0x03FF, r >= 0x1F00 && r <= 0x1FFF:
		return scGreek
	case r <= 0x052F:
		return scCyrillic
	case r >= 0x0590 && r <= 0x05FF:
		return scHebrew
	case r >= 0x0600 && r <= 0x08FF, r >= 0xFB50 && r <= 0xFDFF, r >= 0xFE70 && r <= 0xFEFF:
		return scArabic
	case r >= 0x0900 && r <= 0x0DFF:
		return scIndic
	case r >= 0x0E00 && r <= 0x0EFF:
		return scThai
	case r >= 0x1100 && r <= 0x11FF, r >= 0x3130 && r <= 0x318F, r >= 0xAC00 && r <= 0xD7AF:
		return scHangul
	case r >= 0x3040 && r <= 0x30FF, r >= 0x31F0 && r <= 0x31FF, r >= 0xFF66 && r <= 0xFF9F:
		return scKana
	case r >= 0x3400 && r <= 0x4DBF, r >= 0x4E00 && r <= 0x9FFF, r >= 0xF900 && r <= 0xFAFF, r >= 0x20000 && r <= 0x3FFFF:
		return scHan
	}
	return scOther
}

// cjkOf returns the CJK class of a non-ASCII letter.
func cjkOf(r rune) int {
	switch {
	case r >= 0x3040 && r <= 0x309F:
		return cjkHiragana
	case r >= 0x30A0 && r <= 0x30FF, r >= 0x31F0 && r <= 0x31FF, r >= 0xFF66 && r <= 0xFF9F:
		return cjkKatakana
	case r >= 0x3400 && r <= 0x4DBF, r >= 0x4E00 && r <= 0x9FFF, r >= 0xF900 && r <= 0xFAFF, r >= 0x20000 && r <= 0x3FFFF:
		return cjkHan
	case r >= 0xAC00 && r <= 0xD7A3:
		return cjkHangul
	}
	return cjkOther
}

// cjkBits holds two bit sets derived from o200k's vocabulary by
// TestFitTokenTable: the CJK letters (Han U+3000–9FFF, Hangul syllables)
// that are one token, and a Bloom filter (two hashes) of the pairs of
// CJK letters that occur together in one token.
//
//go:embed tokens_cjk.bin
var cjkBits string

// Layout of cjkBits.
const (
	cjkHangulIndex = 0xA000 - 0x3000
	cjkLetters     = cjkHangulIndex + 0xD7A4 - 0xAC00
	cjkPairBits    = 1 << 16
	cjkBitsLen     = (cjkLetters+7)/8 + cjkPairBits/8
)

// cjkLetterIndex returns the index of a CJK letter in the letter set.
func cjkLetterIndex(r rune) (int, bool) {
	switch {
	case r >= 0x3000 && r < 0xA000:
		return int(r - 0x3000), true
	case r >= 0xAC00 && r <= 0xD7A3:
		return cjkHangulIndex + int(r-0xAC00), true
	}
	return 0, false
}

// cjkSingle reports whether the CJK letter r is one o200k token.
func cjkSingle(r rune) bool {
	i, ok := cjkLetterIndex(r)
	return ok && len(cjkBits) == cjkBitsLen && cjkBits[i>>3]&(1<<(i&7)) != 0
}

// cjkPairHash returns the two Bloom filter bits of a pair of letters.
func cjkPairHash(a, b rune) (uint32, uint32) {
	h := uint32(a)*0x9E3779B1 ^ uint32(b)*0x85EBCA77
	h ^= h >> 15
	h *= 0x2C1B3C6D
	h ^= h >> 12
	return h & (cjkPairBits - 1), (h >> 16) & (cjkPairBits - 1)
}

// cjkPair reports whether o200k has a token with the letters a and b
// side by side (a false positive about 1% of the time).
func cjkPair(a, b rune) bool {
	if len(cjkBits) != cjkBitsLen {
		return false
	}
	x, y := cjkPairHash(a, b)
	const off = (cjkLetters + 7) / 8
	return cjkBits[off+x>>3]&(1<<(x&7)) != 0 && cjkBits[off+y>>3]&(1<<(y&7)) != 0
}

// symbolOf returns the class of a non-ASCII punctuation rune.
func symbolOf(r rune) int {
	switch {
	case r >= 0x1F000 && r <= 0x1FAFF, r >= 0x2600 && r <= 0x27BF, r >= 0x2B00 && r <= 0x2BFF:
		return symEmoji
	case r >= 0x3000 && r <= 0x303F, r >= 0xFF00 && r <= 0xFFEF:
		return symCJK
	}
	return symOther
}
