package anthropic

import (
	"time"

	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func init() { nowUnix = func() int64 { return 1741570283 } }

func decodeAll(t testing.TB, d translate.Decoder, src []byte, step int) []byte {
	t.Helper()
	var out []byte
	for i := 0; i < len(src); i += step {
		j := min(i+step, len(src))
		var err error
		out, err = d.Decode(out, src[i:j], j == len(src))
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(src) == 0 {
		out, _ = d.Decode(out, nil, true)
	}
	return out
}

// decodeSplitAt decodes src in two chunks cut at i.
func decodeSplitAt(t testing.TB, d translate.Decoder, src []byte, i int) []byte {
	t.Helper()
	out, err := d.Decode(nil, src[:i], false)
	if err != nil {
		t.Fatal(err)
	}
	out, err = d.Decode(out, src[i:], true)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n%s\nwant\n%s", name, got, want)
	}
}

// sdkChunks parses an OpenAI SSE body with the official SDK's types and
// accumulates it. It reports the error event, if any, and whether [DONE]
// was seen.
func sdkChunks(t *testing.T, body []byte) (acc openai.ChatCompletionAccumulator, chunks []openai.ChatCompletionChunk, errEvent string, done bool) {
	t.Helper()
	for _, ev := range strings.Split(string(body), "\n\n") {
		if ev == "" {
			continue
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("malformed event %q", ev)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		if strings.HasPrefix(data, `{"error"`) {
			errEvent = data
			continue
		}
		if done || errEvent != "" {
			t.Fatalf("event after the end: %q", ev)
		}
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		if c.Object != "chat.completion.chunk" || c.ID == "" {
			t.Fatalf("chunk %s", data)
		}
		if !acc.AddChunk(c) {
			t.Fatalf("accumulator refused %s", data)
		}
		chunks = append(chunks, c)
	}
	return acc, chunks, errEvent, done
}

func streamReq(includeUsage bool) *translate.Request {
	return &translate.Request{Op: translate.OpChat, Stream: true, IncludeUsage: includeUsage}
}

// TestStreamFixtures decodes each documented-shape stream whole, at every
// split point and byte by byte, and checks the result against the golden
// output and the SDK's accumulator.
func TestStreamFixtures(t *testing.T) {
	type check func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool)
	tests := []struct {
		file  string
		check check
	}{
		{"stream_text.sse", func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if got := acc.Choices[0].Message.Content; got != "Hello, \"world\"\n\u00e9\u4e16" {
				t.Errorf("content %q", got)
			}
			if acc.Choices[0].FinishReason != "stop" || !done || errEvent != "" {
				t.Errorf("finish %q done %v err %q", acc.Choices[0].FinishReason, done, errEvent)
			}
			u := r.Usage
			if !r.HasUsage || !r.Completed || u.InputTokens != 2125 || u.CachedTokens != 2000 || u.CacheCreationTokens != 100 || u.OutputTokens != 15 {
				t.Errorf("result %+v", r)
			}
			if r.Model != "claude-sonnet-4-5-20250929" || r.FinishReason != "stop" || !r.FirstContent {
				t.Errorf("result %+v", r)
			}
		}},
		{"stream_tools.sse", func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			m := acc.Choices[0].Message
			if m.Content != "Checking both cities." || len(m.ToolCalls) != 3 {
				t.Fatalf("message %+v", m)
			}
			want := []struct{ id, name, args string }{
				{"toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", `{"location": "Paris"}`},
				{"toolu_01D7FLrfh4GYq7yT1ULFeyMV", "get_weather", `{"location": "Tokyo"}`},
				{"toolu_01NoArgs000000000000000", "get_time", `{}`},
			}
			for i, w := range want {
				tc := m.ToolCalls[i]
				if tc.ID != w.id || tc.Function.Name != w.name || tc.Function.Arguments != w.args {
					t.Errorf("tool call %d: %+v", i, tc)
				}
			}
			if acc.Choices[0].FinishReason != "tool_calls" || r.FinishReason != "tool_calls" || !done {
				t.Errorf("finish %q", acc.Choices[0].FinishReason)
			}
		}},
		{"stream_json.sse", func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			m := acc.Choices[0].Message
			if m.Content != `{"name": "Ada", "age": 36}` || len(m.ToolCalls) != 0 {
				t.Fatalf("message %+v", m)
			}
			if acc.Choices[0].FinishReason != "stop" || !done {
				t.Errorf("finish %q", acc.Choices[0].FinishReason)
			}
		}},
		{"stream_thinking.sse", func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if got := acc.Choices[0].Message.Content; got != "27 * 453 = 12,231" || !done || !r.Completed || acc.Choices[0].FinishReason != "stop" {
				t.Errorf("content %q done %v %+v", got, done, r)
			}
			// The accumulator keeps no unknown delta fields: the reasoning
			// is checked on the chunks by TestStreamThinking.
			if r.Usage.OutputTokens != 87 || r.Usage.ReasoningTokens != 0 {
				t.Errorf("usage %+v", r.Usage)
			}
		}},
		{"stream_error.sse", func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if done || r.Completed {
				t.Error("an errored stream ended with [DONE]")
			}
			if r.Err == nil || r.Err.Code != translate.CodeOverloaded || errEvent != `{"error":{"message":"Overloaded","type":"server_error","param":null,"code":"overloaded"}}` {
				t.Errorf("err %+v event %s", r.Err, errEvent)
			}
			if acc.Choices[0].Message.Content != "Partial" {
				t.Errorf("content %q", acc.Choices[0].Message.Content)
			}
		}},
	}
	for _, tc := range tests {
		for _, iu := range []bool{false, true} {
			name := strings.TrimSuffix(tc.file, ".sse")
			if iu {
				name += "_usage"
			}
			t.Run(name, func(t *testing.T) {
				src, err := os.ReadFile(filepath.Join("testdata", tc.file))
				if err != nil {
					t.Fatal(err)
				}
				d := Translator{}.NewDecoder(streamReq(iu), 200, "text/event-stream; charset=utf-8")
				if d.ContentType() != "text/event-stream" || d.Status() != 200 {
					t.Fatalf("%s %d", d.ContentType(), d.Status())
				}
				whole := decodeAll(t, d, src, len(src))
				golden(t, name+".sse", whole)
				acc, chunks, errEvent, done := sdkChunks(t, whole)
				tc.check(t, acc, d.Result(), errEvent, done)
				roles, usageChunks := 0, 0
				for _, c := range chunks {
					if len(c.Choices) > 0 && c.Choices[0].Delta.Role != "" {
						roles++
					}
					if len(c.Choices) == 0 {
						usageChunks++
						if c.Usage.PromptTokens != d.Result().Usage.InputTokens || c.Usage.PromptTokensDetails.CachedTokens != d.Result().Usage.CachedTokens {
							t.Errorf("usage chunk %+v vs %+v", c.Usage, d.Result().Usage)
						}
					}
				}
				if roles != 1 {
					t.Errorf("%d role chunks", roles)
				}
				if want := map[bool]int{true: 1}[iu && done]; usageChunks != want {
					t.Errorf("%d usage chunks, want %d", usageChunks, want)
				}
				for i := 1; i < len(src); i++ {
					d := Translator{}.NewDecoder(streamReq(iu), 200, "text/event-stream")
					if got := decodeSplitAt(t, d, src, i); !bytes.Equal(got, whole) {
						t.Fatalf("split at %d differs:\n%s", i, got)
					}
				}
				d = Translator{}.NewDecoder(streamReq(iu), 200, "text/event-stream")
				if got := decodeAll(t, d, src, 1); !bytes.Equal(got, whole) {
					t.Fatalf("byte by byte differs:\n%s", got)
				}
			})
		}
	}
}

