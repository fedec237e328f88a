package ijson

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// benchBody builds a chat completions body of about size bytes: a system
// prompt, then user and assistant turns with text (some of it non-ASCII,
// some escaped) and, every fourth turn, content parts.
func benchBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly."}`)
	text := strings.Repeat("The gateway checks every request body once; naïve parsers disagree on duplicates. \\\"Quoted\\\" text, a tab\\t and 日本語. ", 8)
	for i := 0; b.Len() < size-len(text)-200; i++ {
		role := "user"
		if i%2 == 1 {
			role = "assistant"
		}
		n := min(len(text), size-b.Len()-200)
		if i%4 == 2 {
			fmt.Fprintf(&b, `,{"role":%q,"content":[{"type":"text","text":"%s"},{"type":"image_url","image_url":{"url":"https://example.com/%d.png","detail":"low"}}]}`, role, text[:n], i)
			continue
		}
		fmt.Fprintf(&b, `,{"role":%q,"content":"%s","name":"turn-%d"}`, role, text[:n], i)
	}
	b.WriteString(`],"max_tokens":256,"user":"bench"}`)
	return []byte(b.String())
}

var benchSizes = []struct {
	name string
	size int
}{
	{"1KB", 1 << 10},
	{"100KB", 100 << 10},
	{"15MiB", 15 << 20},
}

func BenchmarkCheck(b *testing.B) {
	for _, sz := range benchSizes {
		body := benchBody(sz.size)
		if err := Check(body); err != nil {
			b.Fatal(err)
		}
		if !gjson.ValidBytes(body) {
			b.Fatal("gjson: invalid bench body")
		}
		b.Run(sz.name+"/ijson", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if Check(body) != nil {
					b.Fatal("refused")
				}
			}
		})
		b.Run(sz.name+"/gjson.Valid", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !gjson.ValidBytes(body) {
					b.Fatal("refused")
				}
			}
		})
	}
}

// BenchmarkCheckManyMembers is the duplicate check's worst case an
// attacker controls: one object with 100,000 members.
func BenchmarkCheckManyMembers(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("{")
	for i := range 100_000 {
		fmt.Fprintf(&sb, `"member-%d":%d,`, i, i)
	}
	sb.WriteString(`"end":0}`)
	body := []byte(sb.String())
	b.Run("ijson", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if Check(body) != nil {
				b.Fatal("refused")
			}
		}
	})
	b.Run("gjson.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if !gjson.ValidBytes(body) {
				b.Fatal("refused")
			}
		}
	})
}
