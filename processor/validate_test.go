package processor

import (
	"reflect"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/processor/ijson"
	"github.com/llmux/llmux/translate"
)

// FuzzValidate holds validate, which reads the parameters from the spans
// ijson.CheckMembers finds and walks messages with ijson.Elements and
// Member, to the reading it replaced: the same check, then one gjson.Get
// of the whole body per parameter. Both give the same result and the
// same error for every body.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
		` { "mod\u0065l" : "m\u0031" , "messages" : [ {"content":"x","r\u006fle":"user"} , {"role":"\u0000"} ] , "stream" : false } `,
		`{"model":"m","messages":[{"role":""}]}`,
		`{"model":"m","messages":[{"role":1}]}`,
		`{"model":"m","messages":[{"role":"user"},[]]}`,
		`{"model":"m","messages":[{"role":"user"},"x"]}`,
		`{"model":"m","messages":[]}`,
		`{"model":"m","messages":{}}`,
		`{"model":"m","messages":null}`,
		`{"model":"","messages":[{"role":"user"}]}`,
		`{"model":null}`,
		`{"model":["m"]}`,
		`{"model":"m","messages":[{"role":"user"}],"stream":"yes"}`,
		`{"model":"m","messages":[{"role":"user"}],"stream":null,"stream_options":null}`,
		`{"model":"m","messages":[{"role":"user"}],"stream_options":{"include_usage":true}}`,
		`{"model":"m","messages":[{"role":"user"}],"stream":true,"stream_options":{"include_usage":1}}`,
		`{"model":"m","messages":[{"role":"user"}],"stream":true,"stream_options":[]}`,
		`{"model":"m","input":"a","encoding_format":"base64"}`,
		`{"model":"m","input":[],"encoding_format":"float"}`,
		`{"model":"m","input":[1],"encoding_format":"hex"}`,
		`{"model":"m","input":{}}`,
		`{"model":"m","input":null}`,
		`{"model":"m","messages":[{"role":"user"}],"model":"n"}`,
		`[{"model":"m"}]`,
		`"x"`,
		``,
		" \n",
		`{"model":"m"`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, embeddings bool) {
		ep := epChat
		if embeddings {
			ep = epEmbeddings
		}
		p, e := validate(ep, body)
		wp, we := validateGJSON(ep, body)
		if p != wp || !reflect.DeepEqual(e, we) {
			t.Fatalf("validate: %+v, %+v; with gjson: %+v, %+v", p, e, wp, we)
		}
	})
}

// validateGJSON is validate as it was before the spans: the body checked,
// then read with one gjson.Get of the whole body per parameter.
func validateGJSON(ep endpoint, body []byte) (parsed, *translate.Error) {
	var p parsed
	s := view(body)
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	if i == len(s) {
		return p, invalid("", "invalid_json", "The request body is empty; a JSON object is required.")
	}
	if err := ijson.Check(body); err != nil {
		return p, notIJSON(err)
	}
	if s[i] != '{' {
		return p, invalid("", "invalid_type", "The request body must be a JSON object.")
	}
	m := gjson.Get(s, "model")
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
		msgs := gjson.Get(s, "messages")
		switch {
		case !msgs.Exists():
			return p, invalid("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
		case !msgs.IsArray():
			return p, invalid("messages", "invalid_type", "Invalid type for 'messages': expected an array of objects.")
		}
		n := 0
		var bad *translate.Error
		msgs.ForEach(func(_, v gjson.Result) bool {
			if !v.IsObject() {
				bad = invalid("messages", "invalid_type", "Invalid type for 'messages': every message must be an object.")
				return false
			}
			if r := v.Get("role"); r.Type != gjson.String || r.Str == "" {
				bad = invalid("messages", "missing_required_parameter", "Every message needs a string 'role'.")
				return false
			}
			n++
			return true
		})
		if bad != nil {
			return p, bad
		}
		if n == 0 {
			return p, invalid("messages", "empty_array", "Invalid 'messages': empty array. Expected an array with minimum length 1.")
		}
		if st := gjson.Get(s, "stream"); st.Exists() && st.Type != gjson.Null {
			if st.Type != gjson.True && st.Type != gjson.False {
				return p, invalid("stream", "invalid_type", "Invalid type for 'stream': expected a boolean.")
			}
			p.stream = st.Bool()
		}
		if so := gjson.Get(s, "stream_options"); so.Exists() && so.Type != gjson.Null {
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
		in := gjson.Get(s, "input")
		switch {
		case !in.Exists() || in.Type == gjson.Null:
			return p, invalid("input", "missing_required_parameter", "Missing required parameter: 'input'.")
		case in.Type != gjson.String && !in.IsArray():
			return p, invalid("input", "invalid_type", "Invalid type for 'input': expected a string or an array.")
		case in.IsArray() && !in.Get("0").Exists():
			return p, invalid("input", "empty_array", "Invalid 'input': empty array. Expected an array with minimum length 1.")
		}
		if ef := gjson.Get(s, "encoding_format"); ef.Exists() && ef.Str != "float" && ef.Str != "base64" {
			return p, invalid("encoding_format", "invalid_value", "Invalid 'encoding_format': expected 'float' or 'base64'.")
		}
	}
	return p, nil
}
