// Package translate rewrites requests and responses between the OpenAI API
// schema that clients speak and each provider's own schema.
//
// A Translator is pure: bytes in, bytes out, no I/O, no Envoy types. The
// processor calls it once per request (Request), once for the response
// headers (NewDecoder) and then once per response body chunk (Decoder.Decode).
// Decoders are incremental: they never need the whole stream, and they carry
// over at most one unfinished frame between chunks.
package translate

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Operation is an API operation that the gateway serves.
type Operation uint8

// The operations llmux serves through a provider.
const (
	// OpChat is POST /v1/chat/completions.
	OpChat Operation = iota + 1
	// OpEmbeddings is POST /v1/embeddings.
	OpEmbeddings
)

// String returns the operation's OpenAI endpoint name.
func (o Operation) String() string {
	switch o {
	case OpChat:
		return "chat.completions"
	case OpEmbeddings:
		return "embeddings"
	}
	return fmt.Sprintf("operation(%d)", uint8(o))
}

// Request is a client request in the OpenAI schema, already validated by the
// processor (a JSON object with a string "model" and the operation's required
// fields).
type Request struct {
	// Op is the operation.
	Op Operation
	// Body is the client's JSON body. Translators must not modify it.
	// Translators rely on it being valid JSON (the processor checks it,
	// I-JSON included, before any translator sees it) and read it with
	// gjson without validating it again; a caller outside the processor
	// must check it first.
	Body []byte
	// Stream reports whether the client asked for a streamed response.
	Stream bool
	// IncludeUsage reports whether a streaming client asked for the usage
	// chunk (stream_options.include_usage). The gateway always obtains usage;
	// when the client did not ask for it, the decoder removes it.
	IncludeUsage bool
	// MaxBuffered is the largest response body a decoder may hold whole
	// (non-streamed responses, error bodies); 0 means the translator's
	// default. Over it the decoder fails with CodeUpstreamProtocol.
	MaxBuffered int64
	// ResponseHeaders gives the provider's response headers to NewDecoder,
	// for providers that report something only in headers (Bedrock
	// InvokeModel's token counts, the error type Bedrock names only in
	// x-amzn-ErrorType). The processor sets it just before it
	// calls NewDecoder and clears it right after: a decoder reads what it
	// needs in NewDecoder and keeps no reference. Nil means no headers are
	// known (tests, Envoy's own replies).
	ResponseHeaders HeaderGetter
	// State is the translator's own state for this request: Request may
	// set it (e.g. the embeddings encoding format, which the provider's
	// response does not repeat) and the decoder reads it. The processor
	// passes the same Request to Request and NewDecoder.
	State any
}

// HeaderGetter reads HTTP headers.
type HeaderGetter interface {
	// Get returns the value of the header with the lower-case name, or ""
	// when it is absent.
	Get(name string) string
}

// Target is the deployment a request is sent to.
type Target struct {
	// Model is the upstream model id.
	Model string
	// BasePath is the provider's base path; empty means the kind's default.
	BasePath string
	// APIVersion is the provider API version (Azure api-version,
	// anthropic-version); empty means the kind's default.
	APIVersion string
	// APIKey is the provider credential, or empty when none is configured.
	APIKey string
	// Headers are extra static headers configured for the provider.
	Headers map[string]string
	// Provider is the provider's configured name (a key for per-provider
	// state such as cached cloud credentials).
	Provider string
	// Host is the provider's host name when the translator needs it (AWS
	// SigV4 signs it); empty means the kind's default for Region.
	Host string
	// Region is the cloud region (Bedrock, Vertex location).
	Region string
	// Project is the cloud project (Vertex).
	Project string
	// Options are kind-specific settings from the configuration.
	Options map[string]string
}

// Header is one HTTP header to set on the upstream request.
type Header struct {
	Key   string
	Value string
}

// Upstream is a translated request, ready to be sent to the provider.
type Upstream struct {
	// Path is the upstream :path, query included.
	Path string
	// Headers are set on the upstream request (content-type, auth, version
	// headers). The processor removes the client's credentials separately.
	Headers []Header
	// Body is the upstream request body.
	Body []byte
}

