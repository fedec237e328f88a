// Package openai is the identity translator: the provider speaks OpenAI's
// own API (OpenAI itself and OpenAI-compatible servers such as vLLM, Ollama,
// Groq, Mistral or DeepSeek).
//
// Requests change only in the model name and, for streams, in
// stream_options.include_usage, which the gateway always turns on so that
// usage is known; the decoder then drops the extra usage chunk for clients
// that did not ask for it. Responses pass through byte for byte otherwise.
package openai

import (
	"context"
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/sse"
)

// Kinds served by this translator.
const (
	// KindOpenAI is api.openai.com.
	KindOpenAI = "openai"
	// KindCompatible is any server that speaks OpenAI's API.
	KindCompatible = "openai_compatible"
)

// DefaultBasePath is the base path used when a provider sets none.
const DefaultBasePath = "/v1"

// maxBuffered bounds a non-streamed body the decoder holds to read usage.
const maxBuffered = 64 << 20

func init() {
	translate.Register(KindOpenAI, Translator{})
	translate.Register(KindCompatible, Translator{})
}

// Translator implements translate.Translator for OpenAI-schema providers.
type Translator struct{}

// Request implements translate.Translator.
func (Translator) Request(_ context.Context, req *translate.Request, t *translate.Target) (*translate.Upstream, error) {
	base := t.BasePath
	if base == "" {
		base = DefaultBasePath
	}
	base = strings.TrimSuffix(base, "/")
	var path string
	switch req.Op {
	case translate.OpChat:
		path = base + "/chat/completions"
	case translate.OpEmbeddings:
		path = base + "/embeddings"
	default:
		return nil, fmt.Errorf("openai: unsupported operation %s", req.Op)
	}
	// sjson copies the body, so the client's bytes are never modified.
	body, err := sjson.SetBytesOptions(req.Body, "model", t.Model, &sjson.Options{Optimistic: true})
	if err != nil {
		return nil, fmt.Errorf("openai: set model: %w", err)
	}
	if req.Op == translate.OpChat && req.Stream && !req.IncludeUsage {
		body, err = sjson.SetBytesOptions(body, "stream_options.include_usage", true, &sjson.Options{Optimistic: true, ReplaceInPlace: true})
		if err != nil {
			return nil, fmt.Errorf("openai: set stream_options: %w", err)
		}
	}
	up := &translate.Upstream{Path: path, Body: body}
	up.Headers = append(up.Headers, translate.Header{Key: "content-type", Value: "application/json"})
	if t.APIKey != "" {
		up.Headers = append(up.Headers, translate.Header{Key: "authorization", Value: "Bearer " + t.APIKey})
	}
	for k, v := range t.Headers {
		up.Headers = append(up.Headers, translate.Header{Key: k, Value: v})
	}
	return up, nil
}

// NewDecoder implements translate.Translator.
func (Translator) NewDecoder(req *translate.Request, status int, contentType string) translate.Decoder {
	d := &decoder{req: *req, status: status}
	d.req.Body = nil // not needed, and not retained
	switch {
	case status >= 400:
		d.mode = modeError
	case req.Stream && strings.HasPrefix(contentType, "text/event-stream"):
		d.mode = modeStream
	default:
		d.mode = modeJSON
	}
	return d
}

type mode uint8

const (
	modeJSON mode = iota
	modeStream
	modeError
)

type decoder struct {
	req    translate.Request
	status int
	mode   mode
	res    translate.Result
	sc     sse.Scanner
	buf    []byte
	failed bool
}

func (d *decoder) ContentType() string {
	if d.mode == modeStream {
		return "text/event-stream"
	}
	return "application/json"
}

func (d *decoder) Result() *translate.Result { return &d.res }

func (d *decoder) Status() int { return d.status }

func (d *decoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	if d.mode == modeStream {
		return d.decodeStream(dst, src, final)
	}
	if d.failed {
		return dst, nil
	}
	if len(d.buf)+len(src) > maxBuffered {
		d.failed = true
		d.buf = nil
		e := &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream response body too large"}
		d.res.Err = e
		return dst, fmt.Errorf("openai: response body over %d bytes", maxBuffered)
	}
	d.buf = append(d.buf, src...)
	if !final {
		return dst, nil
	}
	if d.mode == modeError {
		return d.finishError(dst), nil
	}
	body := view(d.buf)
	if !gjson.Valid(body) {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned an invalid JSON body"}
		return d.res.Err.AppendJSON(dst), nil
	}
	d.readObject(body)
	d.res.Completed = true
	return append(dst, d.buf...), nil
}

// finishError normalises an error body. An OpenAI-shaped body passes
// through unchanged; anything else (an Envoy local reply, an HTML page) is
// wrapped into OpenAI's shape.
func (d *decoder) finishError(dst []byte) []byte {
	e := ParseError(d.status, d.buf)
	d.res.Err = e
	if gjson.Get(view(d.buf), "error.message").Type == gjson.String {
		return append(dst, d.buf...)
	}
	return e.AppendJSON(dst)
}

func (d *decoder) decodeStream(dst, src []byte, final bool) ([]byte, error) {
	if err := d.sc.Push(src); err != nil {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream stream event too large"}
		return dst, fmt.Errorf("openai: %w", err)
	}
	for {
		ev, ok := d.sc.Next()
		if !ok {
			break
		}
		dst = d.event(dst, ev)
	}
	if final {
		if rest := d.sc.Rest(); len(rest) > 0 {
			// A stream that ended without the blank line after its last
			// event: decode what is complete, drop the rest.
			dst = d.event(dst, rest)
		}
	}
	return dst, nil
}

