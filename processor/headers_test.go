package processor

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/proto/config"
)

// clientHeaders is what a browser-ish OpenAI SDK client sends, with the
// names Envoy would give (lower case) and a few a non-conforming caller
// might (mixed case), multi-valued headers included.
var clientHeaders = []string{
	":method", "POST", ":path", "/v1/chat/completions", ":authority", "gw", ":scheme", "https",
	"host", "gw",
	"authorization", "Bearer " + testKey,
	"content-type", "application/json",
	"accept", "application/json",
	"user-agent", "OpenAI/Go 3.0",
	"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	"tracestate", "vendor=1",
	"x-b3-traceid", "0af7651916cd43dd",
	"x-request-id", "req-1",
	"accept-encoding", "gzip",
	"cookie", "session=1",
	"cookie", "csrf=2",
	"Cookie", "other=3",
	"openai-organization", "org-client",
	"openai-project", "proj-client",
	"anthropic-beta", "tools-2024",
	"x-stainless-lang", "go",
	"X-Stainless-OS", "linux",
	"x-fake-status", "500",
	"x-llmux-upstream", "attacker-cluster",
	"x-llmux-cluster", "attacker",
	"x-llmux-tenant", "someone-else",
	"x-api-key", "sk-other",
	"x-forwarded-for", "10.0.0.1",
	"x-forwarded-proto", "https",
	"x-envoy-retry-on", "5xx",
	"content-length", "80",
	"te", "trailers",
}

func TestUpstreamHeaderAllowList(t *testing.T) {
	always := []string{"authorization", "accept-encoding", "cookie", "openai-project", "anthropic-beta",
		"x-stainless-os", "x-fake-status", "x-llmux-upstream", "x-llmux-cluster", "x-llmux-tenant", "x-api-key", "x-forwarded-for"}
	tests := []struct {
		name, model string
		// wantRemoved are removed on top of always.
		wantRemoved, wantKept []string
	}{
		{"no pass-through", "gpt-4o-mini", []string{"openai-organization", "x-stainless-lang"}, nil},
		{"pass-through configured", "gpt-4o-beta", nil, []string{"openai-organization", "x-stainless-lang"}},
	}
	never := []string{":method", ":path", ":authority", ":scheme", "host", "content-type", "accept", "user-agent",
		"traceparent", "tracestate", "x-b3-traceid", "x-request-id", "x-forwarded-proto", "x-envoy-retry-on", "content-length", "te"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			x.must(reqHeaders(false, clientHeaders...))
			r := x.must(reqBody(`{"model":"` + tc.model + `","messages":[{"role":"user","content":"hi"}]}`))
			m := r.GetRequestBody().GetResponse().GetHeaderMutation()
			if m == nil {
				t.Fatalf("no header mutation in %v", r)
			}
			removed := m.GetRemoveHeaders()
			want := append(slices.Clone(always), tc.wantRemoved...)
			slices.Sort(want)
			got := slices.Clone(removed)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("removed %v\nwant    %v", got, want)
			}
			for _, k := range append(never, tc.wantKept...) {
				if slices.Contains(removed, k) {
					t.Errorf("%s removed; it must reach the provider or stay Envoy's", k)
				}
			}
			for _, k := range removed {
				if k != strings.ToLower(k) {
					t.Errorf("remove_headers entry %q is not lower case", k)
				}
			}
			// The provider's credential and the cluster are set after the
			// removals (Envoy applies remove_headers first).
			if got := setHeader(m, "authorization"); got != "Bearer "+providerKey && tc.model == "gpt-4o-mini" {
				t.Errorf("authorization %q", got)
			}
			if got := setHeader(m, "x-llmux-upstream"); got != "openai" {
				t.Errorf("cluster header %q", got)
			}
		})
	}
}

