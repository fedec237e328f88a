package redact

import (
	"slices"
	"sync"
)

// runPool holds the digit-run indexes of Set.Find.
var runPool = sync.Pool{New: func() any { return new([]int32) }}

// Match is one finding in a text: s[Start:End] is data of kind Kind.
type Match struct {
	Start, End int
	Kind       Kind
}

// A Detector finds one kind of data in text. Find appends the matches in s
// to dst, in order and without overlaps among themselves, and returns the
// extended slice. It must not retain s or dst, must not allocate when s holds
// no candidate, and must accept any input (invalid UTF-8 included).
type Detector interface {
	Kind() Kind
	Find(dst []Match, s string) []Match
}

// Set runs several detectors over a text and resolves overlaps between
// their matches: the longer match wins, then the detector listed first.
// A Set is immutable and safe for concurrent use.
type Set struct {
	dets []Detector
	rank map[Kind]int
}

// NewSet returns a Set of dets, in priority order.
func NewSet(dets ...Detector) *Set {
	s := &Set{dets: dets, rank: make(map[Kind]int, len(dets))}
	for i, d := range dets {
		if _, ok := s.rank[d.Kind()]; !ok {
			s.rank[d.Kind()] = i
		}
	}
	return s
}

// Kinds returns the kinds the set detects, in priority order.
func (s *Set) Kinds() []Kind {
	out := make([]Kind, 0, len(s.dets))
	for _, d := range s.dets {
		out = append(out, d.Kind())
	}
	return out
}

// Find appends the matches in text to dst, sorted by Start and without
// overlaps, and returns the extended slice.
func (s *Set) Find(dst []Match, text string) []Match {
	base := len(dst)
	var runs *[]int32
	for _, d := range s.dets {
		if rd, ok := d.(runDetector); ok {
			if runs == nil {
				runs = runPool.Get().(*[]int32)
				*runs = digitRunStarts((*runs)[:0], text)
				defer runPool.Put(runs)
			}
			dst = rd.findIn(dst, text, *runs)
			continue
		}
		dst = d.Find(dst, text)
	}
	found := dst[base:]
	if len(found) < 2 {
		return dst
	}
	slices.SortFunc(found, func(a, b Match) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		if la, lb := a.End-a.Start, b.End-b.Start; la != lb {
			return lb - la
		}
		return s.rank[a.Kind] - s.rank[b.Kind]
	})
	// Keep a match unless it overlaps a kept one; a longer later match
	// replaces the kept one it overlaps.
	kept := found[:0]
	for _, m := range found {
		if n := len(kept); n > 0 && m.Start < kept[n-1].End {
			last := kept[n-1]
			if m.End-m.Start > last.End-last.Start {
				kept[n-1] = m
			}
			continue
		}
		kept = append(kept, m)
	}
	return dst[:base+len(kept)]
}

// Builtin returns the detector of a built-in kind; phone numbers are read
// as national numbers of the given regions (ISO 3166 codes, e.g. "US",
// "GB") when they do not start with a country code. ok is false for a kind
// that is not built in.
func Builtin(k Kind, phoneRegions []string) (d Detector, ok bool) {
	switch k {
	case KindEmail:
		return emailDetector{}, true
	case KindPhone:
		return newPhoneDetector(phoneRegions), true
	case KindCard:
		return cardDetector{}, true
	case KindIBAN:
		return ibanDetector{}, true
	case KindSSN:
		return ssnDetector{}, true
	case KindIP:
		return ipDetector{}, true
	case KindAWSKey:
		return awsKeyDetector{}, true
	case KindAPIKey:
		return apiKeyDetector{}, true
	case KindGitHub:
		return githubDetector{}, true
	case KindSlack:
		return slackDetector{}, true
	case KindJWT:
		return jwtDetector{}, true
	case KindPrivateKey:
		return privateKeyDetector{}, true
	}
	return nil, false
}

// Character classes.

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool { return isUpper(c) || isLower(c) }
func isAlnum(c byte) bool { return isAlpha(c) || isDigit(c) }

// isWord reports whether c continues a word: an ASCII letter, digit or
// underscore. Other scripts do not count: Chinese or Japanese text puts
// numbers right after its characters, with no space.
func isWord(c byte) bool { return isAlnum(c) || c == '_' }

// boundaryBefore reports whether s[i] starts a token: nothing word-like
// touches it on the left.
func boundaryBefore(s string, i int) bool { return i == 0 || !isWord(s[i-1]) }

// boundaryAfter reports whether s[:i] ends a token.
func boundaryAfter(s string, i int) bool { return i >= len(s) || !isWord(s[i]) }
