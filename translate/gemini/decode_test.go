package gemini

import (
	"time"

	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func init() { nowUnix = func() int64 { return 1700000000 } }

func jsonValid(b []byte) bool { return json.Valid(b) }

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeAll(t testing.TB, d translate.Decoder, chunks ...[]byte) string {
	t.Helper()
	var out []byte
	for i, c := range chunks {
		var err error
		out, err = d.Decode(out, c, i == len(chunks)-1)
		if err != nil {
			t.Fatal(err)
		}
	}
	return string(out)
}

func newChat(stream, includeUsage bool, n int, status int, ct string) translate.Decoder {
	req := &translate.Request{Op: translate.OpChat, Stream: stream, IncludeUsage: includeUsage, State: &state{n: n, model: "cfg-model"}}
	return Translator{}.NewDecoder(req, status, ct)
}

func TestDecodeText(t *testing.T) {
	d := newChat(false, false, 1, 200, "application/json")
	out := decodeAll(t, d, fixture(t, "generate_text.json"))
	want := `{"id":"chatcmpl-mAitaLmkHPPlz7IPvtfUqQ4","object":"chat.completion","created":1700000000,"model":"gemini-2.0-flash","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time, a small robot found a \"magic\" backpack.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":13,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`
	if out != want {
		t.Errorf("\n got %s\nwant %s", out, want)
	}
	r := d.Result()
	if !r.Completed || r.Model != "gemini-2.0-flash" || r.FinishReason != "stop" || r.Usage.InputTokens != 8 || r.Usage.OutputTokens != 13 || r.Err != nil {
		t.Errorf("result %+v", r)
	}
}

func TestDecodeParallelTools(t *testing.T) {
	d := newChat(false, false, 1, 200, "application/json")
	out := decodeAll(t, d, fixture(t, "generate_tools.json"))
	calls := gjson.Get(out, "choices.0.message.tool_calls")
	if n := len(calls.Array()); n != 3 {
		t.Fatalf("%d tool calls: %s", n, out)
	}
	if calls.Get("1.id").Str != "call_1" || calls.Get("1.function.name").Str != "start_music" ||
		!jsonEqual(calls.Get("1.function.arguments").Str, `{"energetic":true,"loud":true}`) {
		t.Errorf("second call %s", calls.Get("1").Raw)
	}
	if gjson.Get(out, "choices.0.finish_reason").Str != "tool_calls" || gjson.Get(out, "choices.0.message.content").Type != gjson.Null {
		t.Errorf("out %s", out)
	}
}

func TestDecodeThoughtsAndCache(t *testing.T) {
	d := newChat(false, false, 1, 200, "application/json")
	out := decodeAll(t, d, fixture(t, "usage_thoughts.json"))
	if c := gjson.Get(out, "choices.0.message.content").Str; c != "The answer is 17." {
		t.Errorf("content %q (thoughts must be excluded)", c)
	}
	if r := gjson.Get(out, "choices.0.message.reasoning_content"); r.Str != "Let me think about primes first." {
		t.Errorf("reasoning_content %s", r.Raw)
	}
	u := d.Result().Usage
	if u.InputTokens != 2100 || u.CachedTokens != 2048 || u.OutputTokens != 306 || u.ReasoningTokens != 300 {
		t.Errorf("usage %+v", u)
	}
	if !jsonEqual(gjson.Get(out, "usage").Raw, `{"prompt_tokens":2100,"completion_tokens":306,"total_tokens":2406,"prompt_tokens_details":{"cached_tokens":2048},"completion_tokens_details":{"reasoning_tokens":300}}`) {
		t.Errorf("usage %s", gjson.Get(out, "usage").Raw)
	}
}

func TestDecodeBlocked(t *testing.T) {
	d := newChat(false, false, 1, 200, "application/json")
	out := decodeAll(t, d, fixture(t, "blocked.json"))
	if d.Result().Err == nil || d.Result().Err.Code != translate.CodeContentFiltered || gjson.Get(out, "error.code").Str != "content_filter" {
		t.Errorf("out %s err %v", out, d.Result().Err)
	}
	s := newChat(true, false, 1, 200, "text/event-stream")
	var compact bytes.Buffer
	_ = json.Compact(&compact, fixture(t, "blocked.json"))
	out = decodeAll(t, s, []byte("data: "), append(compact.Bytes(), "\r\n\r\n"...))
	if !strings.HasPrefix(out, `data: {"error":`) || strings.Contains(out, "[DONE]") || s.Result().Completed {
		t.Errorf("stream out %q", out)
	}
}

func TestDecodeMalformedCall(t *testing.T) {
	body := `{"candidates":[{"content":{"parts":[]},"finishReason":"MALFORMED_FUNCTION_CALL","index":0}]}`
	d := newChat(false, false, 1, 200, "application/json")
	out := decodeAll(t, d, []byte(body))
	if d.Result().Err == nil || d.Result().Err.Code != translate.CodeUpstreamError || gjson.Get(out, "error.code").Str != "malformed_function_call" {
		t.Errorf("out %s", out)
	}
}

// streamGolden decodes whole fixtures in one chunk.
func TestStreamText(t *testing.T) {
	d := newChat(true, true, 1, 200, "text/event-stream")
	out := decodeAll(t, d, fixture(t, "stream_text.sse"))
	want := `data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.0-flash","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.0-flash","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.0-flash","choices":[{"index":0,"delta":{"content":" quick brown fox\n"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.0-flash","choices":[{"index":0,"delta":{"content":" jumps."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.0-flash","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000000,"model":"gemini-2.0-flash","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

`
	if out != want {
		t.Errorf("\n got %s\nwant %s", out, want)
	}
	r := d.Result()
	if !r.Completed || !r.FirstContent || r.FinishReason != "stop" || r.Usage.OutputTokens != 6 {
		t.Errorf("result %+v", r)
	}
	// Without include_usage: no usage chunk, usage still known.
	d = newChat(true, false, 1, 200, "text/event-stream")
	out = decodeAll(t, d, fixture(t, "stream_text.sse"))
	if strings.Contains(out, `"usage"`) || !strings.HasSuffix(out, "data: [DONE]\n\n") || d.Result().Usage.InputTokens != 10 {
		t.Errorf("no-usage stream %s", out)
	}
}

func TestStreamTools(t *testing.T) {
	d := newChat(true, false, 1, 200, "text/event-stream")
	out := decodeAll(t, d, fixture(t, "stream_tools.sse"))
	var ids, idx []string
	for _, ev := range strings.Split(out, "\n\n") {
		data := strings.TrimPrefix(ev, "data: ")
		tc := gjson.Get(data, "choices.0.delta.tool_calls.0")
		if tc.Exists() {
			ids = append(ids, tc.Get("id").Str)
			idx = append(idx, tc.Get("index").Raw)
			if !jsonEqual(tc.Get("function.arguments").Str, `{"location":"`+map[string]string{"0": "Paris", "1": "Tokyo"}[tc.Get("index").Raw]+`"}`) {
				t.Errorf("arguments %s", tc.Raw)
			}
		}
	}
	if strings.Join(ids, ",") != "call_0,call_1" || strings.Join(idx, ",") != "0,1" {
		t.Errorf("ids %v indexes %v", ids, idx)
	}
	if d.Result().FinishReason != "tool_calls" || strings.Count(out, `"finish_reason":"tool_calls"`) != 1 {
		t.Errorf("finish: %s", out)
	}
}

func TestStreamSafety(t *testing.T) {
	d := newChat(true, false, 1, 200, "text/event-stream")
	out := decodeAll(t, d, fixture(t, "stream_safety.sse"))
	if d.Result().FinishReason != "content_filter" || !d.Result().Completed || strings.Count(out, `"finish_reason":"content_filter"`) != 1 {
		t.Errorf("out %s", out)
	}
}

func TestStreamInbandError(t *testing.T) {
	d := newChat(true, false, 1, 200, "text/event-stream")
	out := decodeAll(t, d, fixture(t, "stream_error.sse"))
	r := d.Result()
	if r.Err == nil || r.Err.Code != translate.CodeOverloaded || r.Completed || strings.Contains(out, "[DONE]") {
		t.Fatalf("result %+v out %s", r, out)
	}
	last := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "data: "):])
	if !jsonEqual(strings.TrimPrefix(last, "data: "), `{"error":{"message":"The model is overloaded. Please try again later.","type":"server_error","param":null,"code":"overloaded"}}`) {
		t.Errorf("error event %s", last)
	}
}

