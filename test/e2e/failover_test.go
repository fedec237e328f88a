package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/llmux/llmux/envoy"
	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

// failoverConfig: one model group on two deployments, the first (priority
// 0) on the "openai" cluster's fake, the second (priority 1) on another
// OpenAI fake behind the "anthropic" cluster; llmux calls fallbacks through
// the egress listener at %s.
const failoverConfig = `
server:
  max_request_body_bytes: 65536
  egress_address: %s
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: first, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: second, kind: openai, cluster: anthropic, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: dep-first, provider: first, model: gpt-4o-mini-2024-07-18, priority: 0}
- {name: dep-second, provider: second, model: gpt-4o-mini-2024-07-18, priority: 1}
model_groups:
- {name: gpt-4o-mini, deployments: [dep-first, dep-second]}
`

// startFailoverRig starts the stack with the second fake and the egress
// listener on a known port.
func startFailoverRig(t *testing.T) (*rig, *fakeprovider.Server) {
	t.Helper()
	return startFailoverRigOpts(t, failoverOpts{})
}

// failoverOpts vary the failover stack.
type failoverOpts struct {
	edit    func(cfg string) string // changes the llmux configuration
	first   string                  // the first deployment's cluster address; "" is the rig's OpenAI fake
	version string                  // envoysim.Options.EnvoyVersion
	// bootstrap replaces envoy/standalone.yaml (envoysim.Options.Bootstrap)
	bootstrap []byte
}

// egressListener opens the stand-in's egress listener on a free loopback
// port: its address, for server.egress_address, and the listener, for
// envoysim.Options.Listeners (kept open, so that nothing else takes the
// port before the gateway serves on it).
func egressListener(t *testing.T) (string, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), ln
}

func startFailoverRigOpts(t *testing.T, o failoverOpts) (*rig, *fakeprovider.Server) {
	t.Helper()
	egressAddr, ln := egressListener(t)
	second := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey, Reply: "answer from the second deployment"})
	cfg := fmt.Sprintf(failoverConfig, egressAddr)
	if o.edit != nil {
		cfg = o.edit(cfg)
	}
	clusters := map[string]string{"anthropic": second.Addr()}
	if o.first != "" {
		clusters["openai"] = o.first
	}
	r := startRigOpts(t, cfg, clusters, func(so *envoysim.Options) {
		so.Listeners = map[string]net.Listener{"egress": ln}
		so.EnvoyVersion = o.version
		so.Bootstrap = o.bootstrap
	})
	t.Cleanup(r.streams.Server.Close) // the egress client's connections
	return r, second
}

func failedPlan(status int) fakeprovider.Fault {
	f := fakeprovider.DefaultFault()
	f.Status = status
	return f
}

// TestFailoverBeforeFirstByte: the first deployment answers 503 or 429; the
// client gets one 200 from the second, streamed and not, with no trace of
// the failure but the access log.
func TestFailoverBeforeFirstByte(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusInternalServerError} {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/stream=%v", status, stream), func(t *testing.T) {
				r, second := startFailoverRig(t)
				r.fake.Enqueue(failedPlan(status))
				ctx := context.Background()
				params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")}
				var content string
				if stream {
					params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
					s := r.client.Chat.Completions.NewStreaming(ctx, params)
					acc := openai.ChatCompletionAccumulator{}
					usage := 0
					for s.Next() {
						c := s.Current()
						acc.AddChunk(c)
						if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
							usage++
						}
					}
					if err := s.Err(); err != nil {
						t.Fatalf("stream: %v\nllmux log:\n%s", err, r.llmuxLog)
					}
					s.Close()
					if usage != 1 || acc.Choices[0].FinishReason != "stop" {
						t.Errorf("usage chunks %d, finish %q", usage, acc.Choices[0].FinishReason)
					}
					content = acc.Choices[0].Message.Content
				} else {
					resp, err := r.client.Chat.Completions.New(ctx, params)
					if err != nil {
						t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
					}
					content = resp.Choices[0].Message.Content
				}
				if !strings.Contains(content, "answer from the second deployment") {
					t.Errorf("content %q", content)
				}
				if n, m := len(r.fake.Requests()), len(second.Requests()); n != 1 || m != 1 {
					t.Errorf("requests: first %d, second %d; want 1 each", n, m)
				}
				got, _ := second.Last()
				if got.Header.Get(envoy.ClusterHeader) != "" || got.Header.Get("Authorization") != "Bearer "+providerKey {
					t.Errorf("the second deployment got headers %v", got.Header)
				}
				if got.JSON("stream").Bool() != stream || got.JSON("model").String() != "gpt-4o-mini-2024-07-18" {
					t.Errorf("the second deployment got %s", got.Body)
				}
				logs := r.accessLogs(2)
				var ingress, egress map[string]any
				for _, l := range logs {
					if l["listener"] == "egress" {
						egress = l
					} else {
						ingress = l
					}
				}
				if ingress == nil || egress == nil {
					t.Fatalf("access logs %v", logs)
				}
				if ingress["status"] != float64(200) || ingress["deployment"] != "dep-second" || ingress["attempts"] != float64(2) ||
					ingress["failover_cause"] == nil {
					t.Errorf("ingress log: %v", ingress)
				}
				if egress["upstream_cluster"] != "anthropic" || egress["status"] != float64(200) || egress["request_id"] != ingress["request_id"] {
					t.Errorf("egress log: %v (ingress %v)", egress, ingress)
				}
				r.waitNoStreams()
			})
		}
	}
}

