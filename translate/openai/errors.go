package openai

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
)

// ParseError classifies an error body received with an HTTP status from an
// OpenAI-schema provider. It understands OpenAI's
// {"error":{"message","type","param","code"}}, Azure's variant (a code but
// no type, an innererror), vLLM's and Mistral's top-level
// {"object":"error","message",…}, FastAPI's {"detail":…}, Ollama's
// {"error":"text"}, a top-level {"message":…}, and any other text (an Envoy
// local reply, an HTML page), which is classified by status alone.
func ParseError(status int, body []byte) *translate.Error {
	return parseError(status, body, &DecoderOptions{})
}

// ParseErrorWith is ParseError with a dialect's extra classification rules
// (DecoderOptions.Classify).
func ParseErrorWith(status int, body []byte, opts DecoderOptions) *translate.Error {
	return parseError(status, body, &opts)
}

func parseError(status int, body []byte, opts *DecoderOptions) *translate.Error {
	s := respbody.View(body)
	if gjson.Valid(s) {
		if e, ok := errorObject(s, true); ok {
			return classify(status, e, opts)
		}
	}
	return statusError(status, s)
}

// inbandError reports whether a JSON body received with a success status
// (a whole response, or one stream chunk) is an error, and classifies it.
func inbandError(body string, opts *DecoderOptions) (*translate.Error, bool) {
	e, ok := errorObject(body, false)
	if !ok {
		return nil, false
	}
	return classify(0, e, opts), true
}

// errorFields are the parts of a provider error, whatever its shape.
type errorFields struct {
	message, code, typ, param string
	// numeric is a status-like number in "code" or "status" (vLLM,
	// Azure), or 0.
	numeric int
}

// errorObject extracts the error from the shapes listed in ParseError. A
// body with none of them is not an error. Only error responses (loose) are
// searched for FastAPI's "detail" and a top-level "message"; a success body
// is an error only with an "error" member or "object":"error".
func errorObject(s string, loose bool) (errorFields, bool) {
	var f errorFields
	root := gjson.Parse(s)
	if !root.IsObject() {
		return f, false
	}
	e := root.Get("error")
	switch {
	case e.IsObject():
	case e.Type == gjson.String:
		f.message = e.Str // Ollama: {"error":"model not found"}
		return f, true
	case root.Get("object").Str == "error":
		e = root // vLLM, Mistral: the error is the top-level object
	case loose && root.Get("detail").Exists():
		f.message, f.param = fastAPIDetail(root.Get("detail"))
		return f, true
	case loose && root.Get("message").Type == gjson.String:
		e = root // Mistral 401, Azure API Management: {"statusCode":401,"message":…}
		if n := root.Get("statusCode"); n.Type == gjson.Number {
			f.numeric = int(n.Int())
		}
	default:
		return f, false
	}
	msg := e.Get("message")
	switch {
	case msg.Type == gjson.String:
		f.message = msg.Str
	case msg.Exists() && msg.Type != gjson.Null:
		f.message = msg.Raw // Mistral: a validation object
	}
	f.typ = e.Get("type").String()
	f.param = e.Get("param").String()
	c := e.Get("code")
	switch c.Type {
	case gjson.String:
		f.code = c.Str
		if n, err := strconv.Atoi(c.Str); err == nil {
			f.numeric, f.code = n, "" // Azure: "code":"429"
		}
	case gjson.Number:
		f.numeric = int(c.Int()) // vLLM: "code":400
	}
	if n := e.Get("status"); n.Type == gjson.Number && f.numeric == 0 {
		f.numeric = int(n.Int()) // Azure: "status":400
	}
	if f.message == "" && f.code == "" && f.typ == "" && f.numeric == 0 {
		f.message = e.Raw
	}
	return f, true
}

