package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
)

// agentLastTurn is an agent framework's last turn: the history holds a
// tool call and its result, and the request declares no tools.
func agentLastTurn() []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{
		openai.UserMessage("Weather in Paris?"),
		{OfAssistant: &openai.ChatCompletionAssistantMessageParam{ToolCalls: []openai.ChatCompletionMessageToolCallUnionParam{{
			OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{ID: "call_1", Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{
				Name: "get_weather", Arguments: `{"location":"Paris"}`}},
		}}}},
		openai.ToolMessage("18C and sunny", "call_1"),
	}
}

// TestBedrockToolHistoryWithoutTools: Converse refuses toolUse and
// toolResult blocks without a toolConfig (the fake enforces it with
// Bedrock's ValidationException); the gateway declares the history's tools
// and the model answers in text.
func TestBedrockToolHistoryWithoutTools(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{Reply: "It is 18C and sunny in Paris."})
	for _, stream := range []bool{false, true} {
		params := openai.ChatCompletionNewParams{Model: "claude", Messages: agentLastTurn()}
		var content, finish string
		if stream {
			s := r.client.Chat.Completions.NewStreaming(context.Background(), params)
			var acc openai.ChatCompletionAccumulator
			for s.Next() {
				acc.AddChunk(s.Current())
			}
			if err := s.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			_ = s.Close()
			content, finish = acc.Choices[0].Message.Content, acc.Choices[0].FinishReason
		} else {
			resp, err := r.client.Chat.Completions.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			content, finish = resp.Choices[0].Message.Content, resp.Choices[0].FinishReason
		}
		if content != "It is 18C and sunny in Paris." || finish != "stop" {
			t.Errorf("stream=%v: content %q finish %q", stream, content, finish)
		}
		got, _ := br.Last()
		if got.JSON("toolConfig.tools.#").Int() != 1 || got.JSON("toolConfig.tools.0.toolSpec.name").Str != "get_weather" ||
			got.JSON("toolConfig.toolChoice").Exists() || got.JSON("messages.1.content.0.toolUse.name").Str != "get_weather" {
			t.Errorf("stream=%v: upstream %s", stream, got.Body)
		}
	}
	r.waitNoStreams()
}

// TestBedrockCohereEmbeddingUsage: Cohere Embed on Bedrock reports its
// token count only in the X-Amzn-Bedrock-Input-Token-Count response
// header; it reaches the client's usage and the access log.
func TestBedrockCohereEmbeddingUsage(t *testing.T) {
	r, _ := bedrockRig(t, fakeprovider.BedrockOptions{})
	resp, err := r.client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "cohere-embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha beta gamma", "delta"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The fake counts words: 3 + 1.
	if len(resp.Data) != 2 || resp.Usage.PromptTokens != 4 || resp.Usage.TotalTokens != 4 {
		t.Fatalf("usage %+v (%d vectors)", resp.Usage, len(resp.Data))
	}
	if logs := r.accessLogs(1); logs != nil && logs[0]["input_tokens"] != float64(4) {
		t.Errorf("access log %v", logs[0])
	}
	r.waitNoStreams()
}

// reasoned is what a client saw of one reasoning answer.
type reasoned struct {
	content, reasoning string
	usage              openai.CompletionUsage
	order              string // 'r' per reasoning delta, 'c' per content delta (streams)
}

