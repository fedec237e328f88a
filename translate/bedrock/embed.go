package bedrock

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chatreq"
	"github.com/llmux/llmux/translate/jsonenc"
)

// embedKind is the embeddings model family, chosen from the model id.
type embedKind uint8

const (
	embedNone embedKind = iota
	// embedTitan is Amazon Titan Text Embeddings (one input per call).
	embedTitan
	// embedCohere is Cohere Embed (a list of texts per call).
	embedCohere
)

// CohereInputType is the input_type sent to Cohere Embed: the OpenAI API
// has no such field, and "search_document" is right for the common use
// (embedding documents to index).
const CohereInputType = "search_document"

// titanV2Dimensions are the output sizes Titan Text Embeddings v2 offers.
var titanV2Dimensions = map[int64]bool{256: true, 512: true, 1024: true}

// embedRequest translates an OpenAI embeddings body into an InvokeModel
// body for model, and records in st what the decoder needs.
func embedRequest(s, model string, st *state) ([]byte, *translate.Error) {
	switch {
	case strings.Contains(model, "titan-embed"):
		st.embed = embedTitan
	case strings.Contains(model, "cohere.embed"):
		st.embed = embedCohere
	default:
		return nil, &translate.Error{Code: translate.CodeInvalidRequest, Param: "model", OpenAICode: "unsupported_model",
			Message: "Bedrock model '" + model + "' is not a supported embeddings model (Amazon Titan Text Embeddings or Cohere Embed)."}
	}
	var input, dims, format gjson.Result
	var bad *translate.Error
	gjson.Parse(s).ForEach(func(k, v gjson.Result) bool {
		if chatreq.IsNull(v) {
			return true
		}
		switch k.Str {
		case "model", "user":
		case "input":
			input = v
		case "dimensions":
			dims = v
		case "encoding_format":
			format = v
		default:
			bad = chatreq.Unsupported(k.Str, "Unrecognized request argument supplied: "+k.Str+" (not supported for Bedrock embeddings).")
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	switch format.Str {
	case "", "float":
	case "base64":
		st.base64 = true
	default:
		return nil, chatreq.Invalid("encoding_format", "'encoding_format' must be 'float' or 'base64'.")
	}
	var texts []string
	switch {
	case input.Type == gjson.String:
		texts = append(texts, input.Str)
	case input.IsArray():
		j := 0
		input.ForEach(func(_, v gjson.Result) bool {
			if v.Type != gjson.String {
				bad = chatreq.Unsupported("input["+strconv.Itoa(j)+"]", "Bedrock embeddings take text; token arrays are not supported.")
				return false
			}
			texts = append(texts, v.Str)
			j++
			return true
		})
		if bad != nil {
			return nil, bad
		}
	default:
		return nil, chatreq.TypeErr("input", "a string or an array of strings")
	}
	if len(texts) == 0 {
		return nil, chatreq.Invalid("input", "'input' must not be empty.")
	}
	out := make([]byte, 0, len(s)+64)
	if st.embed == embedTitan {
		if len(texts) > 1 {
			return nil, &translate.Error{Code: translate.CodeInvalidRequest, Param: "input", OpenAICode: "invalid_value",
				Message: "Amazon Titan Text Embeddings takes one input per request; got " + strconv.Itoa(len(texts)) + ". Send one string (or a one-element array) per request, or use a Cohere Embed model for batches."}
		}
		v2 := strings.Contains(model, "titan-embed-text-v2")
		out = append(out, `{"inputText":`...)
		out = jsonenc.AppendString(out, texts[0])
		if dims.Exists() {
			n, ok := chatreq.IntValue(dims)
			if !v2 || !ok || !titanV2Dimensions[n] {
				return nil, chatreq.Invalid("dimensions", "Amazon Titan Text Embeddings v2 supports 'dimensions' 256, 512 or 1024 (v1 has a fixed size).")
			}
			out = append(out, `,"dimensions":`...)
			out = strconv.AppendInt(out, n, 10)
		}
		if v2 {
			// OpenAI's embeddings are unit vectors; so are these.
			out = append(out, `,"normalize":true`...)
		}
		return append(out, '}'), nil
	}
	if dims.Exists() {
		return nil, chatreq.Unsupported("dimensions", "Cohere Embed on Bedrock has a fixed output size; 'dimensions' is not supported.")
	}
	out = append(out, `{"texts":[`...)
	for i, t := range texts {
		if i > 0 {
			out = append(out, ',')
		}
		out = jsonenc.AppendString(out, t)
	}
	out = append(out, `],"input_type":"`+CohereInputType+`"}`...)
	return out, nil
}

// embedResponse converts a Titan or Cohere InvokeModel response into an
// OpenAI embeddings list.
func (d *decoder) embedResponse(dst []byte, body string) []byte {
	root := gjson.Parse(body)
	var vectors []gjson.Result
	var tokens int64
	switch d.st.embed {
	case embedTitan:
		if e := root.Get("embedding"); e.IsArray() {
			vectors = append(vectors, e)
		}
		tokens = root.Get("inputTextTokenCount").Int()
		d.res.HasUsage = root.Get("inputTextTokenCount").Exists()
	case embedCohere:
		e := root.Get("embeddings")
		if e.IsObject() { // embeddings_by_type
			e = e.Get("float")
		}
		e.ForEach(func(_, v gjson.Result) bool {
			vectors = append(vectors, v)
			return true
		})
		// Cohere Embed's body counts no tokens; InvokeModel reports them
		// in a response header.
		if d.headerTokens >= 0 {
			tokens = d.headerTokens
			d.res.HasUsage = true
		}
	}
	if len(vectors) == 0 {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "Bedrock returned no embeddings"}
		return d.res.Err.AppendJSON(dst)
	}
	start := len(dst)
	dst = append(dst, `{"object":"list","data":[`...)
	for i, v := range vectors {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"object":"embedding","index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"embedding":`...)
		ok := true
		if d.st.base64 {
			dst, ok = appendBase64(dst, v)
		} else {
			dst = append(dst, '[')
			n := 0
			v.ForEach(func(_, x gjson.Result) bool {
				if x.Type != gjson.Number {
					ok = false
					return false
				}
				if n > 0 {
					dst = append(dst, ',')
				}
				n++
				dst = append(dst, x.Raw...)
				return true
			})
			dst = append(dst, ']')
		}
		if !ok || !v.IsArray() {
			d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "Bedrock returned an embedding that is not an array of numbers"}
			return d.res.Err.AppendJSON(dst[:start])
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"model":`...)
	dst = jsonenc.AppendString(dst, d.st.model)
	dst = append(dst, `,"usage":{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, tokens, 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, tokens, 10)
	dst = append(dst, "}}"...)
	d.res.Usage.InputTokens = tokens
	d.res.Model = d.st.model
	d.res.FirstContent = true
	d.res.Completed = true
	return dst
}

// appendBase64 appends the vector as a JSON string: base64 of its float32
// values, little-endian, as OpenAI's encoding_format "base64" does.
func appendBase64(dst []byte, v gjson.Result) ([]byte, bool) {
	var raw []byte
	ok := true
	v.ForEach(func(_, x gjson.Result) bool {
		if x.Type != gjson.Number {
			ok = false
			return false
		}
		f, err := strconv.ParseFloat(x.Raw, 32)
		if err != nil {
			f = x.Num
		}
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(f)))
		return true
	})
	if !ok {
		return dst, false
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, raw)
	return append(dst, '"'), true
}
