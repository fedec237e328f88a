package redact

import (
	"encoding/base64"
	"slices"
	"strings"
)

// eachPrefix calls fn with every position of prefix in s that begins a
// token; fn returns where to continue. It searches for the prefix's byte at
// anchor, chosen rare in prose ("eyJ": the J), so that the search skips
// through text rather than stopping at every common letter.
func eachPrefix(s, prefix string, anchor int, fn func(i int) int) {
	c := prefix[anchor]
	for from := anchor; from < len(s); {
		k := strings.IndexByte(s[from:], c)
		if k < 0 {
			return
		}
		i := from + k - anchor
		from += k + 1
		if !strings.HasPrefix(s[i:], prefix) || !boundaryBefore(s, i) {
			continue
		}
		if next := fn(i) + anchor; next > from {
			from = next
		}
	}
}

// runOf returns the end of the run of bytes at s[i:] that ok accepts.
func runOf(s string, i int, ok func(byte) bool) int {
	for i < len(s) && ok(s[i]) {
		i++
	}
	return i
}

func isKeyByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }
func isB64URL(c byte) bool  { return isAlnum(c) || c == '_' || c == '-' }

// mixed reports whether s has both a letter and a digit: real keys do,
// identifiers like "sk-learn-pipeline-configuration" rarely do.
func mixed(s string) bool {
	var letter, digit bool
	for i := 0; i < len(s) && !(letter && digit); i++ {
		letter = letter || isAlpha(s[i])
		digit = digit || isDigit(s[i])
	}
	return letter && digit
}

// awsKeyDetector finds AWS access key ids: a four-letter type prefix
// (AKIA, ASIA, ...) and 16 upper-case letters or digits.
type awsKeyDetector struct{}

func (awsKeyDetector) Kind() Kind { return KindAWSKey }

var awsPrefixes = []string{"AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA", "ABIA", "ACCA"}

func (awsKeyDetector) Find(dst []Match, s string) []Match {
	for from := 0; from+20 <= len(s); {
		k := strings.IndexByte(s[from:len(s)-19], 'A')
		if k < 0 {
			break
		}
		i := from + k
		from = i + 1
		if !slices.Contains(awsPrefixes, s[i:i+4]) || !boundaryBefore(s, i) {
			continue
		}
		end := runOf(s, i+4, func(c byte) bool { return isUpper(c) || isDigit(c) })
		if end-i != 20 || !boundaryAfter(s, end) {
			continue
		}
		dst = append(dst, Match{Start: i, End: end, Kind: KindAWSKey})
		from = end
	}
	return dst
}

// apiKeyDetector finds OpenAI- and Anthropic-style secret keys: "sk-"
// (also sk-proj-, sk-ant-api03-, sk-svcacct-) and at least 20 more key
// characters mixing letters and digits.
type apiKeyDetector struct{}

func (apiKeyDetector) Kind() Kind { return KindAPIKey }

func (apiKeyDetector) Find(dst []Match, s string) []Match {
	eachPrefix(s, "sk-", 2, func(i int) int {
		end := runOf(s, i+3, isKeyByte)
		if end-i-3 < 20 || !mixed(s[i+3:end]) {
			return end
		}
		dst = append(dst, Match{Start: i, End: end, Kind: KindAPIKey})
		return end
	})
	return dst
}

// githubDetector finds GitHub tokens: ghp_, gho_, ghu_, ghs_ or ghr_ and
// 36 or more letters and digits, or github_pat_ and 22 or more.
type githubDetector struct{}

func (githubDetector) Kind() Kind { return KindGitHub }

func (githubDetector) Find(dst []Match, s string) []Match {
	for from := 0; from < len(s); {
		k := strings.IndexByte(s[from:], '_')
		if k < 0 {
			break
		}
		u := from + k
		from = u + 1
		var i, end int
		switch {
		case u >= 3 && s[u-3] == 'g' && s[u-2] == 'h' && strings.IndexByte("pousr", s[u-1]) >= 0:
			i = u - 3
			end = runOf(s, u+1, isAlnum)
			if end-u-1 < 36 || !boundaryAfter(s, end) {
				continue
			}
		case u >= 6 && strings.HasPrefix(s[u-6:], "github_pat_"):
			i = u - 6
			end = runOf(s, i+11, func(c byte) bool { return isAlnum(c) || c == '_' })
			if end-i-11 < 22 {
				continue
			}
		default:
			continue
		}
		if !boundaryBefore(s, i) {
			continue
		}
		dst = append(dst, Match{Start: i, End: end, Kind: KindGitHub})
		from = end
	}
	return dst
}

