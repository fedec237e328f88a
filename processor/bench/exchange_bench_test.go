// Package bench_test measures whole ext_proc exchanges, one per provider
// kind, against the no-op floor. It is its own test binary because it
// registers every translator, as the llmux binary does (the processor's
// unit tests register only OpenAI's).
package bench_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/processor/internal/extproctest"
	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/anthropic"
	_ "github.com/llmux/llmux/translate/azure"
	_ "github.com/llmux/llmux/translate/bedrock"
	_ "github.com/llmux/llmux/translate/gemini"
	_ "github.com/llmux/llmux/translate/openai"
)

const (
	clientKey = "sk-bench-0123456789abcdefghijklmnop"
	// serveEnv makes the test binary an ext_proc server (floor or llmux)
	// for BenchmarkExchangeServer, which measures that process's CPU.
	serveEnv = "LLMUX_BENCH_SERVE"
	// profileEnv names a directory where each child server writes its
	// CPU and allocation profiles (cpu-<impl>.pprof, allocs-<impl>.pprof).
	profileEnv = "LLMUX_BENCH_SERVER_PROFILE"
	// wrapEnv is a command that runs each child server, such as
	// valgrind (callgrind.sh): a child's instruction count, unlike its
	// CPU time, does not depend on the machine's load.
	wrapEnv = "LLMUX_BENCH_SERVER_WRAP"
	// idEnv tells a child server which run it serves,
	// <provider>-<impl>-<b.N>, for the wrapper's output file names
	// (valgrind's %q{LLMUX_BENCH_ID}).
	idEnv = "LLMUX_BENCH_ID"
)

// provider is one provider kind's non-streamed response, from the
// translator's fixtures with the reply text lengthened to a realistic size.
type provider struct {
	name, fixture, textPath string
}

var providers = []provider{
	{"openai", "../../translate/openai/testdata/chat.json", "choices.0.message.content"},
	{"anthropic", "../../translate/anthropic/testdata/message.json", "content.0.text"},
	{"bedrock", "../../translate/bedrock/testdata/converse_text.json", "output.message.content.0.text"},
	{"gemini", "../../translate/gemini/testdata/generate_text.json", "candidates.0.content.parts.0.text"},
	{"azure", "../../translate/azure/testdata/chat.json", "choices.0.message.content"},
}

// replyText is the assistant's answer in every provider's response.
const replyText = "An API gateway for language models sits between applications and the providers they call. " +
	"It authenticates each caller with the gateway's own keys, picks a deployment of the requested model, " +
	"rewrites the request into the provider's format and signs it, then turns the provider's answer back " +
	"into the OpenAI format the client expects. Along the way it records usage, latency and errors per " +
	"tenant, so that operators can see who spends what, and it keeps provider credentials out of client " +
	"hands. Retries, fallbacks and limits build on the same place in the path."

// chatBody is a ~1 KB non-streamed chat request for model group g.
func chatBody(g string) []byte {
	return []byte(`{"model":"` + g + `","messages":[` +
		`{"role":"system","content":"You are a concise technical writer. Answer in one paragraph of plain prose, without lists or headings, and define any acronym you use."},` +
		`{"role":"user","content":"What does a reverse proxy do?"},` +
		`{"role":"assistant","content":"A reverse proxy receives requests on behalf of one or more servers, forwards each to a server that can answer it, and returns the answer as if it were its own. It can terminate TLS, balance load, cache responses and hide the servers' addresses."},` +
		`{"role":"user","content":"And how is an API gateway for language models different? Explain what it adds on top of a reverse proxy for teams that call several model providers, and keep it under two hundred words."}],` +
		`"temperature":0.2,"max_tokens":400,"user":"user-1234"}`)
}

