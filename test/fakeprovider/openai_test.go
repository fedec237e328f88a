package fakeprovider

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// testCtx bounds every test so a bug fails instead of hanging.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newHTTPClient returns a client with its own transport, cleaned up with t.
func newHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func newClient(t *testing.T, srv *Server, opts ...option.RequestOption) openai.Client {
	t.Helper()
	base := []option.RequestOption{
		option.WithBaseURL(srv.URL() + "/v1/"),
		option.WithAPIKey("sk-test-key"),
		option.WithHTTPClient(newHTTPClient(t)),
		option.WithMaxRetries(0),
	}
	return openai.NewClient(append(base, opts...)...)
}

func chatParams(text string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    openai.ChatModelGPT4oMini,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage(text)},
	}
}

func TestOpenAIChatNonStream(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{APIKey: "sk-test-key", Created: 1700000001})
	c := newClient(t, srv)
	res, err := c.Chat.Completions.New(testCtx(t), chatParams("ping pong"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.ID, "chatcmpl-") || res.Object != "chat.completion" || res.Model != "gpt-4o-mini" || res.Created != 1700000001 {
		t.Fatalf("bad envelope: %s", res.RawJSON())
	}
	if len(res.Choices) != 1 || res.Choices[0].Message.Content != "Hello from fake-openai: ping pong" || res.Choices[0].FinishReason != "stop" || res.Choices[0].Message.Role != "assistant" {
		t.Fatalf("bad choice: %s", res.RawJSON())
	}
	if res.SystemFingerprint != "fp_fake" {
		t.Fatalf("fingerprint %q", res.SystemFingerprint)
	}
	u := res.Usage
	if u.PromptTokens != 4 || u.CompletionTokens != 5 || u.TotalTokens != 9 || !u.PromptTokensDetails.JSON.CachedTokens.Valid() || !u.CompletionTokensDetails.JSON.ReasoningTokens.Valid() {
		t.Fatalf("usage: %s", u.RawJSON())
	}
	if !res.Choices[0].Message.JSON.Refusal.Valid() && res.Choices[0].Message.JSON.Refusal.Raw() != "null" {
		t.Fatalf("refusal missing: %s", res.RawJSON())
	}
	last, ok := srv.Last()
	if !ok || last.Method != http.MethodPost || last.Path != "/v1/chat/completions" || last.Header.Get("Authorization") != "Bearer sk-test-key" || !strings.Contains(string(last.Body), `"ping pong"`) {
		t.Fatalf("recorded %+v", last)
	}
	if n := len(srv.Requests()); n != 1 {
		t.Fatalf("%d requests recorded", n)
	}
}

func TestOpenAIReplyOverride(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{Reply: "fixed answer"})
	c := newClient(t, srv)
	res, err := c.Chat.Completions.New(testCtx(t), chatParams("x"))
	if err != nil || res.Choices[0].Message.Content != "fixed answer" {
		t.Fatalf("%v %v", res, err)
	}
	res, err = c.Chat.Completions.New(testCtx(t), chatParams("x"), option.WithHeader(HeaderReply, "per request"))
	if err != nil || res.Choices[0].Message.Content != "per request" {
		t.Fatalf("%v %v", res, err)
	}
}

func collectStream(t *testing.T, c openai.Client, p openai.ChatCompletionNewParams, opts ...option.RequestOption) ([]openai.ChatCompletionChunk, error) {
	t.Helper()
	st := c.Chat.Completions.NewStreaming(testCtx(t), p, opts...)
	defer st.Close()
	var chunks []openai.ChatCompletionChunk
	for st.Next() {
		chunks = append(chunks, st.Current())
	}
	return chunks, st.Err()
}

