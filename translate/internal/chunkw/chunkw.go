// Package chunkw writes the pieces of OpenAI chat.completion and
// chat.completion.chunk JSON that the provider decoders share. Every
// function appends to dst and allocates nothing beyond dst's growth, so a
// decoder that reuses its buffers stays allocation-free per chunk.
package chunkw

import (
	"strconv"

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

// AppendMessageEnd closes the message of a single-choice chat.completion
// (adding its empty annotations), writes finish_reason, closes choices and
// opens the usage: `,"annotations":[]},"logprobs":null,"finish_reason":
// reason}],"usage":`. The caller appends the usage object and the final '}'.
func AppendMessageEnd(dst []byte, reason string) []byte {
	dst = append(dst, `,"annotations":[]},"logprobs":null,"finish_reason":"`...)
	dst = append(dst, reason...)
	return append(dst, `"}],"usage":`...)
}