// TestFailoverExhausted: both deployments fail; the client gets the most
// informative error (the rate limit, which says when to retry, over the
// outage), once.
func TestFailoverExhausted(t *testing.T) {
	r, second := startFailoverRig(t)
	r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
	second.Enqueue(failedPlan(http.StatusTooManyRequests))
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error, got %v", err)
	}
	if apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Response.Header.Get("retry-after") == "" {
		t.Errorf("status %d, retry-after %q: %s", apiErr.StatusCode, apiErr.Response.Header.Get("retry-after"), apiErr.RawJSON())
	}
	if n, m := len(r.fake.Requests()), len(second.Requests()); n != 1 || m != 1 {
		t.Errorf("requests: first %d, second %d; want 1 each", n, m)
	}
}

// TestFailoverNotForClientErrors: a 400 is the client's doing; no other
// deployment is asked.
func TestFailoverNotForClientErrors(t *testing.T) {
	r, second := startFailoverRig(t)
	r.fake.Enqueue(failedPlan(http.StatusBadRequest))
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("want the 400, got %v", err)
	}
	if n := len(second.Requests()); n != 0 {
		t.Errorf("the second deployment was asked %d times", n)
	}
}

// TestFailoverOnEnvoyLocalReply: the first deployment's cluster refuses
// connections, so Envoy answers its own 503 (local reply). From Envoy 1.37
// that reply passes through llmux, which fails over; on 1.34–1.36 it skips
// llmux (skip_ext_proc_on_local_reply) and the client gets Envoy's 503
// (docs/envoy-facts.md, fact 8).
func TestFailoverOnEnvoyLocalReply(t *testing.T) {
	for _, tc := range []struct {
		version  string
		failover bool
	}{{envoysim.Envoy137, true}, {envoysim.Envoy136, false}} {
		t.Run(tc.version, func(t *testing.T) {
			refused, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			refusedAddr := refused.Addr().String()
			refused.Close() // nothing listens here any more
			r, second := startFailoverRigOpts(t, failoverOpts{first: refusedAddr, version: tc.version})
			resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")})
			if !tc.failover {
				var apiErr *openai.Error
				if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
					t.Fatalf("want Envoy's 503, got %v", err)
				}
				if n := len(second.Requests()); n != 0 {
					t.Errorf("the second deployment was asked %d times", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
			}
			if !strings.Contains(resp.Choices[0].Message.Content, "answer from the second deployment") {
				t.Errorf("content %q", resp.Choices[0].Message.Content)
			}
			if n := len(second.Requests()); n != 1 {
				t.Errorf("the second deployment was asked %d times", n)
			}
		})
	}
}

// TestFailoverFallbackBreaks: the fallback's connection resets mid-body;
// the client gets a failure it can tell (stream_interrupted), never a
// truncated answer passed off as whole.
func TestFailoverFallbackBreaks(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			r, second := startFailoverRig(t)
			r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
			reset := fakeprovider.DefaultFault()
			reset.Kind, reset.After = fakeprovider.FaultReset, 2
			second.Enqueue(reset)
			params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("one two three four")}
			var err error
			if stream {
				s := r.client.Chat.Completions.NewStreaming(context.Background(), params)
				for s.Next() {
				}
				err = s.Err()
				s.Close()
			} else {
				_, err = r.client.Chat.Completions.New(context.Background(), params)
			}
			var apiErr *openai.Error
			if errors.As(err, &apiErr) {
				if apiErr.StatusCode != http.StatusBadGateway || apiErr.Code != "stream_interrupted" {
					t.Errorf("want 502 stream_interrupted, got %d %s", apiErr.StatusCode, apiErr.RawJSON())
				}
			} else if err == nil || !strings.Contains(err.Error(), "stream_interrupted") {
				t.Fatalf("want a stream_interrupted failure, got %v", err)
			}
			if n := len(second.Requests()); n != 1 {
				t.Errorf("the second deployment was asked %d times", n)
			}
		})
	}
}

