package translate

import (
	"net/http"
	"strings"
	"time"

	"github.com/llmux/llmux/translate/jsonenc"
)

// Code is the gateway-wide error class. Every error llmux produces or
// receives from a provider is classified into one Code; the code drives the
// client's status, the dynamic metadata and (later) fallback decisions.
type Code string

// The error classes.
const (
	CodeInvalidRequest        Code = "invalid_request"
	CodeAuthentication        Code = "authentication"
	CodePermissionDenied      Code = "permission_denied"
	CodeNotFound              Code = "not_found"
	CodeMethodNotAllowed      Code = "method_not_allowed"
	CodeRequestTooLarge       Code = "request_too_large"
	CodeContextLengthExceeded Code = "context_length_exceeded"
	CodeContentFiltered       Code = "content_filtered"
	CodeRateLimited           Code = "rate_limited"
	CodeQuotaExhausted        Code = "quota_exhausted"
	CodeOverloaded            Code = "overloaded"
	CodeTimeout               Code = "timeout"
	CodeUpstreamUnavailable   Code = "upstream_unavailable"
	CodeUpstreamProtocol      Code = "upstream_protocol"
	CodeInternal              Code = "internal"
	// CodeUpstreamError is a provider-side server error (HTTP 500 and
	// other 5xx without a better class); unlike CodeInternal it is not the
	// gateway's fault, and another attempt may succeed.
	CodeUpstreamError Code = "upstream_error"
	// CodeUnsupported is a request feature the chosen provider lacks (an
	// operation, parameter or content type it cannot express). Another
	// deployment of the same model group may support it.
	CodeUnsupported Code = "unsupported"
	// CodeCanceled is a request the client abandoned (HTTP 499, nginx's
	// convention); nothing is sent to the client any more.
	CodeCanceled Code = "canceled"
	// CodeUpstreamTruncated is a response whose upstream ended cleanly
	// without the provider's terminal event (a stream without its [DONE],
	// message_stop, messageStop or finishReason; a body cut short).
	CodeUpstreamTruncated Code = "upstream_truncated"
	// CodeStreamStalled is a response whose upstream sent nothing for
	// llmux's idle bound (server.stream_idle_timeout); llmux ended it.
	CodeStreamStalled Code = "stream_stalled"
	// CodeStreamInterrupted is a response that had started (the upstream's
	// headers reached llmux) when Envoy ended the exchange: the client went
	// away, or the upstream reset or timed out. ext_proc gets no message in
	// any of these cases, so they are one class; Envoy's access log
	// (%RESPONSE_FLAGS%) tells them apart. Nothing is sent to the client.
	CodeStreamInterrupted Code = "stream_interrupted"
)

// Codes lists every error class, in documentation order.
var Codes = []Code{
	CodeInvalidRequest, CodeAuthentication, CodePermissionDenied, CodeNotFound,
	CodeMethodNotAllowed, CodeRequestTooLarge, CodeContextLengthExceeded,
	CodeContentFiltered, CodeUnsupported, CodeRateLimited, CodeQuotaExhausted,
	CodeOverloaded, CodeTimeout, CodeUpstreamUnavailable, CodeUpstreamProtocol,
	CodeUpstreamError, CodeInternal, CodeCanceled,
	CodeUpstreamTruncated, CodeStreamStalled, CodeStreamInterrupted,
}

// codeInfo is the OpenAI-facing shape of a Code.
type codeInfo struct {
	status    int
	typ       string
	retryable bool
	// openaiCode is the default OpenAI "code" string.
	openaiCode string
	// uniform marks the provider-fault classes (rate limits, quota,
	// overload, timeouts, provider failures): clients get the class's
	// status, type and code whatever the provider sent, so that one fault
	// looks the same from every provider.
	uniform bool
}

