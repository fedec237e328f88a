package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
)

// compatibleConfig serves model group "local" from an OpenAI-compatible
// server (vLLM, Ollama, …) reached through the openai cluster.
const compatibleConfig = `
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: vllm
  kind: openai_compatible
  cluster: openai
  base_path: /v1
  credentials: {api_key_env: E2E_PROVIDER_KEY}
deployments:
- {name: local-llama, provider: vllm, model: meta-llama/Llama-3.1-8B-Instruct}
model_groups:
- {name: local, deployments: [local-llama]}
`

func compatibleRig(t *testing.T, opts fakeprovider.OpenAIOptions) (*rig, *fakeprovider.Server) {
	t.Helper()
	opts.APIKey = providerKey
	srv := fakeprovider.NewOpenAI(t, opts)
	return startRigWith(t, compatibleConfig, map[string]string{"openai": srv.Addr()}), srv
}

// streamChunks reads a whole stream with the SDK.
func streamChunks(t *testing.T, r *rig, params openai.ChatCompletionNewParams, opts ...option.RequestOption) ([]openai.ChatCompletionChunk, openai.ChatCompletionAccumulator) {
	t.Helper()
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), params, opts...)
	defer stream.Close()
	var chunks []openai.ChatCompletionChunk
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		chunks = append(chunks, stream.Current())
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return chunks, acc
}

// TestCompatibleWithoutUsage: a server that ignores stream_options sends no
// usage; the stream still completes normally and the metadata simply has
// no token counts.
func TestCompatibleWithoutUsage(t *testing.T) {
	r, srv := compatibleRig(t, fakeprovider.OpenAIOptions{NoStreamUsage: true})
	for i, ask := range []bool{false, true} {
		params := openai.ChatCompletionNewParams{Model: "local", Messages: userMsg("one two three")}
		if ask {
			params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
		}
		chunks, acc := streamChunks(t, r, params)
		if !strings.Contains(acc.Choices[0].Message.Content, "one two three") || acc.Choices[0].FinishReason != "stop" {
			t.Fatalf("content %+v", acc.Choices[0])
		}
		for _, c := range chunks {
			if c.Usage.TotalTokens != 0 {
				t.Errorf("usage from nowhere: %s", c.RawJSON())
			}
		}
		got, _ := srv.Last()
		if got.JSON("model").String() != "meta-llama/Llama-3.1-8B-Instruct" || got.Path != "/v1/chat/completions" || got.Header.Get("Authorization") != "Bearer "+providerKey {
			t.Errorf("upstream %s %s %q", got.Path, got.JSON("model"), got.Header.Get("Authorization"))
		}
		if logs := r.accessLogs(i + 1); logs != nil {
			l := logs[i]
			if l["status"] != float64(200) && l["status"] != "200" {
				t.Errorf("status %v", l["status"])
			}
			if ec := l["error_code"]; ec != nil && ec != "" && ec != "-" {
				t.Errorf("error_code %v for a stream without usage", ec)
			}
			if n, ok := l["input_tokens"].(float64); ok && n != 0 {
				t.Errorf("input_tokens %v without usage", n)
			}
		}
	}
	r.waitNoStreams()
}

// TestCompatibleUsageOnLastChunk: the server puts usage on the chunk with
// the finish reason. That chunk has choices, so it reaches the client (usage
// field included) even though the client did not ask, and the gateway
// still learns the usage.
func TestCompatibleUsageOnLastChunk(t *testing.T) {
	r, _ := compatibleRig(t, fakeprovider.OpenAIOptions{UsageOnLastChunk: true})
	chunks, acc := streamChunks(t, r, openai.ChatCompletionNewParams{Model: "local", Messages: userMsg("alpha beta")})
	last := chunks[len(chunks)-1]
	if len(last.Choices) != 1 || last.Choices[0].FinishReason != "stop" || last.Usage.CompletionTokens == 0 {
		t.Fatalf("last chunk %s", last.RawJSON())
	}
	if !strings.Contains(acc.Choices[0].Message.Content, "alpha beta") {
		t.Errorf("content %q", acc.Choices[0].Message.Content)
	}
	if logs := r.accessLogs(1); logs != nil {
		if n, _ := logs[0]["output_tokens"].(float64); n != float64(last.Usage.CompletionTokens) {
			t.Errorf("access log output_tokens %v, chunk usage %d", logs[0]["output_tokens"], last.Usage.CompletionTokens)
		}
	}
}

