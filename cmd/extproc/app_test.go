package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const cfgText = `auth:
  keys:
  - {name: k, tenant: t, key_env: LLMUX_APP_TEST_KEY}
providers:
- name: openai
  kind: openai
  cluster: openai
  credentials: {api_key_env: LLMUX_APP_TEST_PROVIDER_KEY}
deployments:
- {name: d, provider: openai, model: gpt-4o-mini}
model_groups:
- {name: gpt-4o-mini, deployments: [d]}
`

const providerSecret = "sk-provider-must-not-leak-42"

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "llmux.yaml")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type app struct {
	grpcAddr, adminAddr string
	cancel              context.CancelFunc
	done                chan error
	reloads             chan bool
	logs                *syncBuf
}

func startApp(t *testing.T, cfgPath string, extra ...string) *app {
	t.Helper()
	t.Setenv("LLMUX_APP_TEST_KEY", "sk-client-1")
	t.Setenv("LLMUX_APP_TEST_PROVIDER_KEY", providerSecret)
	ctx, cancel := context.WithCancel(context.Background())
	a := &app{cancel: cancel, done: make(chan error, 1), logs: &syncBuf{}, reloads: make(chan bool, 16)}
	ready := make(chan struct{})
	args := append([]string{"-config", cfgPath, "-grpc-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-log-format", "json"}, extra...)
	go func() {
		a.done <- run(ctx, args, a.logs, &hooks{
			started:  func(g, ad string) { a.grpcAddr, a.adminAddr = g, ad; close(ready) },
			reloaded: func(ok bool) { a.reloads <- ok },
		})
	}()
	select {
	case <-ready:
	case err := <-a.done:
		t.Fatalf("run: %v\n%s", err, a.logs)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-a.done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	return a
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	dir := t.TempDir()
	a := startApp(t, writeConfig(t, dir, cfgText))
	conn, err := grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
	// One request without a key, so the request metrics exist.
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hdrs := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/v1/models")}}}
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdrs, EndOfStream: true}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetImmediateResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("%v %v", r, err)
	}
	base := "http://" + a.adminAddr
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/config": `"api_key_env": "LLMUX_APP_TEST_PROVIDER_KEY"`, "/metrics": `llmux_requests_total{`, "/debug/pprof/": "goroutine"} {
		code, body := get(t, base+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q", path, code, body[:min(len(body), 200)])
		}
		if strings.Contains(body, providerSecret) || strings.Contains(body, "sk-client-1") {
			t.Errorf("%s leaks a secret", path)
		}
	}

}

// TestInvalidReloadShowsInReadyz writes a broken file: the old config stays
// in force and /readyz says why it is not ready; a fix makes it ready.
func TestInvalidReloadShowsInReadyz(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, cfgText)
	a := startApp(t, path)
	url := "http://" + a.adminAddr + "/readyz"
	// The watcher may still be starting when a write lands: write until a
	// reload with the wanted outcome is reported.
	apply := func(text string, wantOK bool) {
		t.Helper()
		for i := 0; ; i++ {
			writeConfig(t, dir, text+"# "+strconv.Itoa(i)+"\n")
			select {
			case ok := <-a.reloads:
				if ok != wantOK {
					t.Fatalf("reload ok=%v, want %v", ok, wantOK)
				}
				return
			case <-time.After(200 * time.Millisecond):
				if i > 50 {
					t.Fatal("no reload reported")
				}
			}
		}
	}
	apply(cfgText+"bogus: true\n", false)
	code, body := get(t, url)
	if code != 503 || !strings.Contains(body, "bogus: unknown field") {
		t.Fatalf("readyz %d %q", code, body)
	}
	if strings.Contains(body, providerSecret) {
		t.Fatal("readyz leaks a secret")
	}
	if code, cfg := get(t, "http://"+a.adminAddr+"/config"); code != 200 || strings.Contains(cfg, "bogus") {
		t.Fatalf("the old config should stay in force: %s", cfg)
	}
	apply(cfgText, true)
	if code, body := get(t, url); code != 200 || body != "ready\n" {
		t.Fatalf("readyz after the fix %d %q", code, body)
	}
	if !strings.Contains(a.logs.String(), "configuration change rejected") {
		t.Error("the rejection was not logged")
	}
}

func TestBadFlagsAndConfig(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"missing file": {"-config", filepath.Join(dir, "none.yaml")},
		"bad level":    {"-config", writeConfig(t, dir, cfgText), "-log-level", "loud"},
		"bad format":   {"-config", writeConfig(t, dir, cfgText), "-log-format", "xml"},
		"stray arg":    {"-config", writeConfig(t, dir, cfgText), "extra"},
	} {
		if err := run(context.Background(), args, io.Discard, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	t.Setenv("LLMUX_APP_TEST_KEY", "k")
	err := run(context.Background(), []string{"-config", writeConfig(t, dir, cfgText)}, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "providers[0].credentials.api_key_env: environment variable LLMUX_APP_TEST_PROVIDER_KEY is not set") {
		t.Errorf("invalid config error: %v", err)
	}
}

// TestSIGTERMDrains builds the binary, opens an ext_proc stream, sends
// SIGTERM and checks that the open stream is still served, then that the
// process exits 0 once it ends.
func TestSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "llmux-extproc")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "llmux.sock")
	cmd := exec.Command(bin, "-config", writeConfig(t, dir, cfgText), "-grpc-listen", "unix://"+sock, "-admin-listen", "", "-shutdown-grace", "20s")
	cmd.Env = append(os.Environ(), "LLMUX_APP_TEST_KEY=sk-client-1", "LLMUX_APP_TEST_PROVIDER_KEY="+providerSecret)
	var logs syncBuf
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	draining := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		seen := false
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			if !seen && strings.Contains(sc.Text(), "draining") {
				seen = true
				close(draining)
			}
		}
	}()
	defer pw.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Wait until the server answers health (the socket appears at startup).
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never became healthy: %v\n%s", err, logs.String())
		}
	}

	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hdrs := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":method", RawValue: []byte("POST")}, {Key: ":path", RawValue: []byte("/v1/chat/completions")},
		{Key: "authorization", RawValue: []byte("Bearer sk-client-1")},
	}}
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdrs}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Wait until the server says it is draining, then use the open stream.
	select {
	case <-draining:
	case err := <-exited:
		t.Fatalf("exited before the stream ended: %v\n%s", err, logs.String())
	}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: true}}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil || r.GetRequestBody() == nil {
		t.Fatalf("in-flight stream not served during the drain: %v %v", r, err)
	}
	_ = stream.CloseSend()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("did not exit after the stream ended\n%s", logs.String())
	}
	if strings.Contains(logs.String(), providerSecret) {
		t.Fatal("logs leak the provider key")
	}
}