// TestStreamTruncated cuts the stream at every byte before message_stop:
// never Completed, never [DONE], no error invented.
func TestStreamTruncated(t *testing.T) {
	src, _ := os.ReadFile("testdata/stream_tools.sse")
	end := bytes.Index(src, []byte("event: message_stop"))
	for i := 0; i < end; i++ {
		d := Translator{}.NewDecoder(streamReq(true), 200, "text/event-stream")
		out := decodeAll(t, d, src[:i], max(i, 1))
		if r := d.Result(); r.Completed || r.Err != nil || bytes.Contains(out, []byte("[DONE]")) {
			t.Fatalf("cut at %d: %+v\n%s", i, r, out)
		}
	}
	// The last event without its blank line still completes the stream.
	d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
	out := decodeAll(t, d, bytes.TrimRight(src, "\n"), 7)
	if !d.Result().Completed || !bytes.HasSuffix(out, []byte("data: [DONE]\n\n")) {
		t.Fatalf("unterminated last event: %s", out)
	}
}

func TestStreamOddOrders(t *testing.T) {
	// A second message_start, unknown events and signature deltas change
	// nothing; events after message_stop are ignored.
	src := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n" +
		"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"model\":\"m2\"}}\n\n" +
		"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n" +
		"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n" +
		"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"xx\"}}\n\n" +
		"data: {\"type\":\"future_event\"}\n\n" +
		"data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"Hi\"}}\n\n" +
		"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":2}}\n\n" +
		"data: {\"type\":\"message_stop\"}\n\n" +
		"data: {\"type\":\"message_stop\"}\n\n" +
		"data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n"
	d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
	out := decodeAll(t, d, []byte(src), 13)
	acc, chunks, _, done := sdkChunks(t, out)
	if acc.Choices[0].Message.Content != "Hi" || acc.Choices[0].FinishReason != "length" || !done || len(chunks) != 4 ||
		gjson.Get(chunks[1].RawJSON(), "choices.0.delta.reasoning_content").Str != "hmm" {
		t.Fatalf("%s", out)
	}
	if bytes.Count(out, []byte("[DONE]")) != 1 || bytes.Contains(out, []byte("msg_2")) {
		t.Fatalf("%s", out)
	}
}

