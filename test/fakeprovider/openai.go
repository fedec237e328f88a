package fakeprovider

// OpenAI dialect. Wire formats follow the official API reference:
//
//   - Chat completions (request and chat.completion object):
//     https://platform.openai.com/docs/api-reference/chat/create
//   - Streaming (chat.completion.chunk objects over SSE):
//     https://platform.openai.com/docs/api-reference/chat-streaming
//   - Embeddings: https://platform.openai.com/docs/api-reference/embeddings/create
//   - Error codes and bodies: https://platform.openai.com/docs/guides/error-codes

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// OpenAI-specific request headers.
const (
	// HeaderToolCalls asks for N parallel tool calls (finish_reason
	// "tool_calls") when the request declares tools.
	HeaderToolCalls = "x-fake-tool-calls"
	// HeaderReply overrides the assistant reply text for one request.
	HeaderReply = "x-fake-reply"
)

// OpenAIOptions configures the OpenAI fake. The zero value is usable.
type OpenAIOptions struct {
	// APIKey is the expected bearer token. Empty accepts any non-empty key.
	APIKey string
	// Reply is the assistant reply text. Empty means
	// "Hello from fake-openai: <last user text>".
	Reply string
	// Models are listed by GET /v1/models. Empty means a default set.
	Models []string
	// SystemFingerprint is echoed in chat responses (default "fp_fake").
	SystemFingerprint string
	// Created, when non-zero, is used for every "created" timestamp
	// instead of the current time.
	Created int64
	// EmbeddingDimensions is the vector length when the request has no
	// "dimensions" (default 8).
	EmbeddingDimensions int
	// ToolCalls is how many parallel tool calls to answer with when a chat
	// request declares function tools and its last message is from the
	// user (0: reply with text). HeaderToolCalls overrides it per request.
	ToolCalls int
	// WordsPerChunk is how many words each streamed content delta carries
	// (default 1).
	WordsPerChunk int
	// ChunkDelay is a pause between streamed chunks for requests without
	// HeaderDelay (default none). Tests should use holds to synchronise.
	ChunkDelay time.Duration
	// Script queues fault plans, one per request to a known endpoint; see
	// Server.Enqueue.
	Script []Fault

	// The fields below imitate OpenAI-compatible servers (vLLM, Ollama,
	// Groq, Mistral, DeepSeek); the zero values are OpenAI's behaviour.

	// NoStreamUsage ignores stream_options: streams never carry usage.
	NoStreamUsage bool
	// UsageOnLastChunk puts the usage on the chunk with the finish reason
	// instead of a separate chunk with empty choices (when usage is asked).
	UsageOnLastChunk bool
	// Reasoning is streamed as DeepSeek-style delta.reasoning_content
	// pieces before the content (and set as message.reasoning_content).
	Reasoning string
	// ErrorStyle selects the error body shape: "" (OpenAI's), "fastapi"
	// ({"detail": msg}), "ollama" ({"error": msg}) or "vllm"
	// ({"object":"error","message",…,"code": status}). In-band stream
	// errors use it too.
	ErrorStyle string
}

// DefaultOpenAIModels is the model list served when OpenAIOptions.Models is
// empty.
var DefaultOpenAIModels = []string{"gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3-mini", "text-embedding-3-small"}

// openAI is the handler state of an OpenAI fake.
type openAI struct {
	s    *Server
	opts OpenAIOptions
}

// NewOpenAI starts an OpenAI fake on 127.0.0.1:0 that is closed when t's
// test finishes.
func NewOpenAI(t testing.TB, opts OpenAIOptions) *Server {
	t.Helper()
	return newTestServer(t, "openai", func(s *Server) http.Handler { return newOpenAIHandler(s, opts) })
}

// ListenOpenAI starts an OpenAI fake on addr (e.g. "127.0.0.1:0") for use
// outside tests, such as a development runner. The caller must Close it.
func ListenOpenAI(addr string, opts OpenAIOptions) (*Server, error) {
	return newServer("openai", addr, func(s *Server) http.Handler { return newOpenAIHandler(s, opts) })
}