var doneData = []byte("[DONE]")

// event handles one SSE event and appends it (or not) to dst.
func (d *decoder) event(dst, ev []byte) []byte {
	f := d.sc.Parse(ev)
	if !f.HasData {
		return dst
	}
	if string(f.Data) == string(doneData) {
		d.res.Completed = true
		return appendEvent(dst, ev)
	}
	chunk := view(f.Data)
	if !gjson.Valid(chunk) {
		// A truncated final event; the stream is not complete.
		return dst
	}
	if e := gjson.Get(chunk, "error"); e.Exists() {
		d.res.Err = parseErrorObject(0, e)
		return appendEvent(dst, ev)
	}
	if d.res.Model == "" {
		d.res.Model = strings.Clone(gjson.Get(chunk, "model").String())
	}
	choices := gjson.Get(chunk, "choices")
	if !d.res.FirstContent {
		if c := choices.Get("0.delta"); c.Get("content").String() != "" || c.Get("tool_calls").Exists() || c.Get("refusal").String() != "" {
			d.res.FirstContent = true
		}
	}
	if fr := choices.Get("0.finish_reason"); fr.Type == gjson.String && fr.Str != d.res.FinishReason {
		d.res.FinishReason = strings.Clone(fr.Str)
	}
	if u := gjson.Get(chunk, "usage"); u.IsObject() {
		readUsage(&d.res, u)
		if !d.req.IncludeUsage && choices.IsArray() && !choices.Get("0").Exists() {
			return dst // the usage chunk the gateway asked for, not the client
		}
	}
	return appendEvent(dst, ev)
}

// appendEvent re-emits an event with a normalised terminator.
func appendEvent(dst, ev []byte) []byte {
	dst = append(dst, ev...)
	return append(dst, '\n', '\n')
}

// readObject reads model, finish reason and usage from a whole response.
func (d *decoder) readObject(body string) {
	d.res.Model = strings.Clone(gjson.Get(body, "model").String())
	d.res.FinishReason = strings.Clone(gjson.Get(body, "choices.0.finish_reason").String())
	if d.res.FinishReason != "" || d.req.Op == translate.OpEmbeddings {
		d.res.FirstContent = true
	}
	if u := gjson.Get(body, "usage"); u.IsObject() {
		readUsage(&d.res, u)
	}
}

// readUsage reads OpenAI's usage object, keeping every detail separate.
func readUsage(r *translate.Result, u gjson.Result) {
	r.HasUsage = true
	r.Usage.InputTokens = u.Get("prompt_tokens").Int()
	r.Usage.OutputTokens = u.Get("completion_tokens").Int()
	r.Usage.CachedTokens = u.Get("prompt_tokens_details.cached_tokens").Int()
	r.Usage.AudioInputTokens = u.Get("prompt_tokens_details.audio_tokens").Int()
	r.Usage.ReasoningTokens = u.Get("completion_tokens_details.reasoning_tokens").Int()
	r.Usage.AudioOutputTokens = u.Get("completion_tokens_details.audio_tokens").Int()
}

// ParseError classifies an OpenAI error body (or any body) received with
// an HTTP status.
func ParseError(status int, body []byte) *translate.Error {
	s := view(body)
	if gjson.Valid(s) {
		if e := gjson.Get(s, "error"); e.IsObject() {
			return parseErrorObject(status, e)
		}
	}
	code := translate.CodeForStatus(status)
	msg := strings.TrimSpace(string(body))
	if len(msg) > 512 {
		msg = msg[:512]
	}
	if msg == "" || !gjson.Valid(s) && strings.HasPrefix(msg, "<") {
		msg = fmt.Sprintf("upstream returned HTTP %d", status)
	} else {
		msg = fmt.Sprintf("upstream returned HTTP %d: %s", status, msg)
	}
	return &translate.Error{Code: code, Status: statusOr(status, code), Message: msg}
}

func statusOr(status int, code translate.Code) int {
	if status >= 400 {
		return status
	}
	return code.Status()
}

// parseErrorObject classifies OpenAI's {"message","type","param","code"}.
func parseErrorObject(status int, e gjson.Result) *translate.Error {
	oc := e.Get("code").String()
	typ := e.Get("type").String()
	code := translate.CodeForStatus(status)
	switch {
	case oc == "context_length_exceeded" || oc == "string_above_max_length":
		code = translate.CodeContextLengthExceeded
	case oc == "insufficient_quota" || typ == "insufficient_quota":
		code = translate.CodeQuotaExhausted
	case oc == "rate_limit_exceeded" || typ == "requests" || typ == "tokens":
		code = translate.CodeRateLimited
	case oc == "content_filter" || oc == "content_policy_violation":
		code = translate.CodeContentFiltered
	case oc == "invalid_api_key" || typ == "authentication_error":
		code = translate.CodeAuthentication
	case oc == "model_not_found":
		code = translate.CodeNotFound
	case status == 0 && typ == "server_error":
		code = translate.CodeUpstreamUnavailable
	case status == 0 && typ == "invalid_request_error":
		code = translate.CodeInvalidRequest
	case status == 0:
		code = translate.CodeInternal
	}
	return &translate.Error{
		Code:       code,
		Status:     statusOr(status, code),
		Message:    strings.Clone(e.Get("message").String()),
		Param:      strings.Clone(e.Get("param").String()),
		OpenAICode: strings.Clone(oc),
		Type:       strings.Clone(typ),
	}
}

// view returns b as a string without copying. The string, and every gjson
// result read from it, must not outlive b or be used after b changes:
// strings kept in a Result are cloned.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
