// Package e2e drives llmux end to end: the official OpenAI Go SDK → Envoy
// (a real envoy when one is on PATH, else the stand-in in test/envoysim)
// loading envoy/standalone.yaml → llmux over real gRPC → a fake provider
// speaking the provider's wire format.
package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/anthropic"
	_ "github.com/llmux/llmux/translate/azure"
	_ "github.com/llmux/llmux/translate/bedrock"
	_ "github.com/llmux/llmux/translate/gemini"
	_ "github.com/llmux/llmux/translate/openai"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	clientKey   = "sk-e2e-client-0123456789"
	providerKey = "sk-e2e-provider-9876543210"
	maxBody     = 64 << 10
)

// unservedKind is a provider kind the configuration accepts but no
// translator serves, so its deployments are always unavailable (503).
const unservedKind = "unserved"

const configTemplate = `
server:
  max_request_body_bytes: 65536
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: openai
  kind: openai
  cluster: openai
  credentials: {api_key_env: E2E_PROVIDER_KEY}
- name: unserved
  kind: unserved
  cluster: anthropic
deployments:
- {name: gpt-4o-mini-openai, provider: openai, model: gpt-4o-mini-2024-07-18}
- {name: embed-openai, provider: openai, model: text-embedding-3-small}
- {name: claude, provider: unserved, model: claude-sonnet-4-5}
model_groups:
- {name: gpt-4o-mini, deployments: [gpt-4o-mini-openai]}
- {name: text-embedding-3-small, deployments: [embed-openai]}
- {name: claude-sonnet, deployments: [claude]}
`

// rigProcessorOptions, when a test sets it (and resets it in Cleanup),
// adjusts the options of the processor the next rig starts, e.g. a Router
// on the test's clock. The e2e tests do not run in parallel.
var rigProcessorOptions func(*processor.Options)

// rigEgress, when a test sets it (and resets it in Cleanup), gives the
// next rigs llmux's egress listener: server.egress_address in the llmux
// configuration, the listener on that port (withEgress, owned_test.go).
var rigEgress bool

// rig is one running stack.
type rig struct {
	t        *testing.T
	fake     *fakeprovider.Server
	gw       envoysim.Gateway
	sim      *envoysim.Sim // nil against real Envoy
	client   openai.Client
	baseURL  string
	streams  *streamTracker
	envoyLog *syncBuffer
	llmuxLog *syncBuffer // llmux's own log, debug level
}

// streamTracker counts ext_proc streams in progress on the llmux side.
type streamTracker struct {
	*processor.Server
	mu     sync.Mutex
	active int
	ended  chan struct{}
}

func (s *streamTracker) Process(st extprocv3.ExternalProcessor_ProcessServer) error {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
		select {
		case s.ended <- struct{}{}:
		default:
		}
	}()
	return s.Server.Process(st)
}

func (s *streamTracker) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startRig(t *testing.T) *rig {
	t.Helper()
	return startRigWith(t, configTemplate, nil)
}

// startRigWith starts a stack with an llmux configuration and extra fake
// providers (cluster name → address; unnamed provider clusters point at the
// OpenAI fake). Configurations may use the E2E_CLIENT_KEY and
// E2E_PROVIDER_KEY environment variables.
func startRigWith(t *testing.T, cfgYAML string, clusters map[string]string) *rig {
	t.Helper()
	return startRigOpts(t, cfgYAML, clusters, nil)
}

// startRigOpts is startRigWith with a hook that adjusts the gateway's
// options (an Envoy version mode, a modified bootstrap) before it starts.
func startRigOpts(t *testing.T, cfgYAML string, clusters map[string]string, gwOpts func(*envoysim.Options)) *rig {
	t.Helper()
	t.Setenv("E2E_CLIENT_KEY", clientKey)
	t.Setenv("E2E_PROVIDER_KEY", providerKey)
	var egressLn net.Listener
	if rigEgress { // owned_test.go
		cfgYAML, egressLn = withEgress(t, cfgYAML)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "llmux.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := config.NewStore(cfgPath, config.LoadOptions{Kinds: append(translate.KnownKinds[:len(translate.KnownKinds):len(translate.KnownKinds)], unservedKind)})
	if err != nil {
		t.Fatal(err)
	}

	fake := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	llmuxLog := &syncBuffer{}
	popts := processor.Options{Config: store.Current, Logger: slog.New(slog.NewTextHandler(llmuxLog, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if rigProcessorOptions != nil {
		rigProcessorOptions(&popts)
	}
	tracker := &streamTracker{
		Server: processor.New(popts),
		ended:  make(chan struct{}, 64),
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.ForceServerCodecV2(processor.Codec()))
	extprocv3.RegisterExternalProcessorServer(gs, tracker)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	logBuf := &syncBuffer{}
	opts := envoysim.Options{
		BootstrapPath: "../../envoy/standalone.yaml",
		Clusters:      providerClusters(lis.Addr().String(), fake.Addr(), clusters),
		AccessLog:     logBuf,
	}
	if egressLn != nil {
		opts.Listeners = map[string]net.Listener{"egress": egressLn}
		t.Cleanup(tracker.Server.Close) // the egress client's connections
	}
	if gwOpts != nil {
		gwOpts(&opts)
	}
	gw, err := envoysim.StartGateway(context.Background(), opts)
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	t.Logf("gateway: %s", gw.Kind())

	base := "http://" + gw.Addr("ingress") + "/v1/"
	r := &rig{
		t: t, fake: fake, gw: gw, streams: tracker, envoyLog: logBuf, llmuxLog: llmuxLog, baseURL: base,
		client: openai.NewClient(option.WithBaseURL(base), option.WithAPIKey(clientKey), option.WithMaxRetries(0), option.WithRequestTimeout(30*time.Second)),
	}
	if sim, ok := gw.(*envoysim.Sim); ok {
		r.sim = sim
	}
	return r
}

// accessLog returns the n-th access log entry (the stand-in only).
func (r *rig) accessLogs(n int) []map[string]any {
	r.t.Helper()
	if r.sim == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	logs, err := r.sim.WaitAccessLogs(ctx, n)
	if err != nil {
		r.t.Fatalf("access logs: %v", err)
	}
	return logs
}

// waitNoStreams waits until llmux has no ext_proc stream in progress.
func (r *rig) waitNoStreams() {
	r.t.Helper()
	deadline := time.After(10 * time.Second)
	for r.streams.Active() != 0 {
		select {
		case <-r.streams.ended:
		case <-deadline:
			r.t.Fatalf("%d ext_proc streams still open", r.streams.Active())
		}
	}
}

// providerClusters points every cluster of envoy/standalone.yaml at
// loopback: llmux at its gRPC server, every provider at the fake.
func providerClusters(llmux, fake string, extra map[string]string) map[string]string {
	m := map[string]string{"llmux": llmux}
	for _, c := range []string{"openai", "anthropic", "bedrock_us_east_1", "gemini", "vertex_us_central1", "azure"} {
		m[c] = fake
	}
	for c, addr := range extra {
		m[c] = addr
	}
	return m
}
