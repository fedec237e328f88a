package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/openai/openai-go/v3/shared"

	"github.com/llmux/llmux/test/fakeprovider"
	"github.com/llmux/llmux/translate/gcpauth"
)

const geminiConfig = `
server:
  max_request_body_bytes: 65536
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: gemini
  kind: gemini
  cluster: gemini
  credentials: {api_key_env: E2E_PROVIDER_KEY}
- name: vertex
  kind: vertex
  cluster: vertex_us_central1
  region: us-central1
  project: e2e-project
deployments:
- {name: gemini-flash, provider: gemini, model: gemini-2.5-flash}
- {name: gemini-embed, provider: gemini, model: gemini-embedding-001}
- {name: vertex-pro, provider: vertex, model: gemini-2.5-pro}
- {name: vertex-embed, provider: vertex, model: text-embedding-005}
model_groups:
- {name: gemini-flash, deployments: [gemini-flash]}
- {name: gemini-embed, deployments: [gemini-embed]}
- {name: vertex-pro, deployments: [vertex-pro]}
- {name: vertex-embed, deployments: [vertex-embed]}
`

// geminiRig is a stack whose gemini and vertex clusters point at one
// Gemini fake, with ADC pointing at a fake Google OAuth endpoint.
type geminiRig struct {
	*rig
	gem   *fakeprovider.Server
	oauth *fakeprovider.GCPOAuth
}

func startGeminiRig(t *testing.T) *geminiRig {
	t.Helper()
	oauth := fakeprovider.NewGCPOAuth(t, fakeprovider.GCPOAuthOptions{})
	p, err := oauth.WriteCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", p)
	// The process-wide token cache outlives a test; each test has its own
	// token endpoint.
	gcpauth.Default.Forget("vertex")
	t.Cleanup(func() {
		gcpauth.Default.Forget("vertex")
		gcpauth.Default.CloseIdleConnections()
	})
	gem := fakeprovider.NewGemini(t, fakeprovider.GeminiOptions{APIKey: providerKey, OAuth: oauth})
	r := startRigWith(t, geminiConfig, map[string]string{"gemini": gem.Addr(), "vertex_us_central1": gem.Addr()})
	return &geminiRig{rig: r, gem: gem, oauth: oauth}
}

func (g *geminiRig) last(t *testing.T) fakeprovider.Recorded {
	t.Helper()
	rec, ok := g.gem.Last()
	if !ok {
		t.Fatal("the Gemini fake saw no request")
	}
	return rec
}

func TestGeminiChat(t *testing.T) {
	g := startGeminiRig(t)
	ctx := context.Background()
	for _, tc := range []struct{ model, path string }{
		{"gemini-flash", "/v1beta/models/gemini-2.5-flash:generateContent"},
		{"vertex-pro", "/v1/projects/e2e-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent"},
	} {
		t.Run(tc.model, func(t *testing.T) {
			resp, err := g.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: tc.model,
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("be brief"), openai.UserMessage("hello gemini"),
				},
				Temperature: openai.Float(0.3),
				MaxTokens:   openai.Int(50),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Choices[0].Message.Content; got != "Hello from fake-gemini: hello gemini" || resp.Choices[0].FinishReason != "stop" {
				t.Fatalf("reply %+v", resp.Choices[0])
			}
			if resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 || resp.Model != strings.SplitN(tc.path, ":", 2)[0][strings.LastIndex(strings.SplitN(tc.path, ":", 2)[0], "/")+1:] {
				t.Errorf("usage %+v model %q", resp.Usage, resp.Model)
			}
			up := g.last(t)
			if up.Path != tc.path {
				t.Errorf("upstream path %q", up.Path)
			}
			if up.JSON("systemInstruction.parts.0.text").Str != "be brief" || up.JSON("generationConfig.maxOutputTokens").Int() != 50 {
				t.Errorf("upstream body %s", up.Body)
			}
			if strings.HasPrefix(tc.model, "vertex") {
				tok := strings.TrimPrefix(up.Header.Get("Authorization"), "Bearer ")
				if !g.oauth.Valid(tok) || up.Header.Get("x-goog-api-key") != "" {
					t.Errorf("vertex auth %q", up.Header.Get("Authorization"))
				}
			} else if up.Header.Get("x-goog-api-key") != providerKey || up.Header.Get("Authorization") != "" {
				t.Errorf("AI Studio auth: key %q authorization %q", up.Header.Get("x-goog-api-key"), up.Header.Get("Authorization"))
			}
		})
	}
	if n := g.oauth.Issued(); n != 1 {
		t.Errorf("OAuth tokens issued: %d, want 1", n)
	}
	g.waitNoStreams()
}