func newOpenAIHandler(s *Server, opts OpenAIOptions) http.Handler {
	if len(opts.Models) == 0 {
		opts.Models = DefaultOpenAIModels
	}
	if opts.SystemFingerprint == "" {
		opts.SystemFingerprint = "fp_fake"
	}
	if opts.EmbeddingDimensions <= 0 {
		opts.EmbeddingDimensions = 8
	}
	if opts.WordsPerChunk <= 0 {
		opts.WordsPerChunk = 1
	}
	s.Enqueue(opts.Script...)
	return &openAI{s: s, opts: opts}
}

// oaiError is the body of every OpenAI error response.
type oaiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (e oaiError) body() []byte {
	b, _ := json.Marshal(struct {
		Error oaiError `json:"error"`
	}{e})
	return b
}

// writeError answers with an OpenAI error body (or OpenAIOptions.ErrorStyle's).
func (o *openAI) writeError(w http.ResponseWriter, status int, e oaiError) {
	b := o.errorBody(status, e)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func invalidRequest(msg, param, code string) oaiError {
	return oaiError{Message: msg, Type: "invalid_request_error", Param: strPtr(param), Code: strPtr(code)}
}

// openAIStatusError is the error body OpenAI sends with status for code (""
// picks the status' most common error): {"error":{"message","type",
// "param","code"}} with the statuses, types and codes of
// https://platform.openai.com/docs/guides/error-codes (429 rate limits with
// type "requests" or "tokens" and code rate_limit_exceeded; 429
// insufficient_quota; 500 and 503 server_error with code null). 429 and
// 503 come with retry-after.
func openAIStatusError(status int, code string) oaiError {
	switch code {
	case "rate_limit_exceeded":
		return oaiError{Message: "Rate limit reached for requests (fake). Please try again later.", Type: "requests", Code: strPtr(code)}
	case "tokens_rate_limit_exceeded", "tokens":
		return oaiError{Message: "Rate limit reached for tokens (fake). Please try again later.", Type: "tokens", Code: strPtr("rate_limit_exceeded")}
	case "insufficient_quota":
		return oaiError{Message: "You exceeded your current quota (fake).", Type: "insufficient_quota", Code: strPtr(code)}
	case "context_length_exceeded":
		return invalidRequest("This model's maximum context length was exceeded by the messages (fake).", "messages", code)
	case "invalid_api_key":
		return invalidRequest("Incorrect API key provided (fake).", "", code)
	case "model_not_found":
		return invalidRequest("The model does not exist or you do not have access to it (fake).", "model", code)
	case "server_error":
		return oaiError{Message: "The server had an error while processing your request (fake).", Type: "server_error", Code: strPtr(code)}
	case "":
	default:
		e := openAIStatusError(status, "")
		e.Code = strPtr(code)
		return e
	}
	switch status {
	case http.StatusTooManyRequests:
		return openAIStatusError(status, "rate_limit_exceeded")
	case http.StatusBadRequest:
		return invalidRequest("Invalid request (fake).", "", "invalid_value")
	case http.StatusUnauthorized:
		return openAIStatusError(status, "invalid_api_key")
	case http.StatusForbidden:
		return oaiError{Message: "Country, region, or territory not supported (fake).", Type: "request_forbidden", Code: strPtr("unsupported_country_region_territory")}
	case http.StatusNotFound:
		return openAIStatusError(status, "model_not_found")
	case http.StatusServiceUnavailable:
		return oaiError{Message: "The engine is currently overloaded, please try again later (fake).", Type: "server_error"}
	}
	if status >= 500 {
		return oaiError{Message: "The server had an error while processing your request (fake).", Type: "server_error"}
	}
	return invalidRequest(fmt.Sprintf("Request failed with status %d (fake).", status), "", "")
}

func (o *openAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-request-id", o.s.requestID())
	w.Header().Set("openai-processing-ms", "1")
	var allow string
	var serve func(http.ResponseWriter, *http.Request, Fault)
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == "/v1/chat/completions":
		allow, serve = http.MethodPost, o.chatCompletions
	case path == "/v1/embeddings":
		allow, serve = http.MethodPost, o.embeddings
	case path == "/v1/models":
		allow, serve = http.MethodGet, o.listModels
	case strings.HasPrefix(path, "/v1/models/"):
		allow, serve = http.MethodGet, o.getModel
	default:
		o.writeError(w, http.StatusNotFound, invalidRequest(fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), "", ""))
		return
	}
	if r.Method != allow {
		w.Header().Set("Allow", allow)
		o.writeError(w, http.StatusMethodNotAllowed, invalidRequest(fmt.Sprintf("Method %s is not allowed for %s; use %s.", r.Method, r.URL.Path, allow), "", "method_not_allowed"))
		return
	}
	f, err := o.s.planFault(r)
	if err != nil {
		o.writeError(w, http.StatusBadRequest, invalidRequest(err.Error(), "", "fakeprovider_bad_header"))
		return
	}
	if f.Delay == 0 && fakeHeader(r, HeaderDelay) == "" {
		f.Delay = o.opts.ChunkDelay
	}
	if f.Kind == FaultResetBeforeHeaders {
		abortBeforeHeaders(w, r)
	}
	if f.Status != 0 {
		if needsRetryAfter(f.Status) {
			w.Header().Set("retry-after", f.RetryAfter)
		}
		o.writeError(w, f.Status, openAIStatusError(f.Status, f.ErrorCode))
		return
	}
	if e, ok := o.checkAuth(r); !ok {
		o.writeError(w, http.StatusUnauthorized, e)
		return
	}
	serve(w, r, f)
}

