package fakeprovider

// Amazon Bedrock Runtime dialect. Wire formats follow the official API
// reference:
//
//   - Converse: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
//   - ConverseStream and its events:
//     https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStream.html
//   - Event-stream framing: https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html
//   - Errors: https://docs.aws.amazon.com/bedrock/latest/APIReference/CommonErrors.html
//   - SigV4: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
//   - Titan Text Embeddings:
//     https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html
//   - Cohere Embed: https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html
//   - Reasoning blocks (Claude extended thinking):
//     https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlock.html,
//     https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ReasoningContentBlockDelta.html

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llmux/llmux/translate/eventstream"
)

// Test credentials the Bedrock fake accepts by default.
const (
	// BedrockAccessKeyID is the default access key id of the Bedrock fake.
	BedrockAccessKeyID = "AKIDLLMUXFAKE0000001"
	// BedrockSecretAccessKey is the default secret key of the Bedrock fake.
	BedrockSecretAccessKey = "fake/bedrock/secret/key/0000000000000000"
)

// BedrockOptions configures the Bedrock fake. The zero value is usable.
type BedrockOptions struct {
	// AccessKeyID and SecretAccessKey are the credentials whose SigV4
	// signatures are accepted (default BedrockAccessKeyID and
	// BedrockSecretAccessKey).
	AccessKeyID, SecretAccessKey string
	// Region is the signing region and the one in the expected Host
	// bedrock-runtime.{region}.amazonaws.com (default us-east-1).
	Region string
	// Models, when set, lists the model ids served; others get 404
	// ResourceNotFoundException.
	Models []string
	// Reply is the assistant reply text. Empty means
	// "Hello from fake-bedrock: <last user text>".
	Reply string
	// ToolCalls is how many parallel toolUse blocks to answer with when
	// the request declares tools, toolChoice allows them and the last user
	// turn holds no toolResult (0: reply with text). HeaderToolCalls
	// overrides it per request. A forced tool (toolChoice tool or any) is
	// always called.
	ToolCalls int
	// CacheReadTokens and CacheWriteTokens are reported in every usage
	// (cacheReadInputTokens, cacheWriteInputTokens).
	CacheReadTokens, CacheWriteTokens int
	// WordsPerChunk is how many words each text delta carries (default 1).
	WordsPerChunk int
	// ChunkDelay is a pause between streamed events for requests without
	// HeaderDelay (default none). Tests should use holds to synchronise.
	ChunkDelay time.Duration
	// Script queues fault plans, one per request; see Server.Enqueue.
	Script []Fault
}

// bedrock is the handler state of a Bedrock fake.
type bedrock struct {
	s    *Server
	opts BedrockOptions
}

// NewBedrock starts a Bedrock Runtime fake on 127.0.0.1:0 that is closed
// when t's test finishes.
func NewBedrock(t testing.TB, opts BedrockOptions) *Server {
	t.Helper()
	return newTestServer(t, "bedrock", func(s *Server) http.Handler { return newBedrockHandler(s, opts) })
}

// ListenBedrock starts a Bedrock Runtime fake on addr (e.g. "127.0.0.1:0")
// for use outside tests. The caller must Close it.
func ListenBedrock(addr string, opts BedrockOptions) (*Server, error) {
	return newServer("bedrock", addr, func(s *Server) http.Handler { return newBedrockHandler(s, opts) })
}

