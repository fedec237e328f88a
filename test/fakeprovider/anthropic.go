package fakeprovider

// Anthropic dialect. Wire formats follow the official API reference:
//
//   - Messages (request and message object): https://docs.anthropic.com/en/api/messages
//   - Streaming events: https://docs.anthropic.com/en/api/messages-streaming
//   - Errors: https://docs.anthropic.com/en/api/errors
//   - Tool use (tool_use / tool_result turns):
//     https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
//   - Extended thinking (the thinking parameter, thinking blocks with
//     signatures, thinking_delta and signature_delta events):
//     https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// AnthropicOptions configures the Anthropic fake. The zero value is usable.
type AnthropicOptions struct {
	// APIKey is the expected x-api-key. Empty accepts any non-empty key.
	APIKey string
	// Reply is the assistant reply text. Empty means
	// "Hello from fake-anthropic: <last user text>".
	Reply string
	// ToolCalls is how many parallel tool_use blocks to answer with when
	// the request declares tools, tool_choice allows them and the last user
	// turn holds no tool_result (0: reply with text). HeaderToolCalls
	// overrides it per request. A forced tool (tool_choice "tool" or "any")
	// is always called.
	ToolCalls int
	// CacheReadTokens and CacheCreationTokens are reported in every usage
	// (cache_read_input_tokens, cache_creation_input_tokens).
	CacheReadTokens, CacheCreationTokens int
	// WordsPerChunk is how many words each text_delta carries (default 1).
	WordsPerChunk int
	// ChunkDelay is a pause between streamed events for requests without
	// HeaderDelay (default none). Tests should use holds to synchronise.
	ChunkDelay time.Duration
	// Script queues fault plans, one per request; see Server.Enqueue.
	Script []Fault

	// OAuth, when set, is the fake Google token endpoint whose issued
	// tokens the Claude-on-Vertex routes (anthropic_vertex.go) accept as
	// "Authorization: Bearer".
	OAuth *GCPOAuth
	// BearerToken is accepted on the Vertex routes as well. With neither
	// OAuth nor BearerToken any non-empty bearer token is accepted.
	BearerToken string
}

// anthropic is the handler state of an Anthropic fake.
type anthropic struct {
	s    *Server
	opts AnthropicOptions
}

// NewAnthropic starts an Anthropic fake on 127.0.0.1:0 that is closed when
// t's test finishes.
func NewAnthropic(t testing.TB, opts AnthropicOptions) *Server {
	t.Helper()
	return newTestServer(t, "anthropic", func(s *Server) http.Handler { return newAnthropicHandler(s, opts) })
}

// ListenAnthropic starts an Anthropic fake on addr (e.g. "127.0.0.1:0") for
// use outside tests. The caller must Close it.
func ListenAnthropic(addr string, opts AnthropicOptions) (*Server, error) {
	return newServer("anthropic", addr, func(s *Server) http.Handler { return newAnthropicHandler(s, opts) })
}

func newAnthropicHandler(s *Server, opts AnthropicOptions) http.Handler {
	if len(opts.Script) > 0 {
		s.Enqueue(opts.Script...)
	}
	return &anthropic{s: s, opts: opts}
}