var codes = map[Code]codeInfo{
	CodeInvalidRequest:        {http.StatusBadRequest, "invalid_request_error", false, "invalid_request", false},
	CodeAuthentication:        {http.StatusUnauthorized, "invalid_request_error", false, "invalid_api_key", false},
	CodePermissionDenied:      {http.StatusForbidden, "permission_error", false, "permission_denied", false},
	CodeNotFound:              {http.StatusNotFound, "invalid_request_error", false, "model_not_found", false},
	CodeMethodNotAllowed:      {http.StatusMethodNotAllowed, "invalid_request_error", false, "method_not_allowed", false},
	CodeRequestTooLarge:       {http.StatusRequestEntityTooLarge, "invalid_request_error", false, "request_too_large", false},
	CodeContextLengthExceeded: {http.StatusBadRequest, "invalid_request_error", false, "context_length_exceeded", false},
	CodeContentFiltered:       {http.StatusBadRequest, "invalid_request_error", false, "content_filter", false},
	CodeUnsupported:           {http.StatusBadRequest, "invalid_request_error", false, "unsupported_parameter", false},
	CodeRateLimited:           {http.StatusTooManyRequests, "rate_limit_error", true, "rate_limit_exceeded", true},
	CodeQuotaExhausted:        {http.StatusTooManyRequests, "insufficient_quota", false, "insufficient_quota", true},
	CodeOverloaded:            {http.StatusServiceUnavailable, "server_error", true, "overloaded", true},
	CodeTimeout:               {http.StatusGatewayTimeout, "server_error", true, "timeout", true},
	CodeUpstreamUnavailable:   {http.StatusServiceUnavailable, "server_error", true, "upstream_unavailable", true},
	CodeUpstreamProtocol:      {http.StatusBadGateway, "server_error", true, "upstream_protocol", true},
	CodeUpstreamError:         {http.StatusInternalServerError, "server_error", true, "server_error", true},
	CodeInternal:              {http.StatusInternalServerError, "server_error", false, "internal", false},
	CodeCanceled:              {499, "server_error", false, "canceled", false},
	CodeUpstreamTruncated:     {http.StatusBadGateway, "server_error", true, "upstream_truncated", false},
	CodeStreamStalled:         {http.StatusGatewayTimeout, "server_error", true, "stream_stalled", false},
	CodeStreamInterrupted:     {http.StatusBadGateway, "server_error", true, "stream_interrupted", false},
}

// Status is the HTTP status OpenAI would use for this class.
func (c Code) Status() int {
	if i, ok := codes[c]; ok {
		return i.status
	}
	return http.StatusInternalServerError
}

// Type is the OpenAI error "type" for this class.
func (c Code) Type() string {
	if i, ok := codes[c]; ok {
		return i.typ
	}
	return "server_error"
}

// Retryable reports whether another attempt (possibly on another deployment)
// may succeed.
func (c Code) Retryable() bool { return codes[c].retryable }

// OpenAICode is the OpenAI error "code" string used for this class when the
// provider gave none worth keeping (e.g. "rate_limit_exceeded" for
// CodeRateLimited).
func (c Code) OpenAICode() string {
	if i, ok := codes[c]; ok {
		return i.openaiCode
	}
	return string(c)
}

// Uniform reports whether c is a provider-fault class (rate_limited,
// quota_exhausted, overloaded, timeout, upstream_unavailable,
// upstream_protocol, upstream_error): a provider error of such a class
// reaches the client with the class's status, type and code, never the
// provider's own (see Error.Uniform and docs/errors.md).
func (c Code) Uniform() bool { return codes[c].uniform }

// Known reports whether c is one of the classes listed in Codes.
func (c Code) Known() bool {
	_, ok := codes[c]
	return ok
}

