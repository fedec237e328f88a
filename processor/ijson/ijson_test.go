package ijson

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	many := func(n int, extra string) string {
		var b strings.Builder
		b.WriteString(`{`)
		for i := range n {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		b.WriteString(extra + `"end":0}`)
		return b.String()
	}
	tests := []struct {
		name string
		in   string
		kind Kind // 0: accepted
		at   int
		path string
	}{
		{"chat body", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true}`, 0, 0, ""},
		{"scalars", ` [1, -0.5e+10, 0, 1E-2, true, false, null, "", "\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"] `, 0, 0, ""},
		{"utf-8 text", `{"c":"héllo 日本 😀 \u2028"}`, 0, 0, ""},
		{"same name in different objects", `{"a":{"a":1},"b":[{"a":1},{"a":2}]}`, 0, 0, ""},
		{"names differing in case", `{"model":1,"Model":2,"MODEL":3}`, 0, 0, ""},
		{"names that are prefixes", `{"a":1,"ab":2,"abc":3,"":4}`, 0, 0, ""},
		{"name reused after its object closed", `{"x":{"a":1},"y":{"a":1}}`, 0, 0, ""},
		{"escaped distinct names", `{"a\u0062":1,"a\u0063":2}`, 0, 0, ""},
		{"1000 distinct members", many(1000, ""), 0, 0, ""},
		{"scalar top level", `"x"`, 0, 0, ""},

		{"duplicate model", `{"model":"a","messages":[],"model":"b"}`, Duplicate, 27, "model"},
		{"escaped duplicate", `{"model":"a","mod\u0065l":"b"}`, Duplicate, 13, "model"},
		{"escaped slash duplicate", `{"a/b":1,"a\/b":2}`, Duplicate, 9, `["a/b"]`},
		{"both escaped", `{"\u006d":1,"\u006D":2}`, Duplicate, 12, "m"},
		{"surrogate pair names", `{"😀":1,"\ud83d\ude00":2}`, Duplicate, 10, `["😀"]`},
		{"empty names", `{"":1,"":2}`, Duplicate, 6, `[""]`},
		{"nested duplicate", `{"messages":[{"role":"user"},{"role":"user","content":"x","role":"system"}]}`, Duplicate, 58, "messages[1].role"},
		{"deep path", `{"messages":[{"role":"user"},{"role":"user"},{"content":[{"type":"text","type":"image_url"}]}]}`, Duplicate, 72, "messages[2].content[0].type"},
		{"duplicate stream_options", `{"stream_options":{"include_usage":true},"stream_options":null}`, Duplicate, 41, "stream_options"},
		{"duplicate past the hash threshold", many(100, `"k7":1,`), Duplicate, 881, "k7"},
		{"duplicate at the threshold", many(tableFrom-1, `"k3":1,`), Duplicate, 116, "k3"},
		{"duplicate in a big object, escaped", many(40, `"k\u0033\u0039":1,`), Duplicate, 341, "k39"},
		{"odd name quoted", `{"a b":1,"a b":2}`, Duplicate, 9, `["a b"]`},
		{"long name cut", `{"` + strings.Repeat("n", 50) + `":1,"` + strings.Repeat("n", 50) + `":2}`, Duplicate, 56, `["` + strings.Repeat("n", 32) + `…"]`},

		{"invalid utf-8 in value", "{\"messages\":[{\"content\":\"a\xffb\"}]}", UTF8, 26, "messages[0].content"},
		{"truncated sequence", "[\"\xe6\x97\"]", UTF8, 2, "[0]"},
		{"overlong", "[\"\xc0\xaf\"]", UTF8, 2, "[0]"},
		{"encoded surrogate", "[\"\xed\xa0\x80\"]", UTF8, 2, "[0]"},
		{"past U+10FFFF", "[\"\xf4\x90\x80\x80\"]", UTF8, 2, "[0]"},
		{"invalid utf-8 in name", "{\"ro\xfele\":1}", UTF8, 4, "[\"ro\uFFFD…\"]"},
		{"lone high", `{"content":"\ud800"}`, Surrogate, 12, "content"},
		{"lone low", `{"content":"x\udc00"}`, Surrogate, 13, "content"},
		{"high then non-low", `{"content":"\ud800\u0041"}`, Surrogate, 12, "content"},
		{"high then high", `["\ud800\ud800"]`, Surrogate, 2, "[0]"},
		{"high then text", `["\ud83dabc"]`, Surrogate, 2, "[0]"},
		{"high at end of string", `["\udbff"]`, Surrogate, 2, "[0]"},
		{"lone surrogate in name", `{"\udc00":1}`, Surrogate, 2, `["\\udc00…"]`},

		{"empty", ``, Syntax, 0, ""},
		{"truncated", `{"model":`, Syntax, 9, "model"},
		{"trailing comma", `{"a":1,}`, Syntax, 7, ""},
		{"trailing comma in array", `[1,]`, Syntax, 3, "[1]"},
		{"missing colon", `{"a" 1}`, Syntax, 5, "a"},
		{"single quotes", `{'a':1}`, Syntax, 1, ""},
		{"two values", `{} {}`, Syntax, 3, ""},
		{"control character", "[\"a\tb\"]", Syntax, 3, "[0]"},
		{"bad escape", `["\x"]`, Syntax, 3, "[0]"},
		{"short unicode escape", `["\u12"]`, Syntax, 2, "[0]"},
		{"leading zero", `[01]`, Syntax, 2, "[0]"},
		{"bare minus", `[-]`, Syntax, 2, "[0]"},
		{"dot without digits", `[1.]`, Syntax, 3, "[0]"},
		{"exponent without digits", `[1e+]`, Syntax, 4, "[0]"},
		{"bad literal", `[tru]`, Syntax, 4, "[0]"},
		{"nul", `[nul`, Syntax, 4, "[0]"},
		{"unterminated string", `{"a":"b`, Syntax, 7, "a"},
		{"mismatched bracket", `{"a":[1}`, Syntax, 7, "a[0]"},
		{"byte order mark", "\xef\xbb\xbf{}", Syntax, 0, ""},
		{"non-ascii outside strings", "[1,\xff]", Syntax, 3, "[1]"},

		{"depth at the limit", strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth), 0, 0, ""},
		{"depth past the limit", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), Depth, MaxDepth, "…" + strings.Repeat("[0]", 54)[2:]},
		{"deep objects", strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1), Depth, 5 * MaxDepth, "…." + strings.Repeat("a.", 80)[:159]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.in))
			if tc.kind == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("want %s, got %v", tc.kind, err)
			}
			if e.Kind != tc.kind || e.Offset != tc.at || e.Path != tc.path {
				t.Fatalf("got %s at %d path %q, want %s at %d path %q", e.Kind, e.Offset, e.Path, tc.kind, tc.at, tc.path)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	err := Check([]byte(`{"model":1,"model":2}`))
	if got, want := err.Error(), "ijson: duplicate member name at byte 11 in model"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	err = Check([]byte(`[`))
	if got, want := err.Error(), "ijson: syntax error at byte 1 in [0]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestPathBounded: whatever the input, a path repeats at most a short
// piece of it.
func TestPathBounded(t *testing.T) {
	long := strings.Repeat("x", 10000)
	in := strings.Repeat(`{"`+long+`":`, 100) + `{"a":1,"a":2}` + strings.Repeat("}", 100)
	var e *Error
	if !errors.As(Check([]byte(in)), &e) || e.Kind != Duplicate {
		t.Fatalf("want a duplicate")
	}
	if len(e.Path) > maxPath+len("…") || !strings.HasSuffix(e.Path, `"].a`) {
		t.Fatalf("path of %d bytes: %q", len(e.Path), e.Path)
	}
}

// TestManyMembersLinear guards against quadratic name checks: a huge
// object of distinct names is scanned, and a duplicate at its end found.
func TestManyMembersLinear(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range 200_000 {
		b.WriteString(`"` + strconv.Itoa(i) + `":0,`)
	}
	ok := b.String() + `"x":0}`
	if err := Check([]byte(ok)); err != nil {
		t.Fatal(err)
	}
	var e *Error
	if !errors.As(Check([]byte(b.String()+`"199999":1}`)), &e) || e.Kind != Duplicate || e.Path != "199999" {
		t.Fatalf("got %v", e)
	}
}

func TestCheckAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	bodies := [][]byte{
		[]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\u00e9llo"}],"stream":true}`),
		[]byte(many(100)),
	}
	for _, b := range bodies {
		Check(b) // warm the pool
		if n := testing.AllocsPerRun(100, func() { _ = Check(b) }); n != 0 {
			t.Errorf("%d allocations per check of %.40s…", int(n), b)
		}
		names := [...]string{"model", "messages", "stream", "k01", "end"}
		var spans [len(names)]Span
		if n := testing.AllocsPerRun(100, func() { _ = CheckMembers(b, names[:], spans[:]) }); n != 0 {
			t.Errorf("%d allocations per CheckMembers of %.40s…", int(n), b)
		}
		if !spans[0].Found() && !spans[4].Found() {
			t.Errorf("no member found in %.40s…", b)
		}
	}
}

