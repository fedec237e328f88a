package e2e

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// headersConfig is the default configuration with one pass-through header
// for the OpenAI provider.
var headersConfig = strings.Replace(configTemplate, "  credentials: {api_key_env: E2E_PROVIDER_KEY}\n",
	"  credentials: {api_key_env: E2E_PROVIDER_KEY}\n  forward_headers: [openai-beta]\n", 1)

// postChat sends a chat request with plain net/http and the given extra
// headers (name, value pairs; a name may repeat), and returns the response
// with its body read.
func postChat(t *testing.T, r *rig, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.baseURL+"chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestOnlyIntendedHeadersGoUpstream sends what a careless or hostile
// client might and checks, on the fake provider's recorded request, what
// arrived.
func TestOnlyIntendedHeadersGoUpstream(t *testing.T) {
	r := startRigWith(t, headersConfig, nil)
	resp, body := postChat(t, r,
		"Authorization", "Bearer "+clientKey,
		"Cookie", "session=abc",
		"Cookie", "csrf=def",
		"OpenAI-Organization", "org-client-picks-billing",
		"OpenAI-Project", "proj-client",
		"Anthropic-Beta", "computer-use-2025-01-24",
		"X-Fake-Status", "500",
		"X-Stainless-Lang", "go",
		"X-Stainless-OS", "Linux",
		"X-Llmux-Cluster", "attacker",
		"X-Llmux-Upstream", "attacker-cluster",
		"OpenAI-Beta", "assistants=v2",
		"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"User-Agent", "e2e-client/1.0",
		"X-Request-Id", "e2e-headers-1",
	)
	// The client's x-fake-status: 500 reaches no fake: it answers 200.
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	rec, ok := r.fake.Last()
	if !ok {
		t.Fatal("the fake provider recorded no request")
	}
	for _, h := range []string{"cookie", "openai-organization", "openai-project", "anthropic-beta", "x-fake-status",
		"x-stainless-lang", "x-stainless-os", "x-llmux-cluster"} {
		if v, ok := rec.Header[http.CanonicalHeaderKey(h)]; ok {
			t.Errorf("%s reached the provider: %q", h, v)
		}
	}
	if got := rec.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+providerKey {
		t.Errorf("provider saw authorization %q, want only the gateway's key", got)
	}
	for _, v := range rec.Header.Values("X-Llmux-Upstream") {
		if v == "attacker-cluster" {
			t.Error("the client's cluster header value reached the provider")
		}
	}
	want := map[string]string{
		"openai-beta":  "assistants=v2", // configured pass-through
		"traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"user-agent":   "e2e-client/1.0",
		"x-request-id": "e2e-headers-1",
	}
	for k, v := range want {
		if got := rec.Header.Get(k); got != v {
			t.Errorf("provider saw %s %q, want %q", k, got, v)
		}
	}
	// The client gets llmux's request id; the provider's is kept apart.
	if got := resp.Header.Get("x-request-id"); got != "e2e-headers-1" {
		t.Errorf("response x-request-id %q", got)
	}
	if got := resp.Header.Get("x-upstream-request-id"); !strings.HasPrefix(got, "req_fake") {
		t.Errorf("response x-upstream-request-id %q, want the fake's id", got)
	}
}

// TestMalformedRequestIDReplaced: a client request id that is too long or
// not plain gets replaced by one llmux makes, which the provider, the
// access log and the client all see.
func TestMalformedRequestIDReplaced(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	tests := []struct{ name, id string }{
		{"too long", strings.Repeat("a", 65)},
		{"markup", "<img src=x onerror=alert(1)>"},
		{"spaces", "my request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := startRig(t)
			resp, body := postChat(t, r, "Authorization", "Bearer "+clientKey, "X-Request-Id", tc.id)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := resp.Header.Get("x-request-id")
			if got == tc.id || !uuid.MatchString(got) {
				t.Fatalf("response x-request-id %q, want a UUID made by llmux", got)
			}
			rec, _ := r.fake.Last()
			if up := rec.Header.Get("x-request-id"); up != got {
				t.Errorf("provider saw x-request-id %q, client got %q", up, got)
			}
			if logs := r.accessLogs(1); logs != nil && logs[0]["request_id"] != got {
				t.Errorf("access log request_id %v, client got %q", logs[0]["request_id"], got)
			}
		})
	}
}

// TestLocalReplyCarriesRequestID: llmux's own answers (here an unknown
// model, with an oversized, hostile name) carry the request id, and the
// echoed name is bounded and escaped.
func TestLocalReplyCarriesRequestID(t *testing.T) {
	r := startRig(t)
	req, err := http.NewRequest(http.MethodPost, r.baseURL+"chat/completions",
		strings.NewReader(`{"model":"`+strings.Repeat("x", 4000)+`\u001b[2J","messages":[{"role":"user","content":"hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+clientKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "e2e-local-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || resp.Header.Get("x-request-id") != "e2e-local-1" {
		t.Fatalf("status %d, x-request-id %q", resp.StatusCode, resp.Header.Get("x-request-id"))
	}
	if len(b) > 512 || strings.Contains(string(b), "\x1b") {
		t.Fatalf("error body %d bytes: %q", len(b), b)
	}
}

// TestLargeBodyIntact sends a body large enough for llmux's codec to hold
// it once and send its translation without a copy (processor.Codec), and
// checks that the provider receives the translation intact.
func TestLargeBodyIntact(t *testing.T) {
	cfg := strings.Replace(configTemplate, "  max_request_body_bytes: 65536\n", "  max_request_body_bytes: 2097152\n", 1)
	r := startRigWith(t, cfg, nil)
	content := strings.Repeat("0123456789abcdef", 40<<10) // 640 KiB
	req, err := http.NewRequest(http.MethodPost, r.baseURL+"chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+content+`"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+clientKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	rec, ok := r.fake.Last()
	if !ok {
		t.Fatal("no request reached the provider")
	}
	if got := rec.JSON("messages.0.content").String(); got != content {
		t.Fatalf("provider got %d bytes of content, want %d", len(got), len(content))
	}
	if got := rec.JSON("model").String(); got != "gpt-4o-mini-2024-07-18" {
		t.Fatalf("provider got model %q", got)
	}
	if cl := rec.Header.Get("content-length"); cl != "" && cl != strconv.Itoa(len(rec.Body)) {
		t.Fatalf("content-length %s for %d bytes", cl, len(rec.Body))
	}
}
