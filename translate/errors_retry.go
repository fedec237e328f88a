package translate

import (
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter bounds a wait taken from a provider, so that a garbled
// value cannot tell clients to wait for years.
const maxRetryAfter = 24 * time.Hour

// RetryHint collects what a provider's response headers say about when to
// retry: retry-after in seconds (OpenAI, Azure, Anthropic) and
// retry-after-ms in milliseconds (OpenAI, Azure). An HTTP-date retry-after
// is not read (the provider's header reaches the client unchanged).
// OpenAI's x-ratelimit-reset-requests/-tokens are not read either: they
// come with every response, and an error does not say which of the two
// limits it hit. The zero value holds no hint.
type RetryHint struct {
	seconds, millis time.Duration
}

// Header records one response header. Names are lower case, as Envoy
// gives them; other names are ignored.
func (h *RetryHint) Header(name, value string) {
	switch name {
	case "retry-after":
		if n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64); err == nil && n > 0 {
			h.seconds = clampRetry(time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second)
		}
	case "retry-after-ms":
		if f, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil && f > 0 {
			h.millis = clampRetry(time.Duration(min(f, float64(maxRetryAfter/time.Millisecond)) * float64(time.Millisecond)))
		}
	}
}

// After is the wait the headers asked for: retry-after-ms when given (it
// is the more precise), else retry-after; zero when neither was.
func (h RetryHint) After() time.Duration {
	if h.millis > 0 {
		return h.millis
	}
	return h.seconds
}

// RetryAfterWith is how long the client should wait before retrying after
// e: the wait e's body named (Error.RetryAfter), else the one the
// response headers named (h); zero when the provider said nothing.
func (e *Error) RetryAfterWith(h RetryHint) time.Duration {
	if e.RetryAfter > 0 {
		return e.RetryAfter
	}
	return h.After()
}

// RetryAfterValue renders d as a retry-after header value: whole seconds,
// rounded up, at least 1.
func RetryAfterValue(d time.Duration) string {
	s := int64((clampRetry(d) + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// clampRetry bounds d to (0, maxRetryAfter].
func clampRetry(d time.Duration) time.Duration {
	return min(max(d, 0), maxRetryAfter)
}
