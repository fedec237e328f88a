package e2e

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/llmux/llmux/envoy"
	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

// envoyModes are the two behaviours llmux must handle: Envoy 1.34–1.36
// (Istio 1.26–1.28), whose local replies skip ext_proc, and 1.37+, whose
// local replies pass through llmux.
var envoyModes = []string{envoysim.Envoy136, envoysim.Envoy137}

// Limits of the mode rig's bootstrap, small so the tests stay cheap.
const (
	modeRouteTimeout = 300 * time.Millisecond
	modeBufferLimit  = 128 << 10
)

// modesConfig adds to the usual configuration a provider whose cluster
// Envoy does not have and one whose cluster points at a closed port, and
// raises llmux's body limit above Envoy's buffer limit so that Envoy's 413
// comes first.
const modesConfig = `
server:
  max_request_body_bytes: 1048576
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: openai
  kind: openai
  cluster: openai
  credentials: {api_key_env: E2E_PROVIDER_KEY}
- name: ghost
  kind: openai
  cluster: no_such_cluster
  credentials: {api_key_env: E2E_PROVIDER_KEY}
- name: refused
  kind: openai
  cluster: gemini
  credentials: {api_key_env: E2E_PROVIDER_KEY}
deployments:
- {name: gpt-4o-mini-openai, provider: openai, model: gpt-4o-mini-2024-07-18}
- {name: ghost-openai, provider: ghost, model: gpt-4o-mini-2024-07-18}
- {name: refused-openai, provider: refused, model: gpt-4o-mini-2024-07-18}
model_groups:
- {name: gpt-4o-mini, deployments: [gpt-4o-mini-openai]}
- {name: ghost, deployments: [ghost-openai]}
- {name: refused, deployments: [refused-openai]}
`

// modeBootstrap is envoy/standalone.yaml with a short route timeout and a
// small listener buffer limit on the ingress listener, everything else as
// shipped (local_reply_config included).
func modeBootstrap(t *testing.T) []byte {
	t.Helper()
	raw, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := envoy.DecodeYAML(raw, &b); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != "ingress" {
			continue
		}
		found = true
		l.PerConnectionBufferLimitBytes = wrapperspb.UInt32(modeBufferLimit)
		f := l.GetFilterChains()[0].GetFilters()[0]
		var hcm hcmv3.HttpConnectionManager
		if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			t.Fatal(err)
		}
		if hcm.GetLocalReplyConfig() == nil {
			t.Fatal("standalone.yaml: the ingress connection manager has no local_reply_config")
		}
		for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				r.GetRoute().Timeout = durationpb.New(modeRouteTimeout)
			}
		}
		a, err := anypb.New(&hcm)
		if err != nil {
			t.Fatal(err)
		}
		f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	}
	if !found {
		t.Fatal("standalone.yaml: no ingress listener")
	}
	js, err := protojson.Marshal(&b)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// startModeRig starts the stack with the Envoy stand-in in one version mode.
func startModeRig(t *testing.T, mode string, clusters map[string]string) *rig {
	t.Helper()
	boot := modeBootstrap(t)
	r := startRigOpts(t, modesConfig, clusters, func(o *envoysim.Options) {
		o.BootstrapPath = ""
		o.Bootstrap = boot
		o.EnvoyVersion = mode
	})
	if r.sim == nil {
		t.Fatalf("mode %s needs the Envoy stand-in (a binary is one version)", mode)
	}
	return r
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// wantOpenAIError asserts that the SDK got an OpenAI error: JSON, the
// status, the code, a message and a type.
func wantOpenAIError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *openai.Error, got %T %v", err, err)
	}
	ct := ""
	if ae.Response != nil {
		ct = ae.Response.Header.Get("Content-Type")
	}
	if !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content-type %q, want application/json (body %q)", ct, ae.RawJSON())
	}
	if ae.StatusCode != status || ae.Code != code || ae.Message == "" || ae.Type == "" {
		t.Errorf("got %d code %q type %q message %q (body %q), want %d %q", ae.StatusCode, ae.Code, ae.Type, ae.Message, ae.RawJSON(), status, code)
	}
}