func TestOpenAIChatStream(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	chunks, err := collectStream(t, c, chatParams("one two"))
	if err != nil {
		t.Fatal(err)
	}
	// role chunk + 5 words + finish chunk
	if len(chunks) != 7 {
		t.Fatalf("%d chunks", len(chunks))
	}
	if chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Fatalf("first chunk: %s", chunks[0].RawJSON())
	}
	var text strings.Builder
	for i, ch := range chunks {
		if ch.Object != "chat.completion.chunk" || ch.ID != chunks[0].ID || ch.Model != "gpt-4o-mini" {
			t.Fatalf("chunk %d: %s", i, ch.RawJSON())
		}
		if ch.JSON.Usage.Valid() {
			t.Fatalf("usage present without include_usage: %s", ch.RawJSON())
		}
		text.WriteString(ch.Choices[0].Delta.Content)
	}
	if text.String() != "Hello from fake-openai: one two" {
		t.Fatalf("text %q", text.String())
	}
	if fr := chunks[6].Choices[0].FinishReason; fr != "stop" {
		t.Fatalf("finish %q", fr)
	}
	for _, ch := range chunks[:6] {
		if ch.Choices[0].FinishReason != "" {
			t.Fatalf("early finish: %s", ch.RawJSON())
		}
	}
}

