package e2e

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/shared"

	"github.com/llmux/llmux/test/fakeprovider"
)

const bedrockModel = "anthropic.claude-3-5-sonnet-20240620-v1:0"

const bedrockConfig = `
server:
  max_request_body_bytes: 1048576
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: bedrock
  kind: bedrock
  cluster: bedrock_us_east_1
  region: us-east-1
deployments:
- {name: br-claude, provider: bedrock, model: "` + bedrockModel + `"}
- {name: br-titan, provider: bedrock, model: "amazon.titan-embed-text-v2:0"}
- {name: br-cohere, provider: bedrock, model: cohere.embed-english-v3}
model_groups:
- {name: claude, deployments: [br-claude]}
- {name: titan-embed, deployments: [br-titan]}
- {name: cohere-embed, deployments: [br-cohere]}
`

// fakeAWSEnv points the AWS default credential chain at the Bedrock fake's
// test credentials in the environment; the shared config files point at
// empty files so that no real AWS configuration leaks in.
func fakeAWSEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config", "credentials"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_ACCESS_KEY_ID", fakeprovider.BedrockAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", fakeprovider.BedrockSecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// bedrockRig starts the stack with the Bedrock fake behind the
// bedrock_us_east_1 cluster. The AWS default credential chain finds the
// fake's test credentials in the environment; the shared config files
// point at empty files so that no real AWS configuration leaks in.
func bedrockRig(t *testing.T, opts fakeprovider.BedrockOptions) (*rig, *fakeprovider.Server) {
	t.Helper()
	fakeAWSEnv(t)
	br := fakeprovider.NewBedrock(t, opts)
	return startRigWith(t, bedrockConfig, map[string]string{"bedrock_us_east_1": br.Addr()}), br
}

func TestBedrockChat(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{CacheReadTokens: 40, CacheWriteTokens: 2})
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:     "claude",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("hello bedrock")},
		MaxTokens: param.NewOpt[int64](100), Temperature: param.NewOpt(0.2),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Hello from fake-bedrock: hello bedrock" || resp.Choices[0].FinishReason != "stop" || resp.Model != bedrockModel {
		t.Fatalf("reply %s", resp.RawJSON())
	}
	// inputTokens 4 (Be brief. hello bedrock) + 40 cache reads + 2 writes.
	if resp.Usage.PromptTokens != 46 || resp.Usage.PromptTokensDetails.CachedTokens != 40 || resp.Usage.CompletionTokens != 5 {
		t.Errorf("usage %+v", resp.Usage)
	}
	got, _ := br.Last()
	if got.Path != "/model/"+bedrockModel+"/converse" || got.JSON("system.0.text").String() != "Be brief." ||
		got.JSON("inferenceConfig.maxTokens").Int() != 100 || got.Header.Get("Authorization") == "" || got.Header.Get("X-Api-Key") != "" {
		t.Errorf("upstream %s %s %v", got.Path, got.Body, got.Header)
	}
	if logs := r.accessLogs(1); logs != nil {
		l := logs[0]
		if l["upstream_cluster"] != "bedrock_us_east_1" || l["input_tokens"] != float64(46) || l["cached_tokens"] != float64(40) {
			t.Errorf("access log %v", l)
		}
	}
	r.waitNoStreams()
}

