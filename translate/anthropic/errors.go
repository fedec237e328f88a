package anthropic

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/openai"
)

// maxMessage bounds an error message copied from a provider body.
const maxMessage = 1024

// ParseError classifies an Anthropic error body
// {"type":"error","error":{"type","message"}} received with an HTTP status
// (0 for an in-band stream error). Bodies of another shape (an Envoy local
// reply, an HTML page) are classified as the OpenAI translator does, by
// status; 529 becomes 503 for the client.
func ParseError(status int, body []byte) *translate.Error {
	s := respbody.View(body)
	if gjson.Valid(s) {
		if e := gjson.Get(s, "error"); e.IsObject() {
			return parseErrorObject(status, e)
		}
	}
	e := openai.ParseError(status, body)
	e.Status = statusOr(status, e.Code)
	return e
}

func statusOr(status int, code translate.Code) int {
	if status == 529 {
		return 503
	}
	if status >= 400 {
		return status
	}
	return code.Status()
}

// parseErrorObject classifies Anthropic's error object {"type","message"}.
func parseErrorObject(status int, e gjson.Result) *translate.Error {
	typ := e.Get("type").Str
	msg := e.Get("message").Str
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	code, oc := translate.CodeForStatus(status), ""
	if status == 0 {
		code = translate.CodeInternal
	}
	switch typ {
	case "invalid_request_error":
		code = translate.CodeInvalidRequest
		if l := strings.ToLower(msg); strings.Contains(l, "prompt is too long") || strings.Contains(l, "exceed context limit") || strings.Contains(l, "context window") {
			code, oc = translate.CodeContextLengthExceeded, "context_length_exceeded"
		}
	case "authentication_error":
		code, oc = translate.CodeAuthentication, "invalid_api_key"
	case "permission_error":
		code = translate.CodePermissionDenied
	case "not_found_error":
		code = translate.CodeNotFound
		if strings.Contains(strings.ToLower(msg), "model") {
			oc = "model_not_found"
		}
	case "request_too_large":
		code = translate.CodeRequestTooLarge
	case "rate_limit_error":
		code, oc = translate.CodeRateLimited, "rate_limit_exceeded"
	case "billing_error":
		code, oc = translate.CodeQuotaExhausted, "insufficient_quota"
	case "api_error":
		code = translate.CodeUpstreamUnavailable
	case "overloaded_error":
		code = translate.CodeOverloaded
	case "timeout_error":
		code = translate.CodeTimeout
	}
	if msg == "" {
		msg = "Anthropic returned " + typ
		if typ == "" {
			msg = "Anthropic returned an error"
		}
	}
	return &translate.Error{Code: code, Status: statusOr(status, code), Message: strings.Clone(msg), OpenAICode: oc}
}
