package ijson

import "iter"

// Elements returns the elements of the array that value holds, each as
// its own bytes, in order; nothing when value is not an array. value must
// be a JSON value Check accepts, such as a value CheckMembers found. The
// walk allocates nothing and skips each element with a few comparisons a
// byte (strings eight bytes at a time).
func Elements(value []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		if len(value) == 0 || value[0] != '[' {
			return
		}
		i := skipSpace(value, 1)
		for i < len(value) && value[i] != ']' {
			end := skipValue(value, i)
			if !yield(value[i:end]) {
				return
			}
			i = skipSpace(value, end)
			if i < len(value) && value[i] == ',' {
				i = skipSpace(value, i+1)
			}
		}
	}
}

// Member returns the value of the member of the object that value holds
// whose name is name (compared after unescaping, so "r\u006fle" is role),
// and whether there is one; the first such member, but Check refuses an
// object with two. value must be a JSON value Check accepts.
func Member(value []byte, name string) ([]byte, bool) {
	if len(value) == 0 || value[0] != '{' {
		return nil, false
	}
	i := skipSpace(value, 1)
	for i < len(value) && value[i] == '"' {
		end, escaped, kind, _ := scanString(value, i)
		if kind != 0 {
			return nil, false
		}
		match := nameIs(value[i+1:end-1], escaped, name)
		i = skipSpace(value, end)
		if i >= len(value) || value[i] != ':' {
			return nil, false
		}
		i = skipSpace(value, i+1)
		end = skipValue(value, i)
		if match {
			return value[i:end], true
		}
		i = skipSpace(value, end)
		if i < len(value) && value[i] == ',' {
			i = skipSpace(value, i+1)
		}
	}
	return nil, false
}

// nameIs reports whether the contents of a member name, which scanString
// accepted, unescape to name.
func nameIs(raw []byte, escaped bool, name string) bool {
	if !escaped {
		return string(raw) == name
	}
	// An escape unescapes to at least one byte for every six, so a name
	// longer than that is another; a short one unescapes on the stack.
	if len(raw) > 6*len(name) {
		return false
	}
	var buf [64]byte
	return string(unescape(buf[:0], raw)) == name
}

// skipValue returns the offset just past the JSON value that starts at
// data[i] (after whitespace), or len(data) when the value does not end.
func skipValue(data []byte, i int) int {
	depth := 0
	for i < len(data) {
		switch data[i] {
		case '"':
			end, _, kind, _ := scanString(data, i)
			if kind != 0 {
				return len(data)
			}
			i = end
		case '{', '[':
			depth++
			i++
			continue
		case '}', ']':
			depth--
			i++
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i // past a number or literal
			}
			i++
			continue
		default:
			i++ // a byte of a number or literal
			if depth == 0 && i < len(data) && !delimiter(data[i]) {
				continue
			}
		}
		if depth <= 0 {
			return i
		}
	}
	return len(data)
}

// delimiter reports whether c can follow a value.
func delimiter(c byte) bool {
	switch c {
	case ',', ']', '}', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}
