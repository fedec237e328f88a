package fakeprovider

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

func TestScriptQueue(t *testing.T) {
	trunc := DefaultFault()
	trunc.Kind = FaultTruncate
	srv := NewOpenAI(t, OpenAIOptions{Script: []Fault{{Status: 503}, trunc}})
	c := newClient(t, srv)
	if srv.ScriptLen() != 2 {
		t.Fatalf("script %d", srv.ScriptLen())
	}
	// 404s do not consume the script.
	if res := rawPost(t, srv, "/v1/nope", `{}`, nil); res.StatusCode != 404 {
		t.Fatalf("404: %d", res.StatusCode)
	}
	var resp *http.Response
	_, err := c.Chat.Completions.New(testCtx(t), chatParams("x"), option.WithResponseInto(&resp))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 503 || apiErr.Type != "server_error" || resp.Header.Get("retry-after") != "1" {
		t.Fatalf("scripted 503: %v", err)
	}
	chunks, err := collectStream(t, c, chatParams("x"))
	if err != nil || len(chunks) != 1 {
		t.Fatalf("scripted truncate: %d chunks, %v", len(chunks), err)
	}
	// The script is used up; requests are normal again.
	if _, err := c.Chat.Completions.New(testCtx(t), chatParams("x")); err != nil {
		t.Fatal(err)
	}
	// Headers override scripted fields: x-fake-status 200 cancels a
	// scripted status, and a header fault replaces none.
	srv.Enqueue(Fault{Status: 500}, Fault{Status: 500})
	if _, err := c.Chat.Completions.New(testCtx(t), chatParams("x"), option.WithHeader(HeaderStatus, "200")); err != nil {
		t.Fatalf("override to 200: %v", err)
	}
	_, err = c.Chat.Completions.New(testCtx(t), chatParams("x"), option.WithHeader(HeaderErrorCode, "insufficient_quota"))
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || apiErr.Code != "insufficient_quota" {
		t.Fatalf("merged plan: %v", err)
	}
	if srv.ScriptLen() != 0 {
		t.Fatalf("script %d", srv.ScriptLen())
	}
}

func TestDelayBetweenChunks(t *testing.T) {
	const d = 5 * time.Millisecond
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	for _, hdr := range []string{"5ms", "5"} {
		start := time.Now()
		chunks, err := collectStream(t, c, chatParams("x"), option.WithHeader(HeaderDelay, hdr))
		if err != nil {
			t.Fatal(err)
		}
		// Timers never fire early: n chunks plus [DONE] mean n pauses.
		if el := time.Since(start); el < time.Duration(len(chunks))*d {
			t.Fatalf("%s: %d chunks in %v", hdr, len(chunks), el)
		}
	}
	res := rawPost(t, srv, "/v1/chat/completions", streamBody, map[string]string{HeaderDelay: "soon"})
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad delay: %d", res.StatusCode)
	}

	// The option applies when the header is absent; Close ends a delayed
	// stream without waiting for it.
	slow := NewOpenAI(t, OpenAIOptions{ChunkDelay: time.Hour})
	sc := newClient(t, slow)
	st := sc.Chat.Completions.NewStreaming(testCtx(t), chatParams("x"))
	defer st.Close()
	if !st.Next() {
		t.Fatal(st.Err())
	}
	slow.Close()
	if st.Next() {
		t.Fatal("stream continued after Close")
	}
}

func TestWordsPerChunk(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{WordsPerChunk: 2, Reply: "one two three four five"})
	chunks, err := collectStream(t, newClient(t, srv), chatParams("x"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range chunks[1 : len(chunks)-1] {
		got = append(got, ch.Choices[0].Delta.Content)
	}
	if strings.Join(got, "|") != "one two| three four| five" {
		t.Fatalf("%q", got)
	}
}

func TestToolCallsOptionAndConversationEnd(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{ToolCalls: 2})
	c := newClient(t, srv)
	p := chatParams("weather?")
	p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather"})}
	res, err := c.Chat.Completions.New(testCtx(t), p)
	if err != nil || len(res.Choices[0].Message.ToolCalls) != 2 || res.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("%v %v", res, err)
	}
	if res.Choices[0].Message.JSON.Content.Raw() != "null" {
		t.Fatalf("content with tool calls: %s", res.RawJSON())
	}
	// After the tool results the model answers in text.
	call := res.Choices[0].Message.ToolCalls[0]
	p.Messages = append(p.Messages, res.Choices[0].Message.ToParam(), openai.ToolMessage("sunny", call.ID))
	res, err = c.Chat.Completions.New(testCtx(t), p)
	if err != nil || len(res.Choices[0].Message.ToolCalls) != 0 || res.Choices[0].FinishReason != "stop" || res.Choices[0].Message.Content == "" {
		t.Fatalf("after tool result: %v %v", res, err)
	}
	// x-fake-tool-calls: 0 turns the option off for one request.
	p.Messages = p.Messages[:2]
	res, err = c.Chat.Completions.New(testCtx(t), p, option.WithHeader(HeaderToolCalls, "0"))
	if err != nil || len(res.Choices[0].Message.ToolCalls) != 0 {
		t.Fatalf("header 0: %v %v", res, err)
	}
	// Without tools in the request there are no tool calls.
	res, err = c.Chat.Completions.New(testCtx(t), chatParams("x"))
	if err != nil || res.Choices[0].FinishReason != "stop" {
		t.Fatalf("no tools: %v %v", res, err)
	}
	for _, bad := range []string{"x", "-1", strconv.Itoa(maxToolCalls + 1)} {
		res := rawPost(t, srv, "/v1/chat/completions", streamBody, map[string]string{HeaderToolCalls: bad})
		if b := readBody(t, res); res.StatusCode != 400 || !strings.Contains(b, "fakeprovider") {
			t.Fatalf("%s: %d %s", bad, res.StatusCode, b)
		}
	}
}