func TestRequestIDFromClient(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name   string
		ids    []string // x-request-id values the client sent
		want   string   // "" means llmux makes one
		reason string
	}{
		{"envoy uuid", []string{"0af76519-16cd-43dd-8448-eb211c80319c"}, "0af76519-16cd-43dd-8448-eb211c80319c", ""},
		{"all allowed characters", []string{"A-z_0.9:x"}, "A-z_0.9:x", ""},
		{"64 characters", []string{long}, long, ""},
		{"65 characters", []string{long + "a"}, "", "too long"},
		{"space", []string{"req 1"}, "", "space"},
		{"markup", []string{"<script>alert(1)</script>"}, "", "markup"},
		{"non-ASCII", []string{"réq"}, "", "non-ASCII"},
		{"control character", []string{"req\x01"}, "", "control"},
		{"none", nil, "", "absent"},
		{"second value valid", []string{"bad id", "good-id"}, "good-id", ""},
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			kv := []string{":method", "POST", ":path", "/v1/nope", "authorization", "Bearer " + testKey}
			for _, id := range tc.ids {
				kv = append(kv, "x-request-id", id)
			}
			r := x.must(reqHeaders(false, kv...))
			got := setHeader(r.GetImmediateResponse().GetHeaders(), "x-request-id")
			if md := br2md(r)["request_id"].GetStringValue(); md != got {
				t.Errorf("metadata request_id %q, response x-request-id %q", md, got)
			}
			if tc.want != "" {
				if got != tc.want {
					t.Fatalf("request id %q, want %q", got, tc.want)
				}
				return
			}
			if !uuid.MatchString(got) {
				t.Fatalf("made-up request id %q is not a UUID v4 (client sent %q: %s)", got, tc.ids, tc.reason)
			}
			if seen[got] {
				t.Fatalf("request id %q made twice", got)
			}
			seen[got] = true
		})
	}
}

func TestResponseRequestIDs(t *testing.T) {
	tests := []struct {
		name     string
		headers  []string
		wantUp   string
		wantNoUp bool
	}{
		{"openai", []string{"x-request-id", "req_abc123"}, "req_abc123", false},
		{"anthropic", []string{"request-id", "req_011CS"}, "req_011CS", false},
		{"bedrock", []string{"x-amzn-requestid", "7f1e-22"}, "7f1e-22", false},
		{"azure both", []string{"apim-request-id", "apim-1", "x-request-id", "xr-1"}, "xr-1", false},
		{"none", nil, "", true},
		{"malformed", []string{"x-request-id", "has space"}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			forward(t, x, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
			kv := append([]string{":status", "200", "content-type", "application/json"}, tc.headers...)
			r := x.must(respHeaders(true, kv...))
			m := r.GetResponseHeaders().GetResponse().GetHeaderMutation()
			if got := setHeader(m, "x-request-id"); got != "req-1" {
				t.Errorf("x-request-id to the client %q, want llmux's req-1", got)
			}
			got := setHeader(m, "x-upstream-request-id")
			md := br2md(r)["upstream_request_id"].GetStringValue()
			if got != tc.wantUp || md != tc.wantUp {
				t.Errorf("x-upstream-request-id %q, metadata %q, want %q", got, md, tc.wantUp)
			}
			if tc.wantNoUp {
				for _, h := range m.GetSetHeaders() {
					if h.GetHeader().GetKey() == "x-upstream-request-id" {
						t.Error("x-upstream-request-id set without a provider id")
					}
				}
			}
		})
	}
}

func TestImmediateResponsesCarryRequestID(t *testing.T) {
	tests := []struct {
		name string
		req  *extprocv3.ProcessingRequest
	}{
		{"unknown url", reqHeaders(true, ":method", "GET", ":path", "/v2/x", "x-request-id", "req-1")},
		{"no key", reqHeaders(true, ":method", "GET", ":path", "/v1/models", "x-request-id", "req-1")},
		{"models", reqHeaders(true, ":method", "GET", ":path", "/v1/models", "x-request-id", "req-1", "authorization", "Bearer "+testKey)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			r := x.must(tc.req)
			if got := setHeader(r.GetImmediateResponse().GetHeaders(), "x-request-id"); got != "req-1" {
				t.Fatalf("x-request-id %q", got)
			}
		})
	}
}

