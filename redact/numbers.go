package redact

import (
	"net/netip"
	"strings"
)

// digitRunStarts appends the start of every run of ASCII digits in s.
func digitRunStarts(dst []int32, s string) []int32 {
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			dst = append(dst, int32(i))
			for i+1 < len(s) && isDigit(s[i+1]) {
				i++
			}
		}
	}
	return dst
}

// runDetector is a detector that reads the digit runs the Set found once
// for all of them (Set.Find), rather than scanning the text again.
type runDetector interface {
	Detector
	findIn(dst []Match, s string, runs []int32) []Match
}

// findRuns is Find for a runDetector on its own.
func findRuns(d runDetector, dst []Match, s string) []Match {
	var arr [64]int32
	return d.findIn(dst, s, digitRunStarts(arr[:0], s))
}

// digitRuns calls fn with the start of each digit run that begins a token
// (no letter, digit or underscore before it); fn returns where to
// continue, and runs before that are skipped.
func digitRuns(s string, runs []int32, fn func(i int) int) {
	next := 0
	for _, r := range runs {
		i := int(r)
		if i < next || !boundaryBefore(s, i) {
			continue
		}
		next = fn(i)
	}
}

// groups reads digit groups at s[i:] separated by one separator from seps,
// the same one throughout. It returns the group lengths (in lens) and the
// end of each group (in ends); at most len(lens) groups.
func groups(s string, i int, seps string, lens, ends []int) (n int, sep byte) {
	for n < len(lens) {
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == i {
			break
		}
		lens[n], ends[n] = j-i, j
		n++
		if j+1 >= len(s) || !isDigit(s[j+1]) || strings.IndexByte(seps, s[j]) < 0 || sep != 0 && s[j] != sep {
			break
		}
		sep = s[j]
		i = j + 1
	}
	return n, sep
}

// cardDetector finds payment card numbers of 13 to 19 digits, written
// plain or in groups separated by spaces or dashes (4-4-4-4, 4-6-5 ...),
// that pass the Luhn check and start with a known issuer prefix.
type cardDetector struct{}

func (cardDetector) Kind() Kind { return KindCard }

func (d cardDetector) Find(dst []Match, s string) []Match { return findRuns(d, dst, s) }

func (cardDetector) findIn(dst []Match, s string, runs []int32) []Match {
	var lens, ends [6]int
	var digits [19]byte
	digitRuns(s, runs, func(i int) int {
		n, _ := groups(s, i, " -", lens[:], ends[:])
		// The longest grouping that forms a valid card number.
		total := 0
		best := -1
		for k := 0; k < n; k++ {
			total += lens[k]
			if total > 19 {
				break
			}
			if total >= 13 && cardShape(lens[:k+1]) && boundaryAfter(s, ends[k]) {
				best = k
			}
		}
		if best < 0 {
			return ends[0]
		}
		nd := 0
		for j := i; j < ends[best]; j++ {
			if isDigit(s[j]) {
				digits[nd] = s[j]
				nd++
			}
		}
		if !luhn(digits[:nd]) || !issuer(digits[:nd]) {
			return ends[0]
		}
		dst = append(dst, Match{Start: i, End: ends[best], Kind: KindCard})
		return ends[best]
	})
	return dst
}

// cardShape accepts one plain group, groups of four (the last may be
// shorter), or the 4-6-5 and 4-6-4 groupings of Amex and Diners.
func cardShape(lens []int) bool {
	if len(lens) == 1 {
		return true
	}
	if len(lens) == 3 && lens[0] == 4 && lens[1] == 6 && (lens[2] == 5 || lens[2] == 4) {
		return true
	}
	for k, l := range lens {
		if l != 4 && !(k == len(lens)-1 && l >= 1 && l < 4) {
			return false
		}
	}
	return true
}

// luhn reports whether the digits pass the Luhn check.
func luhn(d []byte) bool {
	sum, double := 0, false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// issuer reports whether the number starts with a known issuer's prefix
// and has a length that issuer uses.
func issuer(d []byte) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for _, c := range d[:k] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	switch {
	case d[0] == '4': // Visa
		return n == 13 || n == 16 || n == 19
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720: // Mastercard
		return n == 16
	case p(2) == 34 || p(2) == 37: // American Express
		return n == 15
	case p(4) == 6011, p(2) == 65, p(3) >= 644 && p(3) <= 649: // Discover
		return n >= 16
	case p(4) >= 3528 && p(4) <= 3589: // JCB
		return n >= 16
	case p(2) == 36, p(2) == 38, p(2) == 39, p(3) >= 300 && p(3) <= 305: // Diners Club
		return n >= 14
	case p(2) == 62: // UnionPay
		return n >= 16
	case p(2) == 50, p(2) >= 56 && p(2) <= 58, p(2) == 67: // Maestro
		return n >= 12
	}
	return false
}

// ssnDetector finds US social security numbers written ddd-dd-dddd (or
// with spaces), excluding numbers never issued: area 000, 666 or 900-999,
// group 00, serial 0000, and the publicised 078-05-1120 and 219-09-9999.
type ssnDetector struct{}

func (ssnDetector) Kind() Kind { return KindSSN }

