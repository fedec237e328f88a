package gemini

import (
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/internal/rpcstatus"
	"github.com/llmux/llmux/translate/openai"
)

// ParseError classifies a Google API error body,
// {"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED","details":[…]}}
// (the google.rpc.Status JSON of https://cloud.google.com/apis/design/errors;
// see rpcstatus), received with an HTTP status (0 for an error inside a 200
// body or a stream). Google wraps it in a one-element array in some stream
// responses; that form is accepted too. A RetryInfo detail becomes the
// error's RetryAfter. Anything else (an Envoy local reply, an HTML page) is
// classified by status.
func ParseError(status int, body []byte) *translate.Error {
	s := respbody.View(body)
	if gjson.Valid(s) {
		root := gjson.Parse(s)
		if root.IsArray() {
			root = root.Get("0")
		}
		if e := root.Get("error"); e.IsObject() {
			return rpcstatus.Parse(status, e)
		}
	}
	return openai.ParseError(status, body)
}

// truncate clones s, cut to a message's length on a rune boundary.
func truncate(s string) string { return translate.ClipMessage(s) }
