package bedrock

import (
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
	"github.com/llmux/llmux/translate/eventstream"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

func init() {
	nowUnix = func() int64 { return 1741570283 }
	newID = func() string { return "chatcmpl-bedrock-test" }
}

const testModel = "anthropic.claude-3-5-sonnet-20240620-v1:0"

// encodeEvents builds a real binary event stream from a .events file: one
// message per line, "event <type> <json>" or "exception <type> <json>".
func encodeEvents(t testing.TB, path string) []byte {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, line := range strings.Split(strings.TrimSpace(string(src)), "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		typ, payload, _ := strings.Cut(rest, " ")
		if !json.Valid([]byte(payload)) {
			t.Fatalf("%s: invalid JSON %s", path, payload)
		}
		switch kind {
		case "event":
			out = eventstream.Event(out, typ, []byte(payload))
		case "exception":
			out = eventstream.Exception(out, typ, []byte(payload))
		default:
			t.Fatalf("%s: bad line %q", path, line)
		}
	}
	return out
}

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

func chatReq(stream, includeUsage, jsonMode bool) *translate.Request {
	return &translate.Request{Op: translate.OpChat, Stream: stream, IncludeUsage: includeUsage,
		State: &state{op: translate.OpChat, model: testModel, jsonMode: jsonMode}}
}

// sdkChunks parses an OpenAI SSE body with the official SDK's types and
// accumulates it.
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
		if done || errEvent != "" {
			t.Fatalf("event after the end: %q", ev)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		if strings.HasPrefix(data, `{"error"`) {
			errEvent = data
			continue
		}
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		if c.Object != "chat.completion.chunk" || c.ID == "" || c.Model != testModel {
			t.Fatalf("chunk %s", data)
		}
		if !acc.AddChunk(c) {
			t.Fatalf("accumulator refused %s", data)
		}
		chunks = append(chunks, c)
	}
	return acc, chunks, errEvent, done
}

