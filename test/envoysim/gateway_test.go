package envoysim

import (
	"context"
	"io"
	"net/http"
	"testing"
)

// Without an envoy binary (or with LLMUX_E2E_ENVOY=sim) StartGateway is the sim.
func TestStartGatewayFallsBackToSim(t *testing.T) {
	t.Setenv("LLMUX_E2E_ENVOY", "sim")
	up := newUpstream(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte) { _, _ = io.WriteString(w, "ok") })
	g, err := StartGateway(context.Background(), Options{Bootstrap: []byte(tcfg{noExtProc: true}.yaml()),
		Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": up.addr, "other": "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Kind() != "sim" {
		t.Fatalf("kind %q", g.Kind())
	}
	resp, err := client(false).Get("http://" + g.Addr("ingress") + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok" || up.got(t).header.Get("x-forwarded-proto") != "http" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

// The response body is streamed chunk by chunk, not buffered.
func TestStreamsUnbuffered(t *testing.T) {
	release := make(chan struct{})
	e := start(t, tcfg{noExtProc: true}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		_, _ = io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second")
	})
	resp, err := client(true).Get(e.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		close(release)
		t.Fatalf("first chunk not delivered before the upstream finished: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

// Options.Clusters accepts "unix:/path" (the sim dials it); the real-Envoy
// rewrite must turn it into a pipe endpoint rather than fail.
func TestLoopbackBootstrapUnixCluster(t *testing.T) {
	doc := []byte(tcfg{}.yaml())
	lb, err := LoopbackBootstrap(doc, map[string]string{"extproc": "unix:/tmp/llmux.sock", "upstream": "127.0.0.1:9"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := decodeBootstrap(lb)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		a := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
		switch c.GetName() {
		case "extproc":
			if a.GetPipe().GetPath() != "/tmp/llmux.sock" {
				t.Errorf("extproc endpoint %v, want pipe /tmp/llmux.sock", a)
			}
		case "upstream":
			if a.GetSocketAddress().GetPortValue() != 9 {
				t.Errorf("upstream endpoint %v", a)
			}
		}
	}
}
