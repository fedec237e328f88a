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

func TestClaudeThinking(t *testing.T) {
	for _, tc := range []struct {
		effort string
		budget int64
		bad    bool
	}{{`null`, 0, false}, {`"none"`, 0, false}, {`"minimal"`, 1024, false}, {`"low"`, 2048, false}, {`"medium"`, 8192, false}, {`"high"`, 24576, false}, {`"xhigh"`, 0, true}, {`3`, 0, true}} {
		b, err := ClaudeThinking(gjson.Parse(tc.effort))
		if b != tc.budget || (err != nil) != tc.bad || (err != nil && err.Param != "reasoning_effort") {
			t.Errorf("%s: %d %v", tc.effort, b, err)
		}
	}
	for _, tc := range []struct {
		budget, max, wantBudget, wantMax int64
		bad                              bool
	}{
		{8192, 0, 8192, 8192 + 4096, false}, // no client limit: room for the answer
		{8192, 9000, 8192, 9000, false},
		{8192, 8192, 4096, 8192, false}, // halved to fit
		{24576, 1500, 1024, 1500, false},
		{1024, 1024, 0, 0, true},
	} {
		b, m, err := ClaudeThinkingFit(tc.budget, tc.max, 4096, "max_tokens")
		if b != tc.wantBudget || m != tc.wantMax || (err != nil) != tc.bad || (err != nil && err.Param != "max_tokens") {
			t.Errorf("%+v: %d %d %v", tc, b, m, err)
		}
		if err == nil && m <= b {
			t.Errorf("%+v: max_tokens %d not above the budget %d", tc, m, b)
		}
	}
	p := gjson.Parse
	for _, tc := range []struct {
		temp, topP, topK, choice, format, param string
	}{
		{`1`, `0.95`, ``, `"auto"`, `{"type":"text"}`, ""},
		{`0.7`, ``, ``, ``, ``, "temperature"},
		{``, ``, `5`, ``, ``, "top_k"},
		{``, `0.5`, ``, ``, ``, "top_p"},
		{``, ``, ``, `"required"`, ``, "tool_choice"},
		{``, ``, ``, `{"type":"function","function":{"name":"f"}}`, ``, "tool_choice"},
		{``, ``, ``, ``, `{"type":"json_object"}`, "response_format"},
	} {
		err := ClaudeThinkingConflicts(p(tc.temp), p(tc.topP), p(tc.topK), p(tc.choice), p(tc.format))
		if (tc.param == "") != (err == nil) || (err != nil && err.Param != tc.param) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
}