func TestStreamTruncated(t *testing.T) {
	full := fixture(t, "stream_text.sse")
	cut := full[:bytes.LastIndex(full, []byte("data: "))+40]
	d := newChat(true, true, 1, 200, "text/event-stream")
	out := decodeAll(t, d, cut)
	if d.Result().Completed || strings.Contains(out, "[DONE]") || strings.Contains(out, "finish_reason\":\"") {
		t.Errorf("truncated stream completed: %s", out)
	}
}

// TestStreamEverySplit feeds each stream fixture in two chunks split at
// every byte and in one-byte chunks: the output must not change.
func TestStreamEverySplit(t *testing.T) {
	for _, name := range []string{"stream_text.sse", "stream_tools.sse", "stream_safety.sse", "stream_error.sse"} {
		src := fixture(t, name)
		want := decodeAll(t, newChat(true, true, 1, 200, "text/event-stream"), src)
		for i := 0; i <= len(src); i++ {
			got := decodeAll(t, newChat(true, true, 1, 200, "text/event-stream"), bytes.Clone(src[:i]), bytes.Clone(src[i:]))
			if got != want {
				t.Fatalf("%s split at %d:\n got %s\nwant %s", name, i, got, want)
			}
		}
		d := newChat(true, true, 1, 200, "text/event-stream")
		var out []byte
		for i := range src {
			out, _ = d.Decode(out, []byte{src[i]}, false)
		}
		out, _ = d.Decode(out, nil, true)
		if string(out) != want {
			t.Fatalf("%s byte by byte differs", name)
		}
	}
}

