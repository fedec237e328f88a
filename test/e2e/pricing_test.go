package e2e

import (
	"context"
	"math"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/llmux/llmux/test/fakeprovider"
)

const pricingConfig = `
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: openai, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: anthropic, kind: anthropic, cluster: anthropic, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: bedrock, kind: bedrock, cluster: bedrock_us_east_1, region: us-east-1}
- {name: vllm, kind: openai_compatible, cluster: openai, base_path: /v1, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: gpt, provider: openai, model: gpt-4o-mini-2024-07-18}
- {name: claude, provider: anthropic, model: claude-sonnet-4-5}
- {name: claude-bedrock, provider: bedrock, model: us.anthropic.claude-sonnet-4-5-20250929-v1:0}
- {name: self-hosted, provider: vllm, model: my-own-model}
model_groups:
- {name: gpt, deployments: [gpt]}
- {name: claude, deployments: [claude]}
- {name: claude-bedrock, deployments: [claude-bedrock]}
- {name: self-hosted, deployments: [self-hosted]}
`

// TestPricingAccessLog: the access log line of every request shows the
// cost of the usage the fake provider reported, computed here by hand from
// the default table's prices, and a deployment without a price shows
// cost_known false.
func TestPricingAccessLog(t *testing.T) {
	fakeAWSEnv(t)
	ant := fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{APIKey: providerKey, CacheReadTokens: 40, CacheCreationTokens: 8})
	br := fakeprovider.NewBedrock(t, fakeprovider.BedrockOptions{CacheReadTokens: 30, CacheWriteTokens: 2})
	oai := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey})
	r := startRigWith(t, pricingConfig, map[string]string{"openai": oai.Addr(), "anthropic": ant.Addr(), "bedrock_us_east_1": br.Addr()})

	for i, tc := range []struct {
		group string
		// The usage the fake reports for "hello there friend" (the fakes
		// count words): prompt tokens (cache reads and writes included),
		// cached reads, completion tokens.
		prompt, cached, completion int64
		// Hand-computed cost (USD); known false means no price.
		cost  float64
		known bool
	}{
		// gpt-4o-mini-2024-07-18: 0.15 in, 0.6 out per million.
		// 3 × 0.15 + 6 × 0.6 = 4.05 per million.
		{"gpt", 3, 0, 6, 4.05e-6, true},
		// claude-sonnet-4-5: 3 in, 0.3 cache read, 3.75 cache write, 15 out per million.
		// 51 prompt = 3 plain + 40 read + 8 written:
		// 3 × 3 + 40 × 0.3 + 8 × 3.75 + 6 × 15 = 9 + 12 + 30 + 90 = 141 per million.
		{"claude", 51, 40, 6, 141e-6, true},
		// Bedrock's us. profile: 3.3 in, 0.33 cache read, 4.125 cache write, 16.5 out per million.
		// 35 prompt = 3 plain + 30 read + 2 written:
		// 3 × 3.3 + 30 × 0.33 + 2 × 4.125 + 6 × 16.5 = 9.9 + 9.9 + 8.25 + 99 = 127.05 per million.
		{"claude-bedrock", 35, 30, 6, 127.05e-6, true},
		// No table prices my-own-model.
		{"self-hosted", 3, 0, 6, 0, false},
	} {
		t.Run(tc.group, func(t *testing.T) {
			resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
				Model:    tc.group,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there friend")},
			})
			if err != nil {
				t.Fatal(err)
			}
			u := resp.Usage
			if u.PromptTokens != tc.prompt || u.PromptTokensDetails.CachedTokens != tc.cached || u.CompletionTokens != tc.completion {
				t.Fatalf("usage %d/%d/%d, want %d/%d/%d (the hand-computed cost assumes these)",
					u.PromptTokens, u.PromptTokensDetails.CachedTokens, u.CompletionTokens, tc.prompt, tc.cached, tc.completion)
			}
			logs := r.accessLogs(i + 1)
			if logs == nil {
				return // real Envoy: its log is not read here
			}
			l := logs[i]
			if l["model_group"] != tc.group || l["deployment"] != tc.group {
				t.Fatalf("access log %d is another request's: %v", i, l)
			}
			if l["cost_known"] != tc.known {
				t.Errorf("cost_known %v, want %v (%v)", l["cost_known"], tc.known, l)
			}
			if !tc.known {
				if l["cost_usd"] != nil {
					t.Errorf("cost_usd %v for an unknown price", l["cost_usd"])
				}
				return
			}
			got, ok := l["cost_usd"].(float64)
			if !ok || math.Abs(got-tc.cost) > 1e-12 {
				t.Errorf("cost_usd %v, want %g", l["cost_usd"], tc.cost)
			}
		})
	}

	// A stream is priced once, at its end, from the usage of its last event.
	t.Run("claude stream", func(t *testing.T) {
		st := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:         "claude",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there friend")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if u := acc.Usage; u.PromptTokens != 51 || u.PromptTokensDetails.CachedTokens != 40 || u.CompletionTokens != 6 {
			t.Fatalf("usage %+v", u)
		}
		logs := r.accessLogs(5)
		if logs == nil {
			return
		}
		l := logs[4]
		if c, _ := l["cost_usd"].(float64); l["model_group"] != "claude" || l["cost_known"] != true || math.Abs(c-141e-6) > 1e-12 {
			t.Errorf("access log %v, want cost_usd 141e-6", l)
		}
	})
}
