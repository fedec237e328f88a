package e2e

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/processor/route"
	"github.com/llmux/llmux/test/fakeprovider"
)

// routingConfig has one group on two OpenAI-compatible fakes: the primary
// (cluster openai, the rig's fake) and, a tier lower, the secondary
// (cluster azure, a second fake). Two failures within a minute cool a
// deployment down for 30 s.
const routingConfig = `
server:
  max_request_body_bytes: 65536
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: primary, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: secondary, kind: openai, cluster: azure, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: mini-primary, provider: primary, model: gpt-4o-mini}
- {name: mini-secondary, provider: secondary, model: gpt-4o-mini, priority: 1}
- {name: big, provider: primary, model: gpt-4o}
model_groups:
- name: gpt-4o-mini
  deployments: [mini-primary, mini-secondary]
  routing: {health: {failures: 2, window: 1m, cooldown: 30s}}
- {name: gpt-4o, deployments: [big]}
`

// batchHost is envoy/standalone.yaml's virtual host with a per-route
// llmux policy: model_groups [gpt-4o-mini, gemini-flash, llama] and the
// cost strategy.
const batchHost = "batch.llmux.internal"

// routingClock is the Router's clock in these tests: real time plus what
// the test adds, so a cooldown can pass without waiting for it.
type routingClock struct{ skew atomic.Int64 }

func (c *routingClock) Now() time.Time          { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *routingClock) Advance(d time.Duration) { c.skew.Add(int64(d)) }

// withHost sends the request with Host host to the gateway's address: the
// virtual host Envoy picks. It is set below the SDK, which refuses a Host
// other than its base URL's.
func withHost(host string) option.RequestOption {
	return option.WithHTTPClient(&http.Client{Transport: hostTransport(host)})
}

type hostTransport string

func (h hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Host = string(h)
	return http.DefaultTransport.RoundTrip(req)
}

// startRoutingRig starts the stack on routingConfig with the Router on
// clock.
func startRoutingRig(t *testing.T, clock *routingClock) (*rig, *fakeprovider.Server) {
	t.Helper()
	secondary := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey, Reply: "from the secondary"})
	rigProcessorOptions = func(o *processor.Options) { o.Router = route.New(route.Options{Now: clock.Now}) }
	t.Cleanup(func() { rigProcessorOptions = nil })
	r := startRigWith(t, routingConfig, map[string]string{"azure": secondary.Addr()})
	return r, secondary
}

// chat sends one chat request with request id id and returns its error.
func (r *rig) chat(id, model string, opts ...option.RequestOption) error {
	r.t.Helper()
	opts = append(opts, option.WithHeader("x-request-id", id))
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hi.")},
	}, opts...)
	return err
}

// logsByID waits for n access log lines and indexes them by request id.
func (r *rig) logsByID(n int) map[string]map[string]any {
	r.t.Helper()
	out := map[string]map[string]any{}
	for _, l := range r.accessLogs(n) {
		id, _ := l["request_id"].(string)
		out[id] = l
	}
	return out
}

// TestRoutingCooldownE2E: the primary fails twice, is cooled down, and
// traffic moves to the secondary; once the cooldown is over (on the
// Router's clock), the primary serves again. The access log names the
// deployment and the reason for each request.
func TestRoutingCooldownE2E(t *testing.T) {
	clock := &routingClock{}
	r, secondary := startRoutingRig(t, clock)
	// The primary's next three requests: a success, then two 503s.
	fail := fakeprovider.DefaultFault()
	fail.Status = http.StatusServiceUnavailable
	r.fake.Enqueue(fakeprovider.DefaultFault(), fail, fail)

	steps := []struct {
		id         string
		advance    time.Duration
		wantErr    int // the status the client gets, 0 for success
		deployment string
	}{
		{id: "route-1", deployment: "mini-primary"},
		{id: "route-2", wantErr: 503, deployment: "mini-primary"},
		{id: "route-3", wantErr: 503, deployment: "mini-primary"}, // the second failure: cooldown
		{id: "route-4", deployment: "mini-secondary"},
		{id: "route-5", advance: 29 * time.Second, deployment: "mini-secondary"},
		{id: "route-6", advance: 2 * time.Second, deployment: "mini-primary"}, // the cooldown is over: the probe
		{id: "route-7", deployment: "mini-primary"},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		err := r.chat(s.id, "gpt-4o-mini")
		var apiErr *openai.Error
		switch {
		case s.wantErr == 0 && err != nil:
			t.Fatalf("%s: %v", s.id, err)
		case s.wantErr != 0 && (!errors.As(err, &apiErr) || apiErr.StatusCode != s.wantErr):
			t.Fatalf("%s: error %v, want status %d", s.id, err, s.wantErr)
		}
	}
	logs := r.logsByID(len(steps))
	for _, s := range steps {
		l := logs[s.id]
		if l == nil {
			t.Fatalf("no access log for %s: %v", s.id, logs)
		}
		if l["deployment"] != s.deployment || l["routing_reason"] != "weighted" || l["routing_strategy"] != "weighted" {
			t.Errorf("%s: access log deployment %v, reason %v, strategy %v; want %s, weighted", s.id, l["deployment"], l["routing_reason"], l["routing_strategy"], s.deployment)
		}
	}
	if n := len(secondary.Requests()); n != 2 {
		t.Errorf("the secondary served %d requests, want the 2 made during the cooldown", n)
	}
	r.waitNoStreams()
}

// TestRoutePolicyE2E: envoy/standalone.yaml's batch host restricts the
// model groups a request may use and routes by cost, overriding the
// group's strategy; the default host does neither.
func TestRoutePolicyE2E(t *testing.T) {
	r, _ := startRoutingRig(t, &routingClock{})
	t.Cleanup(http.DefaultTransport.(*http.Transport).CloseIdleConnections) // withHost's connections
	if err := r.chat("policy-default", "gpt-4o"); err != nil {
		t.Fatalf("gpt-4o on the default host: %v", err)
	}
	err := r.chat("policy-refused", "gpt-4o", withHost(batchHost))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Fatalf("gpt-4o on the batch host: %v, want 404 model_not_found", err)
	}
	if err := r.chat("policy-batch", "gpt-4o-mini", withHost(batchHost)); err != nil {
		t.Fatalf("gpt-4o-mini on the batch host: %v", err)
	}
	if err := r.chat("policy-mini", "gpt-4o-mini"); err != nil {
		t.Fatalf("gpt-4o-mini on the default host: %v", err)
	}
	logs := r.logsByID(4)
	want := map[string][3]any{ // status, strategy, reason
		"policy-default": {float64(200), "weighted", "weighted"},
		"policy-refused": {float64(404), nil, nil},
		"policy-batch":   {float64(200), "cost", "cost"},
		"policy-mini":    {float64(200), "weighted", "weighted"},
	}
	for id, w := range want {
		l := logs[id]
		if l == nil {
			t.Fatalf("no access log for %s", id)
		}
		if l["status"] != w[0] || l["routing_strategy"] != w[1] || l["routing_reason"] != w[2] {
			t.Errorf("%s: status %v strategy %v reason %v, want %v", id, l["status"], l["routing_strategy"], l["routing_reason"], w)
		}
	}
	r.waitNoStreams()
}
