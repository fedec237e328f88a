package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
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
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready\nserving config ", "/status": `"ready": true`, "/config": `"api_key_env": "LLMUX_APP_TEST_PROVIDER_KEY"`, "/metrics": `llmux_requests_total{`, "/debug/pprof/": "goroutine", "/routing": "["} {
		code, body := get(t, base+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d %q", path, code, body[:min(len(body), 200)])
		}
		if strings.Contains(body, providerSecret) || strings.Contains(body, "sk-client-1") {
			t.Errorf("%s leaks a secret", path)
		}
	}
	// The limiter's mode (docs/limits.md): in memory without limits.redis.
	if code, body := get(t, base+"/readyz"); code != 200 || !strings.Contains(body, "limits: memory\n") {
		t.Errorf("/readyz lacks the limits mode: %q", body)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, `llmux_ratelimit_mode{`) {
		t.Error("/metrics lacks llmux_ratelimit_mode")
	}
}

// modelsStatus sends GET /v1/models with key over ext_proc and returns the
// status of llmux's immediate response.
func modelsStatus(t *testing.T, grpcAddr, key string) int32 {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hdrs := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/v1/models")}, {Key: "authorization", RawValue: []byte("Bearer " + key)}}}
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdrs, EndOfStream: true}}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	return int32(r.GetImmediateResponse().GetStatus().GetCode())
}

// metric returns the value of the first sample of /metrics named name
// whose labels include every label given ("result=\"invalid\""), or ""
// when there is none.
func metric(t *testing.T, adminAddr, name string, labels ...string) string {
	t.Helper()
	_, body := get(t, "http://"+adminAddr+"/metrics")
	for line := range strings.Lines(body) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(rest, l)
		}
		if all {
			return rest[strings.LastIndexByte(rest, ' ')+1:]
		}
	}
	return ""
}

// apply writes text as the configuration and waits for the reload. No
// write is missed however early it lands: the watcher registers its
// watches before it compares the files with what was loaded.
func apply(t *testing.T, a *app, dir, text string, wantOK bool) {
	t.Helper()
	writeConfig(t, dir, text)
	a.awaitReload(t, wantOK)
}

