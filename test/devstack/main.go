// Command devstack is what `make run` starts: llmux-extproc with the example
// configuration, Envoy (a real envoy from PATH, else the stand-in in
// test/envoysim, with a loud warning) on envoy/standalone.yaml, and — unless
// OPENAI_API_KEY is set and a real Envoy is available — a local fake OpenAI
// provider, so the printed curl works with no key and no network.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

const demoKey = "sk-llmux-demo"

// options are devstack's flags.
type options struct {
	bin, cfg, bootstrap, grpcAddr, admin string
	port                                 int
	build                                bool // build bin (go build ./cmd/extproc) after the port check
}

func main() {
	var o options
	flag.StringVar(&o.bin, "llmux", "bin/llmux-extproc", "the llmux-extproc binary")
	flag.StringVar(&o.cfg, "config", "proto/config/example.yaml", "llmux configuration")
	flag.StringVar(&o.bootstrap, "envoy-config", "envoy/standalone.yaml", "Envoy bootstrap")
	flag.StringVar(&o.grpcAddr, "grpc", "127.0.0.1:50051", "llmux gRPC address")
	flag.StringVar(&o.admin, "admin", "127.0.0.1:9090", "llmux admin address")
	flag.IntVar(&o.port, "port", 10000, "Envoy ingress port (the egress listener takes the next one)")
	flag.BoolVar(&o.build, "build", false, "build the llmux binary (go build -o <llmux> ./cmd/extproc) once the ports are known to be free")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("devstack: ")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && !errors.Is(err, context.Canceled) {
		stop()
		log.Print(err)
		os.Exit(1)
	}
}

// step prints what devstack is doing.
func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

// port is an address devstack needs free.
type port struct{ addr, what, flag string }

// ports are the addresses o needs.
func (o options) ports() []port {
	return []port{
		{o.grpcAddr, "llmux gRPC (ext_proc)", "-grpc 127.0.0.1:PORT"},
		{o.admin, "llmux admin", "-admin 127.0.0.1:PORT"},
		{net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)), "Envoy ingress", "-port PORT"},
		{net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port+1)), "Envoy egress (ingress port + 1)", "-port PORT"},
	}
}

// checkPorts fails, naming every taken port, what it is for and what to
// do, when one of ports cannot be listened on.
func checkPorts(ports []port) error {
	var b strings.Builder
	for _, p := range ports {
		ln, err := net.Listen("tcp", p.addr)
		if err == nil {
			ln.Close()
			continue
		}
		_, num, _ := net.SplitHostPort(p.addr)
		fmt.Fprintf(&b, "\n  %s (%s) is not free: %v\n    see what holds it: ss -ltnp 'sport = :%s'   (an earlier `make run` still running?)\n    or move it:        make run DEVSTACK_FLAGS='%s'\n", p.addr, p.what, errorsCause(err), num, p.flag)
	}
	if b.Len() > 0 {
		return fmt.Errorf("ports taken, nothing started:%s", b.String())
	}
	return nil
}

// errorsCause drops the "listen tcp addr:" prefix of a listen error.
func errorsCause(err error) error {
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		return oe.Err
	}
	return err
}

