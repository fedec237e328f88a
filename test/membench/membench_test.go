// Package membench measures llmux's memory with large request bodies
// (issue 6): a benchmark that drives a llmux gRPC server in a child
// process.
package membench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.uber.org/goleak"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/anthropic"
	_ "github.com/llmux/llmux/translate/openai"
)

const (
	testKey     = "sk-membench-client-0001"
	providerKey = "sk-membench-provider-0001"
)

func TestMain(m *testing.M) {
	if os.Getenv(memChildEnv) != "" {
		// This binary was started as BenchmarkLargeBodies's server.
		os.Exit(runMemChild())
	}
	goleak.VerifyTestMain(m)
}

// requestHeaders is the request_headers message of a chat request.
func requestHeaders() *extprocv3.ProcessingRequest {
	m := &corev3.HeaderMap{}
	for _, kv := range [][2]string{{":method", "POST"}, {":path", "/v1/chat/completions"}, {"authorization", "Bearer " + testKey}, {"content-type", "application/json"}} {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: m}}}
}

// BenchmarkLargeBodies measures llmux's memory for large request bodies
// the way issue 6 describes them: N concurrent streams, each sending
// request headers and one buffered body of the given size, through a real
// gRPC server in a child process (so the client's own buffers do not
// count). The child samples its heap every 200 µs; the benchmark reports
// the peak of heap objects (live and not yet swept), the peak of all
// memory the Go runtime mapped (close to the process's RSS), and the
// bytes allocated per round.
//
//	go test -run '^$' -bench LargeBodies -benchtime 3x ./test/membench/
//
// LLMUX_MEMBENCH_PROFILE=/tmp/allocs.pprof makes the child write its
// allocation profile there.
func BenchmarkLargeBodies(b *testing.B) {
	const n, size = 10, 15 << 20
	cases := []struct {
		name, model string
		budget      int64 // server.max_buffered_bytes; 0: the default
	}{
		{"openai", "gpt-4o-mini", 0},
		{"anthropic", "claude", 0},
		{"openai/max_buffered_bytes=64MiB", "gpt-4o-mini", 64 << 20},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			child := startMemChild(b, tc.budget)
			body := largeBody(tc.model, size)
			b.SetBytes(int64(n * len(body)))
			b.ResetTimer()
			var refused atomic.Int64
			for range b.N {
				var wg sync.WaitGroup
				for range n {
					wg.Go(func() {
						if !sendLarge(b, child.client, body) {
							refused.Add(1)
						}
					})
				}
				wg.Wait()
			}
			b.StopTimer()
			r := child.report(b)
			b.ReportMetric(float64(r.PeakLive)/(1<<20), "peak-live-MiB")
			b.ReportMetric(float64(r.PeakRuntime)/(1<<20), "peak-runtime-MiB")
			b.ReportMetric(float64(r.TotalAlloc)/float64(b.N)/(1<<20), "alloc-MiB/round")
			b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/round")
		})
	}
}

// TestMemChild runs the benchmark's machinery once with small bodies: the
// child serves, translates for both providers, refuses a body over its
// limit and reports.
func TestMemChild(t *testing.T) {
	child := startMemChild(t, 0)
	for _, model := range []string{"gpt-4o-mini", "claude"} {
		if !sendLarge(t, child.client, largeBody(model, 1<<20)) {
			t.Fatalf("%s: not forwarded", model)
		}
	}
	if sendLarge(t, child.client, largeBody("gpt-4o-mini", 17<<20)) {
		t.Fatal("a body over max_request_body_bytes was forwarded")
	}
	if r := child.report(t); r.TotalAlloc < 2<<20 || r.PeakLive == 0 {
		t.Fatalf("report %+v", r)
	}
}

// largeBody is a chat request for model whose one message makes the body
// about size bytes.
func largeBody(model string, size int) []byte {
	head := `{"model":"` + model + `","messages":[{"role":"user","content":"`
	tail := `"}]}`
	return []byte(head + strings.Repeat("a", size-len(head)-len(tail)) + tail)
}

