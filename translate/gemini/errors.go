package gemini

import (
	"fmt"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/openai"
)

// maxMessage bounds an error message copied from a provider body.
const maxMessage = 512

// ParseError classifies a Google API error body,
// {"error":{"code":429,"message":"…","status":"RESOURCE_EXHAUSTED","details":[…]}}
// (the google.rpc.Status JSON of cloud.google.com/apis/design/errors),
// received with an HTTP status (0 for an error inside a 200 body or a
// stream). Google wraps it in a one-element array in some stream
// responses; that form is accepted too. Anything else (an Envoy local
// reply, an HTML page) is classified by status.
func ParseError(status int, body []byte) *translate.Error {
	s := respbody.View(body)
	if gjson.Valid(s) {
		root := gjson.Parse(s)
		if root.IsArray() {
			root = root.Get("0")
		}
		if e := root.Get("error"); e.IsObject() {
			return classify(status, e)
		}
	}
	return openai.ParseError(status, body)
}

// classify maps a google.rpc.Status object to the gateway's class.
func classify(status int, e gjson.Result) *translate.Error {
	gs := e.Get("status").Str
	msg := e.Get("message").Str
	if status == 0 {
		status = int(e.Get("code").Int())
	}
	reason := ""
	e.Get("details").ForEach(func(_, d gjson.Result) bool {
		if r := d.Get("reason"); r.Type == gjson.String {
			reason = r.Str
			return false
		}
		return true
	})
	lower := strings.ToLower(msg)
	var code translate.Code
	switch gs {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		switch {
		case reason == "API_KEY_INVALID" || strings.Contains(lower, "api key not valid") || strings.Contains(lower, "api key expired"):
			// AI Studio answers a bad key with 400 INVALID_ARGUMENT.
			code = translate.CodeAuthentication
		case tokenLimit(lower):
			code = translate.CodeContextLengthExceeded
		default:
			code = translate.CodeInvalidRequest
		}
	case "UNAUTHENTICATED":
		code = translate.CodeAuthentication
	case "PERMISSION_DENIED":
		code = translate.CodePermissionDenied
	case "NOT_FOUND":
		code = translate.CodeNotFound
	case "RESOURCE_EXHAUSTED":
		code = translate.CodeRateLimited
		if quotaExhausted(lower, e.Get("details").Raw) {
			code = translate.CodeQuotaExhausted
		}
	case "UNAVAILABLE":
		code = translate.CodeUpstreamUnavailable
		if strings.Contains(lower, "overloaded") {
			code = translate.CodeOverloaded
		}
	case "DEADLINE_EXCEEDED":
		code = translate.CodeTimeout
	case "INTERNAL", "UNKNOWN", "DATA_LOSS":
		code = translate.CodeUpstreamError
	case "CANCELLED":
		code = translate.CodeCanceled
	case "UNIMPLEMENTED":
		code = translate.CodeUnsupported
	case "ABORTED", "ALREADY_EXISTS":
		code = translate.CodeUpstreamError
	default:
		switch {
		case status >= 400:
			code = translate.CodeForStatus(status)
		default:
			code = translate.CodeUpstreamError
		}
	}
	if msg == "" {
		msg = fmt.Sprintf("upstream returned an error (%s)", code)
		if gs != "" {
			msg = "upstream returned " + gs
		}
	}
	te := &translate.Error{Code: code, Message: truncate(msg)}
	// The client status is Google's, except where the body says more than
	// the status: a bad AI Studio key is 400 INVALID_ARGUMENT, which
	// OpenAI clients expect as 401. The processor holds the headers of an
	// error response until its body is decoded, so the status can follow
	// the class.
	if status >= 400 && status <= 599 && code != translate.CodeAuthentication {
		te.Status = status
	}
	return te
}

// tokenLimit reports whether an INVALID_ARGUMENT message is about the
// context window ("The input token count (…) exceeds the maximum number
// of tokens allowed (…)").
func tokenLimit(m string) bool {
	if !strings.Contains(m, "token") {
		return false
	}
	return strings.Contains(m, "exceeds the maximum") || strings.Contains(m, "too long") ||
		strings.Contains(m, "token limit") || strings.Contains(m, "context window") || strings.Contains(m, "maximum number of tokens")
}

// quotaExhausted tells a spent quota (daily or billing: retrying soon does
// not help) from a per-minute rate limit. Google words both as "quota"
// ("Quota exceeded for … requests per minute"), so "quota" alone is not
// enough: a per-minute limit stays rate_limited.
func quotaExhausted(m, details string) bool {
	d := strings.ToLower(details)
	if strings.Contains(m, "per minute") || strings.Contains(m, "per_minute") || strings.Contains(d, "perminute") || strings.Contains(d, "per_minute") {
		return false
	}
	return strings.Contains(m, "billing") || strings.Contains(m, "per day") || strings.Contains(m, "per_day") ||
		strings.Contains(d, "perday") || strings.Contains(m, "exceeded your current quota") || strings.Contains(m, "insufficient")
}

// truncate clones s, cut to maxMessage bytes on a rune boundary.
func truncate(s string) string {
	if len(s) <= maxMessage {
		return strings.Clone(s)
	}
	cut := maxMessage
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