func TestMessageFixtures(t *testing.T) {
	for _, name := range []string{"message", "message_tools", "message_thinking"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var whole []byte
			for _, step := range []int{len(src), 1, 17} {
				d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
				out := decodeAll(t, d, src, step)
				if whole == nil {
					whole = out
				} else if !bytes.Equal(out, whole) {
					t.Fatalf("step %d differs", step)
				}
				if !d.Result().Completed {
					t.Fatal("not completed")
				}
			}
			golden(t, name+".json", whole)
			var c openai.ChatCompletion
			if err := json.Unmarshal(whole, &c); err != nil {
				t.Fatal(err)
			}
			switch name {
			case "message":
				if c.Choices[0].Message.Content != "Hi! My name is Claude. \"Quoted\"\nline" || c.Choices[0].FinishReason != "stop" {
					t.Errorf("%+v", c.Choices[0])
				}
				// 2095 + 4000 read + 2051 written; only the reads are "cached".
				if c.Usage.PromptTokens != 8146 || c.Usage.PromptTokensDetails.CachedTokens != 4000 || c.Usage.CompletionTokens != 503 || c.Usage.TotalTokens != 8649 {
					t.Errorf("usage %+v", c.Usage)
				}
			case "message_thinking":
				m := c.Choices[0].Message
				if m.Content != "Yes, there are infinitely many prime numbers." || m.JSON.ExtraFields["reasoning_content"].Raw() != `"To approach this, let's think about what we know about prime numbers...\n\"quoted\""` {
					t.Errorf("%s", m.RawJSON())
				}
			case "message_tools":
				m := c.Choices[0].Message
				if len(m.ToolCalls) != 2 || m.ToolCalls[0].Function.Arguments != `{"location": "San Francisco, CA", "unit": "celsius"}` || m.ToolCalls[1].ID != "toolu_01B09q90qw90lq917835lq9" || c.Choices[0].FinishReason != "tool_calls" {
					t.Errorf("%+v", m)
				}
			}
		})
	}
}