func (d ssnDetector) Find(dst []Match, s string) []Match { return findRuns(d, dst, s) }

func (ssnDetector) findIn(dst []Match, s string, runs []int32) []Match {
	var lens, ends [4]int
	digitRuns(s, runs, func(i int) int {
		n, _ := groups(s, i, "- ", lens[:], ends[:])
		if n != 3 || lens[0] != 3 || lens[1] != 2 || lens[2] != 4 || !boundaryAfter(s, ends[2]) {
			return ends[0]
		}
		if i > 0 && (s[i-1] == '-' || s[i-1] == '.' || s[i-1] == '+') {
			return ends[2]
		}
		if ends[2] < len(s) && (s[ends[2]] == '-' || s[ends[2]] == '.') && ends[2]+1 < len(s) && isDigit(s[ends[2]+1]) {
			return ends[2]
		}
		area, group, serial := s[i:i+3], s[i+4:i+6], s[i+7:i+11]
		if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
			return ends[2]
		}
		if v := s[i:ends[2]]; v == "078-05-1120" || v == "219-09-9999" {
			return ends[2]
		}
		dst = append(dst, Match{Start: i, End: ends[2], Kind: KindSSN})
		return ends[2]
	})
	return dst
}

// ipDetector finds IPv4 addresses (four decimal octets, no leading zeros,
// not part of a longer dotted number nor after "v"/"version") and IPv6
// addresses (as net/netip reads them, with a digit and either "::" or
// eight groups).
type ipDetector struct{}

func (ipDetector) Kind() Kind { return KindIP }

func (d ipDetector) Find(dst []Match, s string) []Match { return findRuns(d, dst, s) }

func (ipDetector) findIn(dst []Match, s string, runs []int32) []Match {
	base := len(dst)
	digitRuns(s, runs, func(i int) int {
		end, ok := ipv4At(s, i)
		if !ok {
			return i + 1
		}
		if i > 0 && s[i-1] == '.' || end+1 < len(s) && s[end] == '.' && isDigit(s[end+1]) || versionBefore(s, i) {
			for end < len(s) && (isDigit(s[end]) || s[end] == '.') {
				end++
			}
			return end
		}
		dst = append(dst, Match{Start: i, End: end, Kind: KindIP})
		return end
	})
	v4 := len(dst)
	for from := 0; from < len(s); {
		c := strings.IndexByte(s[from:], ':')
		if c < 0 {
			break
		}
		c += from
		start := c
		for start > 0 && isIPv6Byte(s[start-1]) {
			start--
		}
		end := c
		for end < len(s) && end-start < 46 && isIPv6Byte(s[end]) {
			end++
		}
		from = end + 1
		for end > c && s[end-1] == '.' {
			end--
		}
		if !boundaryBefore(s, start) || !boundaryAfter(s, end) || !ipv6Candidate(s[start:end]) {
			continue
		}
		if _, err := netip.ParseAddr(s[start:end]); err != nil {
			continue
		}
		overlaps := false
		for _, m := range dst[base:v4] {
			if m.Start < end && start < m.End {
				overlaps = true
			}
		}
		if !overlaps {
			dst = append(dst, Match{Start: start, End: end, Kind: KindIP})
		}
	}
	if len(dst)-v4 > 0 && v4 > base {
		// Keep the detector's output in order.
		found := dst[base:]
		for a := 1; a < len(found); a++ {
			for b := a; b > 0 && found[b].Start < found[b-1].Start; b-- {
				found[b], found[b-1] = found[b-1], found[b]
			}
		}
	}
	return dst
}

// ipv4At reads a dotted-quad at s[i:].
func ipv4At(s string, i int) (int, bool) {
	j := i
	for part := 0; part < 4; part++ {
		if part > 0 {
			if j >= len(s) || s[j] != '.' {
				return 0, false
			}
			j++
		}
		k := j
		v := 0
		for k < len(s) && isDigit(s[k]) && k-j < 4 {
			v = v*10 + int(s[k]-'0')
			k++
		}
		if k == j || k-j > 3 || v > 255 || (k-j > 1 && s[j] == '0') {
			return 0, false
		}
		j = k
	}
	if !boundaryAfter(s, j) {
		return 0, false
	}
	return j, true
}

// versionBefore reports whether the number at s[i:] follows "v" or the
// word "version".
func versionBefore(s string, i int) bool {
	if i > 0 && (s[i-1] == 'v' || s[i-1] == 'V') {
		return true
	}
	j := i
	for j > 0 && (s[j-1] == ' ' || s[j-1] == ':') {
		j--
	}
	if j < i && j >= 7 && strings.EqualFold(s[j-7:j], "version") {
		return true
	}
	return j < i && j >= 3 && strings.EqualFold(s[j-3:j], "ver")
}

func isIPv6Byte(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.'
}

// ipv6Candidate checks what netip cannot: a digit, and "::" or eight
// groups (netip would take neither "a::b" nor time stamps, but it takes
// "::" and words like "add::bed").
func ipv6Candidate(c string) bool {
	if len(c) < 3 || strings.IndexAny(c, "0123456789") < 0 {
		return false
	}
	return strings.Contains(c, "::") || strings.Count(c, ":") == 7
}
