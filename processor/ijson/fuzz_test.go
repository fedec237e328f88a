package ijson

import (
	"bytes"
	"encoding/json"
	"errors"

	"strconv"
	"testing"
	"unicode/utf8"
)

// fuzzSeeds are the attack bodies and edge cases every fuzz run starts
// from (the corpus under testdata/fuzz/FuzzCheck adds what the fuzzer
// found interesting).
var fuzzSeeds = []string{
	`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
	`{"model":"cheap","messages":[{"role":"user","content":"hi"}],"model":"expensive"}`,
	`{"model":"cheap","mod\u0065l":"expensive","messages":[]}`,
	`{"a/b":1,"a\/b":2}`,
	`{"messages":[{"role":"user","content":"hi"}],"messages":[]}`,
	`{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}`,
	`{"messages":[{"role":"user","content":[{"type":"text","type":"image_url"}]}]}`,
	"{\"content\":\"\xff\"}",
	"{\"c\xc0\xafntent\":1}",
	`{"content":"\ud800"}`,
	`{"content":"\udc00"}`,
	`{"content":"\ud800\u0041"}`,
	`{"content":"\ud83d\ude00 ok"}`,
	`{"😀":1,"\ud83d\ude00":2}`,
	`[1,-0.0e+5,true,false,null,"\b\f\n\r\t\\\"\/"]`,
	`{"a":1,}`,
	`[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]`,
	`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k\u0031":17}`,
	` {"mod\u0065l" : "m" , "messages":[{"model":1}],"a":{},"k\u0031":[], "":-0.5e1 } `,
	" \t\r\n{} ",
	`01`,
}

// FuzzCheck holds Check to independent oracles: encoding/json for syntax
// (Valid) and for duplicate names (its token stream, which unescapes
// names), unicode/utf8 for UTF-8, and simple byte scans for surrogate
// escapes and depth. Check accepts exactly the inputs every oracle
// accepts, and a refusal's kind is one an oracle confirms.
func FuzzCheck(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := Check(data)
		if again := Check(data); !sameError(err, again) {
			t.Fatalf("not deterministic: %v then %v", err, again)
		}
		valid := json.Valid(data)
		if err == nil {
			switch {
			case !valid:
				t.Fatal("accepted, but encoding/json says invalid")
			case !utf8.Valid(data):
				t.Fatal("accepted invalid UTF-8")
			case loneSurrogate(data):
				t.Fatal("accepted an unpaired surrogate escape")
			case duplicateName(data):
				t.Fatal("accepted a duplicate member name")
			case depth(data) > MaxDepth:
				t.Fatal("accepted nesting past MaxDepth")
			}
			checkSpans(t, data)
			return
		}
		var spans [len(spanNames)]Span
		if again := CheckMembers(data, spanNames[:], spans[:]); !sameError(err, again) {
			t.Fatalf("CheckMembers: %v, Check: %v", again, err)
		}
		if spans != [len(spanNames)]Span{} {
			t.Fatalf("spans %v for a refused input", spans)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error of type %T", err)
		}
		if e.Offset < 0 || e.Offset > len(data) {
			t.Fatalf("offset %d outside %d bytes", e.Offset, len(data))
		}
		if len(e.Path) > maxPath+len("…") || !utf8.ValidString(e.Path) {
			t.Fatalf("path %q", e.Path)
		}
		switch e.Kind {
		case Syntax:
			if valid {
				t.Fatalf("syntax error at %d, but encoding/json says valid", e.Offset)
			}
		case Duplicate:
			if !duplicateName(data) {
				t.Fatalf("duplicate at %d that encoding/json does not see", e.Offset)
			}
			if data[e.Offset] != '"' {
				t.Fatalf("duplicate offset %d is not a quote", e.Offset)
			}
		case UTF8:
			if utf8.Valid(data) {
				t.Fatalf("invalid UTF-8 at %d in valid UTF-8", e.Offset)
			}
		case Surrogate:
			if !loneSurrogate(data) || data[e.Offset] != '\\' {
				t.Fatalf("unpaired surrogate at %d not confirmed", e.Offset)
			}
		case Depth:
			if depth(data) <= MaxDepth {
				t.Fatalf("depth error at %d, depth %d", e.Offset, depth(data))
			}
		default:
			t.Fatalf("kind %d", e.Kind)
		}
		if valid && utf8.Valid(data) && !loneSurrogate(data) && !duplicateName(data) && depth(data) <= MaxDepth {
			t.Fatalf("refused (%v) an input every oracle accepts", err)
		}
	})
}