// TestEnvoyErrorsInBothModes drives Envoy's own failures — an unknown
// cluster, an upstream reset before headers, a refused connection, the route
// timeout, a body over Envoy's buffer limit — through the shipped
// configuration in both Envoy modes, and checks that the SDK sees an
// OpenAI error every time (never an empty or text/plain body), and that the
// 1.34–1.36 mode really kept the local replies away from llmux.
func TestEnvoyErrorsInBothModes(t *testing.T) {
	for _, mode := range envoyModes {
		t.Run("envoy-"+mode, func(t *testing.T) {
			r := startModeRig(t, mode, map[string]string{"gemini": closedPort(t)})
			ctx := context.Background()
			chat := func(model, content string, opts ...option.RequestOption) error {
				_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg(content)}, opts...)
				return err
			}
			gate := "modes-timeout-" + mode
			t.Cleanup(func() { r.fake.Release(gate) })
			for _, tc := range []struct {
				name   string
				call   func() error
				status int
				code   string
			}{
				{"missing cluster", func() error { return chat("ghost", "hi") }, 503, "upstream_unavailable"},
				{"reset before headers", func() error {
					return chat("gpt-4o-mini", "hi", withFault(fakeprovider.HeaderFault, fakeprovider.FaultResetBeforeHeaders))
				}, 503, "upstream_unavailable"},
				{"connection refused", func() error { return chat("refused", "hi") }, 503, "upstream_unavailable"},
				{"route timeout", func() error { return chat("gpt-4o-mini", "hi", withFault(fakeprovider.HeaderHold, gate)) }, 504, "timeout"},
				{"over the buffer limit", func() error { return chat("gpt-4o-mini", strings.Repeat("x", modeBufferLimit+1)) }, 413, "request_too_large"},
			} {
				t.Run(tc.name, func(t *testing.T) { wantOpenAIError(t, tc.call(), tc.status, tc.code) })
			}
			skipped := r.sim.Stats()["ext_proc.local_reply_skipped_ext_proc"]
			if mode == envoysim.Envoy136 && skipped < 4 {
				t.Errorf("1.36 mode: %d local replies skipped ext_proc, want every one", skipped)
			}
			if mode == envoysim.Envoy137 && skipped != 0 {
				t.Errorf("1.37 mode: %d local replies skipped ext_proc, want none", skipped)
			}
			r.waitNoStreams()
		})
	}
}

// TestClientCannotSteerEnvoy: a client's x-llmux-upstream and x-envoy-*
// headers have no effect and never reach the provider, on either mode.
func TestClientCannotSteerEnvoy(t *testing.T) {
	for _, mode := range envoyModes {
		t.Run("envoy-"+mode, func(t *testing.T) {
			r := startModeRig(t, mode, nil)
			_, err := r.client.Chat.Completions.New(context.Background(),
				openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hi")},
				option.WithHeader("x-llmux-upstream", "no_such_cluster"),
				option.WithHeader("x-envoy-upstream-rq-timeout-ms", "1"),
				option.WithHeader("x-envoy-max-retries", "7"),
				option.WithHeader("x-envoy-retry-on", "5xx"))
			if err != nil {
				t.Fatalf("request with client routing headers: %v", err)
			}
			got, ok := r.fake.Last()
			if !ok {
				t.Fatal("the provider got no request")
			}
			for _, k := range []string{"x-llmux-upstream", "x-envoy-upstream-rq-timeout-ms", "x-envoy-max-retries",
				"x-envoy-retry-on", "x-envoy-expected-rq-timeout-ms"} {
				if v := got.Header.Get(k); v != "" {
					t.Errorf("provider got %s: %q", k, v)
				}
			}
			r.waitNoStreams()
		})
	}
}
