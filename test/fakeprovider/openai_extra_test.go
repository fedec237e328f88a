package fakeprovider

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func TestWaitRequestsAndRecordedJSON(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	c := newClient(t, srv)
	const parallel = 8
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	for range parallel {
		wg.Go(func() {
			_, err := c.Chat.Completions.New(testCtx(t), chatParams("concurrent"))
			errs <- err
		})
	}
	if err := srv.WaitRequests(testCtx(t), parallel); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	reqs := srv.Requests()
	if len(reqs) != parallel || reqs[0].JSON("messages.1.content").String() != "concurrent" || reqs[0].JSON("model").String() != "gpt-4o-mini" {
		t.Fatalf("%d %s", len(reqs), reqs[0].Body)
	}
	// Copies are independent of the server's record.
	reqs[0].Body[0] = 'X'
	reqs[0].Header.Set("Authorization", "changed")
	if again := srv.Requests(); again[0].Body[0] != '{' || again[0].Header.Get("Authorization") == "changed" {
		t.Fatal("Requests leaked internal state")
	}
	srv.ResetRequests()
	if _, ok := srv.Last(); ok {
		t.Fatal("Last after ResetRequests")
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if err := srv.WaitRequests(ctx, 1); err != context.Canceled {
		t.Fatalf("WaitRequests: %v", err)
	}
}

func TestHoldAfterEndOfStream(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	res := rawPost(t, srv, "/v1/chat/completions", streamBody, map[string]string{HeaderHold: "end", HeaderHoldAfter: "1000"})
	if err := srv.WaitHeld(testCtx(t), "end"); err != nil {
		t.Fatal(err)
	}
	// Every frame, [DONE] included, is on the wire while the handler holds.
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.HasSuffix(got.String(), "data: [DONE]\n\n") {
		n, err := res.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			t.Fatalf("%v after %q", err, got.String())
		}
	}
	srv.Release("end")
	if rest, err := io.ReadAll(res.Body); err != nil || len(rest) != 0 {
		t.Fatalf("%q %v", rest, err)
	}
}

func TestStreamN2AndPreReleasedHold(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{Reply: "a b"})
	c := newClient(t, srv)
	p := chatParams("x")
	p.N = openai.Int(2)
	p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	// A release before the handler reaches the gate is sticky.
	srv.Release("pre")
	chunks, err := collectStream(t, c, p, option.WithHeader(HeaderHold, "pre"), option.WithHeader(HeaderHoldAfter, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var a, b strings.Builder
	for _, ch := range chunks[:len(chunks)-1] {
		if len(ch.Choices) != 2 {
			t.Fatalf("%s", ch.RawJSON())
		}
		a.WriteString(ch.Choices[0].Delta.Content)
		b.WriteString(ch.Choices[1].Delta.Content)
	}
	if a.String() != "a b" || b.String() != "a b" || chunks[len(chunks)-1].Usage.CompletionTokens != 4 {
		t.Fatalf("%q %q %s", a.String(), b.String(), chunks[len(chunks)-1].RawJSON())
	}
}

func TestBadFaultHeader(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	for _, h := range []map[string]string{{HeaderStatus: "abc"}, {HeaderFault: "explode"}, {HeaderFaultAfter: "-1"}, {HeaderHoldAfter: "x"}} {
		res := rawPost(t, srv, "/v1/chat/completions", streamBody, h)
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "fakeprovider") {
			t.Fatalf("%v: %d %s", h, res.StatusCode, b)
		}
	}
}

func FuzzValidateChat(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"tools":[{"type":"function","function":{"name":"f"}}]}`,
		`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"1","type":"function"}]}],"stop":["a"],"stream":true,"stream_options":{"include_usage":true}}`,
		`[1,2]`, `null`, `{"model":null}`, `{"model":"m","messages":[null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := validateChatRequest(body)
		if (req == nil) == (e == nil) {
			t.Fatalf("exactly one of request and error expected: %v %v", req, e)
		}
		if e != nil && (e.Type != "invalid_request_error" || e.Message == "") {
			t.Fatalf("bad error %+v", e)
		}
	})
}

func FuzzValidateEmbeddings(f *testing.F) {
	for _, s := range []string{`{"model":"m","input":"x"}`, `{"model":"m","input":[[1,2],[3]]}`, `{"model":"m","input":[1,"a"]}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := validateEmbeddingsRequest(body)
		if (req == nil) == (e == nil) {
			t.Fatalf("exactly one of request and error expected: %v %v", req, e)
		}
		if req != nil && len(req.inputs) == 0 {
			t.Fatal("valid request without inputs")
		}
	})
}