// responseBody is p's fixture, compacted, with replyText as its text.
func responseBody(tb testing.TB, p provider) []byte {
	tb.Helper()
	raw, err := os.ReadFile(p.fixture)
	if err != nil {
		tb.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		tb.Fatal(err)
	}
	out, err := sjson.SetBytes(compact.Bytes(), p.textPath, replyText)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func headers(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

// exchange is the message sequence Envoy sends for one non-streamed
// request: request headers, the buffered request body, response headers
// and the whole response body.
type exchange [4]*extprocv3.ProcessingRequest

func newExchange(tb testing.TB, p provider) exchange {
	body := chatBody(p.name)
	resp := responseBody(tb, p)
	return exchange{
		{
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: headers(
				":authority", "llm-gateway.internal:8080", ":path", "/v1/chat/completions", ":method", "POST", ":scheme", "http",
				"content-type", "application/json", "content-length", fmt.Sprint(len(body)), "accept", "application/json",
				"authorization", "Bearer "+clientKey, "user-agent", "OpenAI/Python 1.109.1",
				"x-stainless-lang", "python", "x-stainless-retry-count", "0", "x-forwarded-proto", "http",
				"x-request-id", "5f0c2b8e-3f4a-4d7e-9b1c-2a6d8e4f7a90")}},
			ProtocolConfig: &extprocv3.ProtocolConfiguration{
				RequestBodyMode:  extprocfilterv3.ProcessingMode_BUFFERED,
				ResponseBodyMode: extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			},
		},
		{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}},
		{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: headers(
			":status", "200", "content-type", "application/json", "content-length", fmt.Sprint(len(resp)),
			"date", "Thu, 03 Dec 2026 22:00:00 GMT", "x-request-id", "req_8d3b6f2a9c1e4b7d", "server", "envoy",
			"x-envoy-upstream-service-time", "812")}}},
		{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: resp, EndOfStream: true}}},
	}
}

// run sends one exchange on a new stream and returns the replies. The
// response headers and body go out together: llmux answers a
// non-streamed response's headers once the body is in, the floor at once.
func (x exchange) run(ctx context.Context, client extprocv3.ExternalProcessorClient, keep bool) ([]*extprocv3.ProcessingResponse, error) {
	s, err := client.Process(ctx)
	if err != nil {
		return nil, err
	}
	var got []*extprocv3.ProcessingResponse
	recv := func() error {
		r, err := s.Recv()
		if keep && r != nil {
			got = append(got, r)
		}
		return err
	}
	for _, step := range [][]int{{0}, {1}, {2, 3}} {
		for _, i := range step {
			if err := s.Send(x[i]); err != nil {
				return got, err
			}
		}
		for range step {
			if err := recv(); err != nil {
				return got, err
			}
		}
	}
	_ = s.CloseSend()
	for range 10 {
		if _, err := s.Recv(); err != nil {
			if err == io.EOF {
				return got, nil
			}
			return got, err
		}
	}
	return got, fmt.Errorf("stream did not end")
}

// benchEnv is the process environment the servers read: keys and the
// AWS default chain's credentials (no shared config files).
func benchEnv(dir string) (map[string]string, error) {
	for _, f := range []string{"config", "credentials"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			return nil, err
		}
	}
	return map[string]string{
		"BENCH_CLIENT_KEY":            clientKey,
		"BENCH_PROVIDER_KEY":          "provider-secret-0123456789",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_ACCESS_KEY_ID":           "AKIAIOSFODNN7EXAMPLE",
		"AWS_SECRET_ACCESS_KEY":       "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_EC2_METADATA_DISABLED":   "true",
	}, nil
}