func TestConverseFixtures(t *testing.T) {
	tests := []struct {
		file     string
		jsonMode bool
		check    func(t *testing.T, c *openai.ChatCompletion, r *translate.Result)
	}{
		{"converse_text.json", false, func(t *testing.T, c *openai.ChatCompletion, r *translate.Result) {
			m := c.Choices[0].Message
			if m.Content != "Hello, \"world\"\n\u00e9\u4e16" || c.Choices[0].FinishReason != "stop" {
				t.Errorf("message %+v", c.Choices[0])
			}
			// Cache reads and writes are part of prompt_tokens, and the
			// reads are reported on their own.
			if c.Usage.PromptTokens != 2225 || c.Usage.PromptTokensDetails.CachedTokens != 2000 || c.Usage.CompletionTokens != 15 || c.Usage.TotalTokens != 2240 {
				t.Errorf("usage %+v", c.Usage)
			}
			u := r.Usage
			if u.InputTokens != 2225 || u.CachedTokens != 2000 || u.CacheCreationTokens != 100 || u.OutputTokens != 15 {
				t.Errorf("result usage %+v", u)
			}
		}},
		{"converse_tools.json", false, func(t *testing.T, c *openai.ChatCompletion, r *translate.Result) {
			m := c.Choices[0].Message
			if m.Content != "Checking both cities." || len(m.ToolCalls) != 2 || c.Choices[0].FinishReason != "tool_calls" {
				t.Fatalf("message %+v", c.Choices[0])
			}
			if tc := m.ToolCalls[1]; tc.ID != "tooluse_2lYV6vHoRVOhyVXgCGJkWw" || tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"location":"Tokyo"}` {
				t.Errorf("tool call %+v", tc)
			}
		}},
		{"converse_json.json", true, func(t *testing.T, c *openai.ChatCompletion, r *translate.Result) {
			m := c.Choices[0].Message
			if m.Content != `{"name":"Ada","age":36}` || len(m.ToolCalls) != 0 || c.Choices[0].FinishReason != "stop" {
				t.Fatalf("message %+v", c.Choices[0])
			}
		}},
		{"converse_reasoning.json", false, func(t *testing.T, c *openai.ChatCompletion, r *translate.Result) {
			m := c.Choices[0].Message
			if m.Content != "Hello!" || m.JSON.ExtraFields["reasoning_content"].Raw() != `"The user asks for a greeting: \"hi\"\n"` || c.Choices[0].FinishReason != "stop" {
				t.Errorf("message %s", m.RawJSON())
			}
			if r.Usage.OutputTokens != 64 || r.Usage.ReasoningTokens != 0 {
				t.Errorf("usage %+v", r.Usage)
			}
		}},
		{"converse_guardrail.json", false, func(t *testing.T, c *openai.ChatCompletion, r *translate.Result) {
			if c.Choices[0].FinishReason != "content_filter" || r.FinishReason != "content_filter" {
				t.Fatalf("finish %q", c.Choices[0].FinishReason)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			d := Translator{}.NewDecoder(chatReq(false, false, tc.jsonMode), 200, "application/json")
			out := decodeAll(t, d, src, 7)
			golden(t, tc.file, out)
			var c openai.ChatCompletion
			if err := json.Unmarshal(out, &c); err != nil {
				t.Fatal(err)
			}
			if c.Object != "chat.completion" || c.Model != testModel || c.ID == "" {
				t.Fatalf("%s", out)
			}
			r := d.Result()
			if !r.Completed || r.Err != nil || !r.HasUsage || r.Model != testModel || !r.FirstContent && tc.file != "converse_guardrail.json" {
				t.Errorf("result %+v", r)
			}
			tc.check(t, &c, r)
		})
	}
}

// TestStreamFixtures decodes each stream (real binary event-stream frames
// encoded from the documented event shapes) whole, at every split point
// and byte by byte, and checks the output against the golden file and the
// SDK's accumulator.
func TestStreamFixtures(t *testing.T) {
	type check func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool)
	tests := []struct {
		file     string
		jsonMode bool
		check    check
	}{
		{"stream_text.events", false, func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if got := acc.Choices[0].Message.Content; got != "Hello, \"world\"\n\u00e9\u4e16" {
				t.Errorf("content %q", got)
			}
			u := r.Usage
			if !done || !r.Completed || !r.HasUsage || u.InputTokens != 2225 || u.CachedTokens != 2000 || u.CacheCreationTokens != 100 || u.OutputTokens != 15 {
				t.Errorf("result %+v done %v", r, done)
			}
			if r.FinishReason != "stop" || acc.Choices[0].FinishReason != "stop" || !r.FirstContent {
				t.Errorf("finish %+v", r)
			}
		}},
		{"stream_tools.events", false, func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			m := acc.Choices[0].Message
			if m.Content != "Checking both cities." || len(m.ToolCalls) != 3 {
				t.Fatalf("message %+v", m)
			}
			want := []struct{ id, name, args string }{
				{"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "get_weather", `{"location": "Paris"}`},
				{"tooluse_2lYV6vHoRVOhyVXgCGJkWw", "get_weather", `{"location": "Tokyo"}`},
				{"tooluse_NoArgs00000000000000000", "get_time", `{}`},
			}
			for i, w := range want {
				tc := m.ToolCalls[i]
				if tc.ID != w.id || tc.Function.Name != w.name || tc.Function.Arguments != w.args {
					t.Errorf("tool call %d: %+v", i, tc)
				}
			}
			if acc.Choices[0].FinishReason != "tool_calls" || !done {
				t.Errorf("finish %q", acc.Choices[0].FinishReason)
			}
		}},
		{"stream_json.events", true, func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			m := acc.Choices[0].Message
			if m.Content != `{"name": "Ada", "age": 36}` || len(m.ToolCalls) != 0 || acc.Choices[0].FinishReason != "stop" || !done {
				t.Fatalf("message %+v", m)
			}
		}},
		{"stream_reasoning.events", false, func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if acc.Choices[0].Message.Content != "Hello!" || !done || !r.Completed || !r.FirstContent {
				t.Errorf("content %q %+v", acc.Choices[0].Message.Content, r)
			}
			// reasoning_content is checked on the chunks by TestStreamReasoning.
		}},
		{"stream_exception.events", false, func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if done || r.Completed {
				t.Error("an errored stream ended with [DONE]")
			}
			if r.Err == nil || r.Err.Code != translate.CodeRateLimited ||
				errEvent != `{"error":{"message":"Too many tokens, please wait before trying again.","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}` {
				t.Errorf("err %+v event %s", r.Err, errEvent)
			}
			if acc.Choices[0].Message.Content != "Partial" {
				t.Errorf("content %q", acc.Choices[0].Message.Content)
			}
		}},
		{"stream_modelerror.events", false, func(t *testing.T, acc openai.ChatCompletionAccumulator, r *translate.Result, errEvent string, done bool) {
			if done || r.Completed || r.Err == nil || r.Err.Code != translate.CodeUpstreamError || !strings.Contains(errEvent, "Model stream error") {
				t.Errorf("err %+v event %s", r.Err, errEvent)
			}
		}},
	}
	for _, tc := range tests {
		for _, iu := range []bool{false, true} {
			name := strings.TrimSuffix(tc.file, ".events")
			if iu {
				name += "_usage"
			}
			t.Run(name, func(t *testing.T) {
				src := encodeEvents(t, filepath.Join("testdata", tc.file))
				d := Translator{}.NewDecoder(chatReq(true, iu, tc.jsonMode), 200, EventStreamType)
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
				if roles != 1 || len(chunks) > 0 && chunks[0].Choices[0].Delta.Role != "assistant" {
					t.Errorf("%d role chunks", roles)
				}
				if want := map[bool]int{true: 1}[iu && done]; usageChunks != want {
					t.Errorf("%d usage chunks, want %d", usageChunks, want)
				}
				for i := 1; i < len(src); i++ {
					d := Translator{}.NewDecoder(chatReq(true, iu, tc.jsonMode), 200, EventStreamType)
					out, err := d.Decode(nil, src[:i], false)
					if err == nil {
						out, err = d.Decode(out, src[i:], true)
					}
					if err != nil || !bytes.Equal(out, whole) {
						t.Fatalf("split at %d differs (%v):\n%s", i, err, out)
					}
				}
				d = Translator{}.NewDecoder(chatReq(true, iu, tc.jsonMode), 200, EventStreamType)
				if got := decodeAll(t, d, src, 1); !bytes.Equal(got, whole) {
					t.Fatalf("byte by byte differs:\n%s", got)
				}
			})
		}
	}
}

