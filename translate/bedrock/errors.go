package bedrock

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
)

// maxMessage bounds an error message copied from a provider body.
const maxMessage = 1024

// clientStatus maps a Bedrock HTTP status to the status the client gets:
// ModelTimeoutException's 408 becomes 504 and ModelErrorException's 424
// becomes 500; the others pass.
func clientStatus(status int) int {
	switch status {
	case http.StatusRequestTimeout:
		return http.StatusGatewayTimeout
	case http.StatusFailedDependency:
		return http.StatusInternalServerError
	}
	return status
}

// errorType normalises an AWS error type name: "ValidationException",
// "com.amazon.bedrock#ValidationException", "ValidationException:http://…"
// and the event-stream spelling "validationException" all give
// "validationexception".
func errorType(s string) string {
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// contextTooLong reports whether a validation message says the input is
// over the model's context window.
func contextTooLong(msg string) bool {
	l := strings.ToLower(msg)
	for _, s := range []string{"too long", "too many input tokens", "context window", "context length", "maximum context", "prompt is too long"} {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// classify maps an AWS error type (normalised by errorType; "" when
// unknown), the HTTP status (0 in a stream) and the message to a code and
// an OpenAI code ("" for the class default). fromBedrock reports that the
// body is Bedrock's own JSON error (not an Envoy local reply or a proxy's
// page), which makes a 503 overloaded rather than upstream_unavailable.
func classify(typ string, status int, msg string, fromBedrock bool) (translate.Code, string) {
	switch typ {
	case "validationexception":
		if contextTooLong(msg) {
			return translate.CodeContextLengthExceeded, "context_length_exceeded"
		}
		return translate.CodeInvalidRequest, ""
	case "throttlingexception":
		return translate.CodeRateLimited, "rate_limit_exceeded"
	case "accessdeniedexception":
		return translate.CodePermissionDenied, ""
	case "unrecognizedclientexception", "invalidsignatureexception", "expiredtokenexception",
		"incompletesignatureexception", "missingauthenticationtokenexception", "invalidclienttokenid":
		return translate.CodeAuthentication, "invalid_api_key"
	case "resourcenotfoundexception":
		return translate.CodeNotFound, ""
	case "servicequotaexceededexception":
		return translate.CodeQuotaExhausted, "insufficient_quota"
	case "modeltimeoutexception":
		return translate.CodeTimeout, ""
	case "serviceunavailableexception", "modelnotreadyexception":
		// 503 "The service isn't currently available", 429 "Model is
		// not ready for inference": Bedrock is answering, and over
		// capacity for now.
		return translate.CodeOverloaded, ""
	case "internalserverexception", "modelstreamerrorexception", "modelerrorexception":
		return translate.CodeUpstreamError, ""
	case "conflictexception":
		return translate.CodeInvalidRequest, ""
	}
	// No (known) type: the status, refined by the message.
	l := strings.ToLower(msg)
	switch status {
	case 0:
		return translate.CodeUpstreamError, ""
	case http.StatusBadRequest:
		switch {
		case contextTooLong(msg):
			return translate.CodeContextLengthExceeded, "context_length_exceeded"
		case strings.Contains(l, "service quota"):
			return translate.CodeQuotaExhausted, "insufficient_quota"
		}
	case http.StatusForbidden:
		if strings.Contains(l, "security token") || strings.Contains(l, "signature") || strings.Contains(l, "credential") {
			return translate.CodeAuthentication, "invalid_api_key"
		}
	case http.StatusRequestTimeout:
		return translate.CodeTimeout, ""
	case http.StatusFailedDependency:
		return translate.CodeUpstreamError, ""
	case http.StatusTooManyRequests:
		if strings.Contains(l, "not ready") {
			return translate.CodeOverloaded, ""
		}
		return translate.CodeRateLimited, "rate_limit_exceeded"
	}
	if fromBedrock {
		return translate.CodeForProviderStatus(status), ""
	}
	return translate.CodeForStatus(status), ""
}

// ParseError classifies a Bedrock error body received with an HTTP status.
// Bedrock sends the error type in the x-amzn-ErrorType header (which the
// decoder reads when the processor passes it, see parseError) and
// {"message": "..."} in the body; the type is read from the body when it
// carries one (__type, code or type), else the status and the message
// decide (see classify).
func ParseError(status int, body []byte) *translate.Error {
	return parseError(status, body, "")
}

// parseError is ParseError with the x-amzn-ErrorType header's value
// (headerType, "" when unknown), used when the body names no type.
func parseError(status int, body []byte, headerType string) *translate.Error {
	s := respbody.View(body)
	typ, msg := headerType, ""
	fromBedrock := false
	if gjson.Valid(s) {
		root := gjson.Parse(s)
		fromBedrock = root.IsObject()
		for _, k := range []string{"__type", "code", "type", "Code"} {
			if v := root.Get(k); v.Type == gjson.String && v.Str != "" {
				typ = v.Str
				break
			}
		}
		for _, k := range []string{"message", "Message", "errorMessage"} {
			if v := root.Get(k); v.Type == gjson.String {
				msg = v.Str
				break
			}
		}
	}
	if msg == "" && typ == "" {
		msg = strings.TrimSpace(s)
		if gjson.Valid(s) || strings.HasPrefix(msg, "<") {
			msg = ""
		}
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	code, oc := classify(errorType(typ), status, msg, fromBedrock)
	switch {
	case msg == "" && typ != "":
		name, _, _ := strings.Cut(typ, ":")
		msg = "Bedrock returned " + name
	case msg == "":
		msg = fmt.Sprintf("Bedrock returned HTTP %d", status)
	}
	// The client's status follows the class (the processor holds the
	// response headers until the body is decoded): a ServiceQuota 400
	// becomes 429, ModelNotReady's 429 a 503, a bad signature's 403 a 401.
	return (&translate.Error{Code: code, Message: strings.Clone(msg), OpenAICode: oc}).Uniform()
}

// exceptionError classifies an exception (or error) message of an event
// stream: its type from :exception-type (or :error-code) and its payload
// {"message": "..."} (or :error-message).
func exceptionError(typ, payload, headerMsg []byte) *translate.Error {
	msg := string(headerMsg)
	if p := respbody.View(payload); gjson.Valid(p) {
		if m := gjson.Get(p, "message"); m.Type == gjson.String && m.Str != "" {
			msg = m.Str
		}
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	t := string(typ)
	code, oc := classify(errorType(t), 0, msg, true)
	if msg == "" {
		msg = "Bedrock stream error: " + t
	}
	return (&translate.Error{Code: code, Message: strings.Clone(msg), OpenAICode: oc}).Uniform()
}