// Error is a normalised error, rendered to clients in OpenAI's shape.
type Error struct {
	// Code is the gateway's class for the error.
	Code Code
	// Status is the HTTP status for the client; zero means Code.Status().
	Status int
	// Message is human readable and safe to show to the client.
	Message string
	// Param names the offending request parameter, if any.
	Param string
	// OpenAICode is the OpenAI "code" string (e.g. "invalid_api_key");
	// empty means Code.OpenAICode().
	OpenAICode string
	// Type overrides the OpenAI "type"; empty means Code.Type().
	Type string
	// RetryAfter is how long the provider asked the client to wait, when
	// its error body says so (Google's google.rpc.RetryInfo); zero when it
	// did not. Retry headers are read by RetryHint. The processor turns
	// it into the client's retry-after header.
	RetryAfter time.Duration
}

// Error implements the error interface.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// HTTPStatus is the status the client receives.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return e.Code.Status()
}

// Uniform makes a provider error of a provider-fault class (Code.Uniform)
// look the same whatever the provider: the provider's status, type and code
// are dropped, so the client gets the class's. Errors of other classes are
// left as they are. It returns e.
func (e *Error) Uniform() *Error {
	if e != nil && e.Code.Uniform() {
		e.Status, e.Type, e.OpenAICode = 0, "", ""
	}
	return e
}

// AppendJSON appends the OpenAI error body
// {"error":{"message","type","param","code"}}.
func (e *Error) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = jsonenc.AppendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	typ := e.Type
	if typ == "" {
		typ = e.Code.Type()
	}
	dst = jsonenc.AppendString(dst, typ)
	dst = append(dst, `,"param":`...)
	dst = jsonenc.AppendStringOrNull(dst, e.Param)
	dst = append(dst, `,"code":`...)
	code := e.OpenAICode
	if code == "" {
		code = e.Code.OpenAICode()
	}
	dst = jsonenc.AppendString(dst, code)
	return append(dst, "}}"...)
}

// MaxMessage is the length, in bytes, to which ClipMessage cuts an error
// message copied from a provider.
const MaxMessage = 512

// ClipMessage returns a copy of a provider's error message (never sharing
// memory with s), cut to MaxMessage bytes on a rune boundary and marked
// with "…" when cut.
func ClipMessage(s string) string {
	if len(s) <= MaxMessage {
		return strings.Clone(s)
	}
	cut := MaxMessage
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// CodeForProviderStatus classifies a provider's own error response (a body
// in the provider's error shape that names no better class) by its status.
// It is CodeForStatus, except that a provider saying 503 is over capacity
// (overloaded), while a bare 503 (an Envoy local reply: no connection, a
// reset before headers) is upstream_unavailable.
func CodeForProviderStatus(status int) Code {
	if status == http.StatusServiceUnavailable {
		return CodeOverloaded
	}
	return CodeForStatus(status)
}

// CodeForStatus classifies an HTTP status when nothing better is known
// (no body, or a body that names no error). docs/errors.md lists the table.
func CodeForStatus(status int) Code {
	switch {
	case status == http.StatusPaymentRequired: // DeepSeek's "insufficient balance"
		return CodeQuotaExhausted
	case status == 499:
		return CodeCanceled
	case status == http.StatusNotImplemented:
		return CodeUnsupported
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		return CodeInvalidRequest
	case status == http.StatusUnauthorized:
		return CodeAuthentication
	case status == http.StatusForbidden:
		return CodePermissionDenied
	case status == http.StatusNotFound:
		return CodeNotFound
	case status == http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case status == http.StatusRequestEntityTooLarge:
		return CodeRequestTooLarge
	case status == http.StatusRequestTimeout, status == http.StatusGatewayTimeout:
		return CodeTimeout
	case status == http.StatusTooManyRequests:
		return CodeRateLimited
	case status == 529: // Anthropic's "overloaded"
		return CodeOverloaded
	case status == http.StatusBadGateway:
		return CodeUpstreamProtocol
	case status == http.StatusServiceUnavailable:
		return CodeUpstreamUnavailable
	case status >= 400 && status < 500:
		return CodeInvalidRequest
	case status >= 500:
		return CodeUpstreamError
	}
	return CodeInternal
}
