package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/llmux/llmux/test/fakeprovider"
)

const anthropicConfig = `
server:
  max_request_body_bytes: 65536
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: anthropic
  kind: anthropic
  cluster: anthropic
  credentials: {api_key_env: E2E_PROVIDER_KEY}
deployments:
- {name: claude, provider: anthropic, model: claude-sonnet-4-5}
model_groups:
- {name: claude-sonnet, deployments: [claude]}
`

// anthropicRig is a stack whose "claude-sonnet" group is served by a fake
// Anthropic API.
func anthropicRig(t *testing.T, opts fakeprovider.AnthropicOptions) (*rig, *fakeprovider.Server) {
	t.Helper()
	opts.APIKey = providerKey
	fake := fakeprovider.NewAnthropic(t, opts)
	return startRigWith(t, anthropicConfig, map[string]string{"anthropic": fake.Addr()}), fake
}

func TestAnthropicChat(t *testing.T) {
	r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{CacheReadTokens: 40, CacheCreationTokens: 8})
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude-sonnet",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Be brief."),
			openai.UserMessage("hello claude"),
		},
		Temperature: param.NewOpt(0.3),
		Stop:        openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Hello from fake-anthropic: hello claude" || resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("reply %+v", resp.Choices[0])
	}
	// input 4 words + 40 read + 8 written; only the reads are cached.
	if resp.Usage.PromptTokens != 52 || resp.Usage.PromptTokensDetails.CachedTokens != 40 || resp.Usage.CompletionTokens != 5 || resp.Usage.TotalTokens != 57 {
		t.Errorf("usage %+v", resp.Usage)
	}
	got, ok := fake.Last()
	if !ok {
		t.Fatal("no upstream request")
	}
	if got.Path != "/v1/messages" || got.Header.Get("x-api-key") != providerKey || got.Header.Get("anthropic-version") != "2023-06-01" || got.Header.Get("authorization") != "" {
		t.Errorf("upstream %s %v", got.Path, got.Header)
	}
	if got.JSON("model").Str != "claude-sonnet-4-5" || got.JSON("system.0.text").Str != "Be brief." || got.JSON("max_tokens").Int() != 4096 || got.JSON("stop_sequences.0").Str != "END" {
		t.Errorf("upstream body %s", got.Body)
	}
	if strings.Contains(string(got.Body), clientKey) {
		t.Error("client key upstream")
	}
	if logs := r.accessLogs(1); logs != nil {
		l := logs[0]
		if l["provider"] != "anthropic" || l["cached_tokens"] != float64(40) || l["input_tokens"] != float64(52) || l["output_tokens"] != float64(5) {
			t.Errorf("access log %v", l)
		}
	}
	r.waitNoStreams()
}

// TestAnthropicStreamUnbuffered: the fake holds after two events; the
// client has its first chunk before the provider finishes.
func TestAnthropicStreamUnbuffered(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		t.Run(map[bool]string{false: "usage not asked", true: "usage asked"}[includeUsage], func(t *testing.T) {
			r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{CacheReadTokens: 3})
			params := openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: userMsg("one two three four")}
			if includeUsage {
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
			}
			stream := r.client.Chat.Completions.NewStreaming(context.Background(), params,
				withFault(fakeprovider.HeaderHold, "a1"), withFault(fakeprovider.HeaderHoldAfter, "2"))
			defer stream.Close()
			if !stream.Next() {
				t.Fatalf("no first chunk: %v", stream.Err())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := fake.WaitHeld(ctx, "a1"); err != nil {
				t.Fatal(err)
			}
			acc := openai.ChatCompletionAccumulator{}
			acc.AddChunk(stream.Current())
			if stream.Current().Choices[0].Delta.Role != "assistant" {
				t.Errorf("first chunk %s", stream.Current().RawJSON())
			}
			fake.Release("a1")
			usageChunks := 0
			for stream.Next() {
				c := stream.Current()
				acc.AddChunk(c)
				if len(c.Choices) == 0 {
					usageChunks++
					if c.Usage.PromptTokens != 7 || c.Usage.PromptTokensDetails.CachedTokens != 3 {
						t.Errorf("usage chunk %s", c.RawJSON())
					}
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if acc.Choices[0].Message.Content != "Hello from fake-anthropic: one two three four" || acc.Choices[0].FinishReason != "stop" {
				t.Errorf("accumulated %+v", acc.Choices[0])
			}
			if want := map[bool]int{true: 1}[includeUsage]; usageChunks != want {
				t.Errorf("usage chunks %d, want %d", usageChunks, want)
			}
			got, _ := fake.Last()
			if !got.JSON("stream").Bool() || got.JSON("stream_options").Exists() {
				t.Errorf("upstream body %s", got.Body)
			}
			if logs := r.accessLogs(1); logs != nil && logs[0]["output_tokens"] != float64(7) {
				t.Errorf("access log %v", logs[0])
			}
		})
	}
}