// TestResetMidChunkHTTP1 reads the raw HTTP/1.1 bytes of a reset stream:
// complete events, then a chunk header announcing a whole event followed by
// only half of it, then a connection error.
func TestResetMidChunkHTTP1(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if dl, ok := testCtx(t).Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: fake\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\n" +
		HeaderFault + ": " + FaultReset + "\r\n" + HeaderFaultAfter + ": 2\r\nContent-Length: " + strconv.Itoa(len(streamBody)) + "\r\n\r\n" + streamBody
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || len(res.TransferEncoding) == 0 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("%d %v", res.StatusCode, res.TransferEncoding)
	}
	rest, err := io.ReadAll(br) // raw chunked framing
	if err == nil {
		t.Fatal("want a connection error after the partial chunk")
	}
	// Parse the chunks by hand: 2 complete events, then a short one.
	var events []string
	for len(rest) > 0 {
		line, after, ok := strings.Cut(string(rest), "\r\n")
		if !ok {
			t.Fatalf("chunk header missing in %q", rest)
		}
		n, perr := strconv.ParseInt(line, 16, 64)
		if perr != nil {
			t.Fatalf("chunk size %q", line)
		}
		if int64(len(after)) < n+2 {
			if len(events) != 2 || !strings.HasPrefix(after, "data: {") || int64(len(after)) >= n {
				t.Fatalf("partial chunk %q after %d events", after, len(events))
			}
			return
		}
		events = append(events, after[:n])
		rest = []byte(after[n+2:])
	}
	t.Fatalf("no partial chunk; events %q", events)
}

func TestNonStreamFaults(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	body := `{"model":"m","messages":[{"role":"user","content":"x"}]}`
	// truncate: half the body with a matching Content-Length, so the
	// client reads it without error but cannot parse it.
	res := rawPost(t, srv, "/v1/chat/completions", body, map[string]string{HeaderFault: FaultTruncate})
	b := readBody(t, res)
	if res.StatusCode != 200 || res.ContentLength != int64(len(b)) || strings.HasSuffix(b, "}") {
		t.Fatalf("%d %d %q", res.StatusCode, res.ContentLength, b)
	}
	// inband-error: a 200 whose body is an error object (the SDK decodes
	// it as a completion without choices).
	res = rawPost(t, srv, "/v1/chat/completions", body, map[string]string{HeaderFault: FaultInbandError, HeaderErrorCode: "server_error"})
	if b := readBody(t, res); res.StatusCode != 200 || !strings.HasPrefix(b, `{"error":{`) || !strings.Contains(b, `"code":"server_error"`) {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	// stall: headers arrive, the body never does until Release.
	res = rawPost(t, srv, "/v1/chat/completions", body, map[string]string{HeaderFault: FaultStall, HeaderHold: "ns"})
	if err := srv.WaitHeld(testCtx(t), "ns"); err != nil {
		t.Fatal(err)
	}
	srv.Release("ns")
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Fatal("stalled body must end short of its Content-Length")
	}
}

func FuzzParseFault(f *testing.F) {
	f.Add("429", "insufficient_quota", "truncate", "2", "g", "0", "5ms")
	f.Add("abc", "", "explode", "-1", "", "x", "soon")
	f.Fuzz(func(t *testing.T, status, code, kind, after, hold, holdAfter, delay string) {
		h := http.Header{}
		for k, v := range map[string]string{HeaderStatus: status, HeaderErrorCode: code, HeaderFault: kind, HeaderFaultAfter: after, HeaderHold: hold, HeaderHoldAfter: holdAfter, HeaderDelay: delay} {
			h.Set(k, v)
		}
		got, err := parseFaultOver(Fault{Status: 500, After: 3}, h)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fakeprovider: invalid ") {
				t.Fatalf("error %v", err)
			}
			return
		}
		if got.After < 0 || got.HoldAfter < 0 || got.Delay < 0 || got.Delay > maxDelay || (got.Status != 0 && got.Status < 300) {
			t.Fatalf("plan %+v", got)
		}
	})
}
