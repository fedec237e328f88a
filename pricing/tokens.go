package pricing

import (
	"unsafe"

	"github.com/llmux/llmux/translate"
)

// Token estimate parameters.
const (
	// Per-message and per-request overheads of OpenAI's chat format
	// (role and separators; the reply's priming).
	tokensPerMessage = 3
	tokensPerName    = 1
	tokensPerReply   = 3
	// Image parts: OpenAI's price of a low-detail image, and of a
	// high-detail 1024×1024 one (the size is not in the request).
	tokensImageLow  = 85
	tokensImageHigh = 765
	// tokensAudioPart is a guess for an input_audio or file part, whose
	// length the request does not say.
	tokensAudioPart = 200
)

// EstimateInputTokens estimates the input tokens of an OpenAI request body
// as OpenAI's o200k_base tokenizer counts them: for chat, the text of
// every message (string content and text parts, names, tool calls' names
// and arguments, tool results), the tools' and response format's JSON,
// OpenAI's per-message overheads and a fixed count per image or audio
// part; for embeddings, the input strings (token arrays are counted as
// they are). The text is not tokenized: one pass classifies its pieces
// (words by script, case and length, digit groups, punctuation,
// whitespace) and charges each the mean o200k count of its class, which
// is within a few percent of the real count on prose, code and JSON in
// many languages (docs/pricing.md has the table). It neither allocates
// nor keeps the body. Other models' tokenizers count the same text
// differently: see docs/pricing.md. A body that is not a JSON object
// gives 0.
func EstimateInputTokens(op translate.Operation, body []byte) int64 {
	root := bytesString(body)
	if i := skipSpace(root, 0); i >= len(root) || root[i] != '{' {
		return 0
	}
	if op == translate.OpEmbeddings {
		return embeddingTokens(member(root, "input"))
	}
	return chatTokens(root)
}

// chatTokens counts a chat request.
func chatTokens(root string) int64 {
	n := int64(tokensPerReply)
	eachMember(root, func(key, val string) bool {
		switch key {
		case "messages":
			eachElement(val, func(m string) bool {
				n += tokensPerMessage + messageTokens(m)
				return true
			})
		case "tools":
			eachElement(val, func(tool string) bool {
				n += rawTokens(member(tool, "function"))
				return true
			})
		case "response_format":
			n += rawTokens(member(val, "json_schema"))
		}
		return true
	})
	return n
}

// messageTokens counts a chat message.
func messageTokens(m string) int64 {
	var n int64
	eachMember(m, func(key, val string) bool {
		switch key {
		case "name":
			n += tokensPerName + stringTokens(val)
		case "content", "refusal":
			n += contentTokens(val)
		case "tool_calls":
			eachElement(val, func(c string) bool {
				n += functionTokens(member(c, "function"))
				return true
			})
		case "function_call":
			n += functionTokens(val)
		}
		return true
	})
	return n
}

// functionTokens counts a function call's name and arguments.
func functionTokens(f string) int64 {
	var n int64
	eachMember(f, func(key, val string) bool {
		if key == "name" || key == "arguments" {
			n += stringTokens(val)
		}
		return true
	})
	return n
}

// contentTokens counts a message content (a string or an array of parts).
func contentTokens(v string) int64 {
	if v == "" || v[0] != '[' {
		return stringTokens(v)
	}
	var n int64
	eachElement(v, func(p string) bool {
		var typ, text, detail string
		eachMember(p, func(key, val string) bool {
			switch key {
			case "type":
				typ, _ = stringValue(val)
			case "text", "refusal":
				text = val
			case "image_url":
				detail, _ = stringValue(member(val, "detail"))
			}
			return true
		})
		switch typ {
		case "text", "refusal":
			n += stringTokens(text)
		case "image_url":
			if detail == "low" {
				n += tokensImageLow
			} else {
				n += tokensImageHigh
			}
		case "input_audio", "file":
			n += tokensAudioPart
		}
		return true
	})
	return n
}

// embeddingTokens counts an embeddings input: a string, an array of
// strings, an array of token ids or an array of such arrays.
func embeddingTokens(in string) int64 {
	if in == "" || in[0] != '[' {
		return stringTokens(in)
	}
	var n int64
	eachElement(in, func(v string) bool {
		switch {
		case v[0] == '"':
			n += stringTokens(v)
		case v[0] == '[':
			eachElement(v, func(string) bool { n++; return true })
		case v[0] == '-' || v[0] >= '0' && v[0] <= '9':
			n++
		}
		return true
	})
	return n
}

// stringTokens counts the text of a raw JSON string value, reading its
// literal (escapes decoded on the fly, so nothing is copied); other
// values count 0.
func stringTokens(val string) int64 {
	s, ok := stringValue(val)
	if !ok {
		return 0
	}
	return countJSONString(s)
}

// EstimateTextTokens estimates the o200k tokens of text written as the
// inside of a JSON string (escapes decoded on the fly), as
// EstimateInputTokens counts message text: what a stream had sent when it
// failed, for instance. It does not allocate.
func EstimateTextTokens(jsonText string) int64 { return countJSONString(jsonText) }

// rawTokens counts a JSON value's text as it is written.
func rawTokens(val string) int64 { return countText(stringBytes(val)) }

// bytesString views b as a string without copying; b must not change
// while the string is in use.
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// stringBytes views s as bytes without copying; they must not be written.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