// TestFailoverReportsHealth: the failed deployment is reported to routing's
// health; with failures: 1 it cools down, so the next request goes straight
// to the second deployment.
func TestFailoverReportsHealth(t *testing.T) {
	r, second := startFailoverRigOpts(t, failoverOpts{edit: func(cfg string) string {
		return strings.Replace(cfg, "deployments: [dep-first, dep-second]}",
			"deployments: [dep-first, dep-second], routing: {health: {failures: 1, cooldown: 1m}}}", 1)
	}})
	r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
	for i := range 2 {
		resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if !strings.Contains(resp.Choices[0].Message.Content, "second deployment") {
			t.Errorf("request %d: content %q", i, resp.Choices[0].Message.Content)
		}
	}
	if n, m := len(r.fake.Requests()), len(second.Requests()); n != 1 || m != 2 {
		t.Errorf("requests: first %d, second %d; want 1 and 2 (the first cooling down)", n, m)
	}
	cooling := false
	for _, st := range r.streams.Server.RoutingStatus() {
		cooling = cooling || st.Deployment == "dep-first" && !st.CoolUntil.IsZero()
	}
	if !cooling {
		t.Errorf("dep-first is not cooling down: %+v", r.streams.Server.RoutingStatus())
	}
}

// TestFailoverInBandBeforeContent: the first deployment's 200 carries an
// in-band error before any content (before or after its role chunk); the
// client gets the second deployment's answer as its one stream (one role,
// one finish, one usage chunk), or, not streamed, as its one body. After
// content went out there is no failover but stream repair (repair.go,
// repair_test.go): the second deployment is asked to continue the text
// sent, and the stream goes on without an error.
func TestFailoverInBandBeforeContent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stream   bool
		after    int
		failover bool
	}{
		{"stream/at_once", true, 0, true},
		{"stream/after_role", true, 1, true},
		{"whole", false, 0, true},
		{"stream/after_content", true, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, second := startFailoverRig(t)
			f := fakeprovider.DefaultFault()
			f.Kind, f.After = fakeprovider.FaultInbandError, tc.after
			r.fake.Enqueue(f)
			params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("one two three four five six")}
			var content string
			var err error
			if tc.stream {
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
				s := r.client.Chat.Completions.NewStreaming(context.Background(), params)
				acc := openai.ChatCompletionAccumulator{}
				roles, usage := 0, 0
				for s.Next() {
					c := s.Current()
					acc.AddChunk(c)
					if len(c.Choices) > 0 && c.Choices[0].Delta.Role != "" {
						roles++
					}
					if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
						usage++
					}
				}
				err = s.Err()
				s.Close()
				if err == nil && (roles != 1 || usage != 1) {
					t.Errorf("role chunks %d, usage chunks %d; want one each", roles, usage)
				}
				if len(acc.Choices) > 0 {
					content = acc.Choices[0].Message.Content
				}
			} else {
				var resp *openai.ChatCompletion
				resp, err = r.client.Chat.Completions.New(context.Background(), params)
				if err == nil {
					content = resp.Choices[0].Message.Content
				}
			}
			if !tc.failover {
				reqs := second.Requests()
				if err != nil || len(reqs) != 1 {
					t.Fatalf("after content: err %v, second asked %d times; want a repair", err, len(reqs))
				}
				sent := reqs[0].JSON("messages.1.content").Str
				if reqs[0].JSON("messages.1.role").Str != "assistant" || reqs[0].JSON("messages.2.role").Str != "user" ||
					sent == "" || !strings.HasPrefix(content, sent) {
					t.Errorf("continuation request %s; client content %q", reqs[0].Body, content)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
			}
			if content != "answer from the second deployment" {
				t.Errorf("content %q", content)
			}
			if n, m := len(r.fake.Requests()), len(second.Requests()); n != 1 || m != 1 {
				t.Errorf("requests: first %d, second %d; want 1 each", n, m)
			}
			r.waitNoStreams()
		})
	}
}