func newBedrockHandler(s *Server, opts BedrockOptions) http.Handler {
	if opts.AccessKeyID == "" {
		opts.AccessKeyID, opts.SecretAccessKey = BedrockAccessKeyID, BedrockSecretAccessKey
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if len(opts.Script) > 0 {
		s.Enqueue(opts.Script...)
	}
	return &bedrock{s: s, opts: opts}
}

// brError is a Bedrock error: its type goes in x-amzn-errortype, its
// message in the body {"message": ...}.
type brError struct {
	Type    string
	Status  int
	Message string
}

func (b *bedrock) writeError(w http.ResponseWriter, e brError) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.Message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-ErrorType", e.Type+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

func brValidation(format string, args ...any) *brError {
	return &brError{"ValidationException", http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// bedrockStatusError is the error Bedrock sends with status; code
// (x-fake-error-code) names an exception type (e.g.
// ServiceQuotaExceededException, ModelNotReadyException) or
// "context_length_exceeded". The types, statuses and messages are those of
// https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html#API_runtime_Converse_Errors
// and https://docs.aws.amazon.com/bedrock/latest/userguide/troubleshooting-api-error-codes.html:
// ThrottlingException 429, ServiceQuotaExceededException 400,
// ServiceUnavailableException 503, InternalServerException 500,
// ModelNotReadyException 429, ModelTimeoutException 408,
// ModelErrorException 424. The type travels in x-amzn-ErrorType, the body
// is {"message": …}.
func bedrockStatusError(status int, code string) brError {
	switch code {
	case "context_length_exceeded", "prompt_too_long":
		return brError{"ValidationException", status, "Input is too long for requested model."}
	case "ServiceQuotaExceededException":
		return brError{code, status, "Your request exceeds the service quota for your account. You can view your quotas at https://console.aws.amazon.com/servicequotas/ (fake)."}
	case "ModelNotReadyException":
		return brError{code, status, "Model is not ready for inference. Wait and try your request again (fake)."}
	case "":
	default:
		e := bedrockStatusError(status, "")
		e.Type = code
		return e
	}
	switch status {
	case http.StatusBadRequest:
		return brError{"ValidationException", status, "Invalid request (fake)."}
	case http.StatusForbidden:
		return brError{"AccessDeniedException", status, "You don't have access to the model with the specified model ID (fake)."}
	case http.StatusNotFound:
		return brError{"ResourceNotFoundException", status, "The provided model identifier is invalid (fake)."}
	case http.StatusRequestTimeout:
		return brError{"ModelTimeoutException", status, "Model has timed out in processing the request (fake)."}
	case http.StatusFailedDependency:
		return brError{"ModelErrorException", status, "Received error from the model (fake)."}
	case http.StatusTooManyRequests:
		return brError{"ThrottlingException", status, "Too many requests, please wait before trying again (fake)."}
	case http.StatusInternalServerError:
		return brError{"InternalServerException", status, "Internal server error (fake)."}
	case http.StatusServiceUnavailable:
		return brError{"ServiceUnavailableException", status, "Bedrock is unable to process your request (fake)."}
	}
	if status >= 500 {
		return brError{"InternalServerException", status, "Internal server error (fake)."}
	}
	return brError{"ValidationException", status, fmt.Sprintf("Request failed with status %d (fake).", status)}
}

func (b *bedrock) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("x-amzn-RequestId", fmt.Sprintf("%08x-fake-4000-8000-%012d", b.s.nextID(), b.s.nextID()))
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/model/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || i <= 0 {
		b.writeError(w, brError{"UnknownOperationException", http.StatusNotFound, "Unknown operation (fake): " + r.URL.Path})
		return
	}
	model, err := url.PathUnescape(rest[:i])
	op := rest[i+1:]
	if err != nil || (op != "converse" && op != "converse-stream" && op != "invoke") {
		b.writeError(w, brError{"UnknownOperationException", http.StatusNotFound, "Unknown operation (fake): " + r.URL.Path})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		b.writeError(w, brError{"UnknownOperationException", http.StatusMethodNotAllowed, "Method Not Allowed"})
		return
	}
	f, err := b.s.planFault(r)
	if err != nil {
		b.writeError(w, *brValidation("%s", err.Error()))
		return
	}
	if f.Delay == 0 && fakeHeader(r, HeaderDelay) == "" {
		f.Delay = b.opts.ChunkDelay
	}
	if f.Kind == FaultResetBeforeHeaders {
		abortBeforeHeaders(w, r)
	}
	if f.Status != 0 {
		// Bedrock says nothing about when to retry: no retry-after
		// header, and the body is {"message"} only.
		b.writeError(w, bedrockStatusError(f.Status, f.ErrorCode))
		return
	}
	body, _ := readAll(r)
	if e := b.verifySignature(r, body); e != nil {
		b.writeError(w, *e)
		return
	}
	if len(b.opts.Models) > 0 {
		found := false
		for _, m := range b.opts.Models {
			found = found || m == model
		}
		if !found {
			b.writeError(w, brError{"ResourceNotFoundException", http.StatusNotFound, "The provided model identifier is invalid."})
			return
		}
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		b.writeError(w, *brValidation("Content-Type must be application/json"))
		return
	}
	if op == "invoke" {
		b.invoke(w, r, f, model, body)
		return
	}
	req, verr := validateConverseFor(body, model)
	if verr != nil {
		b.writeError(w, *verr)
		return
	}
	rep := b.buildReply(r, req)
	stream := op == "converse-stream"
	if f.Kind == FaultInbandError && !stream {
		e := bedrockStatusError(http.StatusInternalServerError, "")
		b.s.writeBody(w, r, Fault{Hold: f.Hold}, http.StatusOK, "application/json", []byte(`{"message":`+strconv.Quote(e.Message)+`}`))
		return
	}
	if !stream {
		out, _ := json.Marshal(rep.converse())
		b.s.writeBody(w, r, f, http.StatusOK, "application/json", out)
		return
	}
	b.s.stream(w, r, f, rep.streamPlan(max(b.opts.WordsPerChunk, 1), f.ErrorCode))
}

// ---- replies ----

type brUsage struct {
	InputTokens           int `json:"inputTokens"`
	OutputTokens          int `json:"outputTokens"`
	TotalTokens           int `json:"totalTokens"`
	CacheReadInputTokens  int `json:"cacheReadInputTokens,omitempty"`
	CacheWriteInputTokens int `json:"cacheWriteInputTokens,omitempty"`
}

type brToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

// brReasoning is a ReasoningContentBlock with its reasoningText.
type brReasoning struct {
	ReasoningText struct {
		Text      string `json:"text"`
		Signature string `json:"signature,omitempty"`
	} `json:"reasoningText"`
}

// brBlock is a response content block (reasoningContent, text or toolUse).
type brBlock struct {
	ReasoningContent *brReasoning `json:"reasoningContent,omitempty"`
	Text             *string      `json:"text,omitempty"`
	ToolUse          *brToolUse   `json:"toolUse,omitempty"`
}

type brReply struct {
	blocks []brBlock
	stop   string
	usage  brUsage
}

func (b *bedrock) buildReply(r *http.Request, req *brRequest) *brReply {
	seq := b.s.nextID()
	rep := &brReply{stop: "end_turn"}
	text := fakeHeader(r, HeaderReply)
	if text == "" {
		text = b.opts.Reply
	}
	if text == "" {
		text = "Hello from fake-bedrock: " + req.lastUserText
	}
	text = continueText(r, text) // continuation.go
	n := b.opts.ToolCalls
	if v, err := strconv.Atoi(strings.TrimSpace(fakeHeader(r, HeaderToolCalls))); err == nil && v >= 0 {
		n = min(v, 64)
	}
	var calls []string
	switch {
	case len(req.tools) == 0:
	case req.toolChoice == "tool":
		calls = []string{req.toolName}
	case req.answered:
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
		// Claude's extended thinking: a reasoning block first.
		rc := &brReasoning{}
		rc.ReasoningText.Text = FakeThinking(req.lastUserText)
		rc.ReasoningText.Signature = fakeSignature("brthink", seq)
		rep.blocks = append(rep.blocks, brBlock{ReasoningContent: rc})
	}
	if len(calls) > 0 {
		if req.toolChoice == "auto" || req.toolChoice == "" {
			pre := "Let me use the tools."
			rep.blocks = append(rep.blocks, brBlock{Text: &pre})
		}
		for i, name := range calls {
			var schema json.RawMessage
			for _, t := range req.tools {
				if t.name == name {
					schema = t.schema
				}
			}
			rep.blocks = append(rep.blocks, brBlock{ToolUse: &brToolUse{
				ToolUseID: "tooluse_" + fakeHex("brtool", seq*100+uint64(i), 22), Name: name,
				Input: schemaExample(schema, i, req.lastUserText),
			}})
		}
		rep.stop = "tool_use"
	} else {
		rep.blocks = append(rep.blocks, brBlock{Text: &text})
	}
	out := 0
	for _, blk := range rep.blocks {
		switch {
		case blk.ReasoningContent != nil:
			out += countWords(blk.ReasoningContent.ReasoningText.Text)
		case blk.Text != nil:
			out += countWords(*blk.Text)
		default:
			out += countWords(string(blk.ToolUse.Input)) + 1
		}
	}
	if req.maxTokens > 0 && req.maxTokens < out {
		rep.stop = "max_tokens"
	}
	rep.usage = brUsage{InputTokens: req.promptTokens, OutputTokens: out,
		CacheReadInputTokens: b.opts.CacheReadTokens, CacheWriteInputTokens: b.opts.CacheWriteTokens}
	rep.usage.TotalTokens = rep.usage.InputTokens + out + b.opts.CacheReadTokens + b.opts.CacheWriteTokens
	return rep
}

func (rep *brReply) converse() any {
	type obj = map[string]any
	return obj{
		"output":     obj{"message": obj{"role": "assistant", "content": rep.blocks}},
		"stopReason": rep.stop,
		"usage":      rep.usage,
		"metrics":    obj{"latencyMs": 42},
	}
}

// streamPlan is the ConverseStream event sequence as binary event-stream
// frames: messageStart; per block an optional contentBlockStart (toolUse),
// deltas and contentBlockStop; then messageStop and metadata (the tail).
// Payloads carry the "p" padding member Bedrock adds.
func (rep *brReply) streamPlan(wordsPerChunk int, errCode string) streamPlan {
	type obj = map[string]any
	pad := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
	n := 0
	ev := func(typ string, v obj) []byte {
		n++
		v["p"] = pad[:n%len(pad)]
		b, _ := json.Marshal(v)
		return eventstream.Event(nil, typ, b)
	}
	frames := [][]byte{ev("messageStart", obj{"role": "assistant"})}
	for i, blk := range rep.blocks {
		switch {
		case blk.ReasoningContent != nil:
			// Reasoning streams as reasoningContent deltas: text, then the
			// signature.
			for _, piece := range groupPieces(splitWords(blk.ReasoningContent.ReasoningText.Text), wordsPerChunk) {
				frames = append(frames, ev("contentBlockDelta", obj{"contentBlockIndex": i, "delta": obj{"reasoningContent": obj{"text": piece}}}))
			}
			frames = append(frames, ev("contentBlockDelta", obj{"contentBlockIndex": i, "delta": obj{"reasoningContent": obj{"signature": blk.ReasoningContent.ReasoningText.Signature}}}))
		case blk.Text != nil:
			for _, piece := range groupPieces(splitWords(*blk.Text), wordsPerChunk) {
				frames = append(frames, ev("contentBlockDelta", obj{"contentBlockIndex": i, "delta": obj{"text": piece}}))
			}
		case blk.ToolUse != nil:
			frames = append(frames, ev("contentBlockStart", obj{"contentBlockIndex": i, "start": obj{"toolUse": obj{"toolUseId": blk.ToolUse.ToolUseID, "name": blk.ToolUse.Name}}}))
			for _, frag := range splitArgs(string(blk.ToolUse.Input)) {
				frames = append(frames, ev("contentBlockDelta", obj{"contentBlockIndex": i, "delta": obj{"toolUse": obj{"input": frag}}}))
			}
		}
		frames = append(frames, ev("contentBlockStop", obj{"contentBlockIndex": i}))
	}
	frames = append(frames,
		ev("messageStop", obj{"stopReason": rep.stop}),
		ev("metadata", obj{"usage": rep.usage, "metrics": obj{"latencyMs": 42}}))
	if errCode == "" {
		errCode = "modelStreamErrorException"
	}
	msg := "The model stream failed (fake)."
	switch errCode {
	case "throttlingException":
		msg = "Too many tokens, please wait before trying again (fake)."
	case "serviceUnavailableException":
		msg = "The service isn't currently available. Try again later (fake)."
	case "internalServerException":
		msg = "An internal server error occurred. Retry your request (fake)."
	}
	payload, _ := json.Marshal(obj{"message": msg})
	return streamPlan{
		contentType: "application/vnd.amazon.eventstream",
		frames:      frames,
		tail:        2,
		inband:      eventstream.Exception(nil, errCode, payload),
	}
}