func TestMessageJSONModeAndStopReasons(t *testing.T) {
	msg := func(stop, content string) []byte {
		return []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[` + content + `],"stop_reason":"` + stop + `","usage":{"input_tokens":1,"output_tokens":2}}`)
	}
	tests := []struct {
		stop, content, wantFinish, wantContent string
	}{
		{"tool_use", `{"type":"text","text":"Here:"},{"type":"tool_use","id":"t","name":"llmux_json_response","input":{"a": [1, 2]}}`, "stop", `{"a": [1, 2]}`},
		{"max_tokens", `{"type":"text","text":"cut"}`, "length", "cut"},
		{"stop_sequence", `{"type":"text","text":"x"}`, "stop", "x"},
		{"refusal", ``, "content_filter", ""},
		{"end_turn", `{"type":"thinking","thinking":"t","signature":"s"},{"type":"text","text":"y"}`, "stop", "y"},
	}
	for _, tc := range tests {
		d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
		out := decodeAll(t, d, msg(tc.stop, tc.content), 1000)
		var c openai.ChatCompletion
		if err := json.Unmarshal(out, &c); err != nil {
			t.Fatal(err)
		}
		if c.Choices[0].FinishReason != tc.wantFinish || c.Choices[0].Message.Content != tc.wantContent {
			t.Errorf("%s: %s", tc.stop, out)
		}
	}
}

// TestErrors: Anthropic's error bodies (https://docs.anthropic.com/en/api/errors)
// become OpenAI-shaped errors with the gateway's class.
func TestErrors(t *testing.T) {
	body := func(typ, msg string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`
	}
	tests := []struct {
		status     int
		body       string
		code       translate.Code
		client     int
		openaiCode string
	}{
		{400, body("invalid_request_error", "max_tokens: Field required"), translate.CodeInvalidRequest, 400, "invalid_request"},
		{400, body("invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"), translate.CodeContextLengthExceeded, 400, "context_length_exceeded"},
		{401, body("authentication_error", "invalid x-api-key"), translate.CodeAuthentication, 401, "invalid_api_key"},
		{402, body("billing_error", "Your credit balance is too low"), translate.CodeQuotaExhausted, 429, "insufficient_quota"},
		{403, body("permission_error", "Your API key does not have permission"), translate.CodePermissionDenied, 403, "permission_denied"},
		{404, body("not_found_error", "model: claude-9"), translate.CodeNotFound, 404, "model_not_found"},
		{413, body("request_too_large", "Request exceeds the maximum allowed number of bytes."), translate.CodeRequestTooLarge, 413, "request_too_large"},
		{429, body("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"), translate.CodeRateLimited, 429, "rate_limit_exceeded"},
		{500, body("api_error", "Internal server error"), translate.CodeUpstreamError, 500, "server_error"},
		{503, body("api_error", "Service unavailable"), translate.CodeOverloaded, 503, "overloaded"},
		{529, body("rate_limit_error", "Number of requests has exceeded your rate limit"), translate.CodeRateLimited, 429, "rate_limit_exceeded"},
		{520, body("something_new", "?"), translate.CodeUpstreamError, 500, "server_error"},
		// Claude on Vertex: Google's front end answers quotas itself.
		{429, `{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}`, translate.CodeRateLimited, 429, "rate_limit_exceeded"},
		{529, body("overloaded_error", "Overloaded"), translate.CodeOverloaded, 503, "overloaded"},
		{504, body("timeout_error", "Request timed out"), translate.CodeTimeout, 504, "timeout"},
		{503, "upstream connect error or disconnect/reset before headers", translate.CodeUpstreamUnavailable, 503, "upstream_unavailable"},
		{502, "<html>bad gateway</html>", translate.CodeUpstreamProtocol, 502, "upstream_protocol"},
	}
	for _, tc := range tests {
		d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, tc.status, "application/json")
		// Status() is decided from the status alone; the body's class
		// decides the client's status (e.HTTPStatus) once it is read.
		if st := tc.status; d.Status() != st && (st != 529 || d.Status() != 503) || d.ContentType() != "application/json" {
			t.Errorf("%d: client status %d, %s", tc.status, d.Status(), d.ContentType())
		}
		out := decodeAll(t, d, []byte(tc.body), 5)
		e := d.Result().Err
		if e == nil || e.Code != tc.code || e.HTTPStatus() != tc.client {
			t.Errorf("%d %s: %+v", tc.status, tc.body, e)
			continue
		}
		var oe struct {
			Error struct{ Message, Type, Code string }
		}
		if err := json.Unmarshal(out, &oe); err != nil || oe.Error.Code != tc.openaiCode || oe.Error.Message == "" || oe.Error.Type == "" {
			t.Errorf("%d: body %s (%v)", tc.status, out, err)
		}
	}
}