func TestEchoedValuesBounded(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		body     string
		contains string // what the message must quote
		absent   string // what it must not
	}{
		{"long model", "/v1/chat/completions", `{"model":"` + strings.Repeat("m", 3000) + `","messages":[{"role":"user","content":"hi"}]}`, strings.Repeat("m", 90), strings.Repeat("m", 97)},
		{"model with newline", "/v1/chat/completions", `{"model":"a\nb\u2028c","messages":[{"role":"user","content":"hi"}]}`, `a\x0ab\u2028c`, "a\nb"},
		{"long path", "/v1/" + strings.Repeat("p", 5000), "", "/v1/ppp", strings.Repeat("p", 200)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExchange(t)
			r := x.must(post(tc.path, bearer()...))
			if tc.body != "" {
				r = x.must(reqBody(tc.body))
			}
			body := r.GetImmediateResponse().GetBody()
			msg := gjson.GetBytes(body, "error.message").String()
			if !strings.Contains(msg, tc.contains) || strings.Contains(msg, tc.absent) {
				t.Fatalf("message %q (%d bytes)", msg, len(msg))
			}
			if len(msg) > 300 {
				t.Fatalf("message is %d bytes", len(msg))
			}
		})
	}
}

func TestEcho(t *testing.T) {
	tests := []struct{ in, want string }{
		{"gpt-4o", "gpt-4o"},
		{"a\x00b\x1b[31m", `a\x00b\x1b[31m`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"del\x7f", `del\x7f`},
		{"c1\u0085", `c1\u0085`},
		{"ok é", "ok é"},
		{strings.Repeat("x", maxEcho), strings.Repeat("x", maxEcho)},
		{strings.Repeat("x", maxEcho+1), strings.Repeat("x", maxEcho) + "…"},
		// A two-byte character that would straddle the bound is left out whole.
		{strings.Repeat("x", maxEcho-1) + "éé", strings.Repeat("x", maxEcho-1) + "…"},
		{strings.Repeat("\x01", 40), strings.Repeat(`\x01`, maxEcho/4) + "…"},
	}
	for _, tc := range tests {
		got := echo(tc.in)
		if got != tc.want {
			t.Errorf("echo(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) || len(strings.TrimSuffix(got, "…")) > maxEcho {
			t.Errorf("echo(%q) = %q: invalid UTF-8 or too long", tc.in, got)
		}
	}
}

func TestBufferBudget(t *testing.T) {
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	cfg := testConfig(t)
	limit := cfg.Server().MaxBufferedBytes
	s := New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger(), Now: fakeClock()})
	run := func(out sender) error {
		h := newHandler(s, context.Background(), out)
		defer h.finish()
		defer h.releaseBody()
		if err := h.handle(post("/v1/chat/completions", bearer()...)); err != nil {
			return err
		}
		return h.handle(reqBody(body))
	}

	// Other requests hold all but a few bytes: this one is refused.
	if !s.buffered.acquire(limit-int64(len(body))+1, limit) {
		t.Fatal("could not take the budget")
	}
	rec := &recorder{}
	if err := run(rec); err != nil {
		t.Fatal(err)
	}
	last := rec.sent[len(rec.sent)-1]
	st, code := immediate(t, last)
	if st != 503 || code != "gateway_overloaded" {
		t.Fatalf("got %d %q, want 503 gateway_overloaded", st, code)
	}
	if ra := setHeader(last.GetImmediateResponse().GetHeaders(), "retry-after"); ra == "" {
		t.Error("no retry-after")
	}
	s.buffered.release(limit - int64(len(body)) + 1)

	// With room, every exit path gives the bytes back.
	failing := errors.New("send failed")
	paths := []struct {
		name string
		out  sender
		body string
	}{
		{"forwarded", &recorder{}, body},
		{"send fails", failSender{failing}, body},
		{"invalid json", &recorder{}, `{"model":`},
		{"unknown model", &recorder{}, `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`},
	}
	for _, p := range paths {
		body = p.body
		if err := run(p.out); err != nil && !errors.Is(err, failing) {
			t.Fatalf("%s: %v", p.name, err)
		}
		if n := s.Buffered(); n != 0 {
			t.Fatalf("%s: %d bytes still held", p.name, n)
		}
	}
}

type failSender struct{ err error }

func (f failSender) Send(*extprocv3.ProcessingResponse) error { return f.err }
