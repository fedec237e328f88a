package pricing

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/llmux/llmux/translate"
)

// exact counts text whole with the same tokenizer, for comparison.
func exact(t testing.TB, s string) int64 {
	t.Helper()
	n, err := getCodec().Count(s)
	if err != nil {
		t.Fatal(err)
	}
	return int64(n)
}

func TestEstimateInputTokensShort(t *testing.T) {
	hello := exact(t, "Hello there")
	for _, tc := range []struct {
		name string
		op   translate.Operation
		body string
		want int64
	}{
		{"one message", translate.OpChat, `{"model":"m","messages":[{"role":"user","content":"Hello there"}]}`, 3 + 3 + hello},
		{"system and parts", translate.OpChat, `{"model":"m","messages":[{"role":"system","content":"You are terse."},
			{"role":"user","content":[{"type":"text","text":"Hello there"},{"type":"image_url","image_url":{"url":"data:x","detail":"low"}},{"type":"image_url","image_url":{"url":"https://x"}}]}]}`,
			3 + 6 + exact(t, "You are terse.\nHello there") + 85 + 765},
		{"tool call and result", translate.OpChat, `{"model":"m","messages":[
			{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
			{"role":"tool","tool_call_id":"c1","content":"Hello there"}]}`, 3 + 6 + exact(t, "get_weather\n"+`{"city":"Paris"}`+"\nHello there")},
		{"tools", translate.OpChat, `{"model":"m","messages":[{"role":"user","content":"Hello there"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`,
			3 + 3 + exact(t, "Hello there"+`{"name":"f","parameters":{"type":"object"}}`)},
		{"embeddings string", translate.OpEmbeddings, `{"model":"m","input":"Hello there"}`, hello},
		{"embeddings strings", translate.OpEmbeddings, `{"model":"m","input":["Hello there","You are terse."]}`, exact(t, "Hello there\nYou are terse.")},
		{"embeddings ids", translate.OpEmbeddings, `{"model":"m","input":[[1,2,3],[4,5]]}`, 5},
		{"embeddings flat ids", translate.OpEmbeddings, `{"model":"m","input":[1,2,3]}`, 3},
		{"not an object", translate.OpChat, `[1]`, 0},
	} {
		if got := EstimateInputTokens(tc.op, []byte(tc.body)); got != tc.want {
			t.Errorf("%s: EstimateInputTokens = %d, want %d", tc.name, got, tc.want)
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

// TestEstimateInputTokensSampled holds the sampled count of long prompts
// to within 10% of tokenizing them whole.
func TestEstimateInputTokensSampled(t *testing.T) {
	for _, size := range []int{4 << 10, 32 << 10, 100 << 10, 1 << 20} {
		text := longText(size)
		body, _ := json.Marshal(map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": text}}})
		want := 6 + exact(t, text)
		got := EstimateInputTokens(translate.OpChat, body)
		if e := math.Abs(float64(got-want)) / float64(want); e > 0.10 {
			t.Errorf("%d bytes: estimate %d, whole %d (error %.1f%%)", size, got, want, 100*e)
		} else {
			t.Logf("%d bytes: estimate %d, whole %d (error %.1f%%)", size, got, want, 100*e)
		}
	}
}

func BenchmarkEstimateInputTokens(b *testing.B) {
	WarmTokenizer()
	for _, size := range []int{1 << 10, 100 << 10} {
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
