package translate

import (
	"testing"
	"time"
)

func TestUniform(t *testing.T) {
	for _, c := range Codes {
		want := false
		switch c {
		case CodeRateLimited, CodeQuotaExhausted, CodeOverloaded, CodeTimeout, CodeUpstreamUnavailable, CodeUpstreamProtocol, CodeUpstreamError:
			want = true
		}
		if c.Uniform() != want {
			t.Errorf("%s: Uniform %v", c, c.Uniform())
		}
		e := (&Error{Code: c, Status: 418, Type: "requests", OpenAICode: "x"}).Uniform()
		if want && (e.HTTPStatus() != c.Status() || e.Type != "" || e.OpenAICode != "") {
			t.Errorf("%s: provider's status/type/code kept: %+v", c, e)
		}
		if !want && (e.HTTPStatus() != 418 || e.Type != "requests" || e.OpenAICode != "x") {
			t.Errorf("%s: provider's status/type/code lost: %+v", c, e)
		}
	}
	if got := string((&Error{Code: CodeRateLimited, Status: 429, Type: "tokens", OpenAICode: "rate_limit_exceeded", Message: "m"}).Uniform().AppendJSON(nil)); got != `{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}` {
		t.Errorf("rate limit body %s", got)
	}
}

func TestCodeForProviderStatus(t *testing.T) {
	for st, want := range map[int]Code{503: CodeOverloaded, 529: CodeOverloaded, 500: CodeUpstreamError, 429: CodeRateLimited, 502: CodeUpstreamProtocol, 400: CodeInvalidRequest} {
		if got := CodeForProviderStatus(st); got != want {
			t.Errorf("%d: %s, want %s", st, got, want)
		}
	}
	if CodeForStatus(503) != CodeUpstreamUnavailable {
		t.Error("a bare 503 must stay upstream_unavailable")
	}
}

func TestRetryHint(t *testing.T) {
	tests := []struct {
		name    string
		headers [][2]string
		body    time.Duration
		want    time.Duration
		value   string
	}{
		{"none", nil, 0, 0, ""},
		{"retry-after", [][2]string{{"retry-after", "7"}}, 0, 7 * time.Second, "7"},
		{"retry-after-ms wins", [][2]string{{"retry-after", "2"}, {"retry-after-ms", "1500"}}, 0, 1500 * time.Millisecond, "2"},
		{"retry-after-ms alone, rounded up", [][2]string{{"retry-after-ms", "20"}}, 0, 20 * time.Millisecond, "1"},
		{"http-date not read", [][2]string{{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}, 0, 0, ""},
		{"garbage", [][2]string{{"retry-after", "-3"}, {"retry-after-ms", "soon"}}, 0, 0, ""},
		{"other headers ignored", [][2]string{{"x-ratelimit-reset-requests", "1s"}, {"content-type", "application/json"}}, 0, 0, ""},
		{"body wins", [][2]string{{"retry-after", "9"}}, 30 * time.Second, 30 * time.Second, "30"},
		{"huge value bounded", [][2]string{{"retry-after", "99999999999"}}, 0, 24 * time.Hour, "86400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h RetryHint
			for _, kv := range tc.headers {
				h.Header(kv[0], kv[1])
			}
			e := &Error{Code: CodeRateLimited, RetryAfter: tc.body}
			got := e.RetryAfterWith(h)
			if got != tc.want {
				t.Fatalf("RetryAfterWith %v, want %v", got, tc.want)
			}
			if got > 0 && RetryAfterValue(got) != tc.value {
				t.Errorf("RetryAfterValue %q, want %q", RetryAfterValue(got), tc.value)
			}
		})
	}
}