func TestAnthropicParallelToolRoundTrip(t *testing.T) {
	r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{})
	ctx := context.Background()
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: param.NewOpt("Weather in a city"),
		Parameters: openai.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required":   []string{"city"},
		},
	})}
	msgs := userMsg("weather in two cities")
	stream := r.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: msgs, Tools: tools},
		withFault(fakeprovider.HeaderToolCalls, "2"))
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	stream.Close()
	m := acc.Choices[0].Message
	if acc.Choices[0].FinishReason != "tool_calls" || len(m.ToolCalls) != 2 {
		t.Fatalf("first turn %+v", acc.Choices[0])
	}
	for i, tc := range m.ToolCalls {
		var args map[string]string
		if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil || tc.Function.Name != "get_weather" || !strings.HasPrefix(tc.ID, "toolu_") {
			t.Fatalf("tool call %d: %+v (%v)", i, tc, err)
		}
		if args["city"] != "city-"+string(rune('0'+i)) {
			t.Errorf("tool call %d arguments %s", i, tc.Function.Arguments)
		}
	}

	msgs = append(msgs, m.ToParam(),
		openai.ToolMessage("18C in city-0", m.ToolCalls[0].ID),
		openai.ToolMessage("25C in city-1", m.ToolCalls[1].ID))
	resp, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: msgs, Tools: tools},
		withFault(fakeprovider.HeaderToolCalls, "2"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "stop" || resp.Choices[0].Message.Content != "Hello from fake-anthropic: 18C in city-0 25C in city-1" {
		t.Fatalf("final answer %+v", resp.Choices[0])
	}
	got, _ := fake.Last()
	// One assistant turn with both tool_use blocks, one user turn with both
	// results (the fake's strict validation accepted it).
	if got.JSON("messages.#").Int() != 3 || got.JSON("messages.1.content.#(type==\"tool_use\")#|#").Int() != 2 || got.JSON("messages.2.content.#(type==\"tool_result\")#|#").Int() != 2 {
		t.Errorf("upstream turns %s", got.Body)
	}
	if got.JSON("messages.1.content.#(type==\"tool_use\").input.city").Str != "city-0" {
		t.Errorf("tool_use input %s", got.Body)
	}
}

func TestAnthropicImageInput(t *testing.T) {
	r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{})
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude-sonnet",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("what is this"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==", Detail: "high"}),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/cat.jpg"}),
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Choices[0].Message.Content, "what is this") {
		t.Errorf("reply %q", resp.Choices[0].Message.Content)
	}
	got, _ := fake.Last()
	b := got.JSON("messages.0.content")
	if b.Get("1.source.type").Str != "base64" || b.Get("1.source.media_type").Str != "image/png" || b.Get("1.source.data").Str != "iVBORw0KGgoAAAANSUhEUg==" ||
		b.Get("2.source.type").Str != "url" || b.Get("2.source.url").Str != "https://example.com/cat.jpg" {
		t.Errorf("upstream content %s", b.Raw)
	}
}