// newServer returns the floor or llmux as the binary wires it: metrics
// through the Prometheus exporter, JSON logs at info level.
func newServer(impl string) (extprocv3.ExternalProcessorServer, error) {
	if impl == "floor" {
		return extproctest.Noop{}, nil
	}
	cfg, err := config.Load("testdata/llmux.yaml", config.LoadOptions{Kinds: translate.KnownKinds})
	if err != nil {
		return nil, err
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		return nil, err
	}
	metrics, err := telemetry.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter)))
	if err != nil {
		return nil, err
	}
	var tracer *tracing.Tracer
	switch impl {
	case "llmux-traced":
		// Every request sampled, its spans queued to a batch processor as
		// the binary does; the exporter discards them, so the network
		// export (in the background) is not counted.
		tracer = tracing.New(sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter())))
	case "llmux-unsampled":
		// Tracing on, this request not sampled (sample_ratio's other side).
		tracer = tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter())))
	}
	return processor.New(processor.Options{
		Config:  func() *config.Runtime { return cfg },
		Logger:  slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Metrics: metrics,
		Tracer:  tracer,
	}), nil
}

// setEnv sets the benchmark environment for this process.
func setEnv(tb testing.TB) map[string]string {
	env, err := benchEnv(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range env {
		tb.Setenv(k, v)
	}
	return env
}

func connect(tb testing.TB, impl string) extprocv3.ExternalProcessorClient {
	tb.Helper()
	srv, err := newServer(impl)
	if err != nil {
		tb.Fatal(err)
	}
	addr, stop, err := extproctest.Serve(srv)
	if err != nil {
		tb.Fatal(err)
	}
	client, conn, err := extproctest.Dial(addr)
	if err != nil {
		stop()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(); stop() })
	return client
}

// TestExchange checks that the benchmarked exchange is the successful
// one: llmux forwards the request and answers with the provider's reply
// as an OpenAI chat completion.
func TestExchange(t *testing.T) {
	setEnv(t)
	client := connect(t, "llmux")
	for _, p := range providers {
		t.Run(p.name, func(t *testing.T) {
			got, err := newExchange(t, p).run(t.Context(), client, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 4 {
				t.Fatalf("got %d replies, want 4: %v", len(got), got)
			}
			if got[1].GetRequestBody().GetResponse().GetBodyMutation().GetBody() == nil {
				t.Errorf("request body not rewritten: %v", got[1])
			}
			for _, h := range got[2].GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
				if h.GetHeader().GetKey() == ":status" {
					t.Errorf("status rewritten to %s", h.GetHeader().GetRawValue())
				}
			}
			body := got[3].GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse().GetBody()
			if gjson.GetBytes(body, "object").String() != "chat.completion" || !strings.HasPrefix(gjson.GetBytes(body, "choices.0.message.content").String(), replyText) {
				t.Errorf("response body %s", body)
			}
			md := got[3].GetDynamicMetadata().GetFields()[config.DefaultMetadataNamespace].GetStructValue().GetFields()
			if md["status"].GetNumberValue() != 200 || md["provider"].GetStringValue() != p.name || md["input_tokens"] == nil {
				t.Errorf("metadata %v", md)
			}
		})
	}
}

// concurrency is the number of exchanges in flight per GOMAXPROCS, as
// Envoy multiplexes many requests' streams on one connection: the
// transport then batches frames, and what remains per exchange is closer
// to a loaded server's cost than one exchange at a time.
const concurrency = 8

