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
	"github.com/llmux/llmux/translate/gcpauth"
)

// vertexClaudeProvider is the provider name, and so the gcpauth cache key.
const vertexClaudeProvider = "vertex-claude"

const vertexAnthropicConfig = `
server:
  max_request_body_bytes: 65536
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- name: vertex-claude
  kind: vertex_anthropic
  cluster: vertex_us_central1
  project: test-project
  region: us-central1
deployments:
- {name: claude-v, provider: vertex-claude, model: claude-sonnet-4-5@20250929}
model_groups:
- {name: claude-vertex, deployments: [claude-v]}
`

// vertexClaudePath is the upstream path without the method suffix.
const vertexClaudePath = "/v1/projects/test-project/locations/us-central1/publishers/anthropic/models/claude-sonnet-4-5@20250929"

// vertexAnthropicRig is a stack whose "claude-vertex" group is Claude on
// Vertex AI, served by the Anthropic fake, with Google ADC pointing at a
// fake OAuth endpoint (issuer).
type vertexAnthropicRig struct {
	*rig
	fake   *fakeprovider.Server
	issuer *fakeprovider.GCPOAuth
}

// startVertexAnthropicRig starts the stack. The fake accepts the tokens of
// accept, or of the ADC issuer when accept is nil.
func startVertexAnthropicRig(t *testing.T, accept *fakeprovider.GCPOAuth) *vertexAnthropicRig {
	t.Helper()
	issuer := fakeprovider.NewGCPOAuth(t, fakeprovider.GCPOAuthOptions{})
	p, err := issuer.WriteCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", p)
	// The process-wide token cache outlives a test; each test has its own
	// token endpoint.
	gcpauth.Default.Forget(vertexClaudeProvider)
	t.Cleanup(func() {
		gcpauth.Default.Forget(vertexClaudeProvider)
		gcpauth.Default.CloseIdleConnections()
	})
	if accept == nil {
		accept = issuer
	}
	fake := fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{OAuth: accept, CacheReadTokens: 5})
	r := startRigWith(t, vertexAnthropicConfig, map[string]string{"vertex_us_central1": fake.Addr()})
	return &vertexAnthropicRig{rig: r, fake: fake, issuer: issuer}
}

func (v *vertexAnthropicRig) last(t *testing.T) fakeprovider.Recorded {
	t.Helper()
	rec, ok := v.fake.Last()
	if !ok {
		t.Fatal("the Anthropic fake saw no request")
	}
	return rec
}

// checkVertexUpstream checks the Vertex shape of an upstream request: the
// method path, a bearer token the ADC issuer handed out, no Anthropic
// credentials or version header, anthropic_version in the body and no
// model.
func (v *vertexAnthropicRig) checkVertexUpstream(t *testing.T, up fakeprovider.Recorded, method string) {
	t.Helper()
	if up.Path != vertexClaudePath+":"+method || up.RawQuery != "" {
		t.Errorf("upstream path %s?%s", up.Path, up.RawQuery)
	}
	tok, ok := strings.CutPrefix(up.Header.Get("Authorization"), "Bearer ")
	if !ok || !v.issuer.Valid(tok) {
		t.Errorf("upstream authorization %q", up.Header.Get("Authorization"))
	}
	for _, h := range []string{"x-api-key", "anthropic-version"} {
		if up.Header.Get(h) != "" {
			t.Errorf("upstream carries %s", h)
		}
	}
	if up.JSON("anthropic_version").Str != "vertex-2023-10-16" || up.JSON("model").Exists() {
		t.Errorf("upstream body %s", up.Body)
	}
	if strings.Contains(string(up.Body), clientKey) || strings.Contains(up.Header.Get("Authorization"), clientKey) {
		t.Error("client key upstream")
	}
}

