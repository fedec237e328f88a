package envoysim

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestStandaloneEgressListener runs envoy/standalone.yaml's egress listener
// (llmux's own provider calls, issue 8): the cluster header picks the fake
// provider, the header never reaches it, ext_proc is not involved, and the
// access log marks the line as egress.
func TestStandaloneEgressListener(t *testing.T) {
	doc, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	proc := newProcServer(t)
	openai := newUpstream(t, false, func(w http.ResponseWriter, _ *http.Request, _ []byte) { _, _ = io.WriteString(w, "openai") })
	anthropic := newUpstream(t, false, func(w http.ResponseWriter, _ *http.Request, b []byte) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append([]byte("anthropic:"), b...))
	})
	clusters := map[string]string{"llmux": proc.addr, "openai": openai.addr, "anthropic": anthropic.addr}
	for _, c := range []string{"bedrock_us_east_1", "gemini", "vertex_us_central1", "azure", "vllm"} {
		clusters[c] = "127.0.0.1:1"
	}
	s, err := Start(context.Background(), Options{Bootstrap: doc, Clusters: clusters, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	call := func(cluster string) (int, string) {
		t.Helper()
		var req *http.Request
		if cluster != "" {
			req, err = http.NewRequest("POST", "http://"+s.Addr("egress")+"/v1/messages", strings.NewReader(`{"x":1}`))
		} else {
			// A GET: the 503 comes before any request body is read.
			req, err = http.NewRequest("GET", "http://"+s.Addr("egress")+"/v1/messages", nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if cluster != "" {
			req.Header.Set("x-llmux-upstream", cluster)
		}
		req.Header.Set("x-request-id", "rid-1")
		c := client(false)
		defer c.CloseIdleConnections()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := call("anthropic"); st != 200 || body != `anthropic:{"x":1}` {
		t.Fatalf("egress → anthropic: %d %q", st, body)
	}
	got := anthropic.got(t)
	if got.path != "/v1/messages" || got.header.Get("x-llmux-upstream") != "" {
		t.Errorf("provider got %s with x-llmux-upstream %q", got.path, got.header.Get("x-llmux-upstream"))
	}
	openai.none(t)
	proc.noStream(t)
	if n := s.Stats()["ext_proc.streams_started"]; n != 0 {
		t.Errorf("ext_proc streams on egress: %d", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	logs, err := s.WaitAccessLogs(ctx, 1) // the line follows the response
	if err != nil {
		t.Fatal(err)
	}
	if l := logs[0]; l["listener"] != "egress" || l["upstream_cluster"] != "anthropic" || l["request_id"] != "rid-1" {
		t.Errorf("egress access log line: %v", l)
	}
	// Without the header no cluster matches: Envoy's 503 (NC).
	if st, _ := call(""); st != 503 {
		t.Errorf("no cluster header: %d, want 503", st)
	}
	if logs, err = s.WaitAccessLogs(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if l := logs[1]; l["listener"] != "egress" || l["response_flags"] != "NC" {
		t.Errorf("egress access log line: %v", l)
	}
}
