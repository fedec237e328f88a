package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
	"github.com/llmux/llmux/translate"
)

const azureConfig = `
server:
  max_request_body_bytes: 1048576
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: azure
  kind: azure_openai
  cluster: azure
  api_version: "2024-10-21"
  credentials: {api_key_env: E2E_PROVIDER_KEY}
- name: azure-badkey
  kind: azure_openai
  cluster: azure
  credentials: {api_key_env: E2E_AZURE_BAD_KEY}
deployments:
- {name: az-4o, provider: azure, model: prod-4o}
- {name: az-gone, provider: azure, model: deleted-deployment}
- {name: az-embed, provider: azure, model: embed-small}
- {name: az-badkey, provider: azure-badkey, model: prod-4o}
model_groups:
- {name: gpt-4o, deployments: [az-4o]}
- {name: gpt-gone, deployments: [az-gone]}
- {name: text-embedding-3-small, deployments: [az-embed]}
- {name: gpt-badkey, deployments: [az-badkey]}
`

// azureRig starts the stack with the Azure fake behind the azure cluster.
func azureRig(t *testing.T) (*rig, *fakeprovider.Server) {
	t.Helper()
	t.Setenv("E2E_AZURE_BAD_KEY", "az-wrong-key-000000")
	az := fakeprovider.NewAzure(t, fakeprovider.AzureOptions{
		APIKey:      providerKey,
		Deployments: map[string]string{"prod-4o": "gpt-4o-2024-08-06", "embed-small": "text-embedding-3-small"},
	})
	return startRigWith(t, azureConfig, map[string]string{"azure": az.Addr()}), az
}

func TestAzureChat(t *testing.T) {
	r, az := azureRig(t)
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: userMsg("hello azure"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Choices[0].Message.Content, "hello azure") || resp.Model != "gpt-4o-2024-08-06" {
		t.Fatalf("reply %+v", resp)
	}
	if resp.Usage.PromptTokens == 0 {
		t.Errorf("usage %+v", resp.Usage)
	}
	// Azure's annotations reach the client untouched.
	if !gjson.Get(resp.RawJSON(), "choices.0.content_filter_results.hate").IsObject() || !gjson.Get(resp.RawJSON(), "prompt_filter_results").IsArray() {
		t.Errorf("content filter annotations lost: %s", resp.RawJSON())
	}
	got, _ := az.Last()
	if got.Path != "/openai/deployments/prod-4o/chat/completions" || got.RawQuery != "api-version=2024-10-21" {
		t.Errorf("upstream %s?%s", got.Path, got.RawQuery)
	}
	if got.Header.Get("api-key") != providerKey || got.Header.Get("Authorization") != "" {
		t.Errorf("upstream auth: api-key %q, authorization %q", got.Header.Get("api-key"), got.Header.Get("Authorization"))
	}
	if m := got.JSON("model").String(); m != "prod-4o" {
		t.Errorf("upstream model %q", m)
	}
	if logs := r.accessLogs(1); logs != nil {
		if logs[0]["upstream_cluster"] != "azure" || logs[0]["deployment"] != "az-4o" {
			t.Errorf("access log %v", logs[0])
		}
		if n, _ := logs[0]["input_tokens"].(float64); n != float64(resp.Usage.PromptTokens) {
			t.Errorf("access log tokens %v", logs[0])
		}
	}
	r.waitNoStreams()
}

// TestAzureStreamUnbuffered: the first chunk the client sees is the role
// chunk (Azure's prompt_filter_results chunk is dropped), and it arrives
// while the provider is held mid-stream.
func TestAzureStreamUnbuffered(t *testing.T) {
	r, az := azureRig(t)
	// Frames: prompt filter, role, "one", " two", … — hold after "one".
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("one two three four")},
		withFault(fakeprovider.HeaderHold, "az1"), withFault(fakeprovider.HeaderHoldAfter, "3"))
	defer stream.Close()
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	first := stream.Current()
	if len(first.Choices) != 1 || first.Choices[0].Delta.Role != "assistant" || first.ID == "" {
		t.Fatalf("first chunk is not the role chunk: %s", first.RawJSON())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := az.WaitHeld(ctx, "az1"); err != nil {
		t.Fatal(err)
	}
	acc := openai.ChatCompletionAccumulator{}
	acc.AddChunk(first)
	az.Release("az1")
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) == 0 {
			t.Errorf("chunk without choices reached a client that asked for no usage: %s", c.RawJSON())
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" && !gjson.Get(c.RawJSON(), "choices.0.content_filter_results").IsObject() {
			t.Errorf("content_filter_results dropped: %s", c.RawJSON())
		}
		acc.AddChunk(c)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(acc.Choices[0].Message.Content, "one two three four") || acc.Choices[0].FinishReason != "stop" {
		t.Errorf("accumulated %+v", acc.Choices[0])
	}
	got, _ := az.Last()
	if !got.JSON("stream_options.include_usage").Bool() {
		t.Error("llmux did not ask Azure for usage")
	}
	if logs := r.accessLogs(1); logs != nil {
		if n, _ := logs[0]["output_tokens"].(float64); n == 0 {
			t.Errorf("streamed usage not in the access log: %v", logs[0])
		}
	}
}