// TestBedrockStreamUnbuffered: the first chunks reach the client while the
// fake holds the rest of the event stream.
func TestBedrockStreamUnbuffered(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{})
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude", Messages: userMsg("one two three four"),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
	}, withFault(fakeprovider.HeaderHold, "br1"), withFault(fakeprovider.HeaderHoldAfter, "2"))
	defer stream.Close()
	// Frames: messageStart, "Hello" — then the hold.
	var acc openai.ChatCompletionAccumulator
	for i := 0; i < 2; i++ {
		if !stream.Next() {
			t.Fatalf("chunk %d not delivered before the hold: %v", i, stream.Err())
		}
		acc.AddChunk(stream.Current())
	}
	if acc.Choices[0].Message.Content != "Hello" {
		t.Fatalf("before the hold: %q", acc.Choices[0].Message.Content)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := br.WaitHeld(ctx, "br1"); err != nil {
		t.Fatal(err)
	}
	br.Release("br1")
	var usage *openai.CompletionUsage
	for stream.Next() {
		c := stream.Current()
		acc.AddChunk(c)
		if len(c.Choices) == 0 {
			usage = &c.Usage
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content != "Hello from fake-bedrock: one two three four" || acc.Choices[0].FinishReason != "stop" {
		t.Errorf("accumulated %+v", acc.Choices[0])
	}
	if usage == nil || usage.CompletionTokens == 0 || usage.PromptTokens == 0 {
		t.Errorf("usage chunk %+v", usage)
	}
	got, _ := br.Last()
	if !strings.HasSuffix(got.Path, "/converse-stream") {
		t.Errorf("path %s", got.Path)
	}
	r.waitNoStreams()
}

func TestBedrockToolCallRoundTrip(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{})
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
	})}
	params := openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("weather in Paris and Rome"), Tools: tools}
	_, acc := streamChunks(t, r, params, withFault(fakeprovider.HeaderToolCalls, "2"))
	msg := acc.Choices[0].Message
	if acc.Choices[0].FinishReason != "tool_calls" || len(msg.ToolCalls) != 2 || msg.ToolCalls[0].ID == msg.ToolCalls[1].ID {
		t.Fatalf("tool calls %+v", acc.Choices[0])
	}
	params.Messages = append(params.Messages, msg.ToParam())
	for _, tc := range msg.ToolCalls {
		if !json.Valid([]byte(tc.Function.Arguments)) || tc.Function.Name != "get_weather" {
			t.Fatalf("tool call %+v", tc)
		}
		params.Messages = append(params.Messages, openai.ToolMessage(`{"temp_c":21}`, tc.ID))
	}
	resp, err := r.client.Chat.Completions.New(context.Background(), params, withFault(fakeprovider.HeaderReply, "Sunny in both."))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Sunny in both." {
		t.Errorf("final %q", resp.Choices[0].Message.Content)
	}
	got, _ := br.Last()
	if n := len(got.JSON("messages").Array()); n != 3 || got.JSON("messages.2.content.#").Int() != 2 ||
		got.JSON("messages.2.content.1.toolResult.toolUseId").String() != msg.ToolCalls[1].ID {
		t.Errorf("upstream messages %s", got.JSON("messages").Raw)
	}
	// tool_choice none: the tools are kept (the history has tool blocks)
	// and no toolChoice is sent — never a tool named "none".
	params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: param.NewOpt("none")}
	if _, err := r.client.Chat.Completions.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	got, _ = br.Last()
	if got.JSON("toolConfig.toolChoice").Exists() || strings.Contains(string(got.Body), `"none"`) {
		t.Errorf("tool_choice none sent as %s", got.JSON("toolConfig").Raw)
	}
}

func TestBedrockImageAndJSONSchema(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{})
	ctx := context.Background()
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\nfake"))
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
		openai.TextContentPart("what is in this image?"),
		openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64," + png}),
	})}
	schema := map[string]any{"type": "object", "properties": map[string]any{"answer": map[string]any{"type": "string"}}, "required": []string{"answer"}}
	resp, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "claude", Messages: msgs,
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Schema: schema, Strict: param.NewOpt(true)},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Answer string }
	if err := json.Unmarshal([]byte(resp.Choices[0].Message.Content), &out); err != nil || out.Answer == "" || len(resp.Choices[0].Message.ToolCalls) != 0 || resp.Choices[0].FinishReason != "stop" {
		t.Fatalf("structured output %s: %v", resp.RawJSON(), err)
	}
	got, _ := br.Last()
	if got.JSON("messages.0.content.1.image.source.bytes").String() != png || got.JSON("messages.0.content.1.image.format").String() != "png" {
		t.Errorf("image %s", got.JSON("messages.0.content").Raw)
	}
	if got.JSON("toolConfig.toolChoice.tool.name").String() != "llmux_json_response" || got.JSON("toolConfig.tools.0.toolSpec.inputSchema.json.required.0").String() != "answer" {
		t.Errorf("response_format not honoured: %s", got.JSON("toolConfig").Raw)
	}
	// Streamed JSON output arrives as content too.
	_, acc := streamChunks(t, r, openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("json please"),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}})
	if !json.Valid([]byte(acc.Choices[0].Message.Content)) || acc.Choices[0].FinishReason != "stop" {
		t.Errorf("streamed JSON %+v", acc.Choices[0])
	}
	// An http(s) image URL is a clear 400 from the gateway.
	_, err = r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
		openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/cat.png"}),
	})}})
	apiError(t, err, 400, "unsupported_image_url")
}

func TestBedrockEmbeddings(t *testing.T) {
	r, br := bedrockRig(t, fakeprovider.BedrockOptions{})
	ctx := context.Background()
	resp, err := r.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "titan-embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: param.NewOpt("hello titan")}, Dimensions: param.NewOpt[int64](256),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 1 || len(resp.Data[0].Embedding) != 256 || resp.Usage.PromptTokens != 2 {
		t.Fatalf("titan %d %+v", len(resp.Data), resp.Usage)
	}
	got, _ := br.Last()
	if got.Path != "/model/amazon.titan-embed-text-v2:0/invoke" || got.JSON("dimensions").Int() != 256 || !got.JSON("normalize").Bool() {
		t.Errorf("upstream %s %s", got.Path, got.Body)
	}
	// Titan takes one input per call: an array of two is a clear 400.
	_, err = r.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "titan-embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	apiError(t, err, 400, "invalid_value")
	// Cohere takes arrays; base64 is honoured.
	resp, err = r.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "cohere-embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Data[1].Embedding) != 1024 || resp.Data[1].Index != 1 {
		t.Fatalf("cohere %d", len(resp.Data))
	}
	var raw map[string]any
	if err := r.client.Post(ctx, "embeddings", map[string]any{"model": "cohere-embed", "input": []string{"alpha", "beta"}, "encoding_format": "base64"}, &raw); err != nil {
		t.Fatal(err)
	}
	b64, _ := raw["data"].([]any)[1].(map[string]any)["embedding"].(string)
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != 4*1024 {
		t.Fatalf("base64 embedding: %v", err)
	}
	for i := range resp.Data[1].Embedding {
		if f := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])); f != float32(resp.Data[1].Embedding[i]) {
			t.Fatalf("base64 and float embeddings differ at %d", i)
		}
	}
	got, _ = br.Last()
	if got.JSON("input_type").String() != "search_document" || got.JSON("texts.#").Int() != 2 {
		t.Errorf("upstream %s", got.Body)
	}
}

