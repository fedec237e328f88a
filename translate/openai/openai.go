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
	"sort"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
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

// maxBuffered bounds a non-streamed body the decoder holds to read usage
// when the request sets no Request.MaxBuffered.
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
	body, err := Body(req, t.Model)
	if err != nil {
		return nil, err
	}
	up := &translate.Upstream{Path: path, Body: body}
	up.Headers = append(up.Headers, translate.Header{Key: "content-type", Value: "application/json"})
	if t.APIKey != "" {
		up.Headers = append(up.Headers, translate.Header{Key: "authorization", Value: "Bearer " + t.APIKey})
	}
	up.Headers = AppendHeaders(up.Headers, t.Headers)
	return up, nil
}

// Body returns the upstream body for an OpenAI-schema provider: the
// client's body with "model" set to model and, for a stream,
// stream_options.include_usage turned on so the gateway always learns the
// usage. It shares no memory with req.Body.
func Body(req *translate.Request, model string) ([]byte, error) {
	// sjson copies the body, so the client's bytes are never modified.
	body, err := sjson.SetBytesOptions(req.Body, "model", model, &sjson.Options{Optimistic: true})
	if err != nil {
		return nil, fmt.Errorf("openai: set model: %w", err)
	}
	if req.Op == translate.OpChat && req.Stream && !req.IncludeUsage {
		body, err = sjson.SetBytesOptions(body, "stream_options.include_usage", true, &sjson.Options{Optimistic: true, ReplaceInPlace: true})
		if err != nil {
			return nil, fmt.Errorf("openai: set stream_options: %w", err)
		}
	}
	return body, nil
}

// AppendHeaders appends the provider's configured static headers to dst in
// a stable (sorted) order.
func AppendHeaders(dst []translate.Header, h map[string]string) []translate.Header {
	if len(h) == 0 {
		return dst
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		dst = append(dst, translate.Header{Key: k, Value: h[k]})
	}
	return dst
}

// NewDecoder implements translate.Translator.
func (Translator) NewDecoder(req *translate.Request, status int, contentType string) translate.Decoder {
	return NewDecoder(req, status, contentType, DecoderOptions{})
}

// DecoderOptions configure a decoder for one OpenAI-schema dialect. The
// zero value is OpenAI's.
type DecoderOptions struct {
	// Classify, when set, is asked first to classify a provider error from
	// its HTTP status (0 for an in-band stream error), error code, type and
	// message; ok false falls back to the common rules.
	Classify func(status int, code, typ, msg string) (c translate.Code, ok bool)
}

// NewDecoder returns a decoder for a response of an OpenAI-schema provider
// (OpenAI, Azure OpenAI, compatible servers) with the given HTTP status and
// content type.
func NewDecoder(req *translate.Request, status int, contentType string, opts DecoderOptions) translate.Decoder {
	d := &decoder{req: *req, status: status, opts: opts, whole: respbody.Whole{Max: maxBuffered, Name: "openai"}}
	d.req.Body = nil // not needed, and not retained
	d.req.State = nil
	if req.MaxBuffered > 0 {
		d.whole.Max = int(min(req.MaxBuffered, 1<<40))
	}
	d.mode = respbody.ModeOf(status, req.Stream, contentType, "text/event-stream")
	return d
}

type decoder struct {
	req    translate.Request
	status int
	opts   DecoderOptions
	mode   respbody.Mode
	res    translate.Result
	sc     sse.Scanner
	whole  respbody.Whole
}

func (d *decoder) ContentType() string { return d.mode.ContentType() }

func (d *decoder) Result() *translate.Result { return &d.res }

func (d *decoder) Status() int { return d.status }

func (d *decoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	if d.mode == respbody.Stream {
		return d.decodeStream(dst, src, final)
	}
	if ready, err := d.whole.Add(src, final, &d.res); !ready {
		return dst, err
	}
	if d.mode == respbody.Error {
		return d.finishError(dst), nil
	}
	body := respbody.View(d.whole.Buf)
	if !gjson.Valid(body) {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned an invalid JSON body"}
		return d.res.Err.AppendJSON(dst), nil
	}
	// One pass over the top-level members, rather than a gjson.Get each.
	var top [len(topMembers)]gjson.Result
	respbody.Members(gjson.Parse(body), topMembers[:], top[:])
	if errv := top[0]; errv.IsObject() || errv.Type == gjson.String || top[1].Str == "error" {
		if e, ok := inbandError(body, &d.opts); ok {
			// A 200 whose body is an error object.
			d.res.Err = e
			return appendErrorBody(dst, body, e), nil
		}
	}
	d.readObject(top[2], top[3], top[4])
	d.res.Completed = true
	return append(dst, d.whole.Buf...), nil
}

// finishError normalises an error body. An OpenAI-shaped body passes
// through unchanged unless it is a provider fault (translate.Code.Uniform);
// anything else (Azure's, a FastAPI "detail", Ollama's
// string error, an Envoy local reply, an HTML page) is rewritten into
// OpenAI's shape.
func (d *decoder) finishError(dst []byte) []byte {
	e := parseError(d.status, d.whole.Buf, &d.opts)
	d.res.Err = e
	return appendErrorBody(dst, respbody.View(d.whole.Buf), e)
}

