package e2e

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/redis/go-redis/v9"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/ratelimit"
	"github.com/llmux/llmux/ratelimit/redistest"
)

// limitsConfig is the rig's configuration with a per-key policy of two
// requests a minute.
const limitsConfig = configTemplate + `
limits:
  policies:
  - {name: demo, scope: key, match: [e2e], requests_per_minute: 2, tokens_per_minute: 50000}
`

// TestLimitsSDK: the OpenAI SDK reads the x-ratelimit headers on success
// and surfaces the 429 with retry-after once the policy is spent; the
// counters live in a real Redis.
func TestLimitsSDK(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	rigProcessorOptions = func(o *processor.Options) {
		o.Limiter = ratelimit.New(ratelimit.Options{Redis: rdb, Timeout: 5 * time.Second})
	}
	t.Cleanup(func() { rigProcessorOptions = nil })
	r := startRigWith(t, limitsConfig, nil)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	var used int64
	for i := range 2 {
		var resp *http.Response
		c, err := r.client.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		used += c.Usage.TotalTokens
		h := resp.Header
		if h.Get("x-ratelimit-limit-requests") != "2" || h.Get("x-ratelimit-remaining-requests") != strconv.Itoa(1-i) ||
			h.Get("x-ratelimit-reset-requests") == "" || h.Get("x-ratelimit-limit-tokens") != "50000" || h.Get("x-ratelimit-remaining-tokens") == "" {
			t.Fatalf("request %d: headers %v", i, h)
		}
	}
	// The tokens counted are what the provider reported, not the estimates.
	var counted int64
	vals, err := rdb.HVals(ctx, "llmux:rl:{llmux}:demo:e2e:tokens:60").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		n, _ := strconv.ParseInt(v, 10, 64)
		counted += n
	}
	if used == 0 || counted != used {
		t.Fatalf("tokens counted %d, the provider reported %d", counted, used)
	}
	_, err = r.client.Chat.Completions.New(ctx, params, option.WithMaxRetries(0))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error, got %v", err)
	}
	if apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" {
		t.Fatalf("%d %s: %v", apiErr.StatusCode, apiErr.Code, apiErr)
	}
	ra, err := strconv.Atoi(apiErr.Response.Header.Get("retry-after"))
	if err != nil || ra < 1 || ra > 61 {
		t.Fatalf("retry-after %q", apiErr.Response.Header.Get("retry-after"))
	}
	if r.sim != nil {
		logs := r.accessLogs(3)
		if logs[2]["ratelimit_decision"] != "denied" || logs[2]["ratelimit_policy"] != "demo" || logs[0]["ratelimit_decision"] != "allowed" {
			t.Fatalf("access logs %v", logs)
		}
	}
}
