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
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

// fallbacksConfig: three OpenAI fakes (the rig's on the "openai" cluster,
// "second" on "anthropic", "third" on "azure"); llmux calls fallbacks
// through the egress listener at %s.
const fallbacksConfig = `
server:
  max_request_body_bytes: 65536
  egress_address: %s
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: first, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: second, kind: openai, cluster: anthropic, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: third, kind: openai, cluster: azure, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: dep-first, provider: first, model: gpt-4o-mini-2024-07-18}
- {name: dep-second, provider: second, model: gpt-4o-mini-2024-07-18, priority: 1}
- {name: dep-third, provider: third, model: gpt-4o-mini-2024-07-18, priority: 2}
- {name: dep-long, provider: second, model: gpt-4.1-2025-04-14}
- {name: dep-safe, provider: third, model: gpt-4o-2024-08-06}
model_groups:
# A too long input moves to "long", a content-policy refusal to "safe".
- name: gpt-4o-mini
  deployments: [dep-first]
  failover: {context_window_fallbacks: [long], content_policy_fallbacks: [safe]}
- {name: long, deployments: [dep-long], failover: {context_window_fallbacks: [gpt-4o-mini]}}
- {name: safe, deployments: [dep-safe]}
- name: two-tries
  deployments: [dep-first, dep-second, dep-third]
  failover: {max_attempts: 2}
- name: budgeted
  deployments: [dep-first, dep-second, dep-third]
  failover: {budget: 1s}
# The soak's group: failover among three deployments; cooldowns only for
# bursts, so that failover rather than health is what the soak exercises.
- name: soak
  deployments: [dep-first, dep-second, dep-third]
  routing: {health: {failures: 100, window: 1s, cooldown: 1s, max_cooldown: 1s}}
`

// fallbacksRig is the stack on fallbacksConfig.
type fallbacksRig struct {
	*rig
	second, third *fakeprovider.Server
}

func startFallbacksRig(t *testing.T) *fallbacksRig {
	t.Helper()
	return startFallbacksRigReplies(t, "answer from the second provider", "answer from the third provider")
}

// startFallbacksRigReplies starts the stack with the second and third
// fakes' reply texts ("" echoes the request: "Hello from fake-openai: …").
func startFallbacksRigReplies(t *testing.T, secondReply, thirdReply string) *fallbacksRig {
	t.Helper()
	egressAddr, ln := egressListener(t)
	second := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey, Reply: secondReply})
	third := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey, Reply: thirdReply})
	r := startRigOpts(t, fmt.Sprintf(fallbacksConfig, egressAddr), map[string]string{"anthropic": second.Addr(), "azure": third.Addr()},
		func(so *envoysim.Options) { so.Listeners = map[string]net.Listener{"egress": ln} })
	t.Cleanup(r.streams.Server.Close) // the egress client's connections
	return &fallbacksRig{rig: r, second: second, third: third}
}

func refusal(status int, code string) fakeprovider.Fault {
	f := fakeprovider.DefaultFault()
	f.Status, f.ErrorCode = status, code
	return f
}

// chat sends one chat request for model, streamed or not, and returns the
// answer's content or the API error.
func (r *fallbacksRig) chat(t *testing.T, model string, stream bool) (string, error) {
	t.Helper()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: model, Messages: userMsg("hello")}
	if !stream {
		resp, err := r.client.Chat.Completions.New(ctx, params)
		if err != nil {
			return "", err
		}
		return resp.Choices[0].Message.Content, nil
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
	res := readStream(r.client.Chat.Completions.NewStreaming(ctx, params))
	if res.err != nil {
		return "", res.err
	}
	if res.usage != 1 || res.finish != "stop" {
		t.Errorf("usage chunks %d, finish %q", res.usage, res.finish)
	}
	return res.content, nil
}

// streamResult is what a client made of a chat stream.
type streamResult struct {
	content, finish string
	usage           int   // usage chunks
	err             error // the stream's error
}

// readStream reads a chat stream to its end and closes it.
func readStream(s *ssestream.Stream[openai.ChatCompletionChunk]) streamResult {
	defer s.Close()
	var res streamResult
	acc := openai.ChatCompletionAccumulator{}
	for s.Next() {
		c := s.Current()
		acc.AddChunk(c)
		if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
			res.usage++
		}
	}
	res.err = s.Err()
	if len(acc.Choices) > 0 {
		res.content, res.finish = acc.Choices[0].Message.Content, string(acc.Choices[0].FinishReason)
	}
	return res
}

// ingressLog returns the ingress listener's access log line of the only
// request, waiting for n lines in all.
func (r *fallbacksRig) ingressLog(t *testing.T, n int) map[string]any {
	t.Helper()
	for _, l := range r.accessLogs(n) {
		if l["listener"] != "egress" {
			return l
		}
	}
	t.Fatal("no ingress access log")
	return nil
}

