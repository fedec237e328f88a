package redact

import (
	"fmt"
	"regexp"
	"strings"
)

// patternDetector finds the matches of a user's regular expression (RE2
// syntax).
type patternDetector struct {
	kind Kind
	re   *regexp.Regexp
}

// NewPattern returns a detector of kind k for a regular expression (Go's
// RE2 syntax); empty matches are ignored.
func NewPattern(k Kind, expr string) (Detector, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("redact: pattern %s: %w", k, err)
	}
	return patternDetector{kind: k, re: re}, nil
}

func (d patternDetector) Kind() Kind { return d.kind }

func (d patternDetector) Find(dst []Match, s string) []Match {
	for _, loc := range d.re.FindAllStringIndex(s, -1) {
		if loc[1] > loc[0] {
			dst = append(dst, Match{Start: loc[0], End: loc[1], Kind: d.kind})
		}
	}
	return dst
}

// NewWords returns a detector of kind k for a list of words or phrases,
// matched case-insensitively as whole words (letters of any script).
func NewWords(k Kind, words []string) (Detector, error) {
	if len(words) == 0 {
		return nil, fmt.Errorf("redact: word list %s is empty", k)
	}
	alts := make([]string, 0, len(words))
	for _, w := range words {
		if strings.TrimSpace(w) == "" {
			return nil, fmt.Errorf("redact: word list %s has an empty word", k)
		}
		alts = append(alts, regexp.QuoteMeta(w))
	}
	re, err := regexp.Compile(`(?i)(?:^|[^\pL\pN_])(` + strings.Join(alts, "|") + `)(?:$|[^\pL\pN_])`)
	if err != nil {
		return nil, fmt.Errorf("redact: word list %s: %w", k, err)
	}
	return wordsDetector{kind: k, re: re}, nil
}

// wordsDetector finds whole words of a list.
type wordsDetector struct {
	kind Kind
	re   *regexp.Regexp
}

func (d wordsDetector) Kind() Kind { return d.kind }

func (d wordsDetector) Find(dst []Match, s string) []Match {
	for from := 0; from < len(s); {
		loc := d.re.FindStringSubmatchIndex(s[from:])
		if loc == nil {
			break
		}
		dst = append(dst, Match{Start: from + loc[2], End: from + loc[3], Kind: d.kind})
		// The delimiter after a word may start the next one.
		from += loc[3]
	}
	return dst
}
