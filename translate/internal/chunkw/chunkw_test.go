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

func TestAppendJoined(t *testing.T) {
	arr := gjson.Parse(`[{"text":"a\"b"},{"x":1},{"text":""},{"text":3},{"text":"\u00e9"}]`)
	pick := func(e gjson.Result) gjson.Result { return e.Get("text") }
	b, n := AppendJoined([]byte("x"), arr, pick)
	if string(b) != `x"a\"b\u00e9"` || n != 3 {
		t.Fatalf("got %s, %d", b, n)
	}
	b, n = AppendJoined(nil, gjson.Parse(`[{"x":1}]`), pick)
	if len(b) != 0 || n != 0 {
		t.Fatalf("got %s, %d", b, n)
	}
}

func TestAppendReasoning(t *testing.T) {
	pick := func(e gjson.Result) gjson.Result { return e.Get("thinking") }
	tests := []struct{ in, want string }{
		{`[{"thinking":"a"},{"text":"x"},{"thinking":""},{"thinking":"b\n"}]`, `,"reasoning_content":"ab\n"`},
		{`[{"text":"x"},{"thinking":""}]`, ``},
		{`[]`, ``},
	}
	for _, tc := range tests {
		b, _ := AppendReasoning([]byte("{"), gjson.Parse(tc.in), pick)
		if string(b) != "{"+tc.want {
			t.Errorf("%s: got %s", tc.in, b)
		}
	}
}