func TestOpenAIChatStreamIncludeUsage(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	p := chatParams("a b c")
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	chunks, err := collectStream(t, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 1+6+1+1 {
		t.Fatalf("%d chunks", len(chunks))
	}
	for _, ch := range chunks[:len(chunks)-1] {
		if ch.JSON.Usage.Raw() != "null" {
			t.Fatalf("chunk without usage:null: %s", ch.RawJSON())
		}
	}
	u := chunks[len(chunks)-1]
	if len(u.Choices) != 0 || !strings.Contains(u.RawJSON(), `"choices":[]`) {
		t.Fatalf("usage chunk choices: %s", u.RawJSON())
	}
	if u.Usage.PromptTokens != 5 || u.Usage.CompletionTokens != 6 || u.Usage.TotalTokens != 11 {
		t.Fatalf("usage chunk: %s", u.RawJSON())
	}
}

// rawPost sends body to path and returns the response.
func rawPost(t *testing.T, srv *Server, path, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, srv.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer sk-x")
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

const streamBody = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi there"}]}`

func TestOpenAIStreamWireFormat(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	res := rawPost(t, srv, "/v1/chat/completions", streamBody, nil)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content-type %q", ct)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if !strings.HasSuffix(s, "data: [DONE]\n\n") || !strings.HasPrefix(s, "data: {") {
		t.Fatalf("body %q", s)
	}
	events := strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n")
	if len(events) != 1+5+1+1 {
		t.Fatalf("%d events", len(events))
	}
}

func TestOpenAIHoldRelease(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	ctx := testCtx(t)
	st := c.Chat.Completions.NewStreaming(ctx, chatParams("hold me"), option.WithHeader(HeaderHold, "g1"), option.WithHeader(HeaderHoldAfter, "2"))
	defer st.Close()
	if err := srv.WaitHeld(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	// The server is blocked after 2 events: both must be readable now.
	for i := range 2 {
		if !st.Next() {
			t.Fatalf("event %d not delivered before release: %v", i, st.Err())
		}
	}
	if srv.Held("g1") != 1 {
		t.Fatalf("held %d", srv.Held("g1"))
	}
	srv.Release("g1")
	n := 2
	for st.Next() {
		n++
	}
	if st.Err() != nil || n != 1+5+1 {
		t.Fatalf("n=%d err=%v", n, st.Err())
	}
}

func TestOpenAIHoldNonStreamAndClose(t *testing.T) {
	srv, err := ListenOpenAI("127.0.0.1:0", OpenAIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, srv)
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() {
		_, err := c.Chat.Completions.New(ctx, chatParams("x"), option.WithHeader(HeaderHold, "never"))
		done <- err
	}()
	if err := srv.WaitHeld(ctx, "never"); err != nil {
		t.Fatal(err)
	}
	srv.Close() // must release the hold and return
	if err := <-done; err == nil {
		t.Fatal("expected an error after Close")
	}
	if err := srv.WaitHeld(ctx, "other"); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitHeld after close: %v", err)
	}
	srv.Close()
}

func TestOpenAIToolCalls(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	p := chatParams("weather in paris")
	p.Tools = []openai.ChatCompletionToolUnionParam{
		openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object"}}),
		openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_time"}),
	}
	hdr := option.WithHeader(HeaderToolCalls, "3")
	res, err := c.Chat.Completions.New(testCtx(t), p, hdr)
	if err != nil {
		t.Fatal(err)
	}
	tc := res.Choices[0].Message.ToolCalls
	if res.Choices[0].FinishReason != "tool_calls" || len(tc) != 3 || tc[0].Function.Name != "get_weather" || tc[1].Function.Name != "get_time" || !strings.HasPrefix(tc[0].ID, "call_") {
		t.Fatalf("%s", res.RawJSON())
	}
	if !json.Valid([]byte(tc[2].Function.Arguments)) {
		t.Fatalf("args %q", tc[2].Function.Arguments)
	}

	st := c.Chat.Completions.NewStreaming(testCtx(t), p, hdr)
	defer st.Close()
	var acc openai.ChatCompletionAccumulator
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if st.Err() != nil {
		t.Fatal(st.Err())
	}
	got := acc.Choices[0].Message.ToolCalls
	if len(got) != 3 || acc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("accumulated %+v", acc.Choices[0])
	}
	for i := range got {
		if got[i].ID != tc[i].ID && got[i].Function.Name != tc[i].Function.Name {
			t.Fatalf("tool call %d differs", i)
		}
		if !json.Valid([]byte(got[i].Function.Arguments)) {
			t.Fatalf("streamed args %q", got[i].Function.Arguments)
		}
	}
}

func TestOpenAIStatusFaults(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	cases := []struct {
		status   int
		code     string
		wantCode string
		wantType string
	}{
		{429, "", "rate_limit_exceeded", "requests"},
		{429, "insufficient_quota", "insufficient_quota", "insufficient_quota"},
		{400, "context_length_exceeded", "context_length_exceeded", "invalid_request_error"},
		{401, "", "invalid_api_key", "invalid_request_error"},
		{404, "", "model_not_found", "invalid_request_error"},
		{500, "", "", "server_error"},
		{500, "server_error", "server_error", "server_error"},
		{503, "", "", "server_error"},
	}
	for _, tc := range cases {
		opts := []option.RequestOption{option.WithHeader(HeaderStatus, strconv.Itoa(tc.status))}
		if tc.code != "" {
			opts = append(opts, option.WithHeader(HeaderErrorCode, tc.code))
		}
		var resp *http.Response
		opts = append(opts, option.WithResponseInto(&resp))
		_, err := c.Chat.Completions.New(testCtx(t), chatParams("x"), opts...)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("%d: %v", tc.status, err)
		}
		if apiErr.StatusCode != tc.status || apiErr.Code != tc.wantCode || apiErr.Type != tc.wantType || apiErr.Message == "" {
			t.Errorf("%d/%s: got %d %q %q", tc.status, tc.code, apiErr.StatusCode, apiErr.Code, apiErr.Type)
		}
		if ra := resp.Header.Get("retry-after"); (tc.status == 429 || tc.status == 503) != (ra == "1") {
			t.Errorf("%d: retry-after %q", tc.status, ra)
		}
	}
	// Streaming requests fail the same way.
	_, err := collectStream(t, c, chatParams("x"), option.WithHeader(HeaderStatus, "429"))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 {
		t.Fatalf("stream 429: %v", err)
	}
}

func TestOpenAIInbandError(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	chunks, err := collectStream(t, c, chatParams("x y"), option.WithHeader(HeaderFault, FaultInbandError), option.WithHeader(HeaderFaultAfter, "2"))
	if err == nil || !strings.Contains(err.Error(), "server_error") {
		t.Fatalf("err %v", err)
	}
	if len(chunks) != 2 {
		t.Fatalf("%d chunks before the error", len(chunks))
	}
}