// checkAuth validates "Authorization: Bearer <key>".
func (o *openAI) checkAuth(r *http.Request) (oaiError, bool) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return invalidRequest("You didn't provide an API key. Send it in an Authorization header as 'Bearer YOUR_KEY' (fake).", "", ""), false
	}
	scheme, key, ok := strings.Cut(auth, " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return invalidRequest("The Authorization header must use the Bearer scheme (fake).", "", "invalid_api_key"), false
	}
	if o.opts.APIKey != "" && key != o.opts.APIKey {
		return invalidRequest("Incorrect API key provided: "+redactKey(key)+" (fake).", "", "invalid_api_key"), false
	}
	return oaiError{}, true
}

func redactKey(k string) string {
	if len(k) <= 6 {
		return "***"
	}
	return k[:3] + "***" + k[len(k)-2:]
}

func (o *openAI) created() int64 {
	if o.opts.Created != 0 {
		return o.opts.Created
	}
	return time.Now().Unix()
}

func (o *openAI) listModels(w http.ResponseWriter, r *http.Request, f Fault) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, m := range o.opts.Models {
		list.Data = append(list.Data, model{ID: m, Object: "model", Created: 1700000000, OwnedBy: "openai"})
	}
	b, _ := json.Marshal(list)
	o.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
}

func (o *openAI) getModel(w http.ResponseWriter, r *http.Request, f Fault) {
	id := strings.TrimPrefix(strings.TrimSuffix(r.URL.Path, "/"), "/v1/models/")
	for _, m := range o.opts.Models {
		if m == id {
			b, _ := json.Marshal(map[string]any{"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"})
			o.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
			return
		}
	}
	o.writeError(w, http.StatusNotFound, invalidRequest(fmt.Sprintf("The model '%s' does not exist", id), "model", "model_not_found"))
}

// ---- chat completions ----

type oaiUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
		AudioTokens  int `json:"audio_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens          int `json:"reasoning_tokens"`
		AudioTokens              int `json:"audio_tokens"`
		AcceptedPredictionTokens int `json:"accepted_prediction_tokens"`
		RejectedPredictionTokens int `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
}

type oaiFunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type oaiToolCall struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Function oaiFunctionCall `json:"function"`
}

type oaiMessage struct {
	Role        string        `json:"role"`
	Content     *string       `json:"content"`
	Refusal     *string       `json:"refusal"`
	ToolCalls   []oaiToolCall `json:"tool_calls,omitempty"`
	Annotations []any         `json:"annotations"`
}

type oaiChoice struct {
	Index        int        `json:"index"`
	Message      oaiMessage `json:"message"`
	Logprobs     any        `json:"logprobs"`
	FinishReason string     `json:"finish_reason"`
}

type oaiCompletion struct {
	ID                string      `json:"id"`
	Object            string      `json:"object"`
	Created           int64       `json:"created"`
	Model             string      `json:"model"`
	Choices           []oaiChoice `json:"choices"`
	Usage             oaiUsage    `json:"usage"`
	ServiceTier       string      `json:"service_tier"`
	SystemFingerprint string      `json:"system_fingerprint"`
}