func many(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		fmt.Fprintf(&b, `"k\u0030%d":%d,`, i, i)
	}
	b.WriteString(`"end":0}`)
	return b.String()
}

// TestDuplicateInHashSet: in an object past tableFrom members, names are
// compared through the hash set whichever side is escaped.
func TestDuplicateInHashSet(t *testing.T) {
	tests := []struct{ name, in, dup, path string }{
		{"escaped first", strings.Replace(many(40), `"end"`, `"k05":0,"end"`, 1), `"k05"`, "k05"},
		{"escaped both", strings.Replace(many(40), `"end"`, `"k\u0030\u0035":0,"end"`, 1), `"k\u0030\u0035"`, "k05"},
		{"plain both", strings.Replace(many(40), `"end":0}`, `"end":0,"x":1,"end":1}`, 1), `"end":1`, "end"},
		{"nested big objects", `{"a":` + many(20) + `,"b":` + many(30) + `,"a":1}`, `"a":1`, "a"},
		{"inner big object", `{"a":` + strings.Replace(many(30), `"end":0}`, `"k\u0030\u0032":1}`, 1) + `}`, `"k\u0030\u0032":1`, "a.k02"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e *Error
			if !errors.As(Check([]byte(tc.in)), &e) {
				t.Fatal("accepted")
			}
			if want := strings.LastIndex(tc.in, tc.dup); e.Kind != Duplicate || e.Offset != want || e.Path != tc.path {
				t.Fatalf("got %s at %d in %q, want duplicate at %d in %q", e.Kind, e.Offset, e.Path, want, tc.path)
			}
		})
	}
}