// TestFallbackGroups: a too long input and a content-policy refusal move
// the request to the configured group, streamed and not; the client sees
// one answer, and the access log the group that served, the one asked
// for, the attempts and the cause.
func TestFallbackGroups(t *testing.T) {
	tests := []struct {
		name, code string
		group      string // the group that serves
		reply      string
		served     func(*fallbacksRig) *fakeprovider.Server
	}{
		{"context window", "context_length_exceeded", "long", "second", func(r *fallbacksRig) *fakeprovider.Server { return r.second }},
		{"content policy", "content_policy_violation", "safe", "third", func(r *fallbacksRig) *fakeprovider.Server { return r.third }},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tc.name, stream), func(t *testing.T) {
				r := startFallbacksRig(t)
				r.fake.Enqueue(refusal(http.StatusBadRequest, tc.code))
				content, err := r.chat(t, "gpt-4o-mini", stream)
				if err != nil {
					t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
				}
				if !strings.Contains(content, "answer from the "+tc.reply) {
					t.Errorf("content %q", content)
				}
				if n, m := len(r.fake.Requests()), len(tc.served(r).Requests()); n != 1 || m != 1 {
					t.Errorf("requests: first %d, fallback %d; want 1 each", n, m)
				}
				got, _ := tc.served(r).Last()
				if want := map[string]string{"long": "gpt-4.1-2025-04-14", "safe": "gpt-4o-2024-08-06"}[tc.group]; got.JSON("model").String() != want {
					t.Errorf("the fallback got model %s, want %s", got.JSON("model"), want)
				}
				l := r.ingressLog(t, 2)
				if l["status"] != float64(200) || l["model_group"] != tc.group || l["requested_model_group"] != "gpt-4o-mini" ||
					l["attempts"] != float64(2) || l["failover_cause"] != tc.code && !(tc.code == "content_policy_violation" && l["failover_cause"] == "content_filtered") {
					t.Errorf("ingress log: %v", l)
				}
				r.waitNoStreams()
			})
		}
	}
}

// TestFallbackGroupAlsoTooSmall: the fallback group refuses the input as
// too long as well, and names the requested group as its own fallback (a
// cycle): the client gets the refusal after two tries, not a loop.
func TestFallbackGroupAlsoTooSmall(t *testing.T) {
	r := startFallbacksRig(t)
	r.fake.Enqueue(refusal(http.StatusBadRequest, "context_length_exceeded"))
	r.second.Enqueue(refusal(http.StatusBadRequest, "context_length_exceeded"))
	_, err := r.chat(t, "gpt-4o-mini", false)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Code != "context_length_exceeded" {
		t.Fatalf("want the 400 context_length_exceeded, got %v", err)
	}
	if n, m := len(r.fake.Requests()), len(r.second.Requests()); n != 1 || m != 1 {
		t.Errorf("requests: first %d, second %d; want 1 each", n, m)
	}
}

// TestFallbackNotConfigured: a group without fallbacks passes a too long
// input's refusal through; no other deployment is asked.
func TestFallbackNotConfigured(t *testing.T) {
	r := startFallbacksRig(t)
	r.fake.Enqueue(refusal(http.StatusBadRequest, "context_length_exceeded"))
	_, err := r.chat(t, "two-tries", false)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("want the 400, got %v", err)
	}
	if n, m := len(r.second.Requests()), len(r.third.Requests()); n != 0 || m != 0 {
		t.Errorf("the other deployments were asked %d and %d times", n, m)
	}
}

// TestFailoverMaxAttempts: with max_attempts 2, two deployments are tried
// and the third never is, streamed or not; the client gets the most
// informative failure.
func TestFailoverMaxAttempts(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			r := startFallbacksRig(t)
			r.fake.Enqueue(refusal(http.StatusServiceUnavailable, ""))
			r.second.Enqueue(refusal(http.StatusTooManyRequests, ""))
			_, err := r.chat(t, "two-tries", stream)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("want the 429, got %v", err)
			}
			if a, b, c := len(r.fake.Requests()), len(r.second.Requests()), len(r.third.Requests()); a != 1 || b != 1 || c != 0 {
				t.Errorf("requests %d, %d, %d; want 1, 1, 0", a, b, c)
			}
			if l := r.ingressLog(t, 2); l["attempts"] != float64(2) || l["status"] != float64(429) {
				t.Errorf("ingress log: %v", l)
			}
			r.waitNoStreams()
		})
	}
}

