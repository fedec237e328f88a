package e2e

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
)

func userMsg(s string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.UserMessage(s)}
}

func TestChatNonStream(t *testing.T) {
	r := startRig(t)
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: userMsg("hello gateway"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || !strings.Contains(resp.Choices[0].Message.Content, "hello gateway") {
		t.Fatalf("reply %+v", resp.Choices)
	}
	if resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 {
		t.Errorf("usage %+v", resp.Usage)
	}

	// What the provider received: the upstream model id, the provider's
	// key (never the client's), no gateway-only headers.
	got, ok := r.fake.Last()
	if !ok {
		t.Fatal("the provider saw no request")
	}
	if m := gjson.GetBytes(got.Body, "model").String(); m != "gpt-4o-mini-2024-07-18" {
		t.Errorf("upstream model %q", m)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer "+providerKey {
		t.Errorf("upstream authorization %q", a)
	}
	for _, h := range []string{"x-api-key", "x-llmux-upstream"} {
		if v := got.Header.Get(h); v != "" && h == "x-api-key" {
			t.Errorf("%s leaked upstream: %q", h, v)
		}
	}
	if strings.Contains(string(got.Body), clientKey) {
		t.Error("client key in the upstream body")
	}
	if got.Path != "/v1/chat/completions" {
		t.Errorf("upstream path %q", got.Path)
	}

	if logs := r.accessLogs(1); logs != nil {
		l := logs[0]
		if l["model_group"] != "gpt-4o-mini" || l["deployment"] != "gpt-4o-mini-openai" || l["tenant"] != "team-e2e" || l["upstream_cluster"] != "openai" {
			t.Errorf("access log %v", l)
		}
		if n, _ := l["input_tokens"].(float64); n != float64(resp.Usage.PromptTokens) {
			t.Errorf("access log input_tokens %v, usage %d", l["input_tokens"], resp.Usage.PromptTokens)
		}
	}
	r.waitNoStreams()
}

// TestChatStreamUnbuffered proves chunks reach the client before the
// provider finishes: the provider holds after its first event until the
// test has read a chunk.
func TestChatStreamUnbuffered(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		name := "usage not asked"
		if includeUsage {
			name = "usage asked"
		}
		t.Run(name, func(t *testing.T) {
			r := startRig(t)
			params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("one two three four")}
			if includeUsage {
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
			}
			stream := r.client.Chat.Completions.NewStreaming(context.Background(), params,
				withFault(fakeprovider.HeaderHold, "g1"), withFault(fakeprovider.HeaderHoldAfter, "2"))
			defer stream.Close()
			if !stream.Next() {
				t.Fatalf("no first chunk: %v", stream.Err())
			}
			// The provider is blocked: it has not finished.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.fake.WaitHeld(ctx, "g1"); err != nil {
				t.Fatal(err)
			}
			acc := openai.ChatCompletionAccumulator{}
			acc.AddChunk(stream.Current())
			r.fake.Release("g1")
			var usageChunks int
			for stream.Next() {
				c := stream.Current()
				acc.AddChunk(c)
				if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
					usageChunks++
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(acc.Choices[0].Message.Content, "one two three four") {
				t.Errorf("content %q", acc.Choices[0].Message.Content)
			}
			if acc.Choices[0].FinishReason != "stop" {
				t.Errorf("finish %q", acc.Choices[0].FinishReason)
			}
			want := 0
			if includeUsage {
				want = 1
			}
			if usageChunks != want {
				t.Errorf("usage chunks %d, want %d", usageChunks, want)
			}
			got, _ := r.fake.Last()
			if !gjson.GetBytes(got.Body, "stream_options.include_usage").Bool() {
				t.Error("llmux did not ask the provider for usage")
			}
			if logs := r.accessLogs(1); logs != nil {
				if n, _ := logs[0]["output_tokens"].(float64); n == 0 {
					t.Errorf("streamed usage not in the access log: %v", logs[0])
				}
				if logs[0]["ttft_ms"] == nil || logs[0]["ttft_ms"] == "-" {
					t.Errorf("no ttft: %v", logs[0])
				}
			}
		})
	}
}

func TestEmbeddings(t *testing.T) {
	r := startRig(t)
	resp, err := r.client.Embeddings.New(context.Background(), openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"alpha", "beta"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Data[0].Embedding) == 0 || resp.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings %+v", resp)
	}
	got, _ := r.fake.Last()
	if got.Path != "/v1/embeddings" || gjson.GetBytes(got.Body, "model").String() != "text-embedding-3-small" {
		t.Errorf("upstream %s %s", got.Path, got.Body)
	}

	// base64 passes through untouched: decode it by hand.
	var raw map[string]any
	err = r.client.Post(context.Background(), "embeddings", map[string]any{"model": "text-embedding-3-small", "input": "alpha", "encoding_format": "base64"}, &raw)
	if err != nil {
		t.Fatal(err)
	}
	b64, _ := raw["data"].([]any)[0].(map[string]any)["embedding"].(string)
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b)%4 != 0 || len(b) == 0 {
		t.Fatalf("base64 embedding %q: %v", b64, err)
	}
	if f := math.Float32frombits(binary.LittleEndian.Uint32(b)); f != float32(resp.Data[0].Embedding[0]) {
		t.Errorf("base64 and float embeddings differ: %v vs %v", f, resp.Data[0].Embedding[0])
	}
}