func TestAzureToolCallRoundTrip(t *testing.T) {
	r, az := azureRig(t)
	ctx := context.Background()
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
	})}
	params := openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("weather in Paris and Rome"), Tools: tools}
	_, acc := streamChunks(t, r, params, withFault(fakeprovider.HeaderToolCalls, "2"))
	msg := acc.Choices[0].Message
	if acc.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 2 {
		t.Fatalf("tool calls %+v", acc.Choices[0])
	}
	params.Messages = append(params.Messages, msg.ToParam())
	for _, tc := range msg.ToolCalls {
		if !json.Valid([]byte(tc.Function.Arguments)) || tc.ID == "" {
			t.Fatalf("tool call %+v", tc)
		}
		params.Messages = append(params.Messages, openai.ToolMessage(`{"temp_c":21}`, tc.ID))
	}
	resp, err := r.client.Chat.Completions.New(ctx, params, withFault(fakeprovider.HeaderReply, "Sunny in both."))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Sunny in both." {
		t.Errorf("final %q", resp.Choices[0].Message.Content)
	}
	got, _ := az.Last()
	if n := len(got.JSON("messages").Array()); n != 4 || got.JSON("messages.1.tool_calls.1.id").String() != msg.ToolCalls[1].ID {
		t.Errorf("upstream messages %s", got.JSON("messages").Raw)
	}
}