// fastAPIDetail renders FastAPI's "detail": a string, or a list of
// validation errors {"loc":[…],"msg":…}; param is the first location
// without its "body" prefix.
func fastAPIDetail(d gjson.Result) (msg, param string) {
	if d.Type == gjson.String {
		return d.Str, ""
	}
	if !d.IsArray() {
		return d.Raw, ""
	}
	var b strings.Builder
	d.ForEach(func(_, item gjson.Result) bool {
		var loc []string
		item.Get("loc").ForEach(func(_, l gjson.Result) bool {
			loc = append(loc, l.String())
			return true
		})
		if len(loc) > 0 && loc[0] == "body" {
			loc = loc[1:]
		}
		p := strings.Join(loc, ".")
		if param == "" {
			param = p
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		if p != "" {
			b.WriteString(p)
			b.WriteString(": ")
		}
		b.WriteString(item.Get("msg").String())
		return b.Len() < translate.MaxMessage
	})
	return b.String(), param
}

// classify maps provider error fields to the gateway's class, keeping the
// provider's code when it is a meaningful OpenAI-style code.
func classify(status int, f errorFields, opts *DecoderOptions) *translate.Error {
	st := status
	if st == 0 && f.numeric >= 400 && f.numeric <= 599 {
		st = f.numeric
	}
	code, ok := translate.Code(""), false
	if opts.Classify != nil {
		code, ok = opts.Classify(st, f.code, f.typ, f.message)
	}
	if !ok {
		code, ok = classifyCommon(f)
	}
	if !ok {
		switch {
		case st != 0:
			code = translate.CodeForProviderStatus(st)
		case f.typ == "server_error" || f.typ == "api_error":
			// The provider failed mid-response.
			code = translate.CodeUpstreamError
		case f.typ == "invalid_request_error":
			code = translate.CodeInvalidRequest
		default:
			code = translate.CodeUpstreamError
		}
	}
	msg := truncate(f.message)
	if msg == "" {
		msg = fmt.Sprintf("upstream returned an error (%s)", code)
		if status != 0 {
			msg = fmt.Sprintf("upstream returned HTTP %d", status)
		}
	}
	e := &translate.Error{
		Code:    code,
		Status:  statusOr(status, code),
		Message: msg,
		Param:   strings.Clone(f.param),
	}
	if f.code != "" && isIdentifier(f.code) {
		e.OpenAICode = strings.Clone(f.code)
	}
	if f.typ != "" && isIdentifier(f.typ) && strings.ToLower(f.typ) == f.typ {
		e.Type = strings.Clone(f.typ)
	}
	// A provider fault (OpenAI's "requests"/"tokens" rate limits, a
	// 500 with code null) gets the class's status, type and code, as from
	// every other provider.
	return e.Uniform()
}

// classifyCommon holds the rules every OpenAI-schema dialect shares: OpenAI's
// codes and types, the types compatible servers borrow, and, for servers
// that send no code at all, a few unambiguous message phrases.
func classifyCommon(f errorFields) (translate.Code, bool) {
	switch f.code {
	case "context_length_exceeded", "string_above_max_length":
		return translate.CodeContextLengthExceeded, true
	case "insufficient_quota", "billing_hard_limit_reached":
		return translate.CodeQuotaExhausted, true
	case "rate_limit_exceeded", "slow_down":
		return translate.CodeRateLimited, true
	case "server_is_overloaded":
		return translate.CodeOverloaded, true
	case "content_filter", "content_policy_violation":
		return translate.CodeContentFiltered, true
	case "invalid_api_key", "missing_api_key":
		return translate.CodeAuthentication, true
	case "model_not_found", "model_decommissioned":
		return translate.CodeNotFound, true
	case "unsupported_parameter", "unsupported_value":
		return translate.CodeUnsupported, true
	// The codes of Envoy's own local replies, which the shipped
	// local_reply_config writes in OpenAI's shape (envoy/standalone.yaml):
	// a reset or refused connection is not the provider being overloaded.
	case "upstream_unavailable":
		return translate.CodeUpstreamUnavailable, true
	case "upstream_protocol":
		return translate.CodeUpstreamProtocol, true
	case "timeout":
		return translate.CodeTimeout, true
	case "request_too_large":
		return translate.CodeRequestTooLarge, true
	}
	switch f.typ {
	case "insufficient_quota":
		return translate.CodeQuotaExhausted, true
	case "requests", "tokens", "rate_limit_error", "RateLimitError":
		return translate.CodeRateLimited, true
	case "authentication_error", "AuthenticationError":
		return translate.CodeAuthentication, true
	case "permission_error", "PermissionDeniedError":
		return translate.CodePermissionDenied, true
	case "not_found_error", "NotFoundError":
		return translate.CodeNotFound, true
	case "overloaded_error", "service_unavailable_error":
		return translate.CodeOverloaded, true
	}
	m := strings.ToLower(f.message)
	switch {
	case strings.Contains(m, "maximum context length"), strings.Contains(m, "context length exceeded"),
		strings.Contains(m, "context window"), strings.Contains(m, "prompt is too long"):
		return translate.CodeContextLengthExceeded, true
	}
	return "", false
}

// statusError classifies a body that names no error by its status.
func statusError(status int, body string) *translate.Error {
	code := translate.CodeForStatus(status)
	msg := strings.TrimSpace(body)
	if msg == "" || strings.HasPrefix(msg, "<") {
		msg = fmt.Sprintf("upstream returned HTTP %d", status)
	} else {
		msg = truncate(fmt.Sprintf("upstream returned HTTP %d: %s", status, msg))
	}
	return (&translate.Error{Code: code, Status: statusOr(status, code), Message: msg}).Uniform()
}

func statusOr(status int, code translate.Code) int {
	if status >= 400 {
		return status
	}
	return code.Status()
}

// truncate clones s, cut to an error message's length.
func truncate(s string) string { return translate.ClipMessage(s) }

// isIdentifier reports whether s looks like an error code: letters,
// digits, '_', '.', '-' only, and not too long.
func isIdentifier(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