// TestStreamTruncated cuts the stream at every byte before messageStop:
// never Completed, never [DONE], no error invented.
func TestStreamTruncated(t *testing.T) {
	src := encodeEvents(t, "testdata/stream_tools.events")
	stop := eventstream.Event(nil, "messageStop", []byte(`{"stopReason":"tool_use"}`))
	end := bytes.Index(src, stop)
	if end < 0 {
		t.Fatal("no messageStop")
	}
	for i := 0; i < end+len(stop)-1; i++ {
		d := Translator{}.NewDecoder(chatReq(true, true, false), 200, EventStreamType)
		out := decodeAll(t, d, src[:i], max(i, 1))
		if r := d.Result(); r.Completed || r.Err != nil || bytes.Contains(out, []byte("[DONE]")) {
			t.Fatalf("cut at %d: %+v\n%s", i, r, out)
		}
	}
	// messageStop without the metadata event: the answer is whole, its
	// usage unknown.
	d := Translator{}.NewDecoder(chatReq(true, true, false), 200, EventStreamType)
	out := decodeAll(t, d, src[:end+len(stop)], 9)
	if r := d.Result(); !r.Completed || r.HasUsage || !bytes.HasSuffix(out, []byte("\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n")) {
		t.Fatalf("%+v\n%s", r, out)
	}
	// A corrupted frame ends the stream with an upstream_protocol error.
	bad := bytes.Clone(src)
	bad[len(bad)-30] ^= 1
	d = Translator{}.NewDecoder(chatReq(true, false, false), 200, EventStreamType)
	out = decodeAll(t, d, bad, len(bad))
	if r := d.Result(); r.Completed || r.Err == nil || r.Err.Code != translate.CodeUpstreamProtocol || bytes.Contains(out, []byte("[DONE]")) {
		t.Fatalf("%+v\n%s", r, out)
	}
}

