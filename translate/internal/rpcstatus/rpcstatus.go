// Package rpcstatus classifies Google API errors: the JSON form of
// google.rpc.Status, {"error":{"code":429,"message":"…","status":
// "RESOURCE_EXHAUSTED","details":[…]}}, that the Gemini API, Vertex AI and
// Google's front end in front of partner models (Claude on Vertex) send
// (https://cloud.google.com/apis/design/errors,
// https://ai.google.dev/gemini-api/docs/troubleshooting). A
// google.rpc.RetryInfo detail ({"@type":
// "type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}) becomes
// translate.Error.RetryAfter.
package rpcstatus

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

// Is reports whether the error object e is a google.rpc.Status: a string
// "status" (the canonical code name) and no "type" (which Anthropic's and
// OpenAI's error objects carry).
func Is(e gjson.Result) bool {
	return e.IsObject() && e.Get("status").Type == gjson.String && !e.Get("type").Exists()
}

// Parse classifies the google.rpc.Status object e received with an HTTP
// status (0 for an error inside a 200 body or a stream; the object's own
// "code" is used then).
func Parse(status int, e gjson.Result) *translate.Error {
	gs := e.Get("status").Str
	msg := e.Get("message").Str
	if status == 0 {
		status = int(e.Get("code").Int())
	}
	details := e.Get("details")
	reason := ""
	details.ForEach(func(_, d gjson.Result) bool {
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
		if quotaExhausted(lower, details.Raw) {
			code = translate.CodeQuotaExhausted
		}
	case "UNAVAILABLE":
		// Google's 503: "The model is overloaded", "The service is
		// currently unavailable" — the provider is answering, and over
		// capacity (a connection that fails is Envoy's 503 instead).
		code = translate.CodeOverloaded
	case "DEADLINE_EXCEEDED":
		code = translate.CodeTimeout
	case "INTERNAL", "UNKNOWN", "DATA_LOSS", "ABORTED", "ALREADY_EXISTS":
		code = translate.CodeUpstreamError
	case "CANCELLED":
		code = translate.CodeCanceled
	case "UNIMPLEMENTED":
		code = translate.CodeUnsupported
	default:
		code = translate.CodeUpstreamError
		if status >= 400 {
			code = translate.CodeForProviderStatus(status)
		}
	}
	if msg == "" {
		msg = fmt.Sprintf("upstream returned an error (%s)", code)
		if gs != "" {
			msg = "upstream returned " + gs
		}
	}
	te := &translate.Error{Code: code, Message: translate.ClipMessage(msg), RetryAfter: RetryDelay(details)}
	// The client status is Google's, except where the body says more than
	// the status: a bad AI Studio key is 400 INVALID_ARGUMENT, which
	// OpenAI clients expect as 401. The processor holds the headers of an
	// error response until its body is decoded, so the status can follow
	// the class. Provider-fault classes take the class's status.
	if status >= 400 && status <= 599 && code != translate.CodeAuthentication {
		te.Status = status
	}
	return te.Uniform()
}

// RetryDelay reads the google.rpc.RetryInfo detail of a details array
// ({"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"});
// zero when there is none.
func RetryDelay(details gjson.Result) time.Duration {
	var d time.Duration
	details.ForEach(func(_, v gjson.Result) bool {
		if !strings.HasSuffix(v.Get("@type").Str, "google.rpc.RetryInfo") {
			return true
		}
		if rd, ok := ParseDuration(v.Get("retryDelay")); ok {
			d = rd
		}
		return false
	})
	return d
}

// ParseDuration reads a google.protobuf.Duration in its JSON form, seconds
// with up to nine fractional digits and an "s" suffix ("30s", "1.5s").
// Google's Go and JS clients also accept the object form
// {"seconds":30,"nanos":0}, which is read too.
func ParseDuration(v gjson.Result) (time.Duration, bool) {
	var secs float64
	switch {
	case v.Type == gjson.String:
		s, ok := strings.CutSuffix(strings.TrimSpace(v.Str), "s")
		if !ok {
			return 0, false
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, false
		}
		secs = f
	case v.IsObject():
		secs = v.Get("seconds").Float() + v.Get("nanos").Float()/1e9
	default:
		return 0, false
	}
	if math.IsNaN(secs) || secs <= 0 {
		return 0, false
	}
	return time.Duration(min(secs, 24*3600) * float64(time.Second)), true
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
// ("You exceeded your current quota" comes with per-minute limits too), so
// the QuotaFailure detail's quota id decides when there is one: a
// per-minute quota stays rate_limited, a per-day one is exhausted.
func quotaExhausted(m, details string) bool {
	d := strings.ToLower(details)
	if strings.Contains(m, "per minute") || strings.Contains(m, "per_minute") || strings.Contains(d, "perminute") || strings.Contains(d, "per_minute") {
		return false
	}
	return strings.Contains(m, "billing") || strings.Contains(m, "per day") || strings.Contains(m, "per_day") ||
		strings.Contains(d, "perday") || strings.Contains(m, "exceeded your current quota") || strings.Contains(m, "insufficient")
}
