package redact

import (
	"strings"
	"unsafe"
)

// phoneDetector finds telephone numbers: international ones (+ or 00 and a
// country code) and national ones of the configured regions, written with
// separators or parentheses as people write them. A candidate must be a
// valid number for its country by libphonenumber's rules
// (github.com/nyaruka/phonenumbers's metadata, phonemeta.go). Unseparated national digit strings
// are not taken (they are order numbers as often as phone numbers), nor
// dates (2024-01-15, 15-01-2024).
type phoneDetector struct {
	regions []string
}

// DefaultPhoneRegions are the regions national phone numbers are read in
// when the configuration names none.
var DefaultPhoneRegions = []string{"US", "GB", "DE", "FR"}

func newPhoneDetector(regions []string) phoneDetector {
	if len(regions) == 0 {
		regions = DefaultPhoneRegions
	}
	return phoneDetector{regions: regions}
}

func (phoneDetector) Kind() Kind { return KindPhone }

// phoneMaxDigits bounds a candidate (E.164 allows 15 digits).
const phoneMaxDigits = 15

func (d phoneDetector) Find(dst []Match, s string) []Match { return findRuns(d, dst, s) }

func (d phoneDetector) findIn(dst []Match, s string, runs []int32) []Match {
	next := 0
	for _, r := range runs {
		i := int(r)
		if i > 0 && (s[i-1] == '+' || s[i-1] == '(') {
			i--
		}
		if i < next || !boundaryBefore(s, i) || i > 0 && (s[i-1] == '.' || s[i-1] == '-' || s[i-1] == '/' || s[i-1] == '#' || s[i-1] == '+') {
			continue
		}
		if end, ok := d.match(s, i); ok {
			dst = append(dst, Match{Start: i, End: end, Kind: KindPhone})
			next = end
		}
	}
	return dst
}

// match reads a phone number at s[i:].
func (d phoneDetector) match(s string, i int) (int, bool) {
	intl := s[i] == '+'
	j := i
	if intl {
		j++
	}
	// Digit groups and where each ends, separators between them.
	var lens, ends [8]int
	n, digits, paren := 0, 0, false
	for n < len(lens) && j < len(s) {
		if s[j] == '(' {
			if paren {
				break
			}
			paren = true
			j++
			continue
		}
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k == j || digits+k-j > phoneMaxDigits {
			break
		}
		lens[n], ends[n] = k-j, k
		n++
		digits += k - j
		j = k
		// Up to two separators: ") ", " (", "-", ".", " ".
		m := j
		for m < len(s) && m-j < 2 && (s[m] == ' ' || s[m] == '-' || s[m] == '.' || s[m] == ')' || s[m] == '(') {
			m++
		}
		if m == j || m >= len(s) || !(isDigit(s[m]) || s[m] == '(') {
			break
		}
		j = m
	}
	if n == 0 || !intl && s[i] != '0' && n == 1 {
		return 0, false
	}
	if !intl && s[i] != '(' && !nationalShape(s, i, lens[:n]) {
		return 0, false
	}
	if !intl && (dateShape(lens[:n]) || ssnShape(s, i, lens[:n])) {
		return 0, false
	}
	if !intl && digits < 10 && strings.IndexByte(s[i:ends[n-1]], '.') >= 0 {
		// Short dotted numbers are versions and dates ("01.02.03.04").
		return 0, false
	}
	// The longest prefix, at a group boundary, that is a valid number.
	total := digits
	for k := n - 1; k >= 0; k-- {
		if total >= 7 && boundaryAfter(s, ends[k]) && d.valid(s[i:ends[k]], intl) {
			return ends[k], true
		}
		total -= lens[k]
		if !intl {
			break // a national number is taken whole or not at all
		}
	}
	return 0, false
}

// nationalShape accepts the national forms people write: the North
// American 3-3-4 (with an optional leading 1), and numbers with a trunk
// prefix 0 in two groups or more ("020 7946 0958", "06 12 34 56 78").
func nationalShape(s string, i int, lens []int) bool {
	if s[i] == '0' {
		return len(lens) >= 2 && !(len(lens) == 2 && s[i+1] == '0')
	}
	switch {
	case len(lens) == 3 && lens[0] == 3 && lens[1] == 3 && lens[2] == 4:
		return true
	case len(lens) == 4 && lens[0] == 1 && s[i] == '1' && lens[1] == 3 && lens[2] == 3 && lens[3] == 4:
		return true
	}
	return false
}

// dateShape reports groupings that read as dates: 4-2-2, 2-2-4, 1-1-4 ...
func dateShape(lens []int) bool {
	if len(lens) < 3 {
		return false
	}
	a, b, c := lens[0], lens[1], lens[2]
	return a == 4 && b <= 2 && c <= 2 || a <= 2 && b <= 2 && c == 4
}

// ssnShape reports the 3-2-4 dashed grouping of a US social security
// number.
func ssnShape(s string, i int, lens []int) bool {
	return len(lens) == 3 && lens[0] == 3 && lens[1] == 2 && lens[2] == 4 && s[i+3] == '-'
}

// valid checks the candidate against the metadata: as an international
// number when it carries a country code, else as a national number of
// each region.
func (d phoneDetector) valid(cand string, intl bool) bool {
	var buf [phoneMaxDigits + 2]byte
	n := 0
	for i := 0; i < len(cand) && n < len(buf); i++ {
		if isDigit(cand[i]) {
			buf[n] = cand[i]
			n++
		}
	}
	digits := unsafe.String(&buf[0], n)
	if intl {
		return validInternational(digits)
	}
	if len(digits) > 2 && digits[0] == '0' && digits[1] == '0' {
		return validInternational(digits[2:])
	}
	for _, r := range d.regions {
		if validNational(digits, r) {
			return true
		}
	}
	return false
}