func TestVertexAnthropicChat(t *testing.T) {
	v := startVertexAnthropicRig(t, nil)
	ctx := context.Background()
	for i := range 2 {
		resp, err := v.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "claude-vertex",
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Be brief."),
				openai.UserMessage("hello vertex claude"),
			},
			Temperature: param.NewOpt(0.3),
			MaxTokens:   param.NewOpt[int64](64),
			Stop:        openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		c := resp.Choices[0]
		if c.Message.Content != "Hello from fake-anthropic: hello vertex claude" || c.FinishReason != "stop" || resp.Model != "claude-sonnet-4-5@20250929" {
			t.Fatalf("request %d: reply %+v model %q", i, c, resp.Model)
		}
		// 3 user words + 2 system words + 5 cache reads; 6 words out.
		if resp.Usage.PromptTokens != 10 || resp.Usage.PromptTokensDetails.CachedTokens != 5 || resp.Usage.CompletionTokens != 6 {
			t.Errorf("usage %+v", resp.Usage)
		}
		up := v.last(t)
		v.checkVertexUpstream(t, up, "rawPredict")
		if up.JSON("system.0.text").Str != "Be brief." || up.JSON("max_tokens").Int() != 64 || up.JSON("stop_sequences.0").Str != "END" ||
			up.JSON("temperature").Float() != 0.3 || up.JSON("stream").Exists() {
			t.Errorf("upstream body %s", up.Body)
		}
	}
	// The token is cached: one fetch for both requests.
	if n := v.issuer.Issued(); n != 1 {
		t.Errorf("tokens issued: %d, want 1", n)
	}
	if logs := v.accessLogs(2); logs != nil {
		if l := logs[1]; l["provider"] != vertexClaudeProvider || l["input_tokens"] != float64(10) || l["cached_tokens"] != float64(5) || l["output_tokens"] != float64(6) {
			t.Errorf("access log %v", l)
		}
	}
	v.waitNoStreams()
}

// TestVertexAnthropicStreamUnbuffered: the fake holds streamRawPredict
// after two events; the client has its first chunk before the provider
// finishes.
func TestVertexAnthropicStreamUnbuffered(t *testing.T) {
	v := startVertexAnthropicRig(t, nil)
	stream := v.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
		Model: "claude-vertex", Messages: userMsg("one two three four"),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)},
	}, withFault(fakeprovider.HeaderHold, "vx1"), withFault(fakeprovider.HeaderHoldAfter, "2"))
	defer stream.Close()
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.fake.WaitHeld(ctx, "vx1"); err != nil {
		t.Fatal(err)
	}
	// The provider is still held: the rest of its answer has not been
	// written, so the chunk read above went through unbuffered.
	if v.fake.Held("vx1") != 1 {
		t.Fatal("the provider is not held")
	}
	acc := openai.ChatCompletionAccumulator{}
	acc.AddChunk(stream.Current())
	if stream.Current().Choices[0].Delta.Role != "assistant" {
		t.Errorf("first chunk %s", stream.Current().RawJSON())
	}
	v.fake.Release("vx1")
	usage := 0
	for stream.Next() {
		c := stream.Current()
		acc.AddChunk(c)
		if len(c.Choices) == 0 {
			usage++
			if c.Usage.PromptTokens != 9 || c.Usage.PromptTokensDetails.CachedTokens != 5 || c.Usage.CompletionTokens != 7 {
				t.Errorf("usage chunk %s", c.RawJSON())
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0]; got.Message.Content != "Hello from fake-anthropic: one two three four" || got.FinishReason != "stop" || usage != 1 {
		t.Fatalf("content %q finish %q usage chunks %d", got.Message.Content, got.FinishReason, usage)
	}
	up := v.last(t)
	v.checkVertexUpstream(t, up, "streamRawPredict")
	if !up.JSON("stream").Bool() || up.JSON("stream_options").Exists() {
		t.Errorf("upstream body %s", up.Body)
	}
	v.waitNoStreams()
}

// TestVertexAnthropicToolRoundTrip: a streamed turn with two parallel tool
// calls, then the results sent back on a non-streamed turn.
func TestVertexAnthropicToolRoundTrip(t *testing.T) {
	v := startVertexAnthropicRig(t, nil)
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
	stream := v.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: msgs, Tools: tools},
		withFault(fakeprovider.HeaderToolCalls, "2"))
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	_ = stream.Close()
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
	v.checkVertexUpstream(t, v.last(t), "streamRawPredict")

	msgs = append(msgs, m.ToParam(),
		openai.ToolMessage("18C in city-0", m.ToolCalls[0].ID),
		openai.ToolMessage("25C in city-1", m.ToolCalls[1].ID))
	resp, err := v.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: msgs, Tools: tools},
		withFault(fakeprovider.HeaderToolCalls, "2"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].FinishReason != "stop" || resp.Choices[0].Message.Content != "Hello from fake-anthropic: 18C in city-0 25C in city-1" {
		t.Fatalf("final answer %+v", resp.Choices[0])
	}
	up := v.last(t)
	v.checkVertexUpstream(t, up, "rawPredict")
	// One assistant turn with both tool_use blocks and one user turn with
	// both results, accepted by the fake's strict validation.
	if up.JSON("messages.#").Int() != 3 || up.JSON(`messages.1.content.#(type=="tool_use")#|#`).Int() != 2 ||
		up.JSON(`messages.2.content.#(type=="tool_result")#|#`).Int() != 2 || up.JSON("tools.0.name").Str != "get_weather" {
		t.Errorf("upstream turns %s", up.Body)
	}
	v.waitNoStreams()
}

