package processor

import (
	"errors"
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/processor/ijson"
	"github.com/llmux/llmux/translate"
)

// parsed is what the processor reads from a client body.
type parsed struct {
	model        string
	stream       bool
	includeUsage bool
}

func invalid(param, code, msg string) *translate.Error {
	return &translate.Error{Code: translate.CodeInvalidRequest, Param: param, OpenAICode: code, Message: msg}
}

// params are the top-level members validate reads, in the order of the
// spans ijson.CheckMembers reports.
var params = [...]string{"model", "messages", "stream", "stream_options", "input", "encoding_format"}

const (
	pModel = iota
	pMessages
	pStream
	pStreamOptions
	pInput
	pEncodingFormat
)

// validate checks a client body for the fields the gateway relies on.
// The body must be I-JSON: with no duplicate member names, invalid UTF-8
// or unpaired surrogates, gjson's first-wins reading, the translators'
// and the provider's last-wins reading are the same reading. The one pass
// that checks it (ijson.CheckMembers) also finds the top-level members
// read here, which are then read from their own bytes, with ijson's walk
// (messages) or gjson: no full unmarshal, no second scan of the body.
// Provider-specific checks are the translators' and the providers'
// business.
func validate(ep endpoint, body []byte) (parsed, *translate.Error) {
	var p parsed
	s := view(body)
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	if i == len(s) {
		return p, invalid("", "invalid_json", "The request body is empty; a JSON object is required.")
	}
	var spans [len(params)]ijson.Span
	if err := ijson.CheckMembers(body, params[:], spans[:]); err != nil {
		return p, notIJSON(err)
	}
	if s[i] != '{' {
		return p, invalid("", "invalid_type", "The request body must be a JSON object.")
	}
	// get is the member's value, as gjson.Get(s, name) would find it.
	get := func(k int) gjson.Result {
		if !spans[k].Found() {
			return gjson.Result{}
		}
		return gjson.Parse(s[spans[k].Start:spans[k].End])
	}
	m := get(pModel)
	switch {
	case !m.Exists() || m.Type == gjson.Null:
		return p, invalid("model", "missing_required_parameter", "you must provide a model parameter")
	case m.Type != gjson.String:
		return p, invalid("model", "invalid_type", "Invalid type for 'model': expected a string.")
	case m.Str == "":
		return p, invalid("model", "missing_required_parameter", "you must provide a model parameter")
	}
	p.model = m.Str

	switch ep {
	case epChat:
		msgs := spans[pMessages]
		switch {
		case !msgs.Found():
			return p, invalid("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
		case body[msgs.Start] != '[':
			return p, invalid("messages", "invalid_type", "Invalid type for 'messages': expected an array of objects.")
		}
		n := 0
		for v := range ijson.Elements(body[msgs.Start:msgs.End]) {
			if len(v) == 0 || v[0] != '{' {
				return p, invalid("messages", "invalid_type", "Invalid type for 'messages': every message must be an object.")
			}
			// A string other than "" (an I-JSON string of more than its
			// quotes is not empty once unescaped).
			if r, _ := ijson.Member(v, "role"); len(r) <= 2 || r[0] != '"' {
				return p, invalid("messages", "missing_required_parameter", "Every message needs a string 'role'.")
			}
			n++
		}
		if n == 0 {
			return p, invalid("messages", "empty_array", "Invalid 'messages': empty array. Expected an array with minimum length 1.")
		}
		if st := get(pStream); st.Exists() && st.Type != gjson.Null {
			if st.Type != gjson.True && st.Type != gjson.False {
				return p, invalid("stream", "invalid_type", "Invalid type for 'stream': expected a boolean.")
			}
			p.stream = st.Bool()
		}
		if so := get(pStreamOptions); so.Exists() && so.Type != gjson.Null {
			if !so.IsObject() {
				return p, invalid("stream_options", "invalid_type", "Invalid type for 'stream_options': expected an object.")
			}
			if !p.stream {
				return p, invalid("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
			}
			if iu := so.Get("include_usage"); iu.Exists() {
				if iu.Type != gjson.True && iu.Type != gjson.False {
					return p, invalid("stream_options.include_usage", "invalid_type", "Invalid type for 'stream_options.include_usage': expected a boolean.")
				}
				p.includeUsage = iu.Bool()
			}
		}
	case epEmbeddings:
		in := get(pInput)
		switch {
		case !in.Exists() || in.Type == gjson.Null:
			return p, invalid("input", "missing_required_parameter", "Missing required parameter: 'input'.")
		case in.Type != gjson.String && !in.IsArray():
			return p, invalid("input", "invalid_type", "Invalid type for 'input': expected a string or an array.")
		case in.IsArray() && !in.Get("0").Exists():
			return p, invalid("input", "empty_array", "Invalid 'input': empty array. Expected an array with minimum length 1.")
		}
		if ef := get(pEncodingFormat); ef.Exists() && ef.Str != "float" && ef.Str != "base64" {
			return p, invalid("encoding_format", "invalid_value", "Invalid 'encoding_format': expected 'float' or 'base64'.")
		}
	}
	return p, nil
}

// notIJSON is the 400 for a body ijson.Check refused. The code names the
// kind of violation; param and message name the member by its path, which
// ijson bounds (a few dozen bytes of any one name), so the reply never
// echoes more than a short piece of the client's content.
func notIJSON(err error) *translate.Error {
	var e *ijson.Error
	if !errors.As(err, &e) {
		return invalid("", "invalid_json", "We could not parse the JSON body of your request.")
	}
	where := ""
	if e.Path != "" {
		where = fmt.Sprintf(" in '%s'", e.Path)
	}
	switch e.Kind {
	case ijson.Duplicate:
		return invalid(e.Path, "duplicate_parameter", fmt.Sprintf("Duplicate parameter '%s' (byte %d): a member name may appear only once in an object, also when written with escapes (I-JSON, RFC 7493).", e.Path, e.Offset))
	case ijson.UTF8:
		return invalid(e.Path, "invalid_utf8", fmt.Sprintf("The request body is not valid UTF-8: invalid byte at offset %d%s.", e.Offset, where))
	case ijson.Surrogate:
		return invalid(e.Path, "invalid_unicode_escape", fmt.Sprintf("The request body has an unpaired UTF-16 surrogate escape at byte %d%s; a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one.", e.Offset, where))
	case ijson.Depth:
		return invalid(e.Path, "nesting_too_deep", fmt.Sprintf("The request body nests arrays and objects more than %d deep, at byte %d%s.", ijson.MaxDepth, e.Offset, where))
	}
	return invalid(e.Path, "invalid_json", fmt.Sprintf("We could not parse the JSON body of your request: syntax error at byte %d%s. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)", e.Offset, where))
}