func TestBedrockErrors(t *testing.T) {
	r, _ := bedrockRig(t, fakeprovider.BedrockOptions{})
	ctx := context.Background()
	chat := func(opts ...option.RequestOption) error {
		_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("x")}, opts...)
		return err
	}
	status := func(s string, code ...string) []option.RequestOption {
		o := []option.RequestOption{withFault(fakeprovider.HeaderStatus, s)}
		if len(code) > 0 {
			o = append(o, withFault(fakeprovider.HeaderErrorCode, code[0]))
		}
		return o
	}
	tests := []struct {
		name   string
		opts   []option.RequestOption
		status int
		code   string
		class  string
	}{
		{"validation", status("400"), 400, "invalid_request", "invalid_request"},
		{"context length", status("400", "context_length_exceeded"), 400, "context_length_exceeded", "context_length_exceeded"},
		{"quota", status("400", "ServiceQuotaExceededException"), 429, "insufficient_quota", "quota_exhausted"},
		{"throttled", status("429"), 429, "rate_limit_exceeded", "rate_limited"},
		{"model not ready", status("429", "ModelNotReadyException"), 503, "overloaded", "overloaded"},
		{"access denied", status("403"), 403, "permission_denied", "permission_denied"},
		{"not found", status("404"), 404, "model_not_found", "not_found"},
		{"model timeout", status("408"), 504, "timeout", "timeout"},
		{"model error", status("424"), 500, "server_error", "upstream_error"},
		{"internal", status("500"), 500, "server_error", "upstream_error"},
		{"unavailable", status("503"), 503, "overloaded", "overloaded"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			apiError(t, chat(tc.opts...), tc.status, tc.code)
			if logs := r.accessLogs(i + 1); logs != nil && logs[i]["error_code"] != tc.class {
				t.Errorf("access log error_code %v, want %s", logs[i]["error_code"], tc.class)
			}
		})
	}
	r.waitNoStreams()
}

// TestBedrockBadCredentials: a wrong secret key makes the fake reject the
// signature; the client sees an authentication error.
func TestBedrockBadCredentials(t *testing.T) {
	r, _ := bedrockRig(t, fakeprovider.BedrockOptions{AccessKeyID: fakeprovider.BedrockAccessKeyID, SecretAccessKey: "another-secret"})
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("x")})
	apiError(t, err, 502, "upstream_authentication_failed")
}

// TestBedrockExceptionMidStream: an exception frame after some content
// reaches the SDK as a stream error, after the content, without [DONE].
func TestBedrockExceptionMidStream(t *testing.T) {
	r, _ := bedrockRig(t, fakeprovider.BedrockOptions{})
	for i, tc := range []struct{ exception, class string }{
		{"throttlingException", "rate_limited"},
		{"modelStreamErrorException", "upstream_error"},
	} {
		stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "claude", Messages: userMsg("a b c d")},
			withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError), withFault(fakeprovider.HeaderFaultAfter, "3"),
			withFault(fakeprovider.HeaderErrorCode, tc.exception))
		content := ""
		for stream.Next() {
			if c := stream.Current(); len(c.Choices) > 0 {
				content += c.Choices[0].Delta.Content
			}
		}
		err := stream.Err()
		if err == nil || content != "Hello from" || !strings.Contains(err.Error(), "(fake)") {
			t.Fatalf("%s: stream error %v after %q", tc.exception, err, content)
		}
		// Checked before Close: the upstream ended the stream, not the client.
		if logs := r.accessLogs(i + 1); logs != nil && logs[i]["error_code"] != tc.class {
			t.Errorf("%s: access log error_code %v, want %s", tc.exception, logs[i]["error_code"], tc.class)
		}
		stream.Close()
	}
	// A truncated stream ends without [DONE]: the SDK sees the stream end
	// early, and the gateway records no completion.
	datas := rawStreamData(t, r, `{"model":"claude","stream":true,"messages":[{"role":"user","content":"a b c"}]}`,
		fakeprovider.HeaderFault, fakeprovider.FaultTruncate, fakeprovider.HeaderFaultAfter, "3")
	if len(datas) == 0 || datas[len(datas)-1] == "[DONE]" {
		t.Errorf("truncated stream events %v", datas)
	}
	r.waitNoStreams()
}
