package e2e

import (
	"context"
	"testing"

	"github.com/openai/openai-go/v3"

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
