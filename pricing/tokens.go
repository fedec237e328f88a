package pricing

import (
	"sync"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tiktoken-go/tokenizer"

	"github.com/llmux/llmux/translate"
)

// Token estimate parameters.
const (
	// SampleWindows and WindowBytes bound the text EstimateInputTokens
	// tokenizes: text up to SampleWindows×WindowBytes bytes is tokenized
	// whole; longer text is sampled in SampleWindows evenly spaced windows
	// and the tokens per byte extrapolated (o200k tokenizes at 0.15–0.3 µs
	// per byte, so a 100 KB prompt would cost 50 ms whole; see
	// docs/pricing.md).
	SampleWindows = 16
	WindowBytes   = 128
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

var (
	codecOnce sync.Once
	codec     tokenizer.Codec
)

func getCodec() tokenizer.Codec {
	codecOnce.Do(func() {
		c, err := tokenizer.Get(tokenizer.O200kBase)
		if err == nil {
			codec = c
		}
	})
	return codec
}

// WarmTokenizer loads the tokenizer's vocabulary (about 0.1 s and 30 MB
// the first time), so that the first EstimateInputTokens does not pay it.
func WarmTokenizer() { getCodec() }

// textBuf collects the text of a request; pooled.
type textBuf struct{ b []byte }

var textPool = sync.Pool{New: func() any { return &textBuf{b: make([]byte, 0, 4096)} }}

// EstimateInputTokens estimates the input tokens of an OpenAI request body
// with OpenAI's o200k_base tokenizer: for chat, the text of every message
// (string content and text parts, names, tool calls' names and arguments,
// tool results), the tools' and response format's JSON, OpenAI's
// per-message overheads and a fixed count per image or audio part; for
// embeddings, the input strings (token arrays are counted as they are).
// Long text is sampled (SampleWindows, WindowBytes). Other models'
// tokenizers count the same text differently: see docs/pricing.md for
// the error. A body that is not a JSON object gives 0.
func EstimateInputTokens(op translate.Operation, body []byte) int64 {
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return 0
	}
	tb := textPool.Get().(*textBuf)
	defer func() {
		if cap(tb.b) <= 1<<20 {
			tb.b = tb.b[:0]
			textPool.Put(tb)
		}
	}()
	var fixed int64
	switch op {
	case translate.OpEmbeddings:
		fixed = embeddingText(tb, root.Get("input"))
	default:
		fixed = chatText(tb, root)
	}
	return fixed + countTokens(tb.b)
}

// chatText appends a chat request's text to tb and returns the tokens
// counted without the tokenizer.
func chatText(tb *textBuf, root gjson.Result) int64 {
	fixed := int64(tokensPerReply)
	root.Get("messages").ForEach(func(_, m gjson.Result) bool {
		fixed += tokensPerMessage
		m.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "name":
				fixed += tokensPerName
				tb.add(v)
			case "content", "refusal":
				fixed += content(tb, v)
			case "tool_calls":
				v.ForEach(func(_, c gjson.Result) bool {
					f := c.Get("function")
					tb.add(f.Get("name"))
					tb.add(f.Get("arguments"))
					return true
				})
			case "function_call":
				tb.add(v.Get("name"))
				tb.add(v.Get("arguments"))
			}
			return true
		})
		return true
	})
	if t := root.Get("tools"); t.IsArray() {
		t.ForEach(func(_, tool gjson.Result) bool {
			tb.b = append(tb.b, tool.Get("function").Raw...)
			return true
		})
	}
	if rf := root.Get("response_format.json_schema"); rf.Exists() {
		tb.b = append(tb.b, rf.Raw...)
	}
	return fixed
}

// content appends a message content (a string or an array of parts).
func content(tb *textBuf, v gjson.Result) int64 {
	if !v.IsArray() {
		tb.add(v)
		return 0
	}
	var fixed int64
	v.ForEach(func(_, p gjson.Result) bool {
		switch p.Get("type").Str {
		case "text":
			tb.add(p.Get("text"))
		case "refusal":
			tb.add(p.Get("refusal"))
		case "image_url":
			if p.Get("image_url.detail").Str == "low" {
				fixed += tokensImageLow
			} else {
				fixed += tokensImageHigh
			}
		case "input_audio", "file":
			fixed += tokensAudioPart
		}
		return true
	})
	return fixed
}

// embeddingText appends an embeddings input (a string, an array of
// strings, an array of token ids or an array of such arrays) and returns
// the tokens counted as ids.
func embeddingText(tb *textBuf, in gjson.Result) int64 {
	if !in.IsArray() {
		tb.add(in)
		return 0
	}
	var ids int64
	in.ForEach(func(_, v gjson.Result) bool {
		switch {
		case v.Type == gjson.Number:
			ids++
		case v.IsArray():
			v.ForEach(func(_, _ gjson.Result) bool { ids++; return true })
		default:
			tb.add(v)
		}
		return true
	})
	return ids
}

// add appends a string value, separated from the previous text.
func (tb *textBuf) add(v gjson.Result) {
	if v.Type != gjson.String || v.Str == "" {
		return
	}
	if len(tb.b) > 0 {
		tb.b = append(tb.b, '\n')
	}
	tb.b = append(tb.b, v.Str...)
}

// countTokens counts the tokens of text, whole when it is short and by
// sampling when it is long.
func countTokens(text []byte) int64 {
	if len(text) == 0 {
		return 0
	}
	c := getCodec()
	if c == nil {
		return int64(len(text)+3) / 4 // the tokenizer failed to load: about 4 bytes a token
	}
	budget := SampleWindows * WindowBytes
	if len(text) <= budget {
		n, _ := c.Count(string(text))
		return int64(n)
	}
	var sampled, tokens int
	step := len(text) / SampleWindows
	for i := range SampleWindows {
		w := window(text, i*step, WindowBytes)
		n, _ := c.Count(string(w))
		sampled += len(w)
		tokens += n
	}
	if sampled == 0 {
		return int64(len(text)+3) / 4
	}
	return int64(float64(tokens) * float64(len(text)) / float64(sampled))
}

// window returns about n bytes of text from off, moved to start and end
// after a space where one is near (so words are not cut, which would count
// extra tokens) and always on UTF-8 boundaries.
func window(text []byte, off, n int) []byte {
	start := off
	for i := off; i < len(text) && i < off+32; i++ {
		if text[i] == ' ' || text[i] == '\n' {
			start = i
			break
		}
	}
	for start < len(text) && !utf8.RuneStart(text[start]) {
		start++
	}
	end := min(len(text), start+n)
	for i := end; i > start+n/2 && i < len(text); i-- {
		if text[i] == ' ' || text[i] == '\n' {
			end = i
			break
		}
	}
	for end < len(text) && end > start && !utf8.RuneStart(text[end]) {
		end--
	}
	return text[start:end]
}
