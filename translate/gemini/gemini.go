// Package gemini translates between OpenAI's chat completions and
// embeddings APIs and Google's Gemini API, on Google AI Studio (kind
// "gemini": generativelanguage.googleapis.com, x-goog-api-key) and on
// Vertex AI (kind "vertex": aiplatform.googleapis.com, an OAuth bearer from
// Application Default Credentials, project and location in the path).
//
// Requests are rewritten once with gjson reads and appenders; JSON Schemas
// are converted to the OpenAPI subset Gemini accepts (ConvertSchema).
// Responses are decoded incrementally: each Gemini SSE event becomes zero
// or more OpenAI chat.completion.chunk events as soon as it arrives. What is
// translated, dropped or refused, and why, is in docs/providers/gemini.md.
package gemini

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
	// KindGemini is the Gemini API on Google AI Studio.
	KindGemini = "gemini"
	// KindVertex is Gemini on Google Cloud Vertex AI.
	KindVertex = "vertex"
)

// Defaults.
const (
	// DefaultBasePath is the AI Studio API version prefix.
	DefaultBasePath = "/v1beta"
	// DefaultVertexBasePath is the Vertex AI API version prefix.
	DefaultVertexBasePath = "/v1"
)

// maxBuffered bounds a non-streamed body the decoder holds.
const maxBuffered = 64 << 20

func init() {
	translate.Register(KindGemini, Translator{})
	translate.Register(KindVertex, Translator{Vertex: true})
}

// Translator implements translate.Translator for the Gemini API. The zero
// value serves AI Studio.
type Translator struct {
	// Vertex selects Vertex AI paths and OAuth bearer authentication.
	Vertex bool
	// Token returns the Vertex bearer token for a provider name; nil means
	// gcpauth.Token (Application Default Credentials).
	Token func(ctx context.Context, key string) (string, error)
}

// state is what Request tells the decoder (translate.Request.State).
type state struct {
	// n is the number of candidates asked for.
	n int
	// base64 asks for base64 embeddings.
	base64 bool
	// model is the upstream model id, reported when the response names
	// none (embeddings).
	model string
	// inputTokens estimates an embeddings request's tokens (AI Studio
	// reports none).
	inputTokens int64
}

// Request implements translate.Translator.
func (tr Translator) Request(ctx context.Context, req *translate.Request, t *translate.Target) (*translate.Upstream, error) {
	model := strings.TrimPrefix(t.Model, "models/")
	if model == "" || strings.ContainsAny(model, "/?#:") {
		return nil, fmt.Errorf("gemini: invalid model id %q", t.Model)
	}
	st := &state{n: 1, model: model}
	var (
		body []byte
		verb string
		terr *translate.Error
	)
	switch req.Op {
	case translate.OpChat:
		b := chatBuilder{model: model}
		body, terr = b.build(respbody.View(req.Body))
		st.n = b.n
		verb = ":generateContent"
		if req.Stream {
			verb = ":streamGenerateContent?alt=sse"
		}
	case translate.OpEmbeddings:
		body, terr = buildEmbeddings(respbody.View(req.Body), model, tr.Vertex, st)
		verb = ":batchEmbedContents"
		if tr.Vertex {
			verb = ":predict"
		}
	default:
		return nil, fmt.Errorf("gemini: unsupported operation %s", req.Op)
	}
	if terr != nil {
		return nil, terr
	}
	req.State = st
	up := &translate.Upstream{Body: body}
	up.Headers = append(up.Headers, translate.Header{Key: "content-type", Value: "application/json"})
	base := strings.TrimSuffix(t.BasePath, "/")
	if tr.Vertex {
		if t.Project == "" || t.Region == "" {
			return nil, fmt.Errorf("gemini: vertex provider %q needs a project and a region", t.Provider)
		}
		if base == "" {
			base = DefaultVertexBasePath
		}
		up.Path = base + "/projects/" + t.Project + "/locations/" + t.Region + "/publishers/google/models/" + model + verb
		tok := tr.Token
		if tok == nil {
			tok = gcpauth.Token
		}
		bearer, err := tok(ctx, t.Provider)
		if err != nil {
			return nil, fmt.Errorf("gemini: vertex credentials for provider %q: %w", t.Provider, err)
		}
		up.Headers = append(up.Headers, translate.Header{Key: "authorization", Value: "Bearer " + bearer})
	} else {
		if base == "" {
			base = DefaultBasePath
		}
		up.Path = base + "/models/" + model + verb
		if t.APIKey != "" {
			up.Headers = append(up.Headers, translate.Header{Key: "x-goog-api-key", Value: t.APIKey})
		}
	}
	up.Headers = appendHeaders(up.Headers, t.Headers)
	return up, nil
}

// appendHeaders appends the configured static headers in a stable order.
func appendHeaders(dst []translate.Header, h map[string]string) []translate.Header {
	start := len(dst)
	for k, v := range h {
		dst = append(dst, translate.Header{Key: k, Value: v})
	}
	added := dst[start:]
	for i := 1; i < len(added); i++ {
		for j := i; j > 0 && added[j].Key < added[j-1].Key; j-- {
			added[j], added[j-1] = added[j-1], added[j]
		}
	}
	return dst
}

// nowUnix is the "created" timestamp of responses; tests replace it.
var nowUnix = func() int64 { return time.Now().Unix() }

// NewDecoder implements translate.Translator.
// ForgetCredentials implements translate.CredentialForgetter: it drops the
// cached Google token of a vertex provider.
func (Translator) ForgetCredentials(provider string) { gcpauth.Default.Forget(provider) }

func (Translator) NewDecoder(req *translate.Request, status int, contentType string) translate.Decoder {
	st, _ := req.State.(*state)
	if st == nil {
		st = &state{n: 1}
	}
	max := int(req.MaxBuffered)
	if max <= 0 || max > maxBuffered {
		max = maxBuffered
	}
	if req.Op == translate.OpEmbeddings {
		return &embedDecoder{st: *st, status: status, whole: respbody.Whole{Max: max, Name: "gemini"}}
	}
	d := &decoder{st: *st, status: status, includeUsage: req.IncludeUsage, created: nowUnix(), whole: respbody.Whole{Max: max, Name: "gemini"}}
	d.mode = respbody.ModeOf(status, req.Stream, contentType, "text/event-stream")
	return d
}