// TestVertexAnthropicWrongToken: ADC hands llmux a token that Vertex does
// not accept (issued by another Google endpoint); Google's 401 reaches the
// client as an authentication error, streamed or not.
func TestVertexAnthropicWrongToken(t *testing.T) {
	elsewhere := fakeprovider.NewGCPOAuth(t, fakeprovider.GCPOAuthOptions{})
	v := startVertexAnthropicRig(t, elsewhere)
	ctx := context.Background()
	_, err := v.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: userMsg("x")})
	apiError(t, err, 502, "upstream_authentication_failed")
	stream := v.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: userMsg("x")})
	for stream.Next() {
		t.Errorf("chunk %s", stream.Current().RawJSON())
	}
	apiError(t, stream.Err(), 502, "upstream_authentication_failed")
	_ = stream.Close()
	// The gateway did send a token, the one its ADC issuer handed out.
	up := v.last(t)
	if tok, _ := strings.CutPrefix(up.Header.Get("Authorization"), "Bearer "); !v.issuer.Valid(tok) || elsewhere.Valid(tok) {
		t.Errorf("upstream authorization %q", up.Header.Get("Authorization"))
	}
	if n := len(v.fake.Requests()); n != 2 {
		t.Errorf("upstream requests: %d, want 2 (no retry)", n)
	}
	v.waitNoStreams()
}

func TestVertexAnthropicErrors(t *testing.T) {
	v := startVertexAnthropicRig(t, nil)
	ctx := context.Background()
	chat := func(opts ...option.RequestOption) error {
		_, err := v.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: userMsg("x")}, opts...)
		return err
	}
	streamed := func(opts ...option.RequestOption) error {
		s := v.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: userMsg("x")}, opts...)
		defer s.Close()
		for s.Next() {
		}
		return s.Err()
	}
	for _, tc := range []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"Google quota 429", func() error { return chat(withFault(fakeprovider.HeaderStatus, "429")) }, 429, "rate_limit_exceeded"},
		{"streamed Google quota 429", func() error { return streamed(withFault(fakeprovider.HeaderStatus, "429")) }, 429, "rate_limit_exceeded"},
		{"Anthropic rate_limit_error 429", func() error {
			return chat(withFault(fakeprovider.HeaderStatus, "429"), withFault(fakeprovider.HeaderErrorCode, "rate_limit_error"))
		}, 429, "rate_limit_exceeded"},
		{"529 becomes 503", func() error { return chat(withFault(fakeprovider.HeaderStatus, "529")) }, 503, "overloaded"},
		{"streamed 529 becomes 503", func() error { return streamed(withFault(fakeprovider.HeaderStatus, "529")) }, 503, "overloaded"},
		{"Google 403", func() error { return chat(withFault(fakeprovider.HeaderStatus, "403")) }, 403, "permission_denied"},
		{"Google 404", func() error { return chat(withFault(fakeprovider.HeaderStatus, "404")) }, 404, "model_not_found"},
		{"prompt too long", func() error {
			return chat(withFault(fakeprovider.HeaderStatus, "400"), withFault(fakeprovider.HeaderErrorCode, "prompt_too_long"))
		}, 400, "context_length_exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) { apiError(t, tc.call(), tc.status, tc.code) })
	}

	// An overloaded_error event mid-stream ends the stream with an error
	// after the content so far.
	s := v.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "claude-vertex", Messages: userMsg("a b c d")},
		withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError), withFault(fakeprovider.HeaderFaultAfter, "5"))
	var content string
	for s.Next() {
		if c := s.Current(); len(c.Choices) > 0 {
			content += c.Choices[0].Delta.Content
		}
	}
	if err := s.Err(); err == nil || !strings.Contains(err.Error(), "Overloaded") || content != "Hello from" {
		t.Errorf("in-band: error %v after %q", err, content)
	}
	_ = s.Close()
	v.waitNoStreams()
}
