package chunkw

import (
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"
)

func TestPieces(t *testing.T) {
	var b []byte
	b = AppendPrefix(b, "chat.completion", `id"1`, 7, "m")
	b = append(b, `{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[`...)
	b = AppendToolCall(b, "c1", "f", "")
	b = append(b, ',')
	b = AppendToolCall(b, "c2", "g", `{"a":1}`)
	b = append(b, ']')
	b = AppendMessageEnd(b, "tool_calls")
	b = AppendUsage(b, 3, 4, 1, 2)
	b = append(b, '}')
	want := `{"id":"id\"1","object":"chat.completion","created":7,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[` +
		`{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{\"a\":1}"}}],` +
		`"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,` +
		`"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":2}}}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	if !json.Valid(b) {
		t.Fatal("invalid JSON")
	}
}

func TestAllocs(t *testing.T) {
	b := make([]byte, 0, 1024)
	n := testing.AllocsPerRun(100, func() {
		b = AppendPrefix(b[:0], "chat.completion.chunk", "id", 1, "model")
		b = AppendUsage(b, 1, 2, 3, 4)
		b = append(b, Tail...)
	})
	if n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func TestDeltas(t *testing.T) {
	b := AppendToolStart(nil, 2, "id", "f")
	b = append(b, `""}}]}`+Tail...)
	b = AppendToolArgs(b, 2, `"{}"`)
	b = AppendFinish(b, "tool_calls")
	want := `{"tool_calls":[{"index":2,"id":"id","type":"function","function":{"name":"f","arguments":""}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		`{"tool_calls":[{"index":2,"function":{"arguments":"{}"}}]},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		`{},"logprobs":null,"finish_reason":"tool_calls"}]}` + "\n\n"
	if string(b) != want {
		t.Fatalf("got  %q\nwant %q", b, want)
	}
}

// TestMessage: a message's blocks, read in one pass, written in the order
// of an OpenAI message (content, refusal, reasoning, tool calls).
func TestMessage(t *testing.T) {
	type block struct{ text, reasoning, call, answer string }
	tests := []struct {
		name    string
		blocks  []block
		want    string
		content bool
	}{
		{"texts joined as escaped", []block{{text: `"a\"b"`}, {text: `3`}, {text: `""`}, {text: `"\u00e9"`}},
			`"a\"b\u00e9","refusal":null`, true},
		{"nothing", nil, `"","refusal":null`, false},
		{"calls, no text", []block{{call: "c1"}, {reasoning: `""`}, {call: "c2"}},
			`null,"refusal":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"c2","type":"function","function":{"name":"f","arguments":"{}"}}]`, true},
		{"reasoning", []block{{reasoning: `"r1"`}, {text: `"t"`}, {reasoning: `"r\n2"`}, {reasoning: `5`}},
			`"t","refusal":null,"reasoning_content":"r1r\n2"`, true},
		{"answer drops the text", []block{{text: `"preamble"`}, {answer: `{"a":1}`}, {text: `"after"`}},
			`"{\"a\":1}","refusal":null`, true},
	}
	for _, tc := range tests {
		var m Message
		dst := []byte("x")
		m.Begin(dst)
		for _, b := range tc.blocks {
			switch {
			case b.text != "":
				dst = m.Text(dst, gjson.Parse(b.text))
			case b.reasoning != "":
				m.Reasoning(gjson.Parse(b.reasoning))
			case b.call != "":
				m.ToolCall(b.call, "f", "")
			case b.answer != "":
				m.Answer = gjson.Parse(b.answer)
			}
		}
		got, content := m.End(dst)
		if string(got) != "x"+tc.want || content != tc.content {
			t.Errorf("%s: got %s, %v; want x%s, %v", tc.name, got, content, tc.want, tc.content)
		}
	}
}