// slackDetector finds Slack tokens: xoxb-, xoxp-, xoxa-, xoxo-, xoxs-,
// xoxr- or xapp- and at least 10 more characters with a digit.
type slackDetector struct{}

func (slackDetector) Kind() Kind { return KindSlack }

func (slackDetector) Find(dst []Match, s string) []Match {
	base := len(dst)
	// token reads the part after a five-byte prefix at i.
	token := func(i int) int {
		end := runOf(s, i+5, func(c byte) bool { return isAlnum(c) || c == '-' })
		if end-i-5 >= 10 && mixed(s[i+5:end]) {
			dst = append(dst, Match{Start: i, End: end, Kind: KindSlack})
		}
		return end
	}
	eachPrefix(s, "xox", 0, func(i int) int {
		if i+5 > len(s) || s[i+4] != '-' || strings.IndexByte("bpaosr", s[i+3]) < 0 {
			return i + 3
		}
		return token(i)
	})
	eachPrefix(s, "xapp-", 4, token)
	sortMatches(dst[base:])
	return dst
}

// jwtDetector finds JSON Web Tokens: three base64url segments separated by
// dots, the first of which decodes to a JSON object naming "alg" or "typ".
type jwtDetector struct{}

func (jwtDetector) Kind() Kind { return KindJWT }

func (jwtDetector) Find(dst []Match, s string) []Match {
	eachPrefix(s, "eyJ", 2, func(i int) int {
		h := runOf(s, i, isB64URL)
		if h >= len(s) || s[h] != '.' || h-i < 10 {
			return h
		}
		p := runOf(s, h+1, isB64URL)
		if p >= len(s) || s[p] != '.' || p-h-1 < 2 {
			return p
		}
		end := runOf(s, p+1, isB64URL)
		if !jwtHeader(s[i:h]) {
			return end
		}
		dst = append(dst, Match{Start: i, End: end, Kind: KindJWT})
		return end
	})
	return dst
}

// jwtHeader decodes a JWT header segment on the stack and checks it.
func jwtHeader(seg string) bool {
	var buf [256]byte
	if base64.RawURLEncoding.DecodedLen(len(seg)) > len(buf) {
		return false
	}
	n, err := base64.RawURLEncoding.Decode(buf[:], []byte(seg))
	if err != nil {
		return false
	}
	h := string(buf[:n])
	return strings.HasPrefix(h, "{") && (strings.Contains(h, `"alg"`) || strings.Contains(h, `"typ"`))
}

// privateKeyDetector finds PEM private keys, from "-----BEGIN ... PRIVATE
// KEY-----" to the matching END line (or the end of the text when it is
// cut off).
type privateKeyDetector struct{}

func (privateKeyDetector) Kind() Kind { return KindPrivateKey }

func (privateKeyDetector) Find(dst []Match, s string) []Match {
	for from := 0; from < len(s); {
		k := strings.Index(s[from:], "-----BEGIN ")
		if k < 0 {
			break
		}
		i := from + k
		from = i + 11
		e := strings.Index(s[from:], "-----")
		if e < 0 || e > 40 || !strings.HasSuffix(s[from:from+e], "PRIVATE KEY") {
			continue
		}
		end := len(s)
		if j := strings.Index(s[from+e:], "-----END "); j >= 0 {
			j += from + e
			if t := strings.Index(s[j+9:], "-----"); t >= 0 && t <= 40 {
				end = j + 9 + t + 5
			}
		}
		dst = append(dst, Match{Start: i, End: end, Kind: KindPrivateKey})
		from = end
	}
	return dst
}

// sortMatches orders a detector's own matches by position (few, nearly
// sorted: insertion sort, no allocation).
func sortMatches(m []Match) {
	for a := 1; a < len(m); a++ {
		for b := a; b > 0 && m[b].Start < m[b-1].Start; b-- {
			m[b], m[b-1] = m[b-1], m[b]
		}
	}
}