// chatReply is what the fake answers to one chat request.
type chatReply struct {
	id        string
	created   int64
	model     string
	n         int
	words     []string // words with their leading space; concatenated they give the text
	pieces    []string // streamed content deltas (words grouped per chunk)
	text      string
	toolCalls []oaiToolCall
	usage     oaiUsage
}

func (o *openAI) chatCompletions(w http.ResponseWriter, r *http.Request, f Fault) {
	nTools := o.opts.ToolCalls
	if v := strings.TrimSpace(fakeHeader(r, HeaderToolCalls)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxToolCalls {
			o.writeError(w, http.StatusBadRequest, invalidRequest(fmt.Sprintf("fakeprovider: invalid %s %q (want 0 to %d)", HeaderToolCalls, v, maxToolCalls), "", "fakeprovider_bad_header"))
			return
		}
		nTools = n
	}
	body, _ := readAll(r)
	req, verr := validateChatRequest(body)
	if verr != nil {
		o.writeError(w, http.StatusBadRequest, *verr)
		return
	}
	rep := o.buildReply(r, req, nTools)
	if f.Kind == FaultInbandError && !req.stream {
		o.s.writeBody(w, r, Fault{Hold: f.Hold}, http.StatusOK, "application/json", o.errorBody(http.StatusInternalServerError, openAIStatusError(http.StatusInternalServerError, f.ErrorCode)))
		return
	}
	if !req.stream {
		b, _ := json.Marshal(rep.completion(o.opts.SystemFingerprint))
		o.s.writeBody(w, r, f, http.StatusOK, "application/json", o.quirkCompletion(b))
		return
	}
	o.s.stream(w, r, f, o.quirkStream(rep.streamPlan(o.opts.SystemFingerprint, req.includeUsage && !o.opts.NoStreamUsage, f.ErrorCode), f.ErrorCode))
}

// maxToolCalls bounds the number of tool calls one reply may carry.
const maxToolCalls = 64

// buildReply prepares the answer to req; nTools is the number of tool calls
// wanted, honoured only when the request declares function tools and its
// last message is from the user (so a tool loop ends with a text answer).
func (o *openAI) buildReply(r *http.Request, req *chatRequest, nTools int) *chatReply {
	seq := o.s.nextID()
	rep := &chatReply{
		id:      "chatcmpl-" + fakeHex("chat", seq, 24),
		created: o.created(),
		model:   req.model,
		n:       max(req.n, 1),
	}
	text := fakeHeader(r, HeaderReply)
	if text == "" {
		text = o.opts.Reply
	}
	if text == "" {
		text = "Hello from fake-openai: " + req.lastUserText
	}
	text = continueText(r, text) // continuation.go
	if req.jsonOutput && !json.Valid([]byte(text)) {
		// JSON mode: the model answers a JSON object
		// (https://platform.openai.com/docs/guides/structured-outputs).
		b, _ := json.Marshal(map[string]string{"reply": text})
		text = string(b)
	}
	rep.text = text
	rep.words = splitWords(text)
	rep.pieces = groupPieces(rep.words, o.opts.WordsPerChunk)
	if n := min(nTools, maxToolCalls); n > 0 && len(req.toolNames) > 0 && req.lastRole == "user" {
		for i := range n {
			args, _ := json.Marshal(map[string]any{"call": i, "query": req.lastUserText})
			rep.toolCalls = append(rep.toolCalls, oaiToolCall{
				ID:       "call_" + fakeHex("call", seq*100+uint64(i), 24),
				Type:     "function",
				Function: oaiFunctionCall{Name: req.toolNames[i%len(req.toolNames)], Arguments: string(args)},
			})
		}
	}
	rep.usage.PromptTokens = req.promptTokens
	per := len(rep.words)
	if len(rep.toolCalls) > 0 {
		per = 0
		for _, tc := range rep.toolCalls {
			per += countWords(tc.Function.Arguments) + 1
		}
	}
	rep.usage.CompletionTokens = per * rep.n
	rep.usage.TotalTokens = rep.usage.PromptTokens + rep.usage.CompletionTokens
	return rep
}

func (rep *chatReply) finishReason() string {
	if len(rep.toolCalls) > 0 {
		return "tool_calls"
	}
	return "stop"
}