func run(ctx context.Context, o options) error {
	bin, cfg, bootstrap, grpcAddr, admin, port := o.bin, o.cfg, o.bootstrap, o.grpcAddr, o.admin, o.port
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	step("checking that ports %s, %s, %d and %d are free", grpcAddr, admin, port, port+1)
	if err := checkPorts(o.ports()); err != nil {
		return err
	}
	if o.build {
		step("building %s (go build ./cmd/extproc)", bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/extproc")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", bin, err)
		}
	}
	step("looking for Envoy")
	findEnvoy(ctx)
	_, envoyErr := exec.LookPath("envoy")
	realProvider := os.Getenv("OPENAI_API_KEY") != "" && envoyErr == nil
	// Demo values for every credential the example configuration names.
	for _, k := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_API_KEY"} {
		if os.Getenv(k) == "" {
			os.Setenv(k, "sk-demo-"+strings.ToLower(k))
		}
	}
	if os.Getenv("LLMUX_DEMO_KEY") == "" {
		os.Setenv("LLMUX_DEMO_KEY", demoKey)
	}

	clusters := map[string]string{"llmux": grpcAddr}
	if !realProvider {
		step("starting the demo providers (local fakes; no key or network needed)")
		stop, err := startDemoProviders(clusters)
		if err != nil {
			return err
		}
		defer stop()
	}

	// The limits' counters (proto/config/example.yaml, limits.redis).
	if os.Getenv("LLMUX_REDIS_ADDRESSES") == "" {
		if addr, stopRedis, err := startRedis(ctx); err != nil {
			step("NOTICE: limits run in llmux's memory, not Redis: %v", err)
		} else {
			defer stopRedis()
			os.Setenv("LLMUX_REDIS_ADDRESSES", addr)
			step("started redis-server on %s for the limits (LLMUX_REDIS_ADDRESSES)", addr)
		}
	}

	step("starting llmux-extproc: gRPC %s, admin http://%s, config %s", grpcAddr, admin, cfg)
	llmux := exec.CommandContext(ctx, bin, "-config", cfg, "-grpc-listen", grpcAddr, "-admin-listen", admin)
	llmux.Stdout, llmux.Stderr = os.Stderr, os.Stderr
	llmux.Cancel = func() error { return llmux.Process.Signal(syscall.SIGTERM) }
	llmux.WaitDelay = 35 * time.Second
	if err := llmux.Start(); err != nil {
		return fmt.Errorf("start %s: %w (run `make build` first)", bin, err)
	}
	llmuxDone := make(chan struct{})
	var llmuxErr error
	go func() { llmuxErr = llmux.Wait(); close(llmuxDone) }()
	defer func() { cancel(); <-llmuxDone }()
	step("waiting for llmux to answer its gRPC health check on %s", grpcAddr)
	if err := waitHealthy(ctx, grpcAddr, llmuxDone); err != nil {
		select {
		case <-llmuxDone:
			return fmt.Errorf("llmux-extproc exited before it was healthy (%v); its log is above", llmuxErr)
		default:
		}
		return err
	}
	step("starting Envoy with %s: ingress 127.0.0.1:%d, egress 127.0.0.1:%d", bootstrap, port, port+1)

	gw, err := envoysim.StartGateway(ctx, envoysim.Options{
		BootstrapPath: bootstrap,
		Clusters:      clusters,
		ListenerPorts: map[string]int{"ingress": port, "egress": port + 1},
		AccessLog:     os.Stdout,
	})
	if err != nil {
		return fmt.Errorf("start Envoy: %w", err)
	}
	defer gw.Close()
	if gw.Kind() != "envoy" {
		fmt.Fprint(os.Stderr, `
************************************************************************
*  No envoy binary on PATH: running the Envoy STAND-IN (test/envoysim).*
*  It is a TEST INSTRUMENT that imitates Envoy's ext_proc filter; it   *
*  is NOT a proxy for real traffic. Install Envoy for anything else.   *
************************************************************************
`)
	}
	ingress := gw.Addr("ingress")
	curl := fmt.Sprintf(`curl -s http://%s/v1/chat/completions \
  -H 'Authorization: Bearer %s' -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`, ingress, os.Getenv("LLMUX_DEMO_KEY"))
	fmt.Printf("\nllmux is up (%s gateway on %s, llmux admin on http://%s).\nTry:\n\n%s\n\n", gw.Kind(), ingress, admin, curl)
	fmt.Printf("The demo key may send 10 requests a minute (policy demo-key, docs/limits.md); the 11th gets 429:\n\n%s\n\n", fmt.Sprintf(`for i in $(seq 11); do curl -s -o /dev/null -w '%%{http_code} ' http://%s/v1/chat/completions \
  -H 'Authorization: Bearer %s' -H 'content-type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'; done; echo`, ingress, os.Getenv("LLMUX_DEMO_KEY")))
	step("self-check: sending the request above once")
	if out, err := selfCheck(ctx, ingress); err != nil {
		log.Printf("self-check failed: %v", err)
	} else {
		fmt.Printf("self-check reply: %s\n\nCtrl-C stops everything.\n", out)
	}
	select {
	case <-ctx.Done():
		return nil
	case <-llmuxDone:
		return fmt.Errorf("llmux-extproc exited (%v); its log is above", llmuxErr)
	}
}

