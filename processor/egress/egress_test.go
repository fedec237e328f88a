package egress

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitMax = 5 * time.Second // upper bound only, never a synchronisation sleep

// rig is the stand-in running envoy/standalone.yaml, its egress listener in
// front of an OpenAI and an Anthropic fake.
type rig struct {
	sim       *envoysim.Sim
	openai    *fakeprovider.Server
	anthropic *fakeprovider.Server
}

func newRig(t testing.TB) *rig {
	t.Helper()
	doc, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		openai:    fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{Reply: "one two three four"}),
		anthropic: fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{}),
	}
	clusters := map[string]string{"openai": r.openai.Addr(), "anthropic": r.anthropic.Addr()}
	for _, c := range []string{"llmux", "bedrock_us_east_1", "gemini", "vertex_us_central1", "azure", "vllm"} {
		clusters[c] = "127.0.0.1:1" // never used: the egress listener has no ext_proc
	}
	s, err := envoysim.Start(context.Background(), envoysim.Options{Bootstrap: doc, Clusters: clusters})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	r.sim = s
	return r
}

func (r *rig) client(t testing.TB, o Options) *Client {
	t.Helper()
	o.Address = r.sim.Addr("egress")
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func chat(stream bool, fake ...string) *Request {
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]`
	if stream {
		body += `,"stream":true`
	}
	h := http.Header{"Authorization": {"Bearer sk-test"}, "Content-Type": {"application/json"}, "X-Request-Id": {"rid-7"},
		// A caller's own cluster header or Host never wins.
		"X-Llmux-Upstream": {"anthropic"}, "Host": {"evil.example"}}
	for i := 0; i+1 < len(fake); i += 2 {
		h.Set(fake[i], fake[i+1])
	}
	return &Request{Cluster: "openai", Path: "/v1/chat/completions", Header: h, Body: []byte(body + "}")}
}

func readAll(t *testing.T, resp *Response) (string, error) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Whole and streamed responses, over HTTP/1.1 and h2c, reach the fake named
// by the cluster, with the provider's headers and without the cluster header.
func TestDo(t *testing.T) {
	r := newRig(t)
	for _, h2c := range []bool{false, true} {
		for _, stream := range []bool{false, true} {
			name := map[bool]string{false: "http1", true: "h2c"}[h2c] + map[bool]string{false: "/whole", true: "/stream"}[stream]
			t.Run(name, func(t *testing.T) {
				r.openai.ResetRequests()
				c := r.client(t, Options{H2C: h2c})
				ctx, cancel := context.WithTimeout(context.Background(), waitMax)
				defer cancel()
				resp, err := c.Do(ctx, chat(stream))
				if err != nil {
					t.Fatal(err)
				}
				body, err := readAll(t, resp)
				if err != nil || resp.Status != 200 {
					t.Fatalf("status %d, err %v, body %q", resp.Status, err, body)
				}
				if !strings.Contains(body, "four") {
					t.Errorf("body %q lacks the reply", body)
				}
				if stream != strings.HasSuffix(body, "data: [DONE]\n\n") || stream != strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
					t.Errorf("stream %v: content-type %q, body %q", stream, resp.Header.Get("Content-Type"), body)
				}
				got, ok := r.openai.Last()
				if !ok {
					t.Fatal("the fake saw no request")
				}
				if got.Header.Get("X-Llmux-Upstream") != "" || got.Header.Get("Authorization") != "Bearer sk-test" || got.Header.Get("X-Request-Id") != "rid-7" {
					t.Errorf("provider headers %v", got.Header)
				}
				if len(r.anthropic.Requests()) != 0 {
					t.Error("the caller's own x-llmux-upstream picked a cluster")
				}
			})
		}
	}
}

// Sequential calls reuse one connection to the listener.
func TestConnectionReuse(t *testing.T) {
	r := newRig(t)
	for _, h2c := range []bool{false, true} {
		c := r.client(t, Options{H2C: h2c})
		for i := 0; i < 5; i++ {
			resp, err := c.Do(context.Background(), chat(i%2 == 0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := readAll(t, resp); err != nil {
				t.Fatal(err)
			}
		}
		if n := c.dials.Load(); n != 1 {
			t.Errorf("h2c %v: %d connections for 5 sequential calls, want 1", h2c, n)
		}
	}
}

// Cancelling the context mid-stream ends the read with the context's error
// and releases the upstream call (goleak checks the rest).
func TestCancelMidStream(t *testing.T) {
	r := newRig(t)
	c := r.client(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := c.Do(ctx, chat(true, "x-fake-hold", "mid", "x-fake-hold-after", "2"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wctx, wcancel := context.WithTimeout(context.Background(), waitMax)
	defer wcancel()
	if err := r.openai.WaitHeld(wctx, "mid"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := resp.Body.Read(buf); err != nil || n == 0 {
		t.Fatalf("first read: %d %v", n, err)
	}
	cancel()
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want context.Canceled", err)
	}
}

// The provider resetting its connection mid-stream (Envoy then resets the
// egress stream) is a read error, not a clean end.
func TestUpstreamReset(t *testing.T) {
	r := newRig(t)
	for _, h2c := range []bool{false, true} {
		c := r.client(t, Options{H2C: h2c})
		resp, err := c.Do(context.Background(), chat(true, "x-fake-fault", "reset", "x-fake-fault-after", "2"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := readAll(t, resp)
		if err == nil || errors.Is(err, ErrIdleTimeout) {
			t.Errorf("h2c %v: want a reset, got err %v after %q", h2c, err, body)
		}
		// Before any header: Envoy's own 503 (no local_reply_config on egress).
		resp, err = c.Do(context.Background(), chat(false, "x-fake-fault", "reset-before-headers"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = readAll(t, resp)
		if resp.Status != 503 {
			t.Errorf("h2c %v: reset before headers: %d %q, want Envoy's 503", h2c, resp.Status, body)
		}
	}
}

// The bounds: no headers in time, a silent body, a body too large, a closed
// client.
func TestBounds(t *testing.T) {
	r := newRig(t)
	t.Run("header_timeout", func(t *testing.T) {
		c := r.client(t, Options{HeaderTimeout: 50 * time.Millisecond})
		_, err := c.Do(context.Background(), chat(false, "x-fake-hold", "never-headers"))
		if !errors.Is(err, ErrHeaderTimeout) {
			t.Errorf("err %v, want ErrHeaderTimeout", err)
		}
	})
	t.Run("idle_timeout", func(t *testing.T) {
		c := r.client(t, Options{IdleTimeout: 50 * time.Millisecond})
		resp, err := c.Do(context.Background(), chat(true, "x-fake-fault", "stall", "x-fake-hold", "never-body"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := readAll(t, resp)
		if !errors.Is(err, ErrIdleTimeout) {
			t.Errorf("err %v after %q, want ErrIdleTimeout", err, body)
		}
	})
	t.Run("body_too_large", func(t *testing.T) {
		c := r.client(t, Options{MaxBodyBytes: 100})
		resp, err := c.Do(context.Background(), chat(true))
		if err != nil {
			t.Fatal(err)
		}
		body, err := readAll(t, resp)
		if !errors.Is(err, ErrBodyTooLarge) || len(body) != 100 {
			t.Errorf("err %v, %d bytes; want ErrBodyTooLarge after exactly 100", err, len(body))
		}
	})
	t.Run("close_cancels_calls", func(t *testing.T) {
		c := r.client(t, Options{})
		resp, err := c.Do(context.Background(), chat(true, "x-fake-hold", "close", "x-fake-hold-after", "1"))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- err
		}()
		c.Close() // waits for the body above to be closed
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Errorf("read: %v, want ErrClosed", err)
		}
		if _, err := c.Do(context.Background(), chat(false)); !errors.Is(err, ErrClosed) {
			t.Errorf("Do after Close: %v", err)
		}
	})
	t.Run("no_cluster", func(t *testing.T) {
		c := r.client(t, Options{})
		req := chat(false)
		req.Cluster = ""
		if _, err := c.Do(context.Background(), req); err == nil {
			t.Error("a request without a cluster was sent")
		}
	})
	if _, err := New(Options{Address: "no-port"}); err == nil {
		t.Error("New accepted an address without a port")
	}
}