func TestModelsList(t *testing.T) {
	r := startRig(t)
	page, err := r.client.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "claude-sonnet,gpt-4o-mini,text-embedding-3-small" {
		t.Fatalf("models %v", ids)
	}
	m, err := r.client.Models.Get(context.Background(), "gpt-4o-mini")
	if err != nil || m.ID != "gpt-4o-mini" {
		t.Fatalf("get model: %+v %v", m, err)
	}
	if _, ok := r.fake.Last(); ok {
		t.Error("the models list went upstream")
	}
}

// apiError asserts err is the SDK's *openai.Error with status and code.
func apiError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *openai.Error
	if !errors.As(err, &ae) {
		t.Fatalf("want *openai.Error, got %T %v", err, err)
	}
	if ae.StatusCode != status || ae.Code != code {
		t.Fatalf("got %d %q (%s), want %d %q", ae.StatusCode, ae.Code, ae.Message, status, code)
	}
	if ae.Message == "" || ae.Type == "" {
		t.Fatalf("error without message or type: %s", ae.RawJSON())
	}
}

func TestErrorsSurfaceInTheSDK(t *testing.T) {
	r := startRig(t)
	ctx := context.Background()
	chat := func(model string, msgs []openai.ChatCompletionMessageParamUnion, opts ...option.RequestOption) error {
		_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: model, Messages: msgs}, opts...)
		return err
	}
	tests := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"invalid JSON", func() error {
			return r.client.Post(ctx, "chat/completions", nil, nil, option.WithRequestBody("application/json", []byte(`{"model":`)))
		}, 400, "invalid_json"},
		{"missing messages", func() error {
			return r.client.Post(ctx, "chat/completions", map[string]any{"model": "gpt-4o-mini"}, nil)
		}, 400, "missing_required_parameter"},
		{"ill-typed model", func() error {
			return r.client.Post(ctx, "chat/completions", map[string]any{"model": 7, "messages": []any{}}, nil)
		}, 400, "invalid_type"},
		{"empty messages", func() error { return chat("gpt-4o-mini", []openai.ChatCompletionMessageParamUnion{}) }, 400, "empty_array"},
		{"unknown key", func() error { return chat("gpt-4o-mini", userMsg("x"), option.WithAPIKey("sk-wrong-wrong-wrong")) }, 401, "invalid_api_key"},
		{"missing key", func() error {
			return chat("gpt-4o-mini", userMsg("x"), option.WithHeaderDel("authorization"))
		}, 401, "missing_api_key"},
		{"unknown model", func() error { return chat("gpt-9", userMsg("x")) }, 404, "model_not_found"},
		{"unknown endpoint", func() error { return r.client.Post(ctx, "completions/legacy", map[string]any{}, nil) }, 404, "unknown_url"},
		{"wrong method", func() error { return r.client.Get(ctx, "chat/completions", nil, nil) }, 405, "method_not_allowed"},
		{"body over the limit", func() error { return chat("gpt-4o-mini", userMsg(strings.Repeat("x", maxBody))) }, 413, "request_too_large"},
		{"no deployment available", func() error { return chat("claude-sonnet", userMsg("x")) }, 503, "no_deployment_available"},
		{"provider rate limit", func() error {
			return chat("gpt-4o-mini", userMsg("x"), withFault(fakeprovider.HeaderStatus, "429"))
		}, 429, "rate_limit_exceeded"},
		{"provider quota", func() error {
			return chat("gpt-4o-mini", userMsg("x"), withFault(fakeprovider.HeaderStatus, "429"), withFault(fakeprovider.HeaderErrorCode, "insufficient_quota"))
		}, 429, "insufficient_quota"},
		{"provider unreachable", func() error {
			return chat("gpt-4o-mini", userMsg("x"), withFault(fakeprovider.HeaderFault, fakeprovider.FaultResetBeforeHeaders))
		}, 503, "upstream_unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			apiError(t, tc.call(), tc.status, tc.code)
		})
	}
	r.waitNoStreams()
}

func TestInbandStreamError(t *testing.T) {
	r := startRig(t)
	stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("a b c")},
		withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError))
	defer stream.Close()
	n := 0
	for stream.Next() {
		n++
	}
	if stream.Err() == nil {
		t.Fatalf("in-band error not surfaced after %d chunks", n)
	}
	if logs := r.accessLogs(1); logs != nil && logs[0]["error_code"] == "" {
		t.Errorf("error code not in the access log: %v", logs[0])
	}
}

// TestClientDisconnectMidStream: the client goes away while the provider
// is streaming; llmux's stream handler ends and the provider's request is
// cancelled.
func TestClientDisconnectMidStream(t *testing.T) {
	r := startRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	stream := r.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("a b c d")},
		withFault(fakeprovider.HeaderHold, "d1"))
	if !stream.Next() {
		t.Fatalf("no first chunk: %v", stream.Err())
	}
	if r.streams.Active() != 1 {
		t.Fatalf("active streams %d", r.streams.Active())
	}
	cancel()
	stream.Close()
	r.waitNoStreams()
}

// TestRawHTTPClient checks what the SDK hides: the content type and the
// error body shape on a local reply.
func TestRawHTTPClient(t *testing.T) {
	r := startRig(t)
	req, _ := http.NewRequest(http.MethodPost, r.baseURL+"chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("content-type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("content-type"))
	}
}