func TestOpenAITruncate(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	res := rawPost(t, srv, "/v1/chat/completions", streamBody, map[string]string{HeaderFault: FaultTruncate, HeaderFaultAfter: "100"})
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("truncate must end cleanly: %v", err)
	}
	s := string(b)
	if strings.Contains(s, "[DONE]") || strings.Contains(s, `"finish_reason":"stop"`) {
		t.Fatalf("body %q", s)
	}
	if n := strings.Count(s, "data: "); n != 1+5 { // role + words, no finish
		t.Fatalf("%d events", n)
	}
	// Through the SDK the stream simply ends without error.
	c := newClient(t, srv)
	chunks, err := collectStream(t, c, chatParams("x"), option.WithHeader(HeaderFault, FaultTruncate))
	if err != nil || len(chunks) != 1 {
		t.Fatalf("%d %v", len(chunks), err)
	}
}

func TestOpenAIStall(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(testCtx(t))
	st := c.Chat.Completions.NewStreaming(ctx, chatParams("x"), option.WithHeader(HeaderFault, FaultStall))
	defer st.Close()
	if err := srv.WaitHeld(ctx, DefaultStallGate); err != nil {
		t.Fatal(err)
	}
	if !st.Next() {
		t.Fatalf("first event missing: %v", st.Err())
	}
	cancel()
	if st.Next() {
		t.Fatal("stream continued after stall")
	}
	if !errors.Is(st.Err(), context.Canceled) {
		t.Fatalf("err %v", st.Err())
	}
	// A named stall ends the response (without [DONE]) when released.
	res := rawPost(t, srv, "/v1/chat/completions", streamBody, map[string]string{HeaderFault: FaultStall, HeaderHold: "s2", HeaderFaultAfter: "0"})
	if err := srv.WaitHeld(testCtx(t), "s2"); err != nil {
		t.Fatal(err)
	}
	srv.Release("s2")
	b, err := io.ReadAll(res.Body)
	if err != nil || len(b) != 0 {
		t.Fatalf("%q %v", b, err)
	}
}

func TestOpenAIReset(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	// Hold before the reset so the first event is provably delivered.
	ctx := testCtx(t)
	st := c.Chat.Completions.NewStreaming(ctx, chatParams("x"), option.WithHeader(HeaderFault, FaultReset), option.WithHeader(HeaderHold, "r1"))
	defer st.Close()
	if err := srv.WaitHeld(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if !st.Next() {
		t.Fatalf("first event: %v", st.Err())
	}
	srv.Release("r1")
	if st.Next() {
		t.Fatal("stream continued after reset")
	}
	var apiErr *openai.Error
	if st.Err() == nil || errors.As(st.Err(), &apiErr) {
		t.Fatalf("want transport error, got %v", st.Err())
	}

	_, err := c.Chat.Completions.New(testCtx(t), chatParams("x"), option.WithHeader(HeaderFault, FaultReset))
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("non-stream reset: %v", err)
	}
	_, err = c.Chat.Completions.New(testCtx(t), chatParams("x"), option.WithHeader(HeaderFault, FaultResetBeforeHeaders))
	if err == nil || errors.As(err, &apiErr) {
		t.Fatalf("reset-before-headers: %v", err)
	}
}

