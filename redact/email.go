package redact

import "strings"

// emailDetector finds e-mail addresses: a local part of letters, digits and
// . _ % + -, an @, and a domain of at least two labels whose last is
// alphabetic (two letters or more) and not an image file extension
// ("icon@2x.png").
type emailDetector struct{}

func (emailDetector) Kind() Kind { return KindEmail }

func (emailDetector) Find(dst []Match, s string) []Match {
	for from := 0; from < len(s); {
		at := strings.IndexByte(s[from:], '@')
		if at < 0 {
			break
		}
		at += from
		from = at + 1
		start := at
		for start > 0 && isLocal(s[start-1]) {
			start--
		}
		for start < at && s[start] == '.' {
			start++
		}
		if start == at || s[at-1] == '.' || (start > 0 && s[start-1] == '@') {
			continue
		}
		end, ok := domainEnd(s, at+1)
		if !ok {
			continue
		}
		if strings.Contains(s[start:at], "..") {
			continue
		}
		dst = append(dst, Match{Start: start, End: end, Kind: KindEmail})
		from = end
	}
	return dst
}

func isLocal(c byte) bool {
	return isAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'
}

// domainEnd reads a domain name at s[i:] and returns where it ends.
func domainEnd(s string, i int) (int, bool) {
	labels, lastStart, end := 0, i, i
	j := i
	for {
		k := j
		for k < len(s) && (isAlnum(s[k]) || s[k] == '-') {
			k++
		}
		if k == j || s[j] == '-' || s[k-1] == '-' || k-j > 63 {
			break
		}
		labels++
		lastStart, end = j, k
		if k+1 < len(s) && s[k] == '.' && isAlnum(s[k+1]) {
			j = k + 1
			continue
		}
		break
	}
	if labels < 2 || end < len(s) && (s[end] == '@' || s[end] >= 0x80 || s[end] == '_') {
		return 0, false
	}
	tld := s[lastStart:end]
	if len(tld) < 2 || len(tld) > 24 {
		return 0, false
	}
	for k := 0; k < len(tld); k++ {
		if !isAlpha(tld[k]) {
			return 0, false
		}
	}
	switch strings.ToLower(tld) {
	case "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico":
		return 0, false
	}
	return end, true
}