func TestErrorTable(t *testing.T) {
	tests := []struct {
		status     int
		body       string
		code       translate.Code
		clientStat int
		msg        string
	}{
		{400, `{"message":"Input is too long for requested model."}`, translate.CodeContextLengthExceeded, 400, "Input is too long for requested model."},
		{400, `{"message":"The model returned the following errors: prompt is too long: 215000 tokens > 200000 maximum"}`, translate.CodeContextLengthExceeded, 400, ""},
		{400, `{"message":"Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again."}`, translate.CodeInvalidRequest, 400, ""},
		{400, `{"__type":"ValidationException","message":"1 validation error detected"}`, translate.CodeInvalidRequest, 400, ""},
		{400, `{"__type":"com.amazon.bedrock#ServiceQuotaExceededException","message":"Your request exceeds the service quota for your account."}`, translate.CodeQuotaExhausted, 429, ""},
		{400, `{"message":"Your request exceeds the service quota for your account."}`, translate.CodeQuotaExhausted, 429, ""},
		{429, `{"message":"Too many requests, please wait before trying again."}`, translate.CodeRateLimited, 429, ""},
		{429, `{"__type":"ThrottlingException","message":"Too many tokens"}`, translate.CodeRateLimited, 429, ""},
		{429, `{"message":"Model is not ready for inference. Wait and try your request again."}`, translate.CodeOverloaded, 503, ""},
		{403, `{"message":"You don't have access to the model with the specified model ID."}`, translate.CodePermissionDenied, 403, ""},
		{403, `{"message":"The security token included in the request is invalid."}`, translate.CodeAuthentication, 401, ""},
		{403, `{"message":"The request signature we calculated does not match the signature you provided."}`, translate.CodeAuthentication, 401, ""},
		{404, `{"message":"The provided model identifier is invalid."}`, translate.CodeNotFound, 404, ""},
		{408, `{"message":"Model has timed out in processing the request."}`, translate.CodeTimeout, 504, ""},
		{424, `{"message":"Received error from model"}`, translate.CodeUpstreamError, 500, ""},
		{500, `{"message":"Internal server error"}`, translate.CodeUpstreamError, 500, ""},
		{503, `{"message":"Bedrock is unable to process your request."}`, translate.CodeOverloaded, 503, ""},
		{503, `{"__type":"ModelNotReadyException"}`, translate.CodeOverloaded, 503, "Bedrock returned ModelNotReadyException"},
		{503, "upstream connect error or disconnect/reset before headers", translate.CodeUpstreamUnavailable, 503, "upstream connect error or disconnect/reset before headers"},
		{502, "<html>bad gateway</html>", translate.CodeUpstreamProtocol, 502, "Bedrock returned HTTP 502"},
		{504, ``, translate.CodeTimeout, 504, "Bedrock returned HTTP 504"},
	}
	for _, tc := range tests {
		d := Translator{}.NewDecoder(chatReq(true, false, false), tc.status, "application/json")
		if d.ContentType() != "application/json" || d.Status() != clientStatus(tc.status) {
			t.Errorf("%d: %s %d", tc.status, d.ContentType(), d.Status())
		}
		out := decodeAll(t, d, []byte(tc.body), 5)
		e := d.Result().Err
		if e == nil || e.Code != tc.code || e.HTTPStatus() != tc.clientStat || (tc.msg != "" && e.Message != tc.msg) {
			t.Errorf("%d %s: %+v", tc.status, tc.body, e)
			continue
		}
		var body struct {
			Error struct{ Message, Type, Code string }
		}
		if err := json.Unmarshal(out, &body); err != nil || body.Error.Type != tc.code.Type() || body.Error.Message == "" {
			t.Errorf("%d: body %s", tc.status, out)
		}
	}
	// Exception types of the stream.
	for typ, code := range map[string]translate.Code{
		"throttlingException": translate.CodeRateLimited, "modelStreamErrorException": translate.CodeUpstreamError,
		"internalServerException": translate.CodeUpstreamError, "serviceUnavailableException": translate.CodeOverloaded,
		"validationException": translate.CodeInvalidRequest, "modelTimeoutException": translate.CodeTimeout, "somethingNew": translate.CodeUpstreamError,
	} {
		if e := exceptionError([]byte(typ), []byte(`{"message":"m"}`), nil); e.Code != code || e.Message != "m" {
			t.Errorf("%s: %+v", typ, e)
		}
	}
	if e := exceptionError([]byte("validationException"), []byte(`{"message":"Input is too long for requested model."}`), nil); e.Code != translate.CodeContextLengthExceeded {
		t.Errorf("%+v", e)
	}
	// A :message-type error frame.
	var f []byte
	f, _ = eventstream.AppendMessage(f, []eventstream.Header{
		{Name: ":message-type", Value: eventstream.String("error")},
		{Name: ":error-code", Value: eventstream.String("InternalFailure")},
		{Name: ":error-message", Value: eventstream.String("An internal error occurred")},
	}, nil)
	d := Translator{}.NewDecoder(chatReq(true, false, false), 200, EventStreamType)
	out := decodeAll(t, d, f, 3)
	if r := d.Result(); r.Err == nil || r.Err.Message != "An internal error occurred" || !bytes.HasPrefix(out, []byte(`data: {"error":`)) {
		t.Fatalf("%+v %s", r.Err, out)
	}
}