func TestOpenAIAuth(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{APIKey: "sk-right"})
	for _, key := range []string{"sk-wrong", ""} {
		c := newClient(t, srv, option.WithAPIKey(key))
		_, err := c.Chat.Completions.New(testCtx(t), chatParams("x"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Type != "invalid_request_error" {
			t.Fatalf("key %q: %v", key, err)
		}
	}
	res := rawPost(t, srv, "/v1/chat/completions", streamBody, map[string]string{"Authorization": "Basic abc"})
	if res.StatusCode != 401 {
		t.Fatalf("basic auth: %d", res.StatusCode)
	}
}

func TestOpenAIValidation(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name, body, param string
	}{
		{"not json", `{`, ""},
		{"array body", `[]`, ""},
		{"missing model", `{` + msgs + `}`, ""},
		{"model not string", `{"model":3,` + msgs + `}`, "model"},
		{"missing messages", `{"model":"m"}`, "messages"},
		{"empty messages", `{"model":"m","messages":[]}`, "messages"},
		{"message not object", `{"model":"m","messages":["hi"]}`, "messages[0]"},
		{"bad role", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, "messages[0].role"},
		{"missing content", `{"model":"m","messages":[{"role":"user"}]}`, "messages[0].content"},
		{"null content user", `{"model":"m","messages":[{"role":"user","content":null}]}`, "messages[0].content"},
		{"content number", `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages[0].content"},
		{"bad part type", `{"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]}`, "messages[0].content[0].type"},
		{"tool without id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id"},
		{"unknown field", `{"model":"m",` + msgs + `,"foo":1}`, ""},
		{"stream not bool", `{"model":"m",` + msgs + `,"stream":"yes"}`, "stream"},
		{"stream_options without stream", `{"model":"m",` + msgs + `,"stream_options":{"include_usage":true}}`, "stream_options"},
		{"temperature string", `{"model":"m",` + msgs + `,"temperature":"hot"}`, "temperature"},
		{"temperature range", `{"model":"m",` + msgs + `,"temperature":3}`, "temperature"},
		{"max_tokens float", `{"model":"m",` + msgs + `,"max_tokens":1.5}`, "max_tokens"},
		{"n zero", `{"model":"m",` + msgs + `,"n":0}`, "n"},
		{"tools not array", `{"model":"m",` + msgs + `,"tools":{}}`, "tools"},
		{"tool missing name", `{"model":"m",` + msgs + `,"tools":[{"type":"function","function":{}}]}`, "tools[0].function.name"},
		{"tool_choice number", `{"model":"m",` + msgs + `,"tool_choice":1}`, "tool_choice"},
		{"response_format string", `{"model":"m",` + msgs + `,"response_format":"json"}`, "response_format"},
		{"stop number", `{"model":"m",` + msgs + `,"stop":1}`, "stop"},
		{"user number", `{"model":"m",` + msgs + `,"user":1}`, "user"},
		{"seed string", `{"model":"m",` + msgs + `,"seed":"1"}`, "seed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := rawPost(t, srv, "/v1/chat/completions", tc.body, nil)
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
					Code    *string `json:"code"`
				} `json:"error"`
			}
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 400 || json.Unmarshal(b, &e) != nil || e.Error.Type != "invalid_request_error" || e.Error.Message == "" {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			got := ""
			if e.Error.Param != nil {
				got = *e.Error.Param
			}
			if got != tc.param {
				t.Fatalf("param %q, want %q (%s)", got, tc.param, b)
			}
			if !strings.Contains(string(b), `"param":`) || !strings.Contains(string(b), `"code":`) {
				t.Fatalf("param/code keys must always be present: %s", b)
			}
		})
	}
	// Valid requests with many typed fields pass.
	ok := `{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"}]},{"role":"user","content":[{"type":"text","text":"b"},{"type":"image_url","image_url":{"url":"http://x"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"}],"temperature":0.5,"top_p":1,"max_tokens":10,"max_completion_tokens":10,"n":2,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"response_format":{"type":"json_object"},"stop":["x"],"user":"u","seed":1,"stream":false,"logprobs":true,"top_logprobs":2,"metadata":{"k":"v"},"store":false,"parallel_tool_calls":true,"reasoning_effort":"low","service_tier":"auto"}`
	res := rawPost(t, srv, "/v1/chat/completions", ok, nil)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.Contains(string(b), `"index":1`) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
}