// sendLarge runs the request phases of one stream; false means llmux
// answered with an immediate response instead of forwarding.
func sendLarge(b testing.TB, c extprocv3.ExternalProcessorClient, body []byte) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Process(ctx)
	if err != nil {
		b.Error(err)
		return false
	}
	roundTripErr := func(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
		if err := s.Send(req); err != nil {
			b.Error(err)
			return nil
		}
		resp, err := s.Recv()
		if err != nil {
			b.Error(err)
			return nil
		}
		return resp
	}
	if r := roundTripErr(requestHeaders()); r == nil || r.GetImmediateResponse() != nil {
		b.Errorf("request headers: %v", r)
		return false
	}
	r := roundTripErr(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}})
	return r != nil && r.GetImmediateResponse() == nil
}

const (
	memChildEnv  = "LLMUX_MEMBENCH_CHILD"
	memBudgetEnv = "LLMUX_MEMBENCH_BUDGET"
)

const memChildConfig = `
server:
  max_request_body_bytes: 16777216
  max_buffered_bytes: %s
auth:
  keys:
  - {name: k, tenant: t, key_env: LLMUX_TEST_KEY}
providers:
- {name: openai, kind: openai, cluster: openai, credentials: {api_key_env: OPENAI_API_KEY}}
- {name: claude, kind: anthropic, cluster: anthropic, credentials: {api_key_env: OPENAI_API_KEY}}
deployments:
- {name: gpt, provider: openai, model: gpt-4o-mini-2024-07-18}
- {name: claude, provider: claude, model: claude-sonnet-4-5}
model_groups:
- {name: gpt-4o-mini, deployments: [gpt]}
- {name: claude, deployments: [claude]}
`

type memReport struct {
	PeakLive    uint64 `json:"peak_live"`
	PeakRuntime uint64 `json:"peak_runtime"` // all memory the Go runtime mapped
	TotalAlloc  uint64 `json:"total_alloc"`
}

type memChild struct {
	client extprocv3.ExternalProcessorClient
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// startMemChild runs this test binary as a llmux gRPC server (see
// runMemChild) and connects to it.
func startMemChild(b testing.TB, budget int64) *memChild {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), memChildEnv+"=1", fmt.Sprintf("%s=%d", memBudgetEnv, budget))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	rd := bufio.NewReader(out)
	addr, err := rd.ReadString('\n')
	if err != nil {
		b.Fatalf("child: %v", err)
	}
	conn, err := grpc.NewClient(strings.TrimSpace(addr), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return &memChild{client: extprocv3.NewExternalProcessorClient(conn), stdin: stdin, stdout: rd}
}

func (c *memChild) report(b testing.TB) memReport {
	b.Helper()
	if _, err := io.WriteString(c.stdin, "report\n"); err != nil {
		b.Fatal(err)
	}
	line, err := c.stdout.ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	var r memReport
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		b.Fatalf("child report %q: %v", line, err)
	}
	return r
}

// runMemChild is the child side of BenchmarkLargeBodies: a llmux gRPC
// server configured like the binary (64 MiB receive limit, llmux's codec), which prints
// its address, samples its heap, and prints a memReport for each "report"
// line on stdin until stdin closes.
func runMemChild() int {
	env := map[string]string{"LLMUX_TEST_KEY": testKey, "OPENAI_API_KEY": providerKey}
	cfg, err := config.Parse([]byte(fmt.Sprintf(memChildConfig, os.Getenv(memBudgetEnv))), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.ForceServerCodecV2(processor.Codec()))
	extprocv3.RegisterExternalProcessorServer(gs, processor.New(processor.Options{Config: func() *config.Runtime { return cfg },
		Logger: slog.New(slog.DiscardHandler)}))
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	var peakLive, peakSys atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			metrics.Read(samples)
			if v := samples[0].Value.Uint64(); v > peakLive.Load() {
				peakLive.Store(v)
			}
			if v := samples[1].Value.Uint64(); v > peakSys.Load() {
				peakSys.Store(v)
			}
		}
	}()
	defer func() { close(stop); <-done }()

	fmt.Println(lis.Addr().String())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if p := os.Getenv("LLMUX_MEMBENCH_PROFILE"); p != "" {
			if f, err := os.Create(p); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}
		b, _ := json.Marshal(memReport{PeakLive: peakLive.Load(), PeakRuntime: peakSys.Load(), TotalAlloc: ms.TotalAlloc})
		fmt.Println(string(b))
	}
	if err := in.Err(); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