// parallel runs b.N exchanges, concurrency per CPU at a time.
func (x exchange) parallel(b *testing.B, client extprocv3.ExternalProcessorClient) {
	b.SetParallelism(concurrency)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := x.run(ctx, client, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkExchange measures one whole non-streamed exchange per provider
// kind (four messages, three gRPC round trips, on a new ext_proc stream)
// through llmux and through the floor, client and server in this process.
func BenchmarkExchange(b *testing.B) {
	setEnv(b)
	impls := []string{"floor", "llmux", "llmux-traced", "llmux-unsampled"}
	clients := map[string]extprocv3.ExternalProcessorClient{}
	for _, impl := range impls {
		clients[impl] = connect(b, impl)
	}
	for _, p := range providers {
		x := newExchange(b, p)
		for _, impl := range impls {
			b.Run(p.name+"/"+impl, func(b *testing.B) {
				b.ReportAllocs()
				x.parallel(b, clients[impl])
			})
		}
	}
}

// BenchmarkExchangeServer measures what BenchmarkExchange does, but with
// the server in a child process, as Envoy sees it: srv-ns/op is the
// child's CPU time (user and system) per exchange, srv-B/op and
// srv-allocs/op its heap allocations.
func BenchmarkExchangeServer(b *testing.B) {
	env, err := benchEnv(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range providers {
		x := newExchange(b, p)
		for _, impl := range []string{"floor", "llmux", "llmux-traced", "llmux-unsampled"} {
			b.Run(p.name+"/"+impl, func(b *testing.B) {
				c := startChild(b, impl, fmt.Sprintf("%s-%s-%d", p.name, impl, b.N), env)
				ctx := context.Background()
				for range 200 { // warm up: credentials, pools, caches
					if _, err := x.run(ctx, c.client, false); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				before := c.stats(b)
				x.parallel(b, c.client)
				after := c.stats(b)
				n := b.N
				b.ReportMetric(float64(after.cpuNs-before.cpuNs)/float64(n), "srv-ns/op")
				b.ReportMetric(float64(after.bytes-before.bytes)/float64(n), "srv-B/op")
				b.ReportMetric(float64(after.mallocs-before.mallocs)/float64(n), "srv-allocs/op")
			})
		}
	}
}

type child struct {
	client extprocv3.ExternalProcessorClient
	in     io.Writer
	out    *bufio.Scanner
}

type serverStats struct{ cpuNs, mallocs, bytes uint64 }

func startChild(b *testing.B, impl, id string, env map[string]string) *child {
	b.Helper()
	args := []string{os.Args[0], "-test.run=^$"}
	if wrap := strings.Fields(os.Getenv(wrapEnv)); len(wrap) > 0 {
		args = append(wrap, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), serveEnv+"="+impl, idEnv+"="+id)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	out := bufio.NewScanner(outPipe)
	if !out.Scan() {
		b.Fatalf("child server did not start: %v", out.Err())
	}
	client, conn, err := extproctest.Dial(out.Text())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return &child{client: client, in: in, out: out}
}

func (c *child) stats(b *testing.B) serverStats {
	b.Helper()
	if _, err := io.WriteString(c.in, "stats\n"); err != nil {
		b.Fatal(err)
	}
	if !c.out.Scan() {
		b.Fatalf("child server: %v", c.out.Err())
	}
	var s serverStats
	if _, err := fmt.Sscan(c.out.Text(), &s.cpuNs, &s.mallocs, &s.bytes); err != nil {
		b.Fatal(err)
	}
	return s
}

// serveChild is the child process of BenchmarkExchangeServer: it serves
// impl on loopback, prints the address, answers each "stats" line on
// stdin with its CPU time and allocation counters, and exits at EOF.
func serveChild(impl string) error {
	srv, err := newServer(impl)
	if err != nil {
		return err
	}
	addr, stop, err := extproctest.Serve(srv)
	if err != nil {
		return err
	}
	defer stop()
	if dir := os.Getenv(profileEnv); dir != "" {
		// CPU and allocation profiles of the server alone, written at exit.
		f, err := os.Create(filepath.Join(dir, "cpu-"+impl+".pprof"))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
			if h, err := os.Create(filepath.Join(dir, "allocs-"+impl+".pprof")); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(h, 0)
				h.Close()
			}
		}()
	}
	fmt.Println(addr)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if strings.TrimSpace(in.Text()) != "stats" {
			continue
		}
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return err
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Println(ru.Utime.Nano()+ru.Stime.Nano(), ms.Mallocs, ms.TotalAlloc)
	}
	return in.Err()
}

func TestMain(m *testing.M) {
	if impl := os.Getenv(serveEnv); impl != "" {
		if err := serveChild(impl); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
