package anthropic

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/internal/rpcstatus"
	"github.com/llmux/llmux/translate/openai"
)

// maxMessage bounds an error message copied from a provider body.
const maxMessage = 1024

// ParseError classifies an Anthropic error body
// {"type":"error","error":{"type","message"}} received with an HTTP status
// (0 for an in-band stream error). Bodies of another shape (an Envoy local
// reply, an HTML page) are classified as the OpenAI translator does, by
// status; 529 becomes 503 for the client.
//
// Claude on Vertex AI also answers with Google's front end's errors
// (google.rpc.Status: 429 RESOURCE_EXHAUSTED quotas, 401, 403, 404), which
// are classified as Gemini's are, RetryInfo included.
func ParseError(status int, body []byte) *translate.Error {
	s := respbody.View(body)
	if gjson.Valid(s) {
		root := gjson.Parse(s)
		if root.IsArray() {
			root = root.Get("0") // Google's stream responses wrap the error
		}
		if e := root.Get("error"); rpcstatus.Is(e) {
			return rpcstatus.Parse(status, e)
		} else if e.IsObject() {
			return parseErrorObject(status, e)
		}
	}
	e := openai.ParseError(status, body)
	if !e.Code.Uniform() {
		e.Status = statusOr(status, e.Code)
	}
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
	// An unknown type: the status, or (in a stream) a provider failure.
	code, oc := translate.CodeForProviderStatus(status), ""
	if status == 0 {
		code = translate.CodeUpstreamError
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
		// 500 "Internal server error". Anthropic documents no 503; one
		// that comes with an api_error body is the provider saying it
		// cannot serve now, as Google's and OpenAI's 503 do.
		code = translate.CodeUpstreamError
		if status == 503 {
			code = translate.CodeOverloaded
		}
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
	return (&translate.Error{Code: code, Status: statusOr(status, code), Message: strings.Clone(msg), OpenAICode: oc}).Uniform()
}
