package gemini

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chatreq"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/jsonenc"
)

// buildEmbeddings translates an OpenAI embeddings body. AI Studio gets
// batchEmbedContents ({"requests":[{"model","content":{"parts":[{"text"}]},
// "outputDimensionality"}]}); Vertex gets predict ({"instances":[{"content"}],
// "parameters":{"outputDimensionality"}}).
func buildEmbeddings(s, model string, vertex bool, st *state) ([]byte, *translate.Error) {
	root := gjson.Parse(s)
	var bad *translate.Error
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model", "input", "dimensions", "encoding_format", "user":
		default:
			if !chatreq.IsNull(v) {
				bad = unsupported(k.Str, "Unrecognized or unsupported parameter '"+k.Str+"' for a Gemini embeddings deployment.")
			}
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	st.base64 = root.Get("encoding_format").Str == "base64"
	var inputs []gjson.Result
	in := root.Get("input")
	switch {
	case in.Type == gjson.String:
		inputs = append(inputs, in)
	case in.IsArray():
		in.ForEach(func(_, v gjson.Result) bool {
			if v.Type != gjson.String {
				bad = unsupported("input", "Gemini embeds text only; token arrays are not supported.")
				return false
			}
			inputs = append(inputs, v)
			return true
		})
	default:
		bad = chatreq.TypeErr("input", "a string or an array of strings")
	}
	if bad != nil {
		return nil, bad
	}
	if len(inputs) == 0 {
		return nil, chatreq.Invalid("input", "'input' must not be empty.")
	}
	if len(inputs) > 250 {
		return nil, chatreq.Invalid("input", fmt.Sprintf("Gemini embeds at most 250 inputs per request, got %d.", len(inputs)))
	}
	dims := root.Get("dimensions")
	if !chatreq.IsNull(dims) && (dims.Type != gjson.Number || dims.Num < 1 || dims.Num != float64(int64(dims.Num))) {
		return nil, chatreq.Invalid("dimensions", "'dimensions' must be a positive integer.")
	}
	for _, v := range inputs {
		if v.Str == "" {
			return nil, chatreq.Invalid("input", "'input' must not contain empty strings.")
		}
		st.inputTokens += estimateTokens(v.Str)
	}
	out := make([]byte, 0, len(s)+64*len(inputs))
	if vertex {
		out = append(out, `{"instances":[`...)
		for i, v := range inputs {
			if i > 0 {
				out = append(out, ',')
			}
			out = append(out, `{"content":`...)
			out = append(out, v.Raw...)
			out = append(out, '}')
		}
		out = append(out, ']')
		if !chatreq.IsNull(dims) {
			out = append(out, `,"parameters":{"outputDimensionality":`...)
			out = jsonenc.AppendInt(out, dims.Int())
			out = append(out, '}')
		}
		return append(out, '}'), nil
	}
	out = append(out, `{"requests":[`...)
	for i, v := range inputs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"model":"models/`...)
		out = append(out, model...)
		out = append(out, `","content":{"parts":[{"text":`...)
		out = append(out, v.Raw...)
		out = append(out, `}]}`...)
		if !chatreq.IsNull(dims) {
			out = append(out, `,"outputDimensionality":`...)
			out = jsonenc.AppendInt(out, dims.Int())
		}
		out = append(out, '}')
	}
	return append(out, "]}"...), nil
}

// estimateTokens estimates the tokens of text the way Google's docs give as
// a rule of thumb (about 4 characters per token), rounding up.
func estimateTokens(text string) int64 {
	n := int64(0)
	for range text {
		n++
	}
	return (n + 3) / 4
}

// embedDecoder turns a batchEmbedContents or predict response into an
// OpenAI embeddings list.
type embedDecoder struct {
	st     state
	status int
	whole  respbody.Whole
	res    translate.Result
}

func (d *embedDecoder) ContentType() string       { return "application/json" }
func (d *embedDecoder) Status() int               { return d.status }
func (d *embedDecoder) Result() *translate.Result { return &d.res }

func (d *embedDecoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	if ready, err := d.whole.Add(src, final, &d.res); !ready {
		return dst, err
	}
	body := respbody.View(d.whole.Buf)
	if d.status >= 400 {
		d.res.Err = ParseError(d.status, d.whole.Buf)
		return d.res.Err.AppendJSON(dst), nil
	}
	if !gjson.Valid(body) {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned an invalid JSON body"}
		return d.res.Err.AppendJSON(dst), nil
	}
	if e := gjson.Get(body, "error"); e.Exists() {
		d.res.Err = ParseError(0, d.whole.Buf)
		return d.res.Err.AppendJSON(dst), nil
	}
	var list gjson.Result
	vertex := false
	if p := gjson.Get(body, "predictions"); p.IsArray() {
		list, vertex = p, true
	} else {
		list = gjson.Get(body, "embeddings")
	}
	if !list.IsArray() {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream embeddings response has no embeddings"}
		return d.res.Err.AppendJSON(dst), nil
	}
	var tokens int64
	start := len(dst)
	dst = append(dst, `{"object":"list","data":[`...)
	i := 0
	var bad bool
	list.ForEach(func(_, item gjson.Result) bool {
		values := item.Get("values")
		if vertex {
			values = item.Get("embeddings.values")
			tokens += item.Get("embeddings.statistics.token_count").Int()
		}
		if !values.IsArray() {
			bad = true
			return false
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"object":"embedding","index":`...)
		dst = jsonenc.AppendInt(dst, int64(i))
		dst = append(dst, `,"embedding":`...)
		if d.st.base64 {
			dst = appendBase64Floats(dst, values)
		} else {
			dst = append(dst, values.Raw...)
		}
		dst = append(dst, '}')
		i++
		return true
	})
	if bad {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream embedding has no values"}
		return d.res.Err.AppendJSON(dst[:start]), nil
	}
	if !vertex {
		// AI Studio reports no token count: the estimate made from the
		// input (about 4 characters per token) is reported instead.
		tokens = d.st.inputTokens
	}
	dst = append(dst, `],"model":`...)
	dst = jsonenc.AppendString(dst, d.st.model)
	dst = append(dst, `,"usage":{"prompt_tokens":`...)
	dst = jsonenc.AppendInt(dst, tokens)
	dst = append(dst, `,"total_tokens":`...)
	dst = jsonenc.AppendInt(dst, tokens)
	dst = append(dst, "}}"...)
	d.res.HasUsage = true
	d.res.Usage.InputTokens = tokens
	d.res.Model = d.st.model
	d.res.FirstContent = true
	d.res.Completed = true
	return dst, nil
}

// appendBase64Floats appends the values as a base64 string of
// little-endian float32s, as OpenAI's encoding_format "base64" does.
func appendBase64Floats(dst []byte, values gjson.Result) []byte {
	var raw []byte
	values.ForEach(func(_, v gjson.Result) bool {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v.Float())))
		return true
	})
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, raw)
	return append(dst, '"')
}
