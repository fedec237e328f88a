package rpcstatus

import (
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func TestRetryInfo(t *testing.T) {
	tests := []struct {
		name string
		body string
		want time.Duration
	}{
		// https://ai.google.dev/gemini-api/docs/troubleshooting: a 429
		// with QuotaFailure, Help and RetryInfo details.
		{"gemini 429", `{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 15\nPlease retry in 35.5s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"35s"}]}}`, 35 * time.Second},
		{"fractional", `{"error":{"code":503,"status":"UNAVAILABLE","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.250s"}]}}`, 1250 * time.Millisecond},
		{"object form", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{"seconds":3,"nanos":500000000}}]}}`, 3500 * time.Millisecond},
		{"no retry info", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure"}]}}`, 0},
		{"bad delay", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"soon"}]}}`, 0},
		{"negative delay", `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"-5s"}]}}`, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := gjson.Get(tc.body, "error")
			if !Is(e) {
				t.Fatal("not recognised as google.rpc.Status")
			}
			if got := Parse(429, e).RetryAfter; got != tc.want {
				t.Errorf("RetryAfter %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseUniform(t *testing.T) {
	tests := []struct {
		status int
		body   string
		code   translate.Code
		client int
	}{
		{429, `{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED"}}`, translate.CodeRateLimited, 429},
		{429, `{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]}]}}`, translate.CodeQuotaExhausted, 429},
		{503, `{"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}`, translate.CodeOverloaded, 503},
		{500, `{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}`, translate.CodeUpstreamError, 500},
		{0, `{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}`, translate.CodeUpstreamError, 500},
		{404, `{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}`, translate.CodeNotFound, 404},
	}
	for _, tc := range tests {
		e := Parse(tc.status, gjson.Get(tc.body, "error"))
		if e.Code != tc.code || e.HTTPStatus() != tc.client || (tc.code.Uniform() && (e.Type != "" || e.OpenAICode != "")) {
			t.Errorf("%d %s: %+v", tc.status, tc.body, e)
		}
	}
	if Is(gjson.Get(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "error")) {
		t.Error("an Anthropic error object is not a google.rpc.Status")
	}
}
