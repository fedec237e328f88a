// Package chunkw writes the pieces of OpenAI chat.completion and
// chat.completion.chunk JSON that the provider decoders share. Every
// function appends to dst and allocates nothing beyond dst's growth (but a
// Message's reasoning and tool calls, kept aside), so a decoder that reuses
// its buffers stays allocation-free per chunk.
package chunkw

import (
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/jsonenc"
)

// Tail ends a streamed chunk of one choice whose delta object has just been
// written: no log probabilities, no finish reason yet, and the blank line
// that ends the SSE event.
const Tail = `,"logprobs":null,"finish_reason":null}]}` + "\n\n"

// AppendPrefix appends the start of a chat completion or chunk object, up
// to and including `"choices":[`: {"id":id,"object":object,"created":created,
// "model":model,"choices":[. object is written as is ("chat.completion" or
// "chat.completion.chunk"); id and model are escaped.
func AppendPrefix(dst []byte, object, id string, created int64, model string) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonenc.AppendString(dst, id)
	dst = append(dst, `,"object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = strconv.AppendInt(dst, created, 10)
	dst = append(dst, `,"model":`...)
	dst = jsonenc.AppendString(dst, model)
	return append(dst, `,"choices":[`...)
}

// AppendUsage appends OpenAI's usage object: prompt and completion tokens,
// their total, the cached prompt tokens and the reasoning tokens.
func AppendUsage(dst []byte, prompt, completion, cached, reasoning int64) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, prompt, 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, completion, 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, prompt+completion, 10)
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = strconv.AppendInt(dst, cached, 10)
	dst = append(dst, `},"completion_tokens_details":{"reasoning_tokens":`...)
	dst = strconv.AppendInt(dst, reasoning, 10)
	return append(dst, "}}"...)
}

// CacheUsage is the token usage of a provider that counts cache reads and
// writes apart from its input tokens (Anthropic, Bedrock Converse), kept as
// the provider reports it until it is reported the OpenAI way.
type CacheUsage struct {
	Input, Output, CacheRead, CacheWrite int64
}

// Report stores u in r the OpenAI way: prompt tokens include the cache
// reads and writes, and both stay visible on their own.
func (u *CacheUsage) Report(r *translate.Result) {
	r.HasUsage = true
	r.Usage.InputTokens = u.Input + u.CacheRead + u.CacheWrite
	r.Usage.OutputTokens = u.Output
	r.Usage.CachedTokens = u.CacheRead
	r.Usage.CacheCreationTokens = u.CacheWrite
}

// AppendOpenAI appends OpenAI's usage object for u.
func (u *CacheUsage) AppendOpenAI(dst []byte) []byte {
	return AppendUsage(dst, u.Input+u.CacheRead+u.CacheWrite, u.Output, u.CacheRead, 0)
}

// AppendToolCall appends one function tool call of a chat.completion
// message: {"id":id,"type":"function","function":{"name":name,
// "arguments":args}}, where args, raw JSON ("{}" when empty), is written as
// a JSON string.
func AppendToolCall(dst []byte, id, name, args string) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonenc.AppendString(dst, id)
	dst = append(dst, `,"type":"function","function":{"name":`...)
	dst = jsonenc.AppendString(dst, name)
	dst = append(dst, `,"arguments":`...)
	if args == "" {
		args = "{}"
	}
	dst = jsonenc.AppendString(dst, args)
	return append(dst, "}}"...)
}

// AppendToolStart appends the start of a delta that opens tool call index:
// {"tool_calls":[{"index":index,"id":id,"type":"function","function":
// {"name":name,"arguments":. The caller appends the arguments (a JSON
// string) and `}}]}` + Tail.
func AppendToolStart(dst []byte, index int, id, name string) []byte {
	dst = append(dst, `{"tool_calls":[{"index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	dst = append(dst, `,"id":`...)
	dst = jsonenc.AppendString(dst, id)
	dst = append(dst, `,"type":"function","function":{"name":`...)
	dst = jsonenc.AppendString(dst, name)
	return append(dst, `,"arguments":`...)
}

// AppendToolArgs appends a whole delta that adds args, a JSON string
// literal as raw JSON, to the arguments of tool call index, and the chunk's
// Tail.
func AppendToolArgs(dst []byte, index int, args string) []byte {
	dst = append(dst, `{"tool_calls":[{"index":`...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	dst = append(dst, `,"function":{"arguments":`...)
	dst = append(dst, args...)
	return append(dst, `}}]}`+Tail...)
}

// AppendFinish appends an empty delta with finish_reason reason, ending the
// chunk and its SSE event.
func AppendFinish(dst []byte, reason string) []byte {
	dst = append(dst, `{},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, reason...)
	return append(dst, "\"}]}\n\n"...)
}

// Message writes the message of a single-choice chat.completion from its
// content blocks, read in one pass: each block's text goes straight into
// dst, where the content is, and its reasoning and tool calls aside, to
// follow. Begin it once `"content":` is written, give it each block's
// pieces in order, and End it; the zero Message is ready.
type Message struct {
	start     int // len(dst) at Begin
	nText     int
	reasoning []byte // the reasoning strings joined, without quotes
	calls     []byte // the tool calls, comma separated
	nCalls    int
	// Answer is the JSON response tool's input: when set, it is the
	// content, and the text blocks are dropped.
	Answer gjson.Result
}

// Begin records where the content starts in dst.
func (m *Message) Begin(dst []byte) { m.start = len(dst) }

// Text appends text, a block's text, when it is a JSON string: the
// strings are joined as they are escaped, into one JSON string (the
// concatenation of valid escaped strings is valid).
func (m *Message) Text(dst []byte, t gjson.Result) []byte {
	if t.Type != gjson.String || len(t.Raw) < 2 {
		return dst
	}
	if m.nText == 0 {
		dst = append(dst, '"')
	}
	m.nText++
	return append(dst, t.Raw[1:len(t.Raw)-1]...)
}

// Reasoning adds t, a block's reasoning text, when it is a non-empty JSON
// string.
func (m *Message) Reasoning(t gjson.Result) {
	if t.Type == gjson.String && len(t.Raw) > 2 {
		m.reasoning = append(m.reasoning, t.Raw[1:len(t.Raw)-1]...)
	}
}

// ToolCall adds a function tool call, as AppendToolCall writes it.
func (m *Message) ToolCall(id, name, args string) {
	if m.nCalls > 0 {
		m.calls = append(m.calls, ',')
	}
	m.nCalls++
	m.calls = AppendToolCall(m.calls, id, name, args)
}

// Calls returns how many tool calls were added.
func (m *Message) Calls() int { return m.nCalls }

// End ends the content and appends the message's refusal (null), its
// `"reasoning_content"`, the way DeepSeek, vLLM and litellm return a
// model's reasoning, when there is any, and its tool calls. The content is
// Answer as a JSON string when it is set, else the text, else null when
// the message calls tools, else "". content reports whether the message
// has any content (text, reasoning, answer or calls).
func (m *Message) End(dst []byte) (_ []byte, content bool) {
	switch {
	case m.Answer.Exists():
		dst = jsonenc.AppendString(dst[:m.start], m.Answer.Raw)
		content = true
	case m.nText > 0:
		dst = append(dst, '"')
		content = true
	case m.nCalls > 0:
		dst = append(dst, "null"...)
	default:
		dst = append(dst, `""`...)
	}
	dst = append(dst, `,"refusal":null`...)
	if len(m.reasoning) > 0 {
		dst = append(dst, `,"reasoning_content":"`...)
		dst = append(dst, m.reasoning...)
		dst = append(dst, '"')
		content = true
	}
	if m.nCalls > 0 {
		dst = append(dst, `,"tool_calls":[`...)
		dst = append(dst, m.calls...)
		dst = append(dst, ']')
		content = true
	}
	return dst, content
}

// ReasoningDelta opens a streamed delta that carries reasoning text: the
// caller appends a JSON string and `}` + Tail.
const ReasoningDelta = `{"reasoning_content":`

// AppendMessageEnd closes the message of a single-choice chat.completion
// (adding its empty annotations), writes finish_reason, closes choices and
// opens the usage: `,"annotations":[]},"logprobs":null,"finish_reason":
// reason}],"usage":`. The caller appends the usage object and the final '}'.
func AppendMessageEnd(dst []byte, reason string) []byte {
	dst = append(dst, `,"annotations":[]},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, reason...)
	return append(dst, `"}],"usage":`...)
}