func TestCheckMembers(t *testing.T) {
	names := []string{"model", "messages", "stream", "stream_options", "a/b", "😀", ""}
	tests := []struct {
		name string
		in   string
		want map[string]string // name: the value's text; absent: no span
	}{
		{"chat body", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","model":"x"}],"stream":true}`,
			map[string]string{"model": `"gpt-4o-mini"`, "messages": `[{"role":"user","content":"hi","model":"x"}]`, "stream": "true"}},
		{"whitespace around values", " {\n \"model\" : \"m\" ,\t\"stream\"\r: false , \"messages\" :[ ] } ",
			map[string]string{"model": `"m"`, "stream": "false", "messages": "[ ]"}},
		{"escaped names", `{"mod\u0065l":"m","\u006d\u0065ssages":[1],"a\/b":{},"\ud83d\ude00":null,"":-1.5e3}`,
			map[string]string{"model": `"m"`, "messages": "[1]", "a/b": "{}", "😀": "null", "": "-1.5e3"}},
		{"escaped value", `{"model":"gpt\u002d4o \"x\""}`, map[string]string{"model": `"gpt\u002d4o \"x\""`}},
		{"nested objects", `{"stream_options":{"include_usage":true,"stream":{"model":1}},"x":{"model":2},"stream":[[],{}]}`,
			map[string]string{"stream_options": `{"include_usage":true,"stream":{"model":1}}`, "stream": "[[],{}]"}},
		{"empty object value last", `{"x":1,"stream_options":{}}`, map[string]string{"stream_options": "{}"}},
		{"number last", `{"stream":0}`, map[string]string{"stream": "0"}},
		{"names that are prefixes or differ in case", `{"mode":1,"modell":2,"Model":3,"stream_option":4}`, nil},
		{"past the hash threshold", strings.Replace(many(40), `"end":0`, `"end":0,"model":"late"`, 1),
			map[string]string{"model": `"late"`}},
		{"members of an array's objects", `[{"model":"m"}]`, nil},
		{"scalar", `"model"`, nil},
		{"empty object", `{}`, nil},
		{"refused", `{"model":"a","mod\u0065l":"b"}`, nil},
		{"refused after", `{"model":"a","messages":[}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spans := make([]Span, len(names))
			for k := range spans {
				spans[k] = Span{1, 2} // stale: must be cleared
			}
			err := CheckMembers([]byte(tc.in), names, spans)
			if (err != nil) != strings.HasPrefix(tc.name, "refused") {
				t.Fatalf("error %v", err)
			}
			if err := Check([]byte(tc.in)); (err != nil) != strings.HasPrefix(tc.name, "refused") {
				t.Fatalf("Check disagrees: %v", err)
			}
			for k, n := range names {
				want, ok := tc.want[n]
				got := spans[k]
				switch {
				case ok && !got.Found():
					t.Errorf("%q: no span, want %s", n, want)
				case ok && tc.in[got.Start:got.End] != want:
					t.Errorf("%q: %s, want %s", n, tc.in[got.Start:got.End], want)
				case !ok && got != Span{}:
					t.Errorf("%q: span %v, want none", n, got)
				}
			}
		})
	}
}

func TestElementsAndMember(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		elems []string // nil: not an array
		role  string   // the value of the member named role; "": none
	}{
		{"messages", `[{"role":"user","content":"hi"}, {"content":"a\"]}","role" : "system"} ,{}]`,
			[]string{`{"role":"user","content":"hi"}`, `{"content":"a\"]}","role" : "system"}`, `{}`}, ""},
		{"scalars", "[ 1 ,-2.5e3,true,false,null,\"x\",\n\"\" ]", []string{"1", "-2.5e3", "true", "false", "null", `"x"`, `""`}, ""},
		{"nested", `[[1,[2]],{"a":[{}]},[]]`, []string{"[1,[2]]", `{"a":[{}]}`, "[]"}, ""},
		{"empty array", `[ ]`, []string{}, ""},
		{"escaped name", `{"content":"x","r\u006fle":"assistant"}`, nil, `"assistant"`},
		{"role after nested values", `{"a":{"role":1},"b":[{"role":2}],"c":-0,"role" :{"x":[]}}`, nil, `{"x":[]}`},
		{"role last, number", `{"x":"y","role":12}`, nil, "12"},
		{"no role", `{"roles":1,"Role":2,"r\u006fl":3,"\u0072ol\u0065x":4}`, nil, ""},
		{"empty object", `{}`, nil, ""},
		{"string", `"role"`, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Check([]byte(tc.in)); err != nil {
				t.Fatal(err)
			}
			var got []string
			for e := range Elements([]byte(tc.in)) {
				got = append(got, string(e))
			}
			if tc.elems != nil && got == nil {
				got = []string{}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.elems) || (got == nil) != (tc.elems == nil) {
				t.Errorf("elements %q, want %q", got, tc.elems)
			}
			v, ok := Member([]byte(tc.in), "role")
			if ok != (tc.role != "") || string(v) != tc.role {
				t.Errorf("role %q %v, want %q", v, ok, tc.role)
			}
		})
	}
}