// antError is Anthropic's error object.
type antError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (a *anthropic) writeError(w http.ResponseWriter, status int, e antError) {
	b := antErrorBody(e, a.s.requestID())
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// antErrorBody is {"type":"error","error":{...},"request_id":...}.
func antErrorBody(e antError, reqID string) []byte {
	b, _ := json.Marshal(struct {
		Type      string   `json:"type"`
		Error     antError `json:"error"`
		RequestID string   `json:"request_id"`
	}{"error", e, reqID})
	return b
}

func antInvalid(msg string) antError { return antError{Type: "invalid_request_error", Message: msg} }

// anthropicStatusError is the error Anthropic sends with status; code
// (x-fake-error-code) picks another error type or "prompt_too_long". The
// types and their statuses are those of https://docs.anthropic.com/en/api/errors
// (400 invalid_request_error, 401 authentication_error, 402 billing_error,
// 403 permission_error, 404 not_found_error, 413 request_too_large, 429
// rate_limit_error, 500 api_error, 504 timeout_error, 529
// overloaded_error), in the body {"type":"error","error":{"type",
// "message"},"request_id"}; 429 and 529 come with retry-after. A 503 is
// not documented; the fake answers it with an api_error body.
func anthropicStatusError(status int, code string) antError {
	switch code {
	case "prompt_too_long", "context_length_exceeded":
		return antInvalid("prompt is too long: 215000 tokens > 200000 maximum")
	case "":
	default:
		// The documented message of the type, whatever the status.
		e := anthropicStatusError(anthropicTypeStatus(code, status), "")
		e.Type = code
		return e
	}
	switch status {
	case http.StatusBadRequest:
		return antInvalid("Invalid request (fake).")
	case http.StatusUnauthorized:
		return antError{"authentication_error", "invalid x-api-key"}
	case http.StatusPaymentRequired:
		return antError{"billing_error", "Your credit balance is too low to access the Anthropic API (fake)."}
	case http.StatusForbidden:
		return antError{"permission_error", "Your API key does not have permission to use the specified resource (fake)."}
	case http.StatusNotFound:
		return antError{"not_found_error", "The requested resource could not be found (fake)."}
	case http.StatusRequestEntityTooLarge:
		return antError{"request_too_large", "Request exceeds the maximum allowed number of bytes (fake)."}
	case http.StatusTooManyRequests:
		return antError{"rate_limit_error", "Number of requests has exceeded your per-minute rate limit (fake)."}
	case http.StatusGatewayTimeout:
		return antError{"timeout_error", "Request timed out (fake)."}
	case 529:
		return antError{"overloaded_error", "Overloaded"}
	}
	if status >= 500 {
		return antError{"api_error", "Internal server error (fake)."}
	}
	return antInvalid(fmt.Sprintf("Request failed with status %d (fake).", status))
}

// anthropicTypeStatus is the documented status of an Anthropic error type,
// or def for a type the documentation does not list.
func anthropicTypeStatus(typ string, def int) int {
	for st, t := range map[int]string{400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
		404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"} {
		if t == typ {
			return st
		}
	}
	return def
}

func (a *anthropic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if m := vertexAnthropicPath.FindStringSubmatch(r.URL.Path); m != nil {
		a.serveVertex(w, r, m[3], m[4] == "streamRawPredict")
		return
	}
	w.Header().Set("request-id", "req_fake"+strconv.FormatUint(a.s.nextID(), 10))
	if strings.TrimSuffix(r.URL.Path, "/") != "/v1/messages" {
		a.writeError(w, http.StatusNotFound, antError{"not_found_error", "Not Found"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.writeError(w, http.StatusMethodNotAllowed, antInvalid("Method Not Allowed"))
		return
	}
	f, err := a.s.planFault(r)
	if err != nil {
		a.writeError(w, http.StatusBadRequest, antInvalid(err.Error()))
		return
	}
	if f.Delay == 0 && fakeHeader(r, HeaderDelay) == "" {
		f.Delay = a.opts.ChunkDelay
	}
	if f.Kind == FaultResetBeforeHeaders {
		abortBeforeHeaders(w, r)
	}
	if f.Status != 0 {
		if needsRetryAfter(f.Status) || f.Status == 529 {
			w.Header().Set("retry-after", f.RetryAfter)
		}
		a.writeError(w, f.Status, anthropicStatusError(f.Status, f.ErrorCode))
		return
	}
	key := r.Header.Get("x-api-key")
	switch {
	case key == "":
		a.writeError(w, http.StatusUnauthorized, antError{"authentication_error", "x-api-key header is required"})
		return
	case a.opts.APIKey != "" && key != a.opts.APIKey:
		a.writeError(w, http.StatusUnauthorized, antError{"authentication_error", "invalid x-api-key"})
		return
	}
	if v := r.Header.Get("anthropic-version"); v == "" {
		a.writeError(w, http.StatusBadRequest, antInvalid("anthropic-version: header is required"))
		return
	} else if v != "2023-06-01" && v != "2023-01-01" {
		a.writeError(w, http.StatusBadRequest, antInvalid("anthropic-version: invalid version "+strconv.Quote(v)))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.writeError(w, http.StatusBadRequest, antInvalid("Content-Type must be application/json"))
		return
	}
	body, _ := readAll(r)
	req, verr := validateAnthropicRequest(body)
	if verr != nil {
		a.writeError(w, http.StatusBadRequest, *verr)
		return
	}
	rep := a.buildReply(r, req)
	if f.Kind == FaultInbandError && !req.stream {
		a.s.writeBody(w, r, Fault{Hold: f.Hold}, http.StatusOK, "application/json", antErrorBody(anthropicStatusError(529, f.ErrorCode), a.s.requestID()))
		return
	}
	if !req.stream {
		b, _ := json.Marshal(rep.message())
		a.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
		return
	}
	a.s.stream(w, r, f, rep.streamPlan(max(a.opts.WordsPerChunk, 1), f.ErrorCode))
}

// ---- replies ----

type antUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// antBlock is a response content block (thinking, text or tool_use).
type antBlock struct {
	Type      string          `json:"type"`
	Thinking  *string         `json:"thinking,omitempty"`
	Signature string          `json:"signature,omitempty"`
	Text      *string         `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
}

type antMessage struct {
	ID           string     `json:"id"`
	Type         string     `json:"type"`
	Role         string     `json:"role"`
	Model        string     `json:"model"`
	Content      []antBlock `json:"content"`
	StopReason   *string    `json:"stop_reason"`
	StopSequence *string    `json:"stop_sequence"`
	Usage        antUsage   `json:"usage"`
}

type antReply struct {
	id     string
	model  string
	blocks []antBlock
	stop   string
	usage  antUsage
}

func (a *anthropic) buildReply(r *http.Request, req *antRequest) *antReply {
	seq := a.s.nextID()
	rep := &antReply{id: "msg_fake" + fakeHex("msg", seq, 20), model: req.model, stop: "end_turn"}
	text := fakeHeader(r, HeaderReply)
	if text == "" {
		text = a.opts.Reply
	}
	if text == "" {
		text = "Hello from fake-anthropic: " + req.lastUserText
	}
	text = continueText(r, text) // continuation.go
	n := a.opts.ToolCalls
	if v, err := strconv.Atoi(strings.TrimSpace(fakeHeader(r, HeaderToolCalls))); err == nil && v >= 0 {
		n = min(v, 64)
	}
	var calls []string // tool names to call
	switch {
	case len(req.tools) == 0 || req.toolChoice == "none":
	case req.toolChoice == "tool":
		calls = []string{req.toolName}
	case req.answered:
		// The last user turn answers tools: reply with text.
	case req.toolChoice == "any":
		for i := range max(n, 1) {
			calls = append(calls, req.tools[i%len(req.tools)].name)
		}
	default:
		for i := range n {
			calls = append(calls, req.tools[i%len(req.tools)].name)
		}
	}
	if req.thinking > 0 {
		// Extended thinking: a thinking block with its signature first.
		th := FakeThinking(req.lastUserText)
		rep.blocks = append(rep.blocks, antBlock{Type: "thinking", Thinking: &th, Signature: fakeSignature("antthink", seq)})
	}
	if len(calls) > 0 {
		if req.toolChoice == "auto" || req.toolChoice == "" {
			pre := "Let me use the tools."
			rep.blocks = append(rep.blocks, antBlock{Type: "text", Text: &pre})
		}
		for i, name := range calls {
			var schema json.RawMessage
			for _, t := range req.tools {
				if t.name == name {
					schema = t.schema
				}
			}
			rep.blocks = append(rep.blocks, antBlock{
				Type: "tool_use", ID: "toolu_fake" + fakeHex("tool", seq*100+uint64(i), 20), Name: name,
				Input: schemaExample(schema, i, req.lastUserText),
			})
		}
		rep.stop = "tool_use"
	} else {
		rep.blocks = append(rep.blocks, antBlock{Type: "text", Text: &text})
	}
	out := 0
	for _, b := range rep.blocks {
		switch {
		case b.Thinking != nil:
			out += countWords(*b.Thinking) // thinking counts as output
		case b.Text != nil:
			out += countWords(*b.Text)
		default:
			out += countWords(string(b.Input)) + 1
		}
	}
	if req.maxTokens < int64(out) {
		rep.stop = "max_tokens"
	}
	rep.usage = antUsage{InputTokens: req.promptTokens, OutputTokens: out,
		CacheReadInputTokens: a.opts.CacheReadTokens, CacheCreationInputTokens: a.opts.CacheCreationTokens}
	return rep
}

// schemaExample builds a deterministic value for a JSON schema: objects
// get every property (sorted), strings "<property>-<i>" (the first enum
// value when there is one; the user's text for a property named "query"),
// numbers i+1, booleans true, arrays one item.
func schemaExample(schema json.RawMessage, i int, userText string) json.RawMessage {
	var s map[string]any
	_ = json.Unmarshal(schema, &s)
	b, _ := json.Marshal(exampleValue(s, "", i, userText, 0))
	return b
}

func exampleValue(s map[string]any, prop string, i int, userText string, depth int) any {
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[0]
	}
	switch s["type"] {
	case "object", nil:
		props, _ := s["properties"].(map[string]any)
		out := map[string]any{}
		if depth > 8 {
			return out
		}
		keys := make([]string, 0, len(props))
		for k := range props {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, _ := props[k].(map[string]any)
			out[k] = exampleValue(ps, k, i, userText, depth+1)
		}
		return out
	case "string":
		if prop == "query" {
			return userText
		}
		return prop + "-" + strconv.Itoa(i)
	case "integer", "number":
		return i + 1
	case "boolean":
		return true
	case "array":
		items, _ := s["items"].(map[string]any)
		if depth > 8 {
			return []any{}
		}
		return []any{exampleValue(items, prop, i, userText, depth+1)}
	}
	return nil
}

func (rep *antReply) message() antMessage {
	stop := rep.stop
	return antMessage{ID: rep.id, Type: "message", Role: "assistant", Model: rep.model,
		Content: rep.blocks, StopReason: &stop, Usage: rep.usage}
}

// streamPlan is the real event sequence: message_start, then per block
// content_block_start (a ping after the first), deltas and
// content_block_stop, then message_delta and message_stop (the tail).
func (rep *antReply) streamPlan(wordsPerChunk int, errCode string) streamPlan {
	ev := func(name string, v any) []byte {
		b, _ := json.Marshal(v)
		return sseEvent(name, b)
	}
	type obj = map[string]any
	start := rep.message()
	start.Content = []antBlock{}
	start.StopReason = nil
	start.Usage.OutputTokens = 1
	frames := [][]byte{ev("message_start", obj{"type": "message_start", "message": start})}
	for i, b := range rep.blocks {
		switch b.Type {
		case "thinking":
			frames = append(frames, ev("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": obj{"type": "thinking", "thinking": "", "signature": ""}}))
			if i == 0 {
				frames = append(frames, ev("ping", obj{"type": "ping"}))
			}
			for _, piece := range groupPieces(splitWords(*b.Thinking), wordsPerChunk) {
				frames = append(frames, ev("content_block_delta", obj{"type": "content_block_delta", "index": i, "delta": obj{"type": "thinking_delta", "thinking": piece}}))
			}
			frames = append(frames, ev("content_block_delta", obj{"type": "content_block_delta", "index": i, "delta": obj{"type": "signature_delta", "signature": b.Signature}}))
		case "text":
			frames = append(frames, ev("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": obj{"type": "text", "text": ""}}))
			if i == 0 {
				frames = append(frames, ev("ping", obj{"type": "ping"}))
			}
			for _, piece := range groupPieces(splitWords(*b.Text), wordsPerChunk) {
				frames = append(frames, ev("content_block_delta", obj{"type": "content_block_delta", "index": i, "delta": obj{"type": "text_delta", "text": piece}}))
			}
		case "tool_use":
			frames = append(frames, ev("content_block_start", obj{"type": "content_block_start", "index": i, "content_block": obj{"type": "tool_use", "id": b.ID, "name": b.Name, "input": obj{}}}))
			if i == 0 {
				frames = append(frames, ev("ping", obj{"type": "ping"}))
			}
			frames = append(frames, ev("content_block_delta", obj{"type": "content_block_delta", "index": i, "delta": obj{"type": "input_json_delta", "partial_json": ""}}))
			for _, frag := range splitArgs(string(b.Input)) {
				frames = append(frames, ev("content_block_delta", obj{"type": "content_block_delta", "index": i, "delta": obj{"type": "input_json_delta", "partial_json": frag}}))
			}
		}
		frames = append(frames, ev("content_block_stop", obj{"type": "content_block_stop", "index": i}))
	}
	frames = append(frames,
		ev("message_delta", obj{"type": "message_delta", "delta": obj{"stop_reason": rep.stop, "stop_sequence": nil}, "usage": rep.usage}),
		ev("message_stop", obj{"type": "message_stop"}))
	if errCode == "" {
		errCode = "overloaded_error"
	}
	e := anthropicStatusError(529, errCode)
	inband, _ := json.Marshal(struct {
		Type  string   `json:"type"`
		Error antError `json:"error"`
	}{"error", e})
	return streamPlan{
		contentType: "text/event-stream; charset=utf-8",
		frames:      frames,
		tail:        2,
		inband:      sseEvent("error", inband),
	}
}

// FakeThinking is the reasoning text the fakes produce when a request asks
// for thinking (Anthropic thinking blocks, Bedrock reasoningContent,
// Gemini thought parts), built from the last user text.
func FakeThinking(userText string) string {
	return "The user wrote: " + userText + ". A short, friendly answer fits."
}

// fakeSignature is a deterministic stand-in for an encrypted thinking
// signature.
func fakeSignature(kind string, seq uint64) string {
	return "EqQBCgIYAh" + fakeHex(kind, seq, 40)
}