func TestInvalidBodies(t *testing.T) {
	d := Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
	decodeAll(t, d, []byte(`{"id":`), 3)
	if e := d.Result().Err; e == nil || e.Code != translate.CodeUpstreamProtocol || d.Result().Completed {
		t.Errorf("%+v", d.Result())
	}
	d = Translator{}.NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
	big := append([]byte("data: "), bytes.Repeat([]byte("x"), 5<<20)...)
	if _, err := d.Decode(nil, big, false); err != nil {
		t.Fatal(err) // the first push is held without copying
	}
	if _, err := d.Decode(nil, []byte("x"), false); err == nil || d.Result().Err == nil {
		t.Error("an oversized event must fail the stream")
	}
}

func BenchmarkStreamChunk(b *testing.B) {
	chunk := []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n")
	d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
	start := []byte("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n")
	out, _ := d.Decode(nil, start, false)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}

func benchEvent(b *testing.B, ev string) {
	d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
	start := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
	out, _ := d.Decode(nil, []byte(start), false)
	chunk := []byte(ev)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}

func BenchmarkStreamToolChunk(b *testing.B) {
	benchEvent(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\": \\\"San Fra\"}}\n\n")
}

func BenchmarkStreamEscapedText(b *testing.B) {
	benchEvent(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"line one\\nline \\\"two\\\" \\u00e9\"}}\n\n")
}