func TestStreamTwoCandidates(t *testing.T) {
	src := "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"index\":0},{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"index\":1}]}\n\n" +
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"c\"}]},\"finishReason\":\"STOP\",\"index\":0}]}\n\n" +
		"data: {\"candidates\":[{\"content\":{\"parts\":[]},\"finishReason\":\"MAX_TOKENS\",\"index\":1}],\"usageMetadata\":{\"promptTokenCount\":1,\"candidatesTokenCount\":3}}\n\n"
	d := newChat(true, false, 2, 200, "text/event-stream")
	out := decodeAll(t, d, []byte(src))
	if strings.Count(out, `"role":"assistant"`) != 2 || strings.Count(out, "[DONE]") != 1 || !strings.Contains(out, `"index":1,"delta":{},"logprobs":null,"finish_reason":"length"`) {
		t.Errorf("out %s", out)
	}
	if !strings.HasSuffix(out, "data: [DONE]\n\n") || !d.Result().Completed {
		t.Error("not completed")
	}
}

func TestEmbeddingsDecode(t *testing.T) {
	req := &translate.Request{Op: translate.OpEmbeddings, State: &state{model: "gemini-embedding-001", inputTokens: 5}}
	d := Translator{}.NewDecoder(req, 200, "application/json")
	out := decodeAll(t, d, fixture(t, "embed_batch.json"))
	want := `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.013168523, -0.008711934, -0.046782676]},{"object":"embedding","index":1,"embedding":[0.5, -0.25, 0.125]}],"model":"gemini-embedding-001","usage":{"prompt_tokens":5,"total_tokens":5}}`
	if out != want {
		t.Errorf("\n got %s\nwant %s", out, want)
	}
	req = &translate.Request{Op: translate.OpEmbeddings, State: &state{model: "text-embedding-005", base64: true}}
	d = Translator{Vertex: true}.NewDecoder(req, 200, "application/json")
	out = decodeAll(t, d, fixture(t, "vertex_predict.json"))
	if gjson.Get(out, "usage.prompt_tokens").Int() != 10 || d.Result().Usage.InputTokens != 10 {
		t.Errorf("vertex usage: %s", out)
	}
	raw, err := base64.StdEncoding.DecodeString(gjson.Get(out, "data.1.embedding").Str)
	if err != nil || len(raw) != 12 || !bytes.Equal(raw[:4], []byte{0, 0, 0x80, 0x3f}) {
		t.Errorf("base64 embedding %v %v", raw, err)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		status int
		body   string
		code   translate.Code
		client int
	}{
		{400, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`, translate.CodeAuthentication, 401},
		{400, `{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}`, translate.CodeContextLengthExceeded, 400},
		{400, `{"error":{"code":400,"message":"Invalid JSON payload received. Unknown name \"foo\": Cannot find field.","status":"INVALID_ARGUMENT"}}`, translate.CodeInvalidRequest, 400},
		{401, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`, translate.CodeAuthentication, 401},
		{403, `{"error":{"code":403,"message":"Permission denied on resource project p.","status":"PERMISSION_DENIED"}}`, translate.CodePermissionDenied, 403},
		{404, `{"error":{"code":404,"message":"models/nope is not found for API version v1beta","status":"NOT_FOUND"}}`, translate.CodeNotFound, 404},
		{429, `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]}]}}`, translate.CodeRateLimited, 429},
		{429, `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}`, translate.CodeQuotaExhausted, 429},
		{429, `{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED"}}`, translate.CodeRateLimited, 429},
		{503, `{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`, translate.CodeOverloaded, 503},
		{503, `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`, translate.CodeOverloaded, 503},
		{504, `{"error":{"code":504,"message":"Deadline exceeded","status":"DEADLINE_EXCEEDED"}}`, translate.CodeTimeout, 504},
		{500, `{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}`, translate.CodeUpstreamError, 500},
		{500, `[{"error":{"code":500,"message":"x","status":"INTERNAL"}}]`, translate.CodeUpstreamError, 500},
		{503, `upstream connect error or disconnect/reset before headers`, translate.CodeUpstreamUnavailable, 503},
		{502, `<html>bad gateway</html>`, translate.CodeUpstreamProtocol, 502},
	}
	for _, c := range cases {
		e := ParseError(c.status, []byte(c.body))
		if e.Code != c.code || e.HTTPStatus() != c.client {
			t.Errorf("%d %s: %s/%d, want %s/%d", c.status, c.body, e.Code, e.HTTPStatus(), c.code, c.client)
		}
		d := newChat(false, false, 1, c.status, "application/json")
		out := decodeAll(t, d, []byte(c.body))
		if gjson.Get(out, "error.type").Str == "" || d.Result().Err == nil || d.Result().Err.Code != c.code {
			t.Errorf("decoder: %s", out)
		}
	}
}

