package pricing

import "strings"

// A minimal JSON walker for EstimateInputTokens: it hands out members and
// elements as raw JSON text (strings undecoded), so that nothing is
// copied or allocated; gjson decodes every escaped string it visits. It
// is lenient like gjson: malformed JSON ends the walk where it breaks.

// eachMember calls fn with the raw key (without its quotes, escapes not
// decoded) and raw value of every member of the JSON object obj, until fn
// returns false.
func eachMember(obj string, fn func(key, val string) bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		end := skipString(obj, i)
		if end < 0 {
			return
		}
		key := obj[i+1 : end-1]
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = skipSpace(obj, i+1)
		end = skipValue(obj, i)
		if end < 0 {
			return
		}
		if !fn(key, obj[i:end]) {
			return
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
		i++
	}
}

// eachElement calls fn with the raw text of every element of the JSON
// array arr, until fn returns false.
func eachElement(arr string, fn func(val string) bool) {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return
	}
	i++
	for {
		i = skipSpace(arr, i)
		end := skipValue(arr, i)
		if end < 0 {
			return
		}
		if !fn(arr[i:end]) {
			return
		}
		i = skipSpace(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			return
		}
		i++
	}
}

// member returns the raw value of key in the JSON object obj, or "".
func member(obj, key string) string {
	var v string
	eachMember(obj, func(k, val string) bool {
		if k == key {
			v = val
			return false
		}
		return true
	})
	return v
}

// stringValue returns the inside of a JSON string literal (escapes not
// decoded), and whether val is one.
func stringValue(val string) (string, bool) {
	if len(val) < 2 || val[0] != '"' {
		return "", false
	}
	return val[1 : len(val)-1], true
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t') {
		i++
	}
	return i
}

// skipString returns the offset after the string literal at i, or -1.
func skipString(s string, i int) int {
	for i++; i < len(s); {
		q := strings.IndexByte(s[i:], '"')
		if q < 0 {
			return -1
		}
		i += q
		bs := 0 // an odd number of backslashes before it escapes the quote
		for k := i - 1; k >= 0 && s[k] == '\\'; k-- {
			bs++
		}
		i++
		if bs%2 == 0 {
			return i
		}
	}
	return -1
}

// skipValue returns the offset after the JSON value at i, or -1. Nested
// objects and arrays are skipped by counting brackets outside strings.
func skipValue(s string, i int) int {
	if i >= len(s) {
		return -1
	}
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for ; i < len(s); i++ {
			switch s[i] {
			case '"':
				end := skipString(s, i)
				if end < 0 {
					return -1
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	start := i // a number or a literal
	for i < len(s) && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t' {
		i++
	}
	if i == start {
		return -1
	}
	return i
}