// TestStreamWithoutMessageStart: a stream whose first event is not
// message_start (a relay that dropped it) still maps the JSON response
// tool's block, whatever its index, to the message content.
func TestStreamWithoutMessageStart(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"response tool at index 1",
			"data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"" + ResponseTool + "\",\"input\":{}}}\n\n" +
				"data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n" +
				"data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n" +
				"data: {\"type\":\"content_block_stop\",\"index\":1}\n\n" +
				"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":2}}\n\n" +
				"data: {\"type\":\"message_stop\"}\n\n",
			`{"a":1}`},
		{"response tool at index 0, split deltas",
			"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"" + ResponseTool + "\",\"input\":{}}}\n\n" +
				"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n" +
				"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n" +
				"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
				"data: {\"type\":\"message_stop\"}\n\n",
			`{"a":1}`},
		{"response tool with its input in the start",
			"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"" + ResponseTool + "\",\"input\":{\"a\":1}}}\n\n" +
				"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
				"data: {\"type\":\"message_stop\"}\n\n",
			`{"a":1}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
			out := decodeAll(t, d, []byte(tc.src), len(tc.src))
			var content strings.Builder
			for _, ev := range strings.Split(string(out), "\n\n") {
				data, _ := strings.CutPrefix(ev, "data: ")
				var c struct {
					Choices []struct {
						Delta struct{ Content string }
					}
				}
				if data == "" || data == "[DONE]" {
					continue
				}
				if err := json.Unmarshal([]byte(data), &c); err != nil {
					t.Fatalf("chunk %q: %v", data, err)
				}
				for _, ch := range c.Choices {
					content.WriteString(ch.Delta.Content)
				}
			}
			if content.String() != tc.want || !bytes.HasSuffix(out, []byte("data: [DONE]\n\n")) {
				t.Fatalf("content %q, want %q:\n%s", content.String(), tc.want, out)
			}
		})
	}
}

// TestStreamThinking: thinking deltas become reasoning_content deltas, in
// order, split anywhere in the stream; the signature and the redacted
// block are not sent.
func TestStreamThinking(t *testing.T) {
	src, err := os.ReadFile("testdata/stream_thinking.sse")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []int{len(src), 1, 5, 64} {
		d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
		out := decodeAll(t, d, src, step)
		_, chunks, _, _ := sdkChunks(t, out)
		var reasoning, order strings.Builder
		for _, c := range chunks {
			raw := c.RawJSON()
			if r := gjson.Get(raw, "choices.0.delta.reasoning_content"); r.Exists() {
				reasoning.WriteString(r.Str)
				order.WriteByte('r')
			}
			if gjson.Get(raw, "choices.0.delta.content").Str != "" {
				order.WriteByte('c')
			}
		}
		if reasoning.String() != "Let me solve this step by step:\n\n1. First break down 27 * 453\n2. 453 = 400 + 50 + 3 \"é\"" || order.String() != "rrc" {
			t.Fatalf("step %d: reasoning %q order %q", step, reasoning.String(), order.String())
		}
		if bytes.Contains(out, []byte("EqQBCgIY")) || bytes.Contains(out, []byte("EmwKAhgB")) || !d.Result().FirstContent {
			t.Fatalf("step %d: %s", step, out)
		}
	}
}

// TestVertexRetryInfo: Google's front end in front of Claude on Vertex
// answers quotas with google.rpc.Status; its RetryInfo is kept.
func TestVertexRetryInfo(t *testing.T) {
	e := ParseError(429, []byte(`{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}`))
	if e.Code != translate.CodeRateLimited || e.RetryAfter != 7*time.Second || e.HTTPStatus() != 429 {
		t.Fatalf("%+v", e)
	}
}

// TestInbandErrorTypes: an in-band error event is classed by its type; an
// unknown type is the provider failing (upstream_error), not a gateway bug.
func TestInbandErrorTypes(t *testing.T) {
	for typ, want := range map[string]translate.Code{
		"overloaded_error": translate.CodeOverloaded, "api_error": translate.CodeUpstreamError,
		"rate_limit_error": translate.CodeRateLimited, "brand_new_error": translate.CodeUpstreamError,
	} {
		e := ParseError(0, []byte(`{"type":"error","error":{"type":"`+typ+`","message":"m"}}`))
		if e.Code != want || e.HTTPStatus() != want.Status() {
			t.Errorf("%s: %+v", typ, e)
		}
	}
}

// TestStreamResponseToolFirstContent: the structured-output block's start
// is not content (an error before its JSON can still fail over); its
// first JSON is, and so is a real tool call's start.
func TestStreamResponseToolFirstContent(t *testing.T) {
	start := func(name string) string {
		return "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"" + name + "\",\"input\":{}}}\n\n"
	}
	delta := "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n"
	tests := []struct {
		name, src string
		want      bool
	}{
		{"response tool start", start(ResponseTool), false},
		{"response tool JSON", start(ResponseTool) + delta, true},
		{"tool call start", start("lookup"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Translator{}.NewDecoder(streamReq(false), 200, "text/event-stream")
			src := "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n" + tc.src
			out, err := d.Decode(nil, []byte(src), false)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Result().FirstContent; got != tc.want {
				t.Errorf("FirstContent %v, want %v\n%s", got, tc.want, out)
			}
		})
	}
}