func TestOpenAIEmbeddings(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	res, err := c.Embeddings.New(testCtx(t), openai.EmbeddingNewParams{
		Model: openai.EmbeddingModelTextEmbedding3Small,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"hello world", "bye"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Data) != 2 || len(res.Data[0].Embedding) != 8 || res.Usage.PromptTokens != 3 || res.Usage.TotalTokens != 3 || res.Model != "text-embedding-3-small" || res.Object != "list" {
		t.Fatalf("%s", res.RawJSON())
	}
	want := EmbeddingVector("hello world", 8)
	var norm float64
	for i, v := range res.Data[0].Embedding {
		if float32(v) != want[i] {
			t.Fatalf("vector[%d] %v != %v", i, v, want[i])
		}
		norm += v * v
	}
	if math.Abs(norm-1) > 1e-5 {
		t.Fatalf("norm %v", norm)
	}

	res, err = c.Embeddings.New(testCtx(t), openai.EmbeddingNewParams{
		Model:          openai.EmbeddingModelTextEmbedding3Small,
		Input:          openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello world")},
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
		Dimensions:     openai.Int(12),
	})
	if err != nil {
		t.Fatal(err)
	}
	var b64 string
	if err := json.Unmarshal([]byte(res.Data[0].JSON.Embedding.Raw()), &b64); err != nil {
		t.Fatalf("base64 embedding: %s", res.RawJSON())
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 12*4 {
		t.Fatalf("%d bytes, %v", len(raw), err)
	}
	want = EmbeddingVector("hello world", 12)
	for i := range 12 {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); got != want[i] {
			t.Fatalf("b64[%d] %v != %v", i, got, want[i])
		}
	}

	for _, bad := range []string{
		`{"model":"m"}`, `{"input":"x"}`, `{"model":"m","input":""}`, `{"model":"m","input":[]}`,
		`{"model":"m","input":[1,"a"]}`, `{"model":"m","input":{"a":1}}`, `{"model":"m","input":"x","encoding_format":"hex"}`,
		`{"model":"m","input":"x","dimensions":"8"}`, `{"model":"m","input":"x","extra":true}`, `{"model":"m","input":[[1],[]]}`,
	} {
		res := rawPost(t, srv, "/v1/embeddings", bad, nil)
		if res.StatusCode != 400 {
			t.Errorf("%s: %d", bad, res.StatusCode)
		}
	}
	for _, good := range []string{`{"model":"m","input":[1,2,3]}`, `{"model":"m","input":[[1,2],[3]],"user":"u"}`} {
		res := rawPost(t, srv, "/v1/embeddings", good, nil)
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", good, res.StatusCode)
		}
	}
}

func TestOpenAIModelsAndRouting(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{Models: []string{"a", "b"}})
	c := newClient(t, srv)
	page, err := c.Models.List(testCtx(t))
	if err != nil || len(page.Data) != 2 || page.Data[0].ID != "a" || page.Data[1].OwnedBy != "openai" {
		t.Fatalf("%v %v", page, err)
	}
	m, err := c.Models.Get(testCtx(t), "b")
	if err != nil || m.ID != "b" {
		t.Fatalf("%v %v", m, err)
	}
	_, err = c.Models.Get(testCtx(t), "zzz")
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("%v", err)
	}
	res := rawPost(t, srv, "/v1/nope", `{}`, nil)
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 404 || !strings.Contains(string(b), `"type":"invalid_request_error"`) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, srv.URL()+"/v1/chat/completions", nil)
	resp, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("%d", resp.StatusCode)
	}
}

func TestOpenAIH2CReset(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr}
	do := func(hdr map[string]string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(testCtx(t), http.MethodPost, srv.URL()+"/v1/chat/completions", strings.NewReader(streamBody))
		req.Header.Set("Authorization", "Bearer k")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return hc.Do(req)
	}
	res, err := do(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.ProtoMajor != 2 || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Fatalf("%s %v %q", res.Proto, err, b)
	}
	res, err = do(map[string]string{HeaderFault: FaultReset})
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(res.Body)
	_, err = io.ReadAll(br)
	res.Body.Close()
	if err == nil {
		t.Fatal("h2 reset: want stream error")
	}
	if _, err := do(map[string]string{HeaderFault: FaultResetBeforeHeaders}); err == nil {
		t.Fatal("h2 reset-before-headers: want error")
	}
}
