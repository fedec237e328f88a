package chatreq

import (
	"testing"

	"github.com/tidwall/gjson"
)

func TestBase64DataURL(t *testing.T) {
	for _, c := range []struct {
		url, mt, data string
		ok            bool
	}{
		{"data:image/png;base64,AAAA", "image/png", "AAAA", true},
		{"data: IMAGE/PNG ;base64,AA", " IMAGE/PNG ", "AA", true},
		{"data:;base64,AA", "", "AA", true},
		{"data:image/png;base64,", "", "", false},
		{"data:image/png,AAAA", "", "", false},
		{"data:image/png;base64", "", "", false},
		{"https://x/y.png", "", "", false},
	} {
		mt, data, ok := Base64DataURL(c.url)
		if mt != c.mt || data != c.data || ok != c.ok {
			t.Errorf("Base64DataURL(%q) = %q, %q, %v; want %q, %q, %v", c.url, mt, data, ok, c.mt, c.data, c.ok)
		}
	}
}

func TestOpenAIOnly(t *testing.T) {
	for _, c := range []struct {
		key, val    string
		handled, ok bool
	}{
		{"n", `1`, true, true},
		{"n", `2`, true, false},
		{"logprobs", `false`, true, true},
		{"logprobs", `true`, true, false},
		{"top_logprobs", `0`, true, true},
		{"presence_penalty", `0.5`, true, false},
		{"logit_bias", `{}`, true, true},
		{"logit_bias", `{"1":2}`, true, false},
		{"modalities", `["text"]`, true, true},
		{"modalities", `["text","audio"]`, true, false},
		{"audio", `{}`, true, false},
		{"function_call", `"auto"`, true, false},
		{"temperature", `1`, false, true},
	} {
		handled, err := OpenAIOnly(c.key, gjson.Parse(c.val), "P")
		if handled != c.handled || (err == nil) != c.ok {
			t.Errorf("OpenAIOnly(%s, %s) = %v, %v", c.key, c.val, handled, err)
		}
		if err != nil && err.Param != c.key {
			t.Errorf("OpenAIOnly(%s, %s): param %q", c.key, c.val, err.Param)
		}
	}
}
