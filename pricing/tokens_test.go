package pricing

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llmux/llmux/translate"
)

func TestEstimateInputTokensShort(t *testing.T) {
	c := func(s string) int64 { return countText([]byte(s)) }
	hello := c("Hello there")
	for _, tc := range []struct {
		name string
		op   translate.Operation
		body string
		want int64
	}{
		{"one message", translate.OpChat, `{"model":"m","messages":[{"role":"user","content":"Hello there"}]}`, 3 + 3 + hello},
		{"system and parts", translate.OpChat, `{"model":"m","messages":[{"role":"system","content":"You are terse."},
			{"role":"user","content":[{"type":"text","text":"Hello there"},{"type":"image_url","image_url":{"url":"data:x","detail":"low"}},{"type":"image_url","image_url":{"url":"https://x"}}]}]}`,
			3 + 6 + c("You are terse.") + hello + 85 + 765},
		{"tool call and result", translate.OpChat, `{"model":"m","messages":[
			{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
			{"role":"tool","tool_call_id":"c1","content":"Hello there"}]}`, 3 + 6 + c("get_weather") + c(`{"city":"Paris"}`) + hello},
		{"name", translate.OpChat, `{"messages":[{"role":"user","name":"bob","content":"Hello there"}]}`, 3 + 3 + 1 + c("bob") + hello},
		{"tools", translate.OpChat, `{"model":"m","messages":[{"role":"user","content":"Hello there"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`,
			3 + 3 + hello + c(`{"name":"f","parameters":{"type":"object"}}`)},
		{"escapes decoded", translate.OpChat, `{"messages":[{"role":"user","content":"line one\nline \"two\"\u00e9\ud83d\ude00\\"}]}`,
			3 + 3 + c("line one\nline \"two\"é😀\\")},
		{"embeddings string", translate.OpEmbeddings, `{"model":"m","input":"Hello there"}`, hello},
		{"embeddings strings", translate.OpEmbeddings, `{"model":"m","input":["Hello there","You are terse."]}`, hello + c("You are terse.")},
		{"embeddings ids", translate.OpEmbeddings, `{"model":"m","input":[[1,2,3],[4,5]]}`, 5},
		{"embeddings flat ids", translate.OpEmbeddings, `{"model":"m","input":[1,2,3]}`, 3},
		{"not an object", translate.OpChat, `[1]`, 0},
		{"empty", translate.OpChat, ``, 0},
	} {
		if got := EstimateInputTokens(tc.op, []byte(tc.body)); got != tc.want {
			t.Errorf("%s: EstimateInputTokens = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestCountTextPieces checks the cost of pieces whose o200k count is
// known exactly: digit groups, and text made of common words.
func TestCountTextPieces(t *testing.T) {
	for _, tc := range []struct {
		text     string
		min, max int64
	}{
		{"", 0, 0},
		{"1", 1, 1},
		{"123456789", 3, 3},
		{"1234567890", 4, 4},
		{"the", 1, 1},
		{"the cat sat on the mat", 6, 6},
		{"你好", 1, 2},
		{"\n\n", 1, 1},
	} {
		if got := countText([]byte(tc.text)); got < tc.min || got > tc.max {
			t.Errorf("countText(%q) = %d, want %d…%d", tc.text, got, tc.min, tc.max)
		}
	}
}

// TestCountJSONStringEqualsText holds the JSON-literal scan to the scan
// of the decoded text.
func TestCountJSONStringEqualsText(t *testing.T) {
	for _, tc := range []struct {
		s     string
		slack int64 // chunks cut mid-piece
	}{
		{"plain words", 0},
		{"tab\there\nnew \"quoted\" \\ back/slash", 0},
		{"é😀 中文 Привет", 0},
		{"\u2028\u0000\x01", 0},
		{strings.Repeat("ab ", 100), 0},
		{strings.Repeat("func f() {\n\treturn \"x\"\n}\n", 1000), 0},
		{strings.Repeat("Una frase en español, con \"comillas\".\n", 500), 0},
		{strings.Repeat("中文\"", 5000), 10},
	} {
		lit, _ := json.Marshal(tc.s)
		got, want := countJSONString(string(lit[1:len(lit)-1])), countText([]byte(tc.s))
		if got < want-tc.slack || got > want+tc.slack {
			t.Errorf("%.40q: JSON literal %d, text %d", tc.s, got, want)
		}
	}
}

// longText is about n bytes of varied text: prose, code and numbers.
func longText(n int) string {
	var b strings.Builder
	parts := []string{
		"The committee reviewed the quarterly figures and found that revenue grew by 12.4% while costs rose 3%. ",
		"func (s *Server) Handle(ctx context.Context, req *Request) (*Response, error) { return nil, fmt.Errorf(\"x: %w\", err) }\n",
		"Les négociations ont repris à Genève après une longue pause; les délégués espèrent un accord d'ici vendredi. ",
		"| id | name | total |\n|---|---|---|\n| 17 | widgets | 1,204.50 |\n",
	}
	for i := 0; b.Len() < n; i++ {
		b.WriteString(parts[(i/7)%len(parts)])
	}
	return b.String()[:n]
}

func BenchmarkEstimateInputTokens(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10, 100 << 10} {
		body, _ := json.Marshal(map[string]any{"model": "m", "messages": []any{
			map[string]any{"role": "system", "content": "You are terse."},
			map[string]any{"role": "user", "content": longText(size)}}})
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				EstimateInputTokens(translate.OpChat, body)
			}
		})
	}
}