// awaitReload waits for the next reload and checks its outcome.
func (a *app) awaitReload(t *testing.T, wantOK bool) {
	t.Helper()
	select {
	case ok := <-a.reloads:
		if ok != wantOK {
			t.Fatalf("reload ok=%v, want %v\n%s", ok, wantOK, a.logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no reload reported\n%s", a.logs)
	}
}

// rotated checks that newKey authenticates over ext_proc and oldKey no
// longer does.
func (a *app) rotated(t *testing.T, newKey, oldKey string) {
	t.Helper()
	if modelsStatus(t, a.grpcAddr, newKey) != 200 || modelsStatus(t, a.grpcAddr, oldKey) != 401 {
		t.Error("the rotated key is not in force")
	}
}

// TestInvalidReloadKeepsReady writes a broken file: llmux stays ready and
// keeps serving the old config; the failure shows in /readyz's body,
// /status, the metrics and one log line with the field paths; a later
// good file is picked up.
func TestInvalidReloadKeepsReady(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, cfgText)
	a := startApp(t, path)
	base := "http://" + a.adminAddr
	if v := metric(t, a.adminAddr, "llmux_config_last_reload_success"); v != "1" {
		t.Fatalf("llmux_config_last_reload_success %q before any reload", v)
	}
	loaded := metric(t, a.adminAddr, "llmux_config_loaded_timestamp_seconds")

	apply(t, a, dir, cfgText+"bogus: true\n", false)
	code, body := get(t, base+"/readyz")
	if code != 200 || !strings.HasPrefix(body, "ready\nserving config ") || !strings.Contains(body, "failed (the config above is still serving)") || !strings.Contains(body, "bogus: unknown field") {
		t.Fatalf("readyz %d %q", code, body)
	}
	code, js := get(t, base+"/status")
	var st status
	if err := json.Unmarshal([]byte(js), &st); err != nil || code != 200 {
		t.Fatalf("status %d %s: %v", code, js, err)
	}
	if !st.Ready || st.LastReloadOK || !strings.Contains(st.LastReloadError, "bogus: unknown field") || st.ConfigLoadedAt.IsZero() || !st.LastReloadAt.After(st.ConfigLoadedAt) {
		t.Fatalf("status %+v", st)
	}
	for _, c := range []struct{ name, label, want string }{
		{"llmux_config_last_reload_success", "", "0"},
		{"llmux_config_loaded_timestamp_seconds", "", loaded},
		{"llmux_config_reloads_total", `result="invalid"`, "1"},
	} {
		if got := metric(t, a.adminAddr, c.name, c.label); got != c.want {
			t.Errorf("%s{%s} = %q, want %q", c.name, c.label, got, c.want)
		}
	}
	if modelsStatus(t, a.grpcAddr, "sk-client-1") != 200 {
		t.Error("the old config does not serve")
	}
	var failures []map[string]any
	for line := range strings.Lines(a.logs.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "configuration reload failed; still serving the previous configuration" {
			failures = append(failures, rec)
		}
	}
	if len(failures) != 1 || fmt.Sprint(failures[0]["fields"]) != "[bogus]" || failures[0]["serving_version"] != st.ConfigVersion {
		t.Errorf("failure log lines %v", failures)
	}
	for _, out := range []string{body, js, a.logs.String()} {
		if strings.Contains(out, providerSecret) {
			t.Fatal("a secret leaked")
		}
	}
	if code, cfg := get(t, base+"/config"); code != 200 || strings.Contains(cfg, "bogus") {
		t.Fatalf("the old config should stay in force: %s", cfg)
	}

	apply(t, a, dir, strings.Replace(cfgText, "model: gpt-4o-mini", "model: gpt-4o", 1), true)
	if code, body := get(t, base+"/readyz"); code != 200 || strings.Contains(body, "failed") {
		t.Fatalf("readyz after the fix %d %q", code, body)
	}
	if v := metric(t, a.adminAddr, "llmux_config_last_reload_success"); v != "1" {
		t.Errorf("llmux_config_last_reload_success %q after the fix", v)
	}
	if _, cfg := get(t, base+"/config"); !strings.Contains(cfg, `"model": "gpt-4o"`) {
		t.Errorf("the fixed config is not in force: %s", cfg)
	}
}

// TestReadyzNotReadyWhenDraining: readiness is false once llmux shuts down.
func TestReadiness(t *testing.T) {
	path := writeConfig(t, t.TempDir(), cfgText)
	t.Setenv("LLMUX_APP_TEST_KEY", "k")
	t.Setenv("LLMUX_APP_TEST_PROVIDER_KEY", "p")
	store, err := config.NewStore(path, config.LoadOptions{Kinds: translate.KnownKinds})
	if err != nil {
		t.Fatal(err)
	}
	var st state
	for _, c := range []struct {
		serving, draining bool
		want              string
	}{
		{false, false, "not ready: the gRPC server is not serving"},
		{true, false, "ready"},
		{true, true, "not ready: shutting down"},
	} {
		st.serving.Store(c.serving)
		st.draining.Store(c.draining)
		srv := httptest.NewServer(adminMux(store, prometheus.NewRegistry(), &st))
		code, body := get(t, srv.URL+"/readyz")
		srv.Close()
		if !strings.HasPrefix(body, c.want) || (code == 200) != (c.want == "ready") {
			t.Errorf("%+v: %d %q", c, code, body)
		}
	}
}

// TestSIGHUPReloads sends the process a real SIGHUP: the configuration is
// reloaded although no file changed, so a rotated environment variable
// takes effect.
func TestSIGHUPReloads(t *testing.T) {
	a := startApp(t, writeConfig(t, t.TempDir(), cfgText))
	if modelsStatus(t, a.grpcAddr, "sk-client-1") != 200 {
		t.Fatal("the first key does not authenticate")
	}
	t.Setenv("LLMUX_APP_TEST_KEY", "sk-client-2")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.awaitReload(t, true)
	a.rotated(t, "sk-client-2", "sk-client-1")
	if !strings.Contains(a.logs.String(), `"cause":"request"`) {
		t.Errorf("the reload's cause is not logged:\n%s", a.logs)
	}
}

// TestStartupLogNamesProviders: the startup log names the configured
// providers and counts deployments and model groups.
func TestStartupLogNamesProviders(t *testing.T) {
	a := startApp(t, writeConfig(t, t.TempDir(), cfgText))
	for line := range strings.Lines(a.logs.String()) {
		if strings.Contains(line, `"msg":"llmux-extproc started"`) {
			for _, want := range []string{`"providers":"openai (openai)"`, `"deployments":1`, `"model_groups":1`, `"config_version":"`} {
				if !strings.Contains(line, want) {
					t.Errorf("startup line lacks %s: %s", want, line)
				}
			}
			return
		}
	}
	t.Fatalf("no startup line:\n%s", a.logs)
}

func TestBadFlagsAndConfig(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][]string{
		"missing file": {"-config", filepath.Join(dir, "none.yaml")},
		"bad level":    {"-config", writeConfig(t, dir, cfgText), "-log-level", "loud"},
		"bad format":   {"-config", writeConfig(t, dir, cfgText), "-log-format", "xml"},
		"stray arg":    {"-config", writeConfig(t, dir, cfgText), "extra"},
		"bad poll":     {"-config", writeConfig(t, dir, cfgText), "-config-poll-interval", "0s"},
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

// TestSecretVolumeRotation rotates a client key mounted from a Kubernetes
// Secret (a ..data symlink swap, as the kubelet does it): once the reload
// is reported, the new key authenticates over ext_proc and the old one no
// longer does.
func TestSecretVolumeRotation(t *testing.T) {
	secrets := t.TempDir()
	version := func(ts, key string) {
		if err := os.Mkdir(filepath.Join(secrets, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secrets, ts, "client.key"), []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(ts, filepath.Join(secrets, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(secrets, "..data_tmp"), filepath.Join(secrets, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2026_12_03_22_00_00.000000001", "sk-rotated-old")
	if err := os.Symlink("..data/client.key", filepath.Join(secrets, "client.key")); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(cfgText, "key_env: LLMUX_APP_TEST_KEY", "key_file: "+filepath.Join(secrets, "client.key"), 1)
	a := startApp(t, writeConfig(t, t.TempDir(), cfg))
	if modelsStatus(t, a.grpcAddr, "sk-rotated-old") != 200 {
		t.Fatal("the mounted key does not authenticate")
	}
	version("..2026_12_03_22_05_00.000000002", "sk-rotated-new")
	if err := os.RemoveAll(filepath.Join(secrets, "..2026_12_03_22_00_00.000000001")); err != nil {
		t.Fatal(err)
	}
	a.awaitReload(t, true)
	a.rotated(t, "sk-rotated-new", "sk-rotated-old")
	if strings.Contains(a.logs.String(), "sk-rotated") {
		t.Error("a key reached the log")
	}
}