// TestFailoverBudget: the second deployment holds its answer past the
// group's 1s budget; llmux abandons it, does not ask the third, and
// answers with the first failure.
func TestFailoverBudget(t *testing.T) {
	r := startFallbacksRig(t)
	r.fake.Enqueue(refusal(http.StatusServiceUnavailable, ""))
	held := fakeprovider.DefaultFault()
	held.Hold = "budget"
	r.second.Enqueue(held)
	t.Cleanup(func() { r.second.Release("budget") })
	_, err := r.chat(t, "budgeted", false)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("want the 503, got %v", err)
	}
	if a, b, c := len(r.fake.Requests()), len(r.second.Requests()), len(r.third.Requests()); a != 1 || b != 1 || c != 0 {
		t.Errorf("requests %d, %d, %d; want 1, 1, 0", a, b, c)
	}
	r.second.Release("budget")
	r.waitNoStreams()
}

// providersFallbackConfig: a group per provider kind, each falling back to
// "long" (the rig's OpenAI fake) for a too long input, and Azure's to
// "safe" for a content-policy refusal as well.
const providersFallbackConfig = `
server:
  max_request_body_bytes: 65536
  egress_address: %s
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: anthropic, kind: anthropic, cluster: anthropic, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: bedrock, kind: bedrock, cluster: bedrock_us_east_1, region: us-east-1}
- {name: gemini, kind: gemini, cluster: gemini, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: azure, kind: azure_openai, cluster: azure, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: openai, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: dep-anthropic, provider: anthropic, model: claude-sonnet-4-5}
- {name: dep-bedrock, provider: bedrock, model: "` + bedrockModel + `"}
- {name: dep-gemini, provider: gemini, model: gemini-2.5-flash}
- {name: dep-azure, provider: azure, model: prod-4o}
- {name: dep-long, provider: openai, model: gpt-4.1-2025-04-14}
model_groups:
- {name: anthropic, deployments: [dep-anthropic], failover: {context_window_fallbacks: [long]}}
- {name: bedrock, deployments: [dep-bedrock], failover: {context_window_fallbacks: [long]}}
- {name: gemini, deployments: [dep-gemini], failover: {context_window_fallbacks: [long]}}
- {name: azure, deployments: [dep-azure], failover: {context_window_fallbacks: [long], content_policy_fallbacks: [long]}}
- {name: long, deployments: [dep-long]}
`

// TestFallbackEveryProvider: each provider's own refusal of a too long
// input (and Azure's content filter) is recognised and moves the request
// to the configured group.
func TestFallbackEveryProvider(t *testing.T) {
	fakeAWSEnv(t)
	egressAddr, ln := egressListener(t)
	fakes := map[string]*fakeprovider.Server{
		"anthropic": fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{APIKey: providerKey}),
		"bedrock":   fakeprovider.NewBedrock(t, fakeprovider.BedrockOptions{}),
		"gemini":    fakeprovider.NewGemini(t, fakeprovider.GeminiOptions{APIKey: providerKey}),
		"azure":     fakeprovider.NewAzure(t, fakeprovider.AzureOptions{APIKey: providerKey}),
	}
	r := startRigOpts(t, fmt.Sprintf(providersFallbackConfig, egressAddr), map[string]string{
		"anthropic": fakes["anthropic"].Addr(), "bedrock_us_east_1": fakes["bedrock"].Addr(),
		"gemini": fakes["gemini"].Addr(), "azure": fakes["azure"].Addr(),
	}, func(so *envoysim.Options) { so.Listeners = map[string]net.Listener{"egress": ln} })
	t.Cleanup(r.streams.Server.Close)
	fr := &fallbacksRig{rig: r}
	lines := 0
	for _, tc := range []struct{ group, code, cause string }{
		{"anthropic", "context_length_exceeded", "context_length_exceeded"},
		{"bedrock", "context_length_exceeded", "context_length_exceeded"},
		{"gemini", "context_length_exceeded", "context_length_exceeded"},
		{"azure", "context_length_exceeded", "context_length_exceeded"},
		{"azure", "content_filter", "content_filtered"},
	} {
		t.Run(tc.group+"/"+tc.code, func(t *testing.T) {
			fakes[tc.group].Enqueue(refusal(http.StatusBadRequest, tc.code))
			before := len(r.fake.Requests())
			content, err := fr.chat(t, tc.group, false)
			if err != nil {
				t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
			}
			if content != "Hello from fake-openai: hello" || len(r.fake.Requests()) != before+1 {
				t.Errorf("content %q; the fallback was asked %d times", content, len(r.fake.Requests())-before)
			}
			lines += 2 // the ingress and the egress call's
			var ingress []map[string]any
			for _, x := range r.accessLogs(lines) {
				if x["listener"] != "egress" {
					ingress = append(ingress, x)
				}
			}
			if len(ingress) != lines/2 {
				t.Fatalf("%d ingress log lines, want %d", len(ingress), lines/2)
			}
			l := ingress[len(ingress)-1] // requests run one after another
			if l["model_group"] != "long" || l["requested_model_group"] != tc.group || l["failover_cause"] != tc.cause {
				t.Errorf("ingress log: %v", l)
			}
		})
	}
	r.waitNoStreams()
}