func (rep *chatReply) completion(fp string) oaiCompletion {
	c := oaiCompletion{
		ID: rep.id, Object: "chat.completion", Created: rep.created, Model: rep.model,
		Usage: rep.usage, ServiceTier: "default", SystemFingerprint: fp,
	}
	for i := range rep.n {
		m := oaiMessage{Role: "assistant", Annotations: []any{}}
		if len(rep.toolCalls) > 0 {
			m.ToolCalls = rep.toolCalls
		} else {
			t := rep.text
			m.Content = &t
		}
		c.Choices = append(c.Choices, oaiChoice{Index: i, Message: m, FinishReason: rep.finishReason()})
	}
	return c
}

// Chunk shapes (https://platform.openai.com/docs/api-reference/chat-streaming).

type oaiToolCallDelta struct {
	Index    int              `json:"index"`
	ID       string           `json:"id,omitempty"`
	Type     string           `json:"type,omitempty"`
	Function *oaiFunctionCall `json:"function,omitempty"`
}

// oaiDelta is a chunk's delta. Content and Refusal are raw JSON so that
// they can be absent, null or a string, as in OpenAI's chunks (the first
// chunk carries "content":"" or, before tool calls, "content":null, and
// "refusal":null).
type oaiDelta struct {
	Role      string             `json:"role,omitempty"`
	Content   json.RawMessage    `json:"content,omitempty"`
	Refusal   json.RawMessage    `json:"refusal,omitempty"`
	ToolCalls []oaiToolCallDelta `json:"tool_calls,omitempty"`
}

type oaiChunkChoice struct {
	Index        int      `json:"index"`
	Delta        oaiDelta `json:"delta"`
	Logprobs     any      `json:"logprobs"`
	FinishReason *string  `json:"finish_reason"`
}

type oaiChunk struct {
	ID                string           `json:"id"`
	Object            string           `json:"object"`
	Created           int64            `json:"created"`
	Model             string           `json:"model"`
	ServiceTier       string           `json:"service_tier"`
	SystemFingerprint string           `json:"system_fingerprint"`
	Choices           []oaiChunkChoice `json:"choices"`
	Usage             *oaiUsage        `json:"usage,omitempty"`
}

// oaiChunkWithNullUsage is a chunk carrying "usage":null, as sent when
// stream_options.include_usage is true.
type oaiChunkWithNullUsage struct {
	oaiChunk
	Usage *oaiUsage `json:"usage"`
}

func (rep *chatReply) streamPlan(fp string, includeUsage bool, errCode string) streamPlan {
	base := oaiChunk{ID: rep.id, Object: "chat.completion.chunk", Created: rep.created, Model: rep.model, ServiceTier: "default", SystemFingerprint: fp}
	enc := func(choices []oaiChunkChoice) []byte {
		c := base
		c.Choices = choices
		var b []byte
		if includeUsage {
			b, _ = json.Marshal(oaiChunkWithNullUsage{oaiChunk: c})
		} else {
			b, _ = json.Marshal(c)
		}
		return sseData(b)
	}
	perChoice := func(mk func(i int) oaiChunkChoice) []byte {
		cs := make([]oaiChunkChoice, 0, rep.n)
		for i := range rep.n {
			cs = append(cs, mk(i))
		}
		return enc(cs)
	}
	var frames [][]byte
	null := json.RawMessage("null")
	jsonString := func(v string) json.RawMessage { b, _ := json.Marshal(v); return b }
	if len(rep.toolCalls) > 0 {
		for ti, tc := range rep.toolCalls {
			// The first tool call's header rides on the role chunk.
			frames = append(frames, perChoice(func(i int) oaiChunkChoice {
				d := oaiDelta{ToolCalls: []oaiToolCallDelta{{
					Index: ti, ID: tc.ID, Type: "function",
					Function: &oaiFunctionCall{Name: tc.Function.Name, Arguments: ""},
				}}}
				if ti == 0 {
					d.Role, d.Content, d.Refusal = "assistant", null, null
				}
				return oaiChunkChoice{Index: i, Delta: d}
			}))
			for _, frag := range splitArgs(tc.Function.Arguments) {
				frames = append(frames, perChoice(func(i int) oaiChunkChoice {
					return oaiChunkChoice{Index: i, Delta: oaiDelta{ToolCalls: []oaiToolCallDelta{{
						Index: ti, Function: &oaiFunctionCall{Arguments: frag},
					}}}}
				}))
			}
		}
	} else {
		frames = append(frames, perChoice(func(i int) oaiChunkChoice {
			return oaiChunkChoice{Index: i, Delta: oaiDelta{Role: "assistant", Content: jsonString(""), Refusal: null}}
		}))
		for _, wd := range rep.pieces {
			frames = append(frames, perChoice(func(i int) oaiChunkChoice {
				return oaiChunkChoice{Index: i, Delta: oaiDelta{Content: jsonString(wd)}}
			}))
		}
	}
	fr := rep.finishReason()
	frames = append(frames, perChoice(func(i int) oaiChunkChoice {
		return oaiChunkChoice{Index: i, Delta: oaiDelta{}, FinishReason: &fr}
	}))
	tail := 2
	if includeUsage {
		c := base
		c.Choices = []oaiChunkChoice{}
		u := rep.usage
		c.Usage = &u
		b, _ := json.Marshal(c)
		frames = append(frames, sseData(b))
		tail++
	}
	frames = append(frames, []byte("data: [DONE]\n\n"))
	if errCode == "" {
		errCode = "server_error"
	}
	return streamPlan{
		contentType: "text/event-stream; charset=utf-8",
		frames:      frames,
		tail:        tail,
		inband:      sseData(openAIStatusError(http.StatusInternalServerError, errCode).body()),
	}
}