// appendErrorBody appends body when it is OpenAI-shaped, else e in OpenAI's
// shape, keeping Azure's innererror (content filter details). A provider
// fault (translate.Code.Uniform) is always rewritten, so that it reads the
// same from every provider.
func appendErrorBody(dst []byte, body string, e *translate.Error) []byte {
	if !e.Code.Uniform() && IsOpenAIShaped(body) {
		return append(dst, body...)
	}
	start := len(dst)
	dst = e.AppendJSON(dst)
	if inner := gjson.Get(body, "error.innererror"); inner.IsObject() {
		if out, err := sjson.SetRawBytes(dst[start:], "error.innererror", []byte(inner.Raw)); err == nil {
			dst = append(dst[:start], out...)
		}
	}
	return dst
}

// IsOpenAIShaped reports whether body is exactly OpenAI's error shape: an
// "error" object with a string "message", a string "type" and a "code"
// that is a string, null or absent.
func IsOpenAIShaped(body string) bool {
	if !gjson.Valid(body) {
		return false
	}
	e := gjson.Get(body, "error")
	if !e.IsObject() || e.Get("message").Type != gjson.String || e.Get("type").Type != gjson.String {
		return false
	}
	c := e.Get("code")
	return !c.Exists() || c.Type == gjson.String || c.Type == gjson.Null
}

func (d *decoder) decodeStream(dst, src []byte, final bool) ([]byte, error) {
	return translate.DecodeSSE(&d.sc, &d.res, dst, src, final, d.event)
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
	chunk := respbody.View(f.Data)
	if !gjson.Valid(chunk) {
		if string(f.Event) == "error" {
			// event: error with a non-JSON payload.
			return d.streamError(dst, &translate.Error{Code: translate.CodeUpstreamError, Message: truncate("upstream stream error: " + chunk)})
		}
		// A truncated final event; the stream is not complete.
		return dst
	}
	// One pass over the top-level members instead of a lookup per member.
	var errv, object, model, choices, usage, promptFilter gjson.Result
	gjson.Parse(chunk).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "error":
			errv = v
		case "object":
			object = v
		case "model":
			model = v
		case "choices":
			choices = v
		case "usage":
			usage = v
		case "prompt_filter_results":
			promptFilter = v
		}
		return true
	})
	if errv.IsObject() || errv.Type == gjson.String || object.Str == "error" || string(f.Event) == "error" {
		e, ok := inbandError(chunk, &d.opts)
		if !ok {
			e = parseError(0, f.Data, &d.opts)
		}
		d.res.Err = e
		if !e.Code.Uniform() && IsOpenAIShaped(chunk) {
			return appendEvent(dst, ev)
		}
		return d.streamError(dst, e)
	}
	if d.res.Model == "" && model.Str != "" {
		d.res.Model = strings.Clone(model.Str)
	}
	if !d.res.FirstContent {
		if c := choices.Get("0.delta"); c.Get("content").String() != "" || c.Get("tool_calls").Exists() || c.Get("refusal").String() != "" ||
			c.Get("reasoning_content").String() != "" || c.Get("reasoning").String() != "" {
			d.res.FirstContent = true
		}
	}
	if fr := choices.Get("0.finish_reason"); fr.Type == gjson.String && fr.Str != d.res.FinishReason {
		d.res.FinishReason = strings.Clone(fr.Str)
	}
	empty := choices.IsArray() && !choices.Get("0").Exists()
	if usage.IsObject() {
		readUsage(&d.res, usage)
		if !d.req.IncludeUsage && empty {
			return dst // the usage chunk the gateway asked for, not the client
		}
	} else if empty && promptFilter.Exists() {
		// Azure's prompt annotations, sent before the role chunk with
		// empty id and model: dropped so that the role chunk comes first.
		return dst
	}
	return appendEvent(dst, ev)
}

// streamError appends e as an OpenAI-shaped SSE error event.
func (d *decoder) streamError(dst []byte, e *translate.Error) []byte {
	d.res.Err = e
	dst = append(dst, "data: "...)
	dst = e.AppendJSON(dst)
	return append(dst, '\n', '\n')
}

// appendEvent re-emits an event with a normalised terminator.
func appendEvent(dst, ev []byte) []byte {
	dst = append(dst, ev...)
	return append(dst, '\n', '\n')
}

// The top-level members of a whole response that the decoder reads
// (inband error: error, object; readObject: model, choices, usage).
var topMembers = [...]string{"error", "object", "model", "choices", "usage"}

// readObject reads model, finish reason and usage from a whole response's
// members.
func (d *decoder) readObject(model, choices, usage gjson.Result) {
	d.res.Model = strings.Clone(model.String())
	d.res.FinishReason = strings.Clone(choices.Get("0.finish_reason").String())
	if d.res.FinishReason != "" || d.req.Op == translate.OpEmbeddings {
		d.res.FirstContent = true
	}
	if usage.IsObject() {
		readUsage(&d.res, usage)
	}
}

var usageMembers = [...]string{"prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"}

// readUsage reads OpenAI's usage object, keeping every detail separate.
func readUsage(r *translate.Result, u gjson.Result) {
	var f [len(usageMembers)]gjson.Result
	respbody.Members(u, usageMembers[:], f[:])
	r.HasUsage = true
	r.Usage.InputTokens = f[0].Int()
	r.Usage.OutputTokens = f[1].Int()
	r.Usage.CachedTokens = f[2].Get("cached_tokens").Int()
	r.Usage.AudioInputTokens = f[2].Get("audio_tokens").Int()
	r.Usage.ReasoningTokens = f[3].Get("reasoning_tokens").Int()
	r.Usage.AudioOutputTokens = f[3].Get("audio_tokens").Int()
}