// spanNames are the member names the fuzz targets ask CheckMembers for.
var spanNames = [...]string{"model", "messages", "stream", "stream_options", "a", "", "😀", "k1"}

// checkSpans holds CheckMembers' spans, for an input Check accepts, to
// encoding/json's reading of the top-level object's members (a
// json.RawMessage holds a value's exact bytes).
func checkSpans(t *testing.T, data []byte) {
	t.Helper()
	var spans [len(spanNames)]Span
	if err := CheckMembers(data, spanNames[:], spans[:]); err != nil {
		t.Fatalf("CheckMembers refused (%v) what Check accepts", err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		top = nil // not an object
	}
	value := bytes.Trim(data, " \t\r\n")
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		elems = nil // not an array
	}
	k := 0
	for e := range Elements(value) {
		if k >= len(elems) || !bytes.Equal(e, elems[k]) {
			t.Fatalf("element %d: %s, encoding/json reads %d elements", k, e, len(elems))
		}
		k++
	}
	if k != len(elems) {
		t.Fatalf("%d elements, encoding/json reads %d", k, len(elems))
	}
	for k, n := range spanNames {
		raw, ok := top[n]
		if v, found := Member(value, n); found != ok || !bytes.Equal(v, raw) {
			t.Fatalf("Member(%q): %s, %v; encoding/json reads %s, %v", n, v, found, raw, ok)
		}
		switch sp := spans[k]; {
		case !ok && sp != Span{}:
			t.Fatalf("%q: span %v, but encoding/json finds no such member", n, sp)
		case ok && (!sp.Found() || !bytes.Equal(data[sp.Start:sp.End], raw)):
			t.Fatalf("%q: span %v, encoding/json reads %s", n, sp, raw)
		}
	}
}

func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a.(*Error) == *b.(*Error)
}

// duplicateName reports whether encoding/json's token stream, read up to
// its first error, shows an object with two members of the same name.
func duplicateName(data []byte) bool {
	type obj struct {
		keys   map[string]bool
		expect bool // the next string token is a name
	}
	var stack []*obj
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	for {
		tok, err := d.Token()
		if err != nil {
			return false // io.EOF or a syntax error: no duplicate before it
		}
		var top *obj
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.expect {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return true
				}
				top.keys[k] = true
				top.expect = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &obj{keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the enclosing object expects a name next.
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].expect = true
		}
	}
}

// loneSurrogate reports whether data holds a \u escape of a surrogate
// that is not a high surrogate directly followed by an escaped low one.
// Outside strings a backslash is a syntax error, so scanning every
// backslash is enough for inputs that are JSON up to it.
func loneSurrogate(data []byte) bool {
	hex := func(i int) (uint64, bool) {
		if i+4 > len(data) {
			return 0, false
		}
		v, err := strconv.ParseUint(string(data[i:i+4]), 16, 32)
		return v, err == nil
	}
	for i := 0; i+1 < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if data[i+1] != 'u' {
			i++ // the escaped byte
			continue
		}
		r, ok := hex(i + 2)
		switch {
		case !ok:
			return false // a syntax error comes first
		case r >= 0xDC00 && r < 0xE000:
			return true
		case r >= 0xD800 && r < 0xDC00:
			if i+8 > len(data) || data[i+6] != '\\' || data[i+7] != 'u' {
				return true
			}
			lo, ok := hex(i + 8)
			if !ok {
				return false
			}
			if lo < 0xDC00 || lo >= 0xE000 {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

// depth is the deepest nesting of brackets outside strings.
func depth(data []byte) int {
	d, deepest, in := 0, 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case in:
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