func TestAzureImageAndJSONSchema(t *testing.T) {
	r, az := azureRig(t)
	ctx := context.Background()
	img := "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nfake"))
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
		openai.TextContentPart("what is in this image?"),
		openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: img, Detail: "low"}),
	})}
	schema := map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}}, "required": []string{"answer"}, "additionalProperties": false}
	resp, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: msgs,
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Schema: schema, Strict: param.NewOpt(true)},
		}},
	}, withFault(fakeprovider.HeaderReply, `{"answer":"a tiny PNG"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Answer string }
	if err := json.Unmarshal([]byte(resp.Choices[0].Message.Content), &out); err != nil || out.Answer != "a tiny PNG" {
		t.Fatalf("structured output %q: %v", resp.Choices[0].Message.Content, err)
	}
	got, _ := az.Last()
	if got.JSON("messages.0.content.1.image_url.url").String() != img {
		t.Errorf("image not forwarded: %s", got.JSON("messages.0.content").Raw)
	}
	if got.JSON("response_format.type").String() != "json_schema" || got.JSON("response_format.json_schema.strict").Bool() != true ||
		got.JSON("response_format.json_schema.schema.required.0").String() != "answer" {
		t.Errorf("response_format not forwarded: %s", got.JSON("response_format").Raw)
	}
}

func TestAzureEmbeddings(t *testing.T) {
	r, az := azureRig(t)
	ctx := context.Background()
	resp, err := r.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Data[0].Embedding) == 0 || resp.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %+v", resp)
	}
	got, _ := az.Last()
	if got.Path != "/openai/deployments/embed-small/embeddings" || got.RawQuery != "api-version=2024-10-21" {
		t.Errorf("upstream %s?%s", got.Path, got.RawQuery)
	}
	// encoding_format base64 is forwarded and the answer passes through.
	var raw map[string]any
	if err := r.client.Post(ctx, "embeddings", map[string]any{"model": "text-embedding-3-small", "input": "alpha", "encoding_format": "base64"}, &raw); err != nil {
		t.Fatal(err)
	}
	got, _ = az.Last()
	if got.JSON("encoding_format").String() != "base64" {
		t.Errorf("encoding_format not forwarded: %s", got.Body)
	}
	b64, _ := raw["data"].([]any)[0].(map[string]any)["embedding"].(string)
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 4*len(resp.Data[0].Embedding) {
		t.Fatalf("base64 embedding %q: %v", b64, err)
	}
	for i := range resp.Data[0].Embedding {
		if f := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])); f != float32(resp.Data[0].Embedding[i]) {
			t.Fatalf("base64 and float embeddings differ at %d: %v vs %v", i, f, resp.Data[0].Embedding[i])
		}
	}
	if logs := r.accessLogs(2); logs != nil {
		if n, _ := logs[1]["input_tokens"].(float64); n == 0 {
			t.Errorf("embeddings usage not in the access log: %v", logs[1])
		}
	}
}

func TestAzureErrors(t *testing.T) {
	r, _ := azureRig(t)
	ctx := context.Background()
	chat := func(model string, opts ...option.RequestOption) error {
		_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("x")}, opts...)
		return err
	}
	tests := []struct {
		name      string
		call      func() error
		status    int
		code      string
		class     string // error_code in the dynamic metadata
		check     func(t *testing.T, ae *openai.Error)
		retryable bool
	}{
		{"prompt content filter", func() error {
			return chat("gpt-4o", withFault(fakeprovider.HeaderContentFilter, "prompt"))
		}, 400, "content_filter", "content_filtered", func(t *testing.T, ae *openai.Error) {
			if gjson.Get(ae.RawJSON(), "innererror.code").String() != "ResponsibleAIPolicyViolation" {
				t.Errorf("innererror lost: %s", ae.RawJSON())
			}
			if ae.Param != "prompt" || ae.Type != "invalid_request_error" {
				t.Errorf("param %q type %q", ae.Param, ae.Type)
			}
		}, false},
		{"rate limited", func() error {
			return chat("gpt-4o", withFault(fakeprovider.HeaderStatus, "429"), withFault(fakeprovider.HeaderRetryAfter, "7"))
		}, 429, "rate_limit_exceeded", "rate_limited", func(t *testing.T, ae *openai.Error) {
			if ae.Response.Header.Get("retry-after") != "7" {
				t.Errorf("retry-after %q", ae.Response.Header.Get("retry-after"))
			}
			if ae.Type != "rate_limit_error" {
				t.Errorf("type %q", ae.Type)
			}
		}, true},
		{"deployment not found", func() error { return chat("gpt-gone") }, 404, "DeploymentNotFound", "not_found", nil, false},
		{"wrong provider key", func() error { return chat("gpt-badkey") }, 502, "upstream_authentication_failed", "authentication", nil, false},
		{"server error", func() error {
			return chat("gpt-4o", withFault(fakeprovider.HeaderStatus, "500"))
		}, 500, "server_error", "upstream_error", nil, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			apiError(t, err, tc.status, tc.code)
			var ae *openai.Error
			errors.As(err, &ae)
			if tc.check != nil {
				tc.check(t, ae)
			}
			if translate.Code(tc.class).Retryable() != tc.retryable {
				t.Errorf("%s retryable = %v", tc.class, !tc.retryable)
			}
			if logs := r.accessLogs(i + 1); logs != nil && logs[i]["error_code"] != tc.class {
				t.Errorf("access log error_code %v, want %s", logs[i]["error_code"], tc.class)
			}
		})
	}
	r.waitNoStreams()
}

// TestAzureCompletionFiltered: the output filter stops a stream with
// finish_reason content_filter, which reaches the client unchanged.
func TestAzureCompletionFiltered(t *testing.T) {
	r, _ := azureRig(t)
	_, acc := streamChunks(t, r, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("a b c d e f")},
		withFault(fakeprovider.HeaderContentFilter, "completion"))
	if acc.Choices[0].FinishReason != "content_filter" {
		t.Errorf("finish %q", acc.Choices[0].FinishReason)
	}
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: userMsg("a b c d e f")},
		withFault(fakeprovider.HeaderContentFilter, "completion"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "content_filter" || !gjson.Get(resp.RawJSON(), "choices.0.content_filter_results.violence.filtered").Bool() {
		t.Errorf("non-streamed %s", resp.RawJSON())
	}
}

// TestAzureInbandErrorWrapped: Azure's mid-stream error object has no
// "type"; the client receives it as an OpenAI-shaped error event.
func TestAzureInbandErrorWrapped(t *testing.T) {
	r, _ := azureRig(t)
	datas := rawStreamData(t, r, `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"a b c"}]}`,
		fakeprovider.HeaderFault, fakeprovider.FaultInbandError, fakeprovider.HeaderFaultAfter, "3")
	if len(datas) < 2 {
		t.Fatalf("events %v", datas)
	}
	last := datas[len(datas)-1]
	e := gjson.Get(last, "error")
	if e.Get("message").Type != gjson.String || e.Get("type").String() != "server_error" || e.Get("code").String() != "server_error" {
		t.Errorf("in-band error not OpenAI-shaped: %s", last)
	}
	if gjson.Get(datas[0], "choices.0.delta.role").String() != "assistant" {
		t.Errorf("first event %s", datas[0])
	}
	if logs := r.accessLogs(1); logs != nil && logs[0]["error_code"] != "upstream_error" {
		t.Errorf("access log %v", logs[0])
	}
}

// rawStreamData posts a chat body with plain net/http (headers as
// key, value pairs) and returns the data payloads of the streamed events.
func rawStreamData(t *testing.T, r *rig, body string, hdr ...string) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.baseURL+"chat/completions", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+clientKey)
	req.Header.Set("Content-Type", "application/json")
	setFakeHeaders(req, hdr...)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var datas []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			datas = append(datas, d)
		}
	}
	return datas
}
