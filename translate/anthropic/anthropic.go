// Package anthropic translates between OpenAI's chat completions API and
// Anthropic's Messages API (POST /v1/messages), on Anthropic itself (kind
// "anthropic") and on Google Vertex AI (kind "vertex_anthropic").
//
// Requests are rewritten once, with gjson reads and appenders; responses
// are decoded incrementally: each Anthropic SSE event becomes zero or more
// OpenAI chat.completion.chunk events as soon as it arrives. What is
// translated, what is refused and why is documented in
// docs/providers/anthropic.md.
package anthropic

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/gcpauth"
	"github.com/llmux/llmux/translate/internal/respbody"
)

// Kinds served by this translator.
const (
	// KindAnthropic is api.anthropic.com.
	KindAnthropic = "anthropic"
	// KindVertex is Claude on Google Vertex AI (rawPredict).
	KindVertex = "vertex_anthropic"
)

// Defaults.
const (
	// DefaultAPIVersion is the anthropic-version header sent when the
	// provider sets no api_version.
	DefaultAPIVersion = "2023-06-01"
	// VertexAPIVersion is the anthropic_version body field sent to Vertex
	// when the provider sets no api_version.
	VertexAPIVersion = "vertex-2023-10-16"
	// DefaultMaxTokens is max_tokens when neither the request nor the
	// provider option default_max_tokens sets it (Anthropic requires it).
	DefaultMaxTokens = 4096
	// OptionDefaultMaxTokens is the provider option overriding
	// DefaultMaxTokens.
	OptionDefaultMaxTokens = "default_max_tokens"
	// ResponseTool is the reserved tool name that carries a JSON response
	// (response_format json_schema / json_object): the model is made to
	// call it, and its input is returned as the message content. Client
	// tools may not use this name.
	ResponseTool = "llmux_json_response"
)

// maxBuffered bounds a non-streamed body the decoder holds.
const maxBuffered = 64 << 20

func init() {
	translate.Register(KindAnthropic, Translator{})
	translate.Register(KindVertex, Translator{Vertex: true, Token: vertexToken})
}

// vertexToken is a Google ADC access token, cached per provider.
func vertexToken(ctx context.Context, t *translate.Target) (string, error) {
	return gcpauth.Token(ctx, t.Provider)
}

// Translator implements translate.Translator for Anthropic's Messages API.
// The zero value serves kind "anthropic".
type Translator struct {
	// Vertex selects Claude on Vertex AI: the rawPredict path, the
	// anthropic_version body field and a Google bearer token.
	Vertex bool
	// Token returns the bearer token for Vertex; required when Vertex is
	// set.
	Token func(ctx context.Context, t *translate.Target) (string, error)
}

// Request implements translate.Translator.
func (tr Translator) Request(ctx context.Context, req *translate.Request, t *translate.Target) (*translate.Upstream, error) {
	if req.Op != translate.OpChat {
		if req.Op == translate.OpEmbeddings {
			return nil, &translate.Error{Code: translate.CodeInvalidRequest, Param: "model", OpenAICode: "unsupported_operation",
				Message: "This model is served by Anthropic, which has no embeddings API; use an embeddings model group."}
		}
		return nil, fmt.Errorf("anthropic: unsupported operation %s", req.Op)
	}
	maxTokens := int64(DefaultMaxTokens)
	if v, ok := t.Options[OptionDefaultMaxTokens]; ok && v != "" {
		n, err := parsePositive(v)
		if err != nil {
			return nil, fmt.Errorf("anthropic: provider option %s: %w", OptionDefaultMaxTokens, err)
		}
		maxTokens = n
	}
	b := builder{stream: req.Stream, defaultMax: maxTokens}
	if tr.Vertex {
		v := t.APIVersion
		if v == "" {
			v = VertexAPIVersion
		}
		b.vertexVersion = v
	} else {
		b.model = t.Model
	}
	body, terr := b.build(respbody.View(req.Body))
	if terr != nil {
		return nil, terr
	}
	up := &translate.Upstream{Body: body}
	up.Headers = append(up.Headers, translate.Header{Key: "content-type", Value: "application/json"})
	if tr.Vertex {
		if tr.Token == nil {
			return nil, fmt.Errorf("anthropic: vertex token source missing")
		}
		tok, err := tr.Token(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("anthropic: vertex credentials: %w", err)
		}
		verb := ":rawPredict"
		if req.Stream {
			verb = ":streamRawPredict"
		}
		base := strings.TrimSuffix(t.BasePath, "/")
		up.Path = base + "/v1/projects/" + t.Project + "/locations/" + t.Region + "/publishers/anthropic/models/" + t.Model + verb
		up.Headers = append(up.Headers, translate.Header{Key: "authorization", Value: "Bearer " + tok})
	} else {
		up.Path = strings.TrimSuffix(t.BasePath, "/") + "/v1/messages"
		v := t.APIVersion
		if v == "" {
			v = DefaultAPIVersion
		}
		up.Headers = append(up.Headers, translate.Header{Key: "anthropic-version", Value: v})
		if t.APIKey != "" {
			up.Headers = append(up.Headers, translate.Header{Key: "x-api-key", Value: t.APIKey})
		}
	}
	for k, v := range t.Headers {
		up.Headers = append(up.Headers, translate.Header{Key: k, Value: v})
	}
	return up, nil
}

func parsePositive(s string) (int64, error) {
	var n int64
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	for _, c := range s {
		if c < '0' || c > '9' || n > 1<<40 {
			return 0, fmt.Errorf("%q is not a positive integer", s)
		}
		n = n*10 + int64(c-'0')
	}
	if n == 0 {
		return 0, fmt.Errorf("%q is not a positive integer", s)
	}
	return n, nil
}

// nowUnix is the "created" timestamp of responses; tests replace it.
var nowUnix = func() int64 { return time.Now().Unix() }

// ForgetCredentials implements translate.CredentialForgetter: it drops the
// cached Google token of a vertex_anthropic provider.
func (Translator) ForgetCredentials(provider string) { gcpauth.Default.Forget(provider) }

// NewDecoder implements translate.Translator.
func (Translator) NewDecoder(req *translate.Request, status int, contentType string) translate.Decoder {
	d := &decoder{op: req.Op, stream: req.Stream, includeUsage: req.IncludeUsage, status: status, created: nowUnix(), whole: respbody.Whole{Max: maxBuffered, Name: "anthropic"}, respBlock: -1}
	if req.MaxBuffered > 0 {
		d.whole.Max = int(min(req.MaxBuffered, 1<<40))
	}
	d.mode = respbody.ModeOf(status, req.Stream, contentType, "text/event-stream")
	return d
}