// startDemoProviders starts a fake of every provider the example
// configuration uses and points the Envoy clusters at them. The fakes check
// the credentials llmux sends, so the demo exercises the same auth paths.
func startDemoProviders(clusters map[string]string) (stop func(), err error) {
	var closers []func()
	stop = func() {
		for _, c := range closers {
			c()
		}
	}
	// Bedrock requests are SigV4-signed with the AWS default chain: give
	// it the fake's test credentials unless real ones are set.
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		os.Setenv("AWS_ACCESS_KEY_ID", fakeprovider.BedrockAccessKeyID)
		os.Setenv("AWS_SECRET_ACCESS_KEY", fakeprovider.BedrockSecretAccessKey)
		os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	}
	start := func(cluster string, listen func() (*fakeprovider.Server, error)) error {
		s, err := listen()
		if err != nil {
			return fmt.Errorf("demo provider for %s: %w", cluster, err)
		}
		closers = append(closers, s.Close)
		clusters[cluster] = s.Addr()
		log.Printf("demo provider %s (fake %s) on %s", cluster, s.Name(), s.Addr())
		return nil
	}
	const any = "127.0.0.1:0"
	for _, f := range []struct {
		cluster string
		listen  func() (*fakeprovider.Server, error)
	}{
		{"openai", func() (*fakeprovider.Server, error) {
			return fakeprovider.ListenOpenAI(any, fakeprovider.OpenAIOptions{APIKey: os.Getenv("OPENAI_API_KEY")})
		}},
		{"anthropic", func() (*fakeprovider.Server, error) {
			return fakeprovider.ListenAnthropic(any, fakeprovider.AnthropicOptions{APIKey: os.Getenv("ANTHROPIC_API_KEY")})
		}},
		{"azure", func() (*fakeprovider.Server, error) {
			return fakeprovider.ListenAzure(any, fakeprovider.AzureOptions{APIKey: os.Getenv("AZURE_OPENAI_API_KEY")})
		}},
		{"gemini", func() (*fakeprovider.Server, error) {
			return fakeprovider.ListenGemini(any, fakeprovider.GeminiOptions{APIKey: os.Getenv("GEMINI_API_KEY")})
		}},
		{"bedrock_us_east_1", func() (*fakeprovider.Server, error) {
			return fakeprovider.ListenBedrock(any, fakeprovider.BedrockOptions{Region: "us-east-1"})
		}},
		// The example's OpenAI-compatible server (provider local-vllm).
		{"vllm", func() (*fakeprovider.Server, error) {
			return fakeprovider.ListenOpenAI(any, fakeprovider.OpenAIOptions{})
		}},
	} {
		if err := start(f.cluster, f.listen); err != nil {
			stop()
			return nil, err
		}
	}
	// local-vllm sends no key, like a vLLM server without --api-key; the
	// OpenAI fake wants one, so a loopback proxy in front adds it.
	vllm, err := keyProxy(clusters["vllm"])
	if err != nil {
		stop()
		return nil, err
	}
	closers = append(closers, func() { _ = vllm.Close() })
	clusters["vllm"] = vllm.Addr().String()
	// Clusters with no fake (Vertex) point at the OpenAI fake, so the
	// stand-in loads the bootstrap; requests to them fail visibly.
	for _, c := range []string{"vertex_us_central1"} {
		clusters[c] = clusters["openai"]
	}
	return stop, nil
}

// waitHealthy waits until llmux answers the gRPC health check, giving up
// at once when exited is closed.
func waitHealthy(ctx context.Context, addr string, exited <-chan struct{}) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-hctx.Done():
		}
	}()
	if _, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		return fmt.Errorf("llmux did not become healthy on %s: %w", addr, err)
	}
	return nil
}

// selfCheck sends the printed request once.
func selfCheck(ctx context.Context, ingress string) (string, error) {
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ingress+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("LLMUX_DEMO_KEY"))
	req.Header.Set("content-type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// findEnvoy puts an Envoy on PATH when none is there but func-e is: func-e
// downloads Envoy releases. Where it cannot (no network), the stand-in is
// used instead.
func findEnvoy(ctx context.Context) {
	if _, err := exec.LookPath("envoy"); err == nil {
		return
	}
	if _, err := exec.LookPath("func-e"); err != nil {
		log.Printf("no envoy and no func-e on PATH")
		return
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(fctx, "func-e", "which").Output()
	if err != nil {
		log.Printf("func-e could not provide Envoy: %v", err)
		return
	}
	bin := strings.TrimSpace(string(out))
	if _, err := os.Stat(bin); err != nil {
		log.Printf("func-e named %q, which does not exist: %v", bin, err)
		return
	}
	os.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	log.Printf("using Envoy from func-e: %s", bin)
}

// keyProxy serves a reverse proxy to target on a loopback port that adds
// "Authorization: Bearer" with a demo key to requests that have none.
func keyProxy(target string) (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo provider proxy for vllm: %w", err)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(&url.URL{Scheme: "http", Host: target})
		r.Out.Host = r.In.Host
		if r.Out.Header.Get("Authorization") == "" {
			r.Out.Header.Set("Authorization", "Bearer "+demoKey)
		}
	}, FlushInterval: -1}
	srv := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln, nil
}