// ---- embeddings ----

func (o *openAI) embeddings(w http.ResponseWriter, r *http.Request, f Fault) {
	body, _ := readAll(r)
	req, verr := validateEmbeddingsRequest(body)
	if verr != nil {
		o.writeError(w, http.StatusBadRequest, *verr)
		return
	}
	b := o.embeddingsBody(req)
	if f.Kind == FaultInbandError {
		b = openAIStatusError(http.StatusInternalServerError, f.ErrorCode).body()
		f = Fault{Hold: f.Hold}
	}
	o.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
}

// embeddingsBody is the OpenAI list response for a validated request.
func (o *openAI) embeddingsBody(req *embeddingsRequest) []byte {
	dims := req.dimensions
	if dims == 0 {
		dims = o.opts.EmbeddingDimensions
	}
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	resp := struct {
		Object string `json:"object"`
		Data   []item `json:"data"`
		Model  string `json:"model"`
		Usage  struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}{Object: "list", Model: req.model, Data: []item{}}
	for i, in := range req.inputs {
		vec := EmbeddingVector(in, dims)
		var emb any = vec
		if req.base64 {
			buf := make([]byte, 4*len(vec))
			for j, v := range vec {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(v))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		resp.Data = append(resp.Data, item{Object: "embedding", Index: i, Embedding: emb})
	}
	resp.Usage.PromptTokens = req.tokens
	resp.Usage.TotalTokens = req.tokens
	b, _ := json.Marshal(resp)
	return b
}

// EmbeddingVector is the deterministic unit-length vector the OpenAI fake
// returns for one embeddings input; key is the input string, or for token
// arrays their decimal values joined by commas.
func EmbeddingVector(key string, dims int) []float32 {
	out := make([]float32, dims)
	var block [32]byte
	var sum float64
	for i := range dims {
		if i%8 == 0 {
			block = sha256.Sum256([]byte(strconv.Itoa(i/8) + "\x00" + key))
		}
		u := binary.LittleEndian.Uint32(block[(i%8)*4:])
		v := float64(u)/float64(math.MaxUint32)*2 - 1
		out[i] = float32(v)
		sum += v * v
	}
	if sum > 0 {
		norm := math.Sqrt(sum)
		for i := range out {
			out[i] = float32(float64(out[i]) / norm)
		}
	}
	return out
}

// ---- helpers ----

func fakeHex(kind string, n uint64, length int) string {
	h := sha256.Sum256([]byte(kind + ":" + strconv.FormatUint(n, 10)))
	s := hex.EncodeToString(h[:])
	return s[:min(length, len(s))]
}

// splitWords splits text into stream pieces: the first word, then each
// following word with its leading whitespace, so the pieces concatenate back
// to text.
func splitWords(text string) []string {
	var out []string
	start := 0
	inWord := false
	for i, c := range text {
		space := c == ' ' || c == '\n' || c == '\t' || c == '\r'
		// A piece ends where whitespace follows a word, so every piece but
		// the first starts with its separating whitespace, like the tokens
		// of real models (" world").
		if space && inWord {
			out = append(out, text[start:i])
			start = i
		}
		inWord = !space
	}
	if start < len(text) {
		if len(out) > 0 && strings.TrimSpace(text[start:]) == "" {
			out[len(out)-1] += text[start:] // trailing whitespace
		} else {
			out = append(out, text[start:])
		}
	}
	return out
}

// groupPieces joins words into pieces of n words each.
func groupPieces(words []string, n int) []string {
	if n <= 1 {
		return words
	}
	out := make([]string, 0, (len(words)+n-1)/n)
	for i := 0; i < len(words); i += n {
		out = append(out, strings.Join(words[i:min(i+n, len(words))], ""))
	}
	return out
}

// countWords counts whitespace-separated words; it is the fake's token count.
func countWords(s string) int { return len(strings.Fields(s)) }

// splitArgs cuts a tool-call argument string into up to three fragments.
func splitArgs(s string) []string {
	if len(s) < 3 {
		return []string{s}
	}
	cut := func(i int) int {
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		return i
	}
	a := cut(len(s) / 3)
	b := max(cut(2*len(s)/3), a)
	return []string{s[:a], s[a:b], s[b:]}
}

// ---- OpenAI-compatible quirks (OpenAIOptions) ----

// errorBody renders e in the configured ErrorStyle.
func (o *openAI) errorBody(status int, e oaiError) []byte {
	var v any
	switch o.opts.ErrorStyle {
	case "fastapi":
		v = map[string]any{"detail": e.Message}
	case "ollama":
		v = map[string]any{"error": e.Message}
	case "vllm":
		v = map[string]any{"object": "error", "message": e.Message, "type": "BadRequestError", "param": e.Param, "code": status}
	default:
		return e.body()
	}
	b, _ := json.Marshal(v)
	return b
}

// quirkCompletion adds message.reasoning_content to a completion body.
func (o *openAI) quirkCompletion(b []byte) []byte {
	if o.opts.Reasoning == "" {
		return b
	}
	out, err := sjson.SetBytes(b, "choices.0.message.reasoning_content", o.opts.Reasoning)
	if err != nil {
		return b
	}
	return out
}

// quirkStream rewrites a planned stream for the compatible-server options.
func (o *openAI) quirkStream(p streamPlan, errCode string) streamPlan {
	if o.opts.ErrorStyle != "" {
		if errCode == "" {
			errCode = "server_error"
		}
		p.inband = sseData(o.errorBody(http.StatusInternalServerError, openAIStatusError(http.StatusInternalServerError, errCode)))
	}
	if o.opts.UsageOnLastChunk && p.tail == 3 {
		// frames end with: finish chunk, usage chunk, [DONE].
		n := len(p.frames)
		usage := gjson.GetBytes(sseDataPayload(p.frames[n-2]), "usage").Raw
		fin, err := sjson.SetRawBytes(sseDataPayload(p.frames[n-3]), "usage", []byte(usage))
		if err == nil {
			p.frames = append(p.frames[:n-3], sseData(fin), p.frames[n-1])
			p.tail = 2
		}
	}
	if o.opts.Reasoning != "" && len(p.frames) > 0 {
		first := sseDataPayload(p.frames[0])
		var extra [][]byte
		for _, piece := range splitWords(o.opts.Reasoning) {
			c, err := sjson.DeleteBytes(first, "choices.0.delta.role")
			if err == nil {
				c, err = sjson.DeleteBytes(c, "choices.0.delta.content")
			}
			if err == nil {
				c, err = sjson.SetBytes(c, "choices.0.delta.reasoning_content", piece)
			}
			if err == nil {
				extra = append(extra, sseData(c))
			}
		}
		p.frames = append(append([][]byte{p.frames[0]}, extra...), p.frames[1:]...)
	}
	return p
}

// sseDataPayload returns the payload of a frame made by sseData.
func sseDataPayload(frame []byte) []byte {
	return bytes.TrimSuffix(bytes.TrimPrefix(frame, []byte("data: ")), []byte("\n\n"))
}
