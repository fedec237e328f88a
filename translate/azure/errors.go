package azure

import (
	"strings"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/openai"
)

var decoderOptions = openai.DecoderOptions{Classify: Classify}

// ParseError classifies an Azure OpenAI error body received with an HTTP
// status.
func ParseError(status int, body []byte) *translate.Error {
	return openai.ParseErrorWith(status, body, decoderOptions)
}

// Classify holds Azure's own error codes (the rest are OpenAI's and handled
// by the common rules).
func Classify(status int, code, _, msg string) (translate.Code, bool) {
	switch code {
	case "DeploymentNotFound", "ModelNotFound", "DeploymentNotReady":
		return translate.CodeNotFound, true
	case "content_filter", "ResponsibleAIPolicyViolation", "content_filter_error":
		return translate.CodeContentFiltered, true
	case "OperationNotSupported", "UnsupportedModel", "FeatureNotSupported":
		return translate.CodeUnsupported, true
	case "PermissionDenied", "AuthorizationFailed":
		return translate.CodePermissionDenied, true
	case "InvalidAuthenticationToken", "Unauthorized", "InvalidAuthenticationTokenTenant", "ExpiredAuthenticationToken":
		return translate.CodeAuthentication, true
	case "TooManyRequests", "RateLimitExceeded":
		return translate.CodeRateLimited, true
	case "InsufficientQuota", "QuotaExceeded":
		return translate.CodeQuotaExhausted, true
	case "ServiceUnavailable", "ServerBusy":
		return translate.CodeOverloaded, true
	case "Timeout", "RequestTimeout":
		return translate.CodeTimeout, true
	}
	if status == 404 && strings.Contains(msg, "deployment") {
		return translate.CodeNotFound, true
	}
	return "", false
}