// TestCompatibleReasoningContent: DeepSeek-style reasoning_content deltas
// pass through.
func TestCompatibleReasoningContent(t *testing.T) {
	r, _ := compatibleRig(t, fakeprovider.OpenAIOptions{Reasoning: "Let me think step by step."})
	chunks, acc := streamChunks(t, r, openai.ChatCompletionNewParams{Model: "local", Messages: userMsg("why")})
	var reasoning strings.Builder
	for _, c := range chunks {
		reasoning.WriteString(gjson.Get(c.RawJSON(), "choices.0.delta.reasoning_content").String())
	}
	if reasoning.String() != "Let me think step by step." {
		t.Errorf("reasoning %q", reasoning.String())
	}
	if chunks[0].Choices[0].Delta.Role != "assistant" || !strings.Contains(acc.Choices[0].Message.Content, "why") {
		t.Errorf("first %s, content %q", chunks[0].RawJSON(), acc.Choices[0].Message.Content)
	}
	if logs := r.accessLogs(1); logs != nil && logs[0]["ttft_ms"] == nil {
		t.Errorf("no ttft: %v", logs[0])
	}
}

// TestCompatibleErrorBodies: error bodies that are not OpenAI-shaped are
// rewritten into OpenAI's shape with a sensible class.
func TestCompatibleErrorBodies(t *testing.T) {
	tests := []struct {
		style, status, errCode string
		wantStatus             int
		wantCode, wantClass    string
	}{
		{"fastapi", "404", "", 404, "model_not_found", "not_found"},
		{"fastapi", "500", "", 500, "server_error", "upstream_error"},
		{"ollama", "404", "", 404, "model_not_found", "not_found"},
		{"vllm", "400", "context_length_exceeded", 400, "context_length_exceeded", "context_length_exceeded"},
		{"vllm", "429", "", 429, "rate_limit_exceeded", "rate_limited"},
	}
	for _, tc := range tests {
		t.Run(tc.style+" "+tc.status, func(t *testing.T) {
			r, _ := compatibleRig(t, fakeprovider.OpenAIOptions{ErrorStyle: tc.style})
			opts := []option.RequestOption{withFault(fakeprovider.HeaderStatus, tc.status)}
			if tc.errCode != "" {
				opts = append(opts, withFault(fakeprovider.HeaderErrorCode, tc.errCode))
			}
			_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "local", Messages: userMsg("x")}, opts...)
			apiError(t, err, tc.wantStatus, tc.wantCode)
			if logs := r.accessLogs(1); logs != nil && logs[0]["error_code"] != tc.wantClass {
				t.Errorf("access log error_code %v, want %s", logs[0]["error_code"], tc.wantClass)
			}
		})
	}
}

// TestCompatibleInbandErrorWrapped: an in-band stream error in Ollama's
// {"error":"text"} shape reaches the client as an OpenAI error event.
func TestCompatibleInbandErrorWrapped(t *testing.T) {
	r, _ := compatibleRig(t, fakeprovider.OpenAIOptions{ErrorStyle: "ollama"})
	datas := rawStreamData(t, r, `{"model":"local","stream":true,"messages":[{"role":"user","content":"a b c"}]}`,
		fakeprovider.HeaderFault, fakeprovider.FaultInbandError, fakeprovider.HeaderFaultAfter, "2")
	if len(datas) == 0 {
		t.Fatal("no events")
	}
	last := datas[len(datas)-1]
	e := gjson.Get(last, "error")
	if e.Get("message").Type != gjson.String || e.Get("type").Type != gjson.String || !e.Get("code").Exists() {
		t.Errorf("in-band error not OpenAI-shaped: %s", last)
	}
	// The SDK surfaces it as an error.
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "local", Messages: userMsg("a b c")},
		withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError))
	defer stream.Close()
	for stream.Next() {
	}
	if stream.Err() == nil {
		t.Error("in-band error not surfaced by the SDK")
	}
}