// BenchmarkStreamChunk decodes and re-encodes one contentBlockDelta text
// frame (compare translate/openai's BenchmarkStreamChunk).
func BenchmarkStreamChunk(b *testing.B) {
	frame := eventstream.Event(nil, "contentBlockDelta", []byte(`{"contentBlockIndex":0,"delta":{"text":" Hello"},"p":"abcdefghijklmnopqrstu"}`))
	d := Translator{}.NewDecoder(chatReq(true, false, false), 200, EventStreamType)
	out, _ := d.Decode(nil, frame, false) // role chunk sent
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		var err error
		out, err = d.Decode(out[:0], frame, false)
		if err != nil || len(out) == 0 {
			b.Fatal(err)
		}
	}
}

// TestStreamReasoning: reasoningContent text deltas become
// reasoning_content deltas in order, split anywhere; signatures and
// redacted content are not sent.
func TestStreamReasoning(t *testing.T) {
	src := encodeEvents(t, "testdata/stream_reasoning.events")
	for _, step := range []int{len(src), 1, 9, 100} {
		d := Translator{}.NewDecoder(chatReq(true, false, false), 200, EventStreamType)
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
		if reasoning.String() != "The user asks for a greeting: \"hi\"\n\u00e9" || order.String() != "rrc" {
			t.Fatalf("step %d: reasoning %q order %q", step, reasoning.String(), order.String())
		}
		if bytes.Contains(out, []byte("ErcBCkgI")) || bytes.Contains(out, []byte("RW5jcnlw")) {
			t.Fatalf("step %d: signature or redacted content sent: %s", step, out)
		}
	}
}

// TestErrorTypeHeader: the x-amzn-ErrorType header names the error when the
// body ({"message"} only) and the status would say otherwise.
func TestErrorTypeHeader(t *testing.T) {
	tests := []struct {
		status  int
		header  string
		message string
		want    translate.Code
	}{
		{429, "ModelNotReadyException:http://internal.amazon.com/coral/com.amazon.bedrock/", "Try your request again later.", translate.CodeOverloaded},
		{400, "ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/", "Too many tokens per day.", translate.CodeQuotaExhausted},
		{403, "UnrecognizedClientException", "Access denied.", translate.CodeAuthentication},
		{429, "", "Try your request again later.", translate.CodeRateLimited},
	}
	for _, tc := range tests {
		req := chatReq(false, false, false)
		hdr := headerMap{"content-type": "application/json"}
		if tc.header != "" {
			hdr["x-amzn-errortype"] = tc.header
		}
		req.ResponseHeaders = hdr
		d := Translator{}.NewDecoder(req, tc.status, "application/json")
		req.ResponseHeaders = nil
		decodeAll(t, d, []byte(`{"message":"`+tc.message+`"}`), 4)
		if e := d.Result().Err; e == nil || e.Code != tc.want || e.Message != tc.message {
			t.Errorf("%d %s: %+v", tc.status, tc.header, e)
		}
	}
	if e := parseError(500, nil, "InternalServerException:http://x"); e.Message != "Bedrock returned InternalServerException" {
		t.Errorf("message %q", e.Message)
	}
}
