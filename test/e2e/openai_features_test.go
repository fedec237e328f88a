package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
)

var weatherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("Current weather for a city"),
	Parameters: shared.FunctionParameters{
		"type":       "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}},
		"required":   []string{"city"},
	},
})

// TestOpenAIParallelToolCallRoundTrip: tools go up, two parallel tool calls
// come back, the tool results go up, and the final answer comes back —
// every step through the gateway unchanged.
func TestOpenAIParallelToolCallRoundTrip(t *testing.T) {
	r := startRig(t)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: userMsg("weather in Paris and Oslo?"),
		Tools:    []openai.ChatCompletionToolUnionParam{weatherTool},
	}
	first, err := r.client.Chat.Completions.New(ctx, params, withFault(fakeprovider.HeaderToolCalls, "2"))
	if err != nil {
		t.Fatal(err)
	}
	calls := first.Choices[0].Message.ToolCalls
	if len(calls) != 2 || first.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("want 2 tool calls, got %+v", first.Choices[0])
	}
	up, _ := r.fake.Last()
	if gjson.GetBytes(up.Body, "tools.0.function.name").String() != "get_weather" {
		t.Fatalf("tools not forwarded: %s", up.Body)
	}
	params.Messages = append(params.Messages, first.Choices[0].Message.ToParam())
	for _, c := range calls {
		params.Messages = append(params.Messages, openai.ToolMessage(`{"temp_c":12}`, c.ID))
	}
	final, err := r.client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if final.Choices[0].FinishReason != "stop" || final.Choices[0].Message.Content == "" {
		t.Fatalf("final %+v", final.Choices[0])
	}
	up, _ = r.fake.Last()
	msgs := gjson.GetBytes(up.Body, "messages").Array()
	if len(msgs) != 4 || msgs[2].Get("role").String() != "tool" || msgs[2].Get("tool_call_id").String() != calls[0].ID {
		t.Fatalf("tool results not forwarded: %s", up.Body)
	}
}

// TestOpenAIStreamedToolCalls checks streamed tool-call chunks arrive with
// their indexes.
func TestOpenAIStreamedToolCalls(t *testing.T) {
	r := startRig(t)
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini", Messages: userMsg("weather?"), Tools: []openai.ChatCompletionToolUnionParam{weatherTool},
	}, withFault(fakeprovider.HeaderToolCalls, "2"))
	defer stream.Close()
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	calls := acc.Choices[0].Message.ToolCalls
	if len(calls) != 2 || calls[0].Function.Name != "get_weather" || !gjson.Valid(calls[1].Function.Arguments) {
		t.Fatalf("tool calls %+v", calls)
	}
}

func TestOpenAIImageInput(t *testing.T) {
	r := startRig(t)
	const dataURL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("what is in this image?"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: dataURL}),
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content == "" {
		t.Fatal("empty reply")
	}
	up, _ := r.fake.Last()
	if got := gjson.GetBytes(up.Body, "messages.0.content.1.image_url.url").String(); got != dataURL {
		t.Fatalf("image not forwarded intact: %q", got)
	}
}

func TestOpenAIJSONSchemaOutput(t *testing.T) {
	r := startRig(t)
	schema := map[string]any{
		"type":                 "object",
		"properties":           map[string]any{"answer": map[string]any{"type": "string"}},
		"required":             []string{"answer"},
		"additionalProperties": false,
	}
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: userMsg("answer in JSON"),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Schema: schema, Strict: openai.Bool(true)},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := r.fake.Last()
	rf := gjson.GetBytes(up.Body, "response_format")
	if rf.Get("type").String() != "json_schema" || rf.Get("json_schema.schema.properties.answer.type").String() != "string" || !rf.Get("json_schema.strict").Bool() {
		t.Fatalf("response_format not forwarded intact: %s", rf.Raw)
	}
	if strings.Contains(string(up.Body), clientKey) {
		t.Fatal("client key upstream")
	}
}