// TestGeminiStreamUnbuffered: the fake holds after two events until the
// client has read a chunk.
func TestGeminiStreamUnbuffered(t *testing.T) {
	g := startGeminiRig(t)
	for i, model := range []string{"gemini-flash", "vertex-pro"} {
		t.Run(model, func(t *testing.T) {
			gate := "g" + string(rune('0'+i))
			stream := g.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
				Model: model, Messages: userMsg("one two three four"),
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
			}, withFault(fakeprovider.HeaderHold, gate), withFault(fakeprovider.HeaderHoldAfter, "2"))
			defer stream.Close()
			if !stream.Next() {
				t.Fatalf("no first chunk: %v", stream.Err())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := g.gem.WaitHeld(ctx, gate); err != nil {
				t.Fatal(err)
			}
			acc := openai.ChatCompletionAccumulator{}
			acc.AddChunk(stream.Current())
			g.gem.Release(gate)
			usage := 0
			for stream.Next() {
				c := stream.Current()
				acc.AddChunk(c)
				if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
					usage++
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if got := acc.Choices[0].Message.Content; got != "Hello from fake-gemini: one two three four" || acc.Choices[0].FinishReason != "stop" || usage != 1 {
				t.Fatalf("content %q finish %q usage chunks %d", got, acc.Choices[0].FinishReason, usage)
			}
			if up := g.last(t); !strings.HasSuffix(up.Path, ":streamGenerateContent") || up.RawQuery != "alt=sse" {
				t.Errorf("upstream %s?%s", up.Path, up.RawQuery)
			}
		})
	}
}

func TestGeminiParallelToolCallRoundTrip(t *testing.T) {
	g := startGeminiRig(t)
	ctx := context.Background()
	tool := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Current weather for a city"),
		Parameters: shared.FunctionParameters{
			"$schema":              "http://json-schema.org/draft-07/schema#",
			"type":                 "object",
			"properties":           map[string]any{"city": map[string]any{"type": "string"}, "unit": map[string]any{"type": []string{"string", "null"}, "enum": []any{"c", "f", nil}}},
			"required":             []string{"city"},
			"additionalProperties": false,
		},
	})
	params := openai.ChatCompletionNewParams{
		Model:    "gemini-flash",
		Messages: userMsg("weather in Paris and Oslo?"),
		Tools:    []openai.ChatCompletionToolUnionParam{tool},
	}
	// Streamed: whole calls per chunk, indexes 0 and 1.
	stream := g.client.Chat.Completions.NewStreaming(ctx, params, withFault(fakeprovider.HeaderToolCalls, "2"))
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	_ = stream.Close()
	if calls := acc.Choices[0].Message.ToolCalls; len(calls) != 2 || acc.Choices[0].FinishReason != "tool_calls" || calls[1].ID == calls[0].ID {
		t.Fatalf("streamed tool calls %+v", acc.Choices[0])
	}
	first, err := g.client.Chat.Completions.New(ctx, params, withFault(fakeprovider.HeaderToolCalls, "2"))
	if err != nil {
		t.Fatal(err)
	}
	calls := first.Choices[0].Message.ToolCalls
	if len(calls) != 2 || first.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("want 2 tool calls, got %+v", first.Choices[0])
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(calls[0].Function.Arguments), &args); err != nil || args["city"] == nil {
		t.Fatalf("arguments %q", calls[0].Function.Arguments)
	}
	up := g.last(t)
	decl := up.JSON("tools.0.functionDeclarations.0")
	if decl.Get("name").Str != "get_weather" || decl.Get("parameters.additionalProperties").Exists() || !decl.Get("parameters.properties.unit.nullable").Bool() {
		t.Fatalf("declaration %s", decl.Raw)
	}
	params.Messages = append(params.Messages, first.Choices[0].Message.ToParam())
	params.Messages = append(params.Messages, openai.ToolMessage(`{"temp_c":12}`, calls[0].ID), openai.ToolMessage("sunny", calls[1].ID))
	final, err := g.client.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if final.Choices[0].FinishReason != "stop" || !strings.Contains(final.Choices[0].Message.Content, "get_weather returned") {
		t.Fatalf("final %+v", final.Choices[0])
	}
	up = g.last(t)
	turn := up.JSON("contents.2")
	if turn.Get("role").Str != "user" || turn.Get("parts.#").Int() != 2 || turn.Get("parts.0.functionResponse.response.temp_c").Int() != 12 ||
		turn.Get("parts.1.functionResponse.response.result").Str != "sunny" || up.JSON("contents.1.parts.#").Int() != 2 {
		t.Fatalf("tool results upstream: %s", up.Body)
	}
}