// Translator converts one provider schema to and from OpenAI's.
type Translator interface {
	// Request translates req for target. The returned body shares no
	// memory with req.Body. ctx bounds any credential refresh a signing
	// provider needs. A *Error return is shown to the client as is.
	Request(ctx context.Context, req *Request, target *Target) (*Upstream, error)
	// NewDecoder returns a decoder for a response with the given HTTP status
	// and content type.
	NewDecoder(req *Request, status int, contentType string) Decoder
}

// CredentialForgetter is implemented by translators that cache provider
// credentials (cloud tokens, assumed-role keys). The processor calls
// ForgetCredentials when a provider answers 401, so the next request
// fetches a fresh credential instead of reusing a revoked one until it
// would have expired.
type CredentialForgetter interface {
	ForgetCredentials(provider string)
}

// Decoder turns provider response bytes into OpenAI response bytes,
// incrementally.
type Decoder interface {
	// Decode consumes src (the next bytes of the provider's body) and
	// appends the OpenAI bytes it can produce so far to dst. final is true
	// for the last call. Decode never retains src.
	Decode(dst, src []byte, final bool) ([]byte, error)
	// ContentType is the content type of the bytes Decode produces.
	ContentType() string
	// Status is the HTTP status the client gets, decided from the
	// provider's status alone (the body has not been seen yet); e.g.
	// Anthropic's 529 becomes 503. It is called once, after NewDecoder.
	Status() int
	// Result reports what the decoder has learned so far.
	Result() *Result
}

// Usage counts tokens the way OpenAI reports them, with every detail kept
// separate.
type Usage struct {
	// InputTokens is the prompt token count, cached tokens included (as in
	// OpenAI's prompt_tokens).
	InputTokens int64
	// OutputTokens is the completion token count, reasoning included.
	OutputTokens int64
	// CachedTokens is the part of InputTokens read from a prompt cache.
	CachedTokens int64
	// CacheCreationTokens is the number of input tokens written to a cache.
	CacheCreationTokens int64
	// ReasoningTokens is the part of OutputTokens spent on reasoning.
	ReasoningTokens int64
	// AudioInputTokens and AudioOutputTokens count audio tokens.
	AudioInputTokens, AudioOutputTokens int64
}

// Result is what a decoder learned from a response.
type Result struct {
	// Usage is the token usage; valid when HasUsage.
	Usage Usage
	// HasUsage reports whether the provider reported usage.
	HasUsage bool
	// FinishReason is the OpenAI finish reason of the first choice.
	FinishReason string
	// Model is the model the provider says answered.
	Model string
	// FirstContent reports whether any content has been produced.
	FirstContent bool
	// Completed reports whether the response reached its proper end (the
	// terminal event of a stream, or a whole JSON body).
	Completed bool
	// Err is the normalised error when the response is, or the stream
	// contains, an error.
	Err *Error
}

// ClientSchema is the kind whose translator speaks the clients' own schema
// (OpenAI's). The processor uses its decoder for replies that come from
// Envoy itself rather than from a provider.
const ClientSchema = "openai"

// KnownKinds lists every provider kind the configuration accepts. A kind
// without a registered translator is accepted by the configuration, and its
// deployments are reported unavailable (503) until a translator serves it.
var KnownKinds = []string{"openai", "openai_compatible", "azure_openai", "anthropic", "vertex_anthropic", "bedrock", "gemini", "vertex"}

var (
	registryMu sync.RWMutex
	registry   = map[string]Translator{}
)

// Register makes a translator available under a provider kind. It is meant
// to be called from init functions; registering a kind twice panics, since
// that is a programming error.
func Register(kind string, t Translator) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic("translate: kind registered twice: " + kind)
	}
	registry[kind] = t
}

// Lookup returns the translator for a provider kind.
func Lookup(kind string) (Translator, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	t, ok := registry[kind]
	return t, ok
}

// Kinds lists the registered provider kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	kinds := make([]string, 0, len(registry))
	for k := range registry {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}