func FuzzEstimateInputTokens(f *testing.F) {
	f.Add(true, []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"héllo"},{"type":"image_url","image_url":{"url":"x"}}]}],"tools":[{"type":"function","function":{"name":"f"}}]}`))
	f.Add(false, []byte(`{"model":"m","input":["a b c",[1,2],3]}`))
	f.Add(true, []byte(`{"messages":[{"content":"`+strings.Repeat("word \xff\xfe ", 600)+`"}]}`))
	f.Add(true, []byte(`{"messages":[{"content":"\ud83d\ude00\u00e9\\u12\ud800 \"x\u"}]}`))
	f.Fuzz(func(t *testing.T, chat bool, body []byte) {
		op := translate.OpEmbeddings
		if chat {
			op = translate.OpChat
		}
		if n := EstimateInputTokens(op, body); n < 0 {
			t.Fatalf("negative estimate %d", n)
		}
	})
}

// FuzzCountText checks the scanner on any text: pieces cover it in
// order, the count is between a token per 16 bytes and a few per byte,
// and appending text never lowers it by more than a token.
func FuzzCountText(f *testing.F) {
	f.Add([]byte("Hello, world! 123 你好 Привет 😀\n\n  x"), []byte(" more"))
	f.Add([]byte("\xff\xfe\\u12"), []byte("\\"))
	f.Add([]byte(strings.Repeat("-", 40)), []byte("a"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, esc := range []byte{0, '\\'} {
			end := 0
			s := scanner{b: a, esc: esc, visit: func(p piece) {
				if p.start != end || p.end <= p.start {
					t.Fatalf("piece %d..%d after %d", p.start, p.end, end)
				}
				end = p.end
			}}
			n := s.run()
			if end != len(a) {
				t.Fatalf("pieces end at %d of %d", end, len(a))
			}
			fast := scanner{b: a, esc: esc}
			if m := fast.run(); m != n {
				t.Fatalf("fast path cost %d, piece by piece %d", m, n)
			}
			if n < 0 || n > int64(len(a))*4*costUnit {
				t.Fatalf("cost %d for %d bytes", n, len(a))
			}
		}
		// A JSON literal counts as its text, scanned in place or by
		// chunks (exactly, but where a chunk had to be cut mid-piece).
		lit, _ := json.Marshal(string(a))
		raw := string(lit[1 : len(lit)-1])
		inPlace := scanner{b: []byte(raw), esc: '\\'}
		want := (inPlace.run() + costUnit/2) / costUnit
		if got := countJSONString(raw); got < want-int64(len(a)/(chunkLen/2)) || got > want+int64(len(a)/(chunkLen/2)) {
			t.Fatalf("countJSONString %d, in place %d", got, want)
		}
		ab := append(append([]byte(nil), a...), b...)
		if x, y := countText(a), countText(ab); y < x-1 {
			t.Fatalf("countText(a)=%d but countText(a+b)=%d", x, y)
		}
	})
}

// BenchmarkCountText is the scanner alone on corpus samples of each kind
// (a JSON string literal of the sample, as in a request body).
func BenchmarkCountText(b *testing.B) {
	for _, s := range corpus(b, "check") {
		if !slices.Contains([]string{"en_prose", "code_go", "json", "zh", "ru", "emoji"}, s.name) {
			continue
		}
		lit, _ := json.Marshal(s.text)
		raw := string(lit[1 : len(lit)-1])
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				countJSONString(raw)
			}
		})
	}
}

func FuzzDecodeRune(f *testing.F) {
	f.Add([]byte("é中😀\xed\xa0\x80\xe0\x80\x80\xc1\xbf"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := 0; i < len(b); i++ {
			r, n := decodeRune(b, i)
			wr, wn := utf8.DecodeRune(b[i:])
			if r != wr || n != wn {
				t.Fatalf("decodeRune(%q) = %U %d, utf8 %U %d", b[i:], r, n, wr, wn)
			}
		}
	})
}