func TestGeminiImageAndJSONSchema(t *testing.T) {
	g := startGeminiRig(t)
	ctx := context.Background()
	const png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
	resp, err := g.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "vertex-pro",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("what is in this image?"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64," + png}),
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.Choices[0].Message.Content, "image/png") {
		t.Errorf("reply %q", resp.Choices[0].Message.Content)
	}
	if up := g.last(t); up.JSON("contents.0.parts.1.inlineData.data").Str != png || up.JSON("contents.0.parts.1.inlineData.mimeType").Str != "image/png" {
		t.Errorf("image upstream %s", up.Body)
	}
	// An http image URL is refused by the gateway with a clear 400.
	_, err = g.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: "gemini-flash",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "https://example.com/cat.png"}),
		})},
	})
	apiError(t, err, 400, "unsupported_parameter")

	schema := map[string]any{
		"type":                 "object",
		"properties":           map[string]any{"answer": map[string]any{"type": "string"}, "score": map[string]any{"type": "integer"}},
		"required":             []string{"answer", "score"},
		"additionalProperties": false,
	}
	resp, err = g.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gemini-flash",
		Messages: userMsg("answer in JSON"),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "answer", Schema: schema, Strict: openai.Bool(true)},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Answer string `json:"answer"`
		Score  int    `json:"score"`
	}
	if err := json.Unmarshal([]byte(resp.Choices[0].Message.Content), &out); err != nil || out.Answer == "" {
		t.Fatalf("JSON output %q: %v", resp.Choices[0].Message.Content, err)
	}
	up := g.last(t)
	if up.JSON("generationConfig.responseMimeType").Str != "application/json" || up.JSON("generationConfig.responseSchema.properties.score.type").Str != "INTEGER" {
		t.Fatalf("generationConfig %s", up.JSON("generationConfig").Raw)
	}
}

func TestGeminiEmbeddings(t *testing.T) {
	g := startGeminiRig(t)
	ctx := context.Background()
	for _, tc := range []struct{ model, suffix string }{{"gemini-embed", ":batchEmbedContents"}, {"vertex-embed", ":predict"}} {
		t.Run(tc.model, func(t *testing.T) {
			resp, err := g.client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model:      tc.model,
				Input:      openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha beta", "gamma"}},
				Dimensions: openai.Int(6),
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Data) != 2 || len(resp.Data[1].Embedding) != 6 || resp.Data[1].Index != 1 || resp.Usage.PromptTokens == 0 {
				t.Fatalf("embeddings %+v", resp)
			}
			if up := g.last(t); !strings.HasSuffix(up.Path, tc.suffix) {
				t.Errorf("upstream %s", up.Path)
			}
			var raw map[string]any
			if err := g.client.Post(ctx, "embeddings", map[string]any{"model": tc.model, "input": "alpha beta", "dimensions": 6, "encoding_format": "base64"}, &raw); err != nil {
				t.Fatal(err)
			}
			b64, _ := raw["data"].([]any)[0].(map[string]any)["embedding"].(string)
			if b, err := base64.StdEncoding.DecodeString(b64); err != nil || len(b) != 24 {
				t.Fatalf("base64 embedding %q: %v", b64, err)
			}
		})
	}
}

func TestGeminiErrors(t *testing.T) {
	g := startGeminiRig(t)
	ctx := context.Background()
	chat := func(model string, opts ...option.RequestOption) error {
		_, err := g.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("x")}, opts...)
		return err
	}
	fault := func(status, code string) []option.RequestOption {
		o := []option.RequestOption{withFault(fakeprovider.HeaderStatus, status)}
		if code != "" {
			o = append(o, withFault(fakeprovider.HeaderErrorCode, code))
		}
		return o
	}
	for _, tc := range []struct {
		name, status, code string
		want               int
		openaiCode         string
	}{
		{"invalid argument", "400", "", 400, "invalid_request"},
		{"bad API key", "400", "api_key_invalid", 502, "upstream_authentication_failed"},
		{"context length", "400", "context_length_exceeded", 400, "context_length_exceeded"},
		{"unauthenticated", "401", "", 502, "upstream_authentication_failed"},
		{"permission", "403", "", 403, "permission_denied"},
		{"not found", "404", "", 404, "model_not_found"},
		{"rate limited", "429", "", 429, "rate_limit_exceeded"},
		{"quota", "429", "quota", 429, "insufficient_quota"},
		{"internal", "500", "", 500, "server_error"},
		{"overloaded", "503", "", 503, "overloaded"},
		{"deadline", "504", "", 504, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apiError(t, chat("gemini-flash", fault(tc.status, tc.code)...), tc.want, tc.openaiCode)
		})
	}
	t.Run("vertex unauthenticated", func(t *testing.T) {
		apiError(t, chat("vertex-pro", fault("401", "")...), 502, "upstream_authentication_failed")
	})
	t.Run("mid-stream error", func(t *testing.T) {
		stream := g.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gemini-flash", Messages: userMsg("one two three")},
			withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError), withFault(fakeprovider.HeaderFaultAfter, "2"))
		defer stream.Close()
		n := 0
		for stream.Next() {
			n++
		}
		if n == 0 || stream.Err() == nil || !strings.Contains(stream.Err().Error(), "internal error") {
			t.Fatalf("chunks %d, err %v", n, stream.Err())
		}
	})
	t.Run("truncated stream", func(t *testing.T) {
		stream := g.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gemini-flash", Messages: userMsg("one two three")},
			withFault(fakeprovider.HeaderFault, fakeprovider.FaultTruncate), withFault(fakeprovider.HeaderFaultAfter, "2"))
		defer stream.Close()
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if len(acc.Choices) == 0 || acc.Choices[0].FinishReason != "" {
			t.Fatalf("a truncated stream must not finish: %+v", acc.Choices)
		}
	})
	g.waitNoStreams()
}