func TestAnthropicJSONSchema(t *testing.T) {
	r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{})
	schema := map[string]any{
		"type":                 "object",
		"properties":           map[string]any{"name": map[string]any{"type": "string"}, "age": map[string]any{"type": "integer"}},
		"required":             []string{"name", "age"},
		"additionalProperties": false,
	}
	format := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
		JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: schema, Strict: param.NewOpt(true)},
	}}
	for _, streamed := range []bool{false, true} {
		params := openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: userMsg("describe Ada"), ResponseFormat: format}
		var content, finish string
		if streamed {
			stream := r.client.Chat.Completions.NewStreaming(context.Background(), params)
			acc := openai.ChatCompletionAccumulator{}
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			stream.Close()
			content, finish = acc.Choices[0].Message.Content, string(acc.Choices[0].FinishReason)
			if len(acc.Choices[0].Message.ToolCalls) != 0 {
				t.Errorf("the response tool leaked as a tool call")
			}
		} else {
			resp, err := r.client.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			content, finish = resp.Choices[0].Message.Content, string(resp.Choices[0].FinishReason)
		}
		var v struct {
			Name string `json:"name"`
			Age  int    `json:"age"`
		}
		if err := json.Unmarshal([]byte(content), &v); err != nil || v.Name != "name-0" || v.Age != 1 || finish != "stop" {
			t.Errorf("streamed %v: content %q finish %q (%v)", streamed, content, finish, err)
		}
		got, _ := fake.Last()
		if got.JSON("tool_choice.type").Str != "tool" || got.JSON("tool_choice.name").Str != "llmux_json_response" || got.JSON("tools.0.input_schema.required.1").Str != "age" {
			t.Errorf("upstream %s", got.Body)
		}
	}
}

func TestAnthropicEmbeddingsRefused(t *testing.T) {
	r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{})
	_, err := r.client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "claude-sonnet",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: param.NewOpt("x")},
	})
	apiError(t, err, 400, "unsupported_operation")
	if _, ok := fake.Last(); ok {
		t.Error("the embeddings request reached Anthropic")
	}
}

func TestAnthropicErrors(t *testing.T) {
	r, _ := anthropicRig(t, fakeprovider.AnthropicOptions{})
	ctx := context.Background()
	chat := func(opts ...option.RequestOption) error {
		_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: userMsg("x")}, opts...)
		return err
	}
	tests := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"refused by the translator", func() error {
			_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: userMsg("x"), N: param.NewOpt[int64](2)})
			return err
		}, 400, "unsupported_parameter"},
		{"upstream 400", func() error { return chat(withFault(fakeprovider.HeaderStatus, "400")) }, 400, "invalid_request"},
		{"prompt too long", func() error {
			return chat(withFault(fakeprovider.HeaderStatus, "400"), withFault(fakeprovider.HeaderErrorCode, "prompt_too_long"))
		}, 400, "context_length_exceeded"},
		{"upstream 401", func() error { return chat(withFault(fakeprovider.HeaderStatus, "401")) }, 502, "upstream_authentication_failed"},
		{"upstream 403", func() error { return chat(withFault(fakeprovider.HeaderStatus, "403")) }, 403, "permission_denied"},
		{"upstream 429", func() error { return chat(withFault(fakeprovider.HeaderStatus, "429")) }, 429, "rate_limit_exceeded"},
		{"upstream 500", func() error { return chat(withFault(fakeprovider.HeaderStatus, "500")) }, 500, "server_error"},
		{"upstream 529 becomes 503", func() error { return chat(withFault(fakeprovider.HeaderStatus, "529")) }, 503, "overloaded"},
		{"streamed 529 becomes 503", func() error {
			s := r.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: userMsg("x")}, withFault(fakeprovider.HeaderStatus, "529"))
			defer s.Close()
			for s.Next() {
			}
			return s.Err()
		}, 503, "overloaded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { apiError(t, tc.call(), tc.status, tc.code) })
	}
	r.waitNoStreams()
}

// TestAnthropicInbandOverloaded: an overloaded_error event mid-stream
// reaches the SDK as a stream error after the content so far, and no
// [DONE] is invented.
func TestAnthropicInbandOverloaded(t *testing.T) {
	r, _ := anthropicRig(t, fakeprovider.AnthropicOptions{})
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "claude-sonnet", Messages: userMsg("a b c d")},
		withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError), withFault(fakeprovider.HeaderFaultAfter, "5"))
	defer stream.Close()
	var content string
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) > 0 {
			content += c.Choices[0].Delta.Content
		}
	}
	err := stream.Err()
	if err == nil || !strings.Contains(err.Error(), "Overloaded") {
		t.Fatalf("stream error %v after %q", err, content)
	}
	if content != "Hello from" {
		t.Errorf("content before the error %q", content)
	}
	if logs := r.accessLogs(1); logs != nil && logs[0]["error_code"] != "overloaded" {
		t.Errorf("access log %v", logs[0])
	}
}