// FuzzStream: any bytes, split anywhere, never panic, and the output is
// a sequence of well-formed SSE data events.
func FuzzStream(f *testing.F) {
	for _, n := range []string{"stream_text.sse", "stream_tools.sse", "stream_safety.sse", "stream_error.sse", "stream_thoughts.sse"} {
		b, _ := os.ReadFile("testdata/" + n)
		f.Add(b, uint16(len(b)/2))
	}
	f.Fuzz(func(t *testing.T, src []byte, split uint16) {
		at := int(split) % (len(src) + 1)
		d := newChat(true, true, 1, 200, "text/event-stream")
		out, _ := d.Decode(nil, src[:at], false)
		out, _ = d.Decode(out, src[at:], true)
		for _, ev := range strings.Split(strings.TrimSuffix(string(out), "\n\n"), "\n\n") {
			if ev == "" {
				continue
			}
			data, ok := strings.CutPrefix(ev, "data: ")
			if !ok || (data != "[DONE]" && !json.Valid([]byte(data))) {
				t.Fatalf("bad event %q", ev)
			}
		}
	})
}

// FuzzParseError: never panics, always yields a known class and a message.
func FuzzParseError(f *testing.F) {
	f.Add(429, []byte(`{"error":{"code":429,"message":"quota per day","status":"RESOURCE_EXHAUSTED"}}`))
	f.Add(400, []byte(`[{"error":{"details":[{"reason":"API_KEY_INVALID"}]}}]`))
	f.Add(0, []byte(`{"error":{"code":"x"}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := ParseError(status, body)
		if e == nil || !e.Code.Known() || e.Message == "" || !json.Valid(e.AppendJSON(nil)) {
			t.Fatalf("bad error %+v", e)
		}
	})
}

// BenchmarkStreamChunk decodes one Gemini text event and encodes its
// OpenAI chunk (compare translate/openai's BenchmarkStreamChunk).
func BenchmarkStreamChunk(b *testing.B) {
	chunk := []byte(`data: {"candidates": [{"content": {"parts": [{"text": " world"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 10,"candidatesTokenCount": 2,"totalTokenCount": 12},"modelVersion": "gemini-2.5-flash","responseId": "mAitaLmkHPPlz7IPvtfUqQ4"}` + "\r\n\r\n")
	d := newChat(true, false, 1, 200, "text/event-stream")
	out, _ := d.Decode(nil, chunk, false) // the role chunk and prefix
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}

// BenchmarkStreamToolCall is BenchmarkStreamChunk for a functionCall part.
func BenchmarkStreamToolCall(b *testing.B) {
	chunk := []byte(`data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "get_weather","args": {"location": "Paris","unit": "celsius"}}}],"role": "model"},"index": 0}],"modelVersion": "gemini-2.5-flash","responseId": "r"}` + "\r\n\r\n")
	d := newChat(true, false, 1, 200, "text/event-stream")
	out, _ := d.Decode(nil, chunk, false)
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}

// TestEmbeddingsErrorKeepsDst: Decode appends to dst; an error body must
// not discard what the caller already had there.
func TestEmbeddingsErrorKeepsDst(t *testing.T) {
	tests := []struct{ name, body string }{
		{"no values", `{"embeddings":[{"values":[1,2]},{"nothing":true}]}`},
		{"no embeddings", `{"other":1}`},
		{"invalid JSON", `{"embeddings":`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &translate.Request{Op: translate.OpEmbeddings, State: &state{model: "gemini-embedding-001"}}
			d := Translator{}.NewDecoder(req, 200, "application/json")
			out, err := d.Decode([]byte("PREFIX"), []byte(tc.body), true)
			if err != nil {
				t.Fatal(err)
			}
			rest, ok := strings.CutPrefix(string(out), "PREFIX")
			if !ok || !jsonValid([]byte(rest)) || d.Result().Err == nil {
				t.Fatalf("%q (err %v)", out, d.Result().Err)
			}
		})
	}
}

// TestStreamThoughts: thought parts become reasoning_content deltas, the
// answer parts content deltas, in order, wherever the stream is split;
// thought signatures are not sent; thoughtsTokenCount is the reasoning
// usage.
func TestStreamThoughts(t *testing.T) {
	src := fixture(t, "stream_thoughts.sse")
	for _, at := range []int{0, 1, 57, len(src) / 2, len(src) - 3} {
		d := newChat(true, true, 1, 200, "text/event-stream")
		out := decodeAll(t, d, src[:at], src[at:])
		var reasoning, content, order strings.Builder
		for _, ev := range strings.Split(strings.TrimSuffix(out, "\n\n"), "\n\n") {
			data := strings.TrimPrefix(ev, "data: ")
			if r := gjson.Get(data, "choices.0.delta.reasoning_content"); r.Exists() {
				reasoning.WriteString(r.Str)
				order.WriteByte('r')
			}
			if c := gjson.Get(data, "choices.0.delta.content"); c.Str != "" {
				content.WriteString(c.Str)
				order.WriteByte('c')
			}
		}
		if reasoning.String() != "**Counting primes**\n\nI start with small primes: 2, 3, \"5\" \u00e9." || content.String() != "There are 4 primes under 10." || order.String() != "rrcc" {
			t.Fatalf("split %d: reasoning %q content %q order %q", at, reasoning.String(), content.String(), order.String())
		}
		u := d.Result().Usage
		if strings.Contains(out, "CiQB0e2K") || u.ReasoningTokens != 40 || u.OutputTokens != 48 || !d.Result().Completed {
			t.Fatalf("split %d: usage %+v\n%s", at, u, out)
		}
		if gjson.Get(out[strings.LastIndex(out, "data: {"):], "usage.completion_tokens_details.reasoning_tokens").Int() != 40 {
			t.Fatalf("split %d: usage chunk %s", at, out)
		}
	}
}

// TestRetryInfoBecomesRetryAfter: the RetryInfo detail of a Gemini 429
// (https://ai.google.dev/gemini-api/docs/troubleshooting) is what the
// processor turns into the client's retry-after.
func TestRetryInfoBecomesRetryAfter(t *testing.T) {
	body := `{"error":{"code":429,"message":"You exceeded your current quota.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"12s"}]}}`
	d := newChat(false, false, 1, 429, "application/json")
	out := decodeAll(t, d, []byte(body))
	e := d.Result().Err
	if e == nil || e.Code != translate.CodeRateLimited || e.RetryAfter != 12*time.Second || e.HTTPStatus() != 429 {
		t.Fatalf("%+v", e)
	}
	if gjson.Get(out, "error.type").Str != "rate_limit_error" || gjson.Get(out, "error.code").Str != "rate_limit_exceeded" {
		t.Errorf("body %s", out)
	}
}