// askReasoning sends a chat request with reasoning_effort through the
// gateway, streamed or not, and reads reasoning_content from the raw JSON
// of the message or of each delta, as an OpenAI client of a reasoning
// provider (DeepSeek, vLLM) does.
func askReasoning(t *testing.T, client openai.Client, model string, effort shared.ReasoningEffort, stream bool, opts ...option.RequestOption) reasoned {
	t.Helper()
	params := openai.ChatCompletionNewParams{Model: model, Messages: userMsg("count the primes"), ReasoningEffort: effort}
	var got reasoned
	if !stream {
		resp, err := client.Chat.Completions.New(context.Background(), params, opts...)
		if err != nil {
			t.Fatal(err)
		}
		m := resp.Choices[0].Message
		got.content, got.usage = m.Content, resp.Usage
		if f, ok := m.JSON.ExtraFields["reasoning_content"]; ok {
			got.reasoning = gjson.Parse(f.Raw()).Str
		}
		return got
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := client.Chat.Completions.NewStreaming(context.Background(), params, opts...)
	defer s.Close()
	var content, reasoning strings.Builder
	for s.Next() {
		c := s.Current()
		if len(c.Choices) == 0 {
			got.usage = c.Usage
			continue
		}
		if r := gjson.Get(c.Choices[0].Delta.RawJSON(), "reasoning_content"); r.Exists() {
			reasoning.WriteString(r.Str)
			got.order += "r"
		}
		if c.Choices[0].Delta.Content != "" {
			content.WriteString(c.Choices[0].Delta.Content)
			got.order += "c"
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("stream: %v", err)
	}
	got.content, got.reasoning = content.String(), reasoning.String()
	return got
}

// checkReasoned checks one answer: the fake's reasoning text as
// reasoning_content, the reply as content, reasoning before content in a
// stream, and the usage.
func checkReasoned(t *testing.T, stream bool, got reasoned, wantContent string, wantReasoningTokens int64) {
	t.Helper()
	wantReasoning := fakeprovider.FakeThinking("count the primes")
	if strings.Contains(wantContent, "fake-gemini") {
		wantReasoning = fakeprovider.FakeThinking(wantContent)
	}
	if got.content != wantContent || got.reasoning != wantReasoning {
		t.Errorf("stream=%v: content %q reasoning %q", stream, got.content, got.reasoning)
	}
	if stream && (got.order == "" || got.order[0] != 'r' || strings.Contains(got.order, "cr")) {
		t.Errorf("stream=%v: deltas in order %q, want reasoning first", stream, got.order)
	}
	// The fakes count words: the thinking is part of the completion.
	thinking := int64(len(strings.Fields(wantReasoning)))
	if got.usage.CompletionTokens < thinking || got.usage.CompletionTokensDetails.ReasoningTokens != wantReasoningTokens {
		t.Errorf("stream=%v: usage %+v", stream, got.usage)
	}
}

func TestAnthropicReasoning(t *testing.T) {
	r, fake := anthropicRig(t, fakeprovider.AnthropicOptions{})
	for _, stream := range []bool{false, true} {
		got := askReasoning(t, r.client, "claude-sonnet", shared.ReasoningEffortMedium, stream)
		// Anthropic does not count thinking tokens apart from output.
		checkReasoned(t, stream, got, "Hello from fake-anthropic: count the primes", 0)
		up, _ := fake.Last()
		if up.JSON("thinking.type").Str != "enabled" || up.JSON("thinking.budget_tokens").Int() != 8192 || up.JSON("max_tokens").Int() <= 8192 {
			t.Errorf("stream=%v: upstream %s", stream, up.Body)
		}
	}
	// A temperature Claude refuses with thinking is a 400 from the
	// gateway, before the provider is called.
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude-sonnet", Messages: userMsg("x"), ReasoningEffort: shared.ReasoningEffortLow, Temperature: openai.Float(0.2),
	})
	if apiErr, ok := err.(*openai.Error); !ok || apiErr.StatusCode != 400 || apiErr.Param != "temperature" {
		t.Errorf("temperature with thinking: %v", err)
	}
	r.waitNoStreams()
}

func TestBedrockReasoning(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{})
	for _, stream := range []bool{false, true} {
		got := askReasoning(t, r.client, "claude", shared.ReasoningEffortLow, stream)
		// Converse does not count reasoning tokens apart from output.
		checkReasoned(t, stream, got, "Hello from fake-bedrock: count the primes", 0)
		up, _ := br.Last()
		if up.JSON("additionalModelRequestFields.thinking.budget_tokens").Int() != 2048 || up.JSON("inferenceConfig.maxTokens").Int() <= 2048 {
			t.Errorf("stream=%v: upstream %s", stream, up.Body)
		}
	}
	r.waitNoStreams()
}

func TestGeminiReasoning(t *testing.T) {
	g := startGeminiRig(t)
	for _, model := range []string{"gemini-flash", "vertex-pro"} {
		for _, stream := range []bool{false, true} {
			got := askReasoning(t, g.client, model, shared.ReasoningEffortHigh, stream)
			reply := "Hello from fake-gemini: count the primes"
			// Gemini reports thoughtsTokenCount: the reasoning tokens.
			checkReasoned(t, stream, got, reply, int64(len(strings.Fields(fakeprovider.FakeThinking(reply)))))
			up := g.last(t)
			if up.JSON("generationConfig.thinkingConfig.thinkingBudget").Int() != 24576 || !up.JSON("generationConfig.thinkingConfig.includeThoughts").Bool() {
				t.Errorf("%s stream=%v: upstream %s", model, stream, up.Body)
			}
		}
	}
	// minimal on a Pro model: its smallest budget, never 0 (which the
	// model refuses).
	got := askReasoning(t, g.client, "vertex-pro", shared.ReasoningEffortMinimal, false)
	if up := g.last(t); up.JSON("generationConfig.thinkingConfig.thinkingBudget").Int() != 128 || got.content == "" {
		t.Errorf("minimal on Pro: %s", up.Body)
	}
	g.waitNoStreams()
}
