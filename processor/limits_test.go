package processor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/redis/go-redis/v9"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/ratelimit"
	"github.com/llmux/llmux/ratelimit/redistest"
	"github.com/llmux/llmux/translate"
)

// limitsConfig is the unit tests' configuration with a limits section.
func limitsConfig(t testing.TB, limits string) *config.Runtime {
	t.Helper()
	base, err := os.ReadFile("testdata/llmux.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(base) + `
- name: pair
  deployments: [gpt-4o-mini-openai, gpt-4o-beta]
  routing: {strategy: weighted}
` + limits
	env := map[string]string{"LLMUX_TEST_KEY": testKey, "OPENAI_API_KEY": providerKey}
	rt, err := config.Parse([]byte(text), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return rt
}

// limitsRig is a server whose limits live in a real Redis.
type limitsRig struct {
	s    *Server
	rdb  *redis.Client
	hook *redistest.Counter
}

func newLimitsRig(t *testing.T, srv *redistest.Server, cfg *config.Runtime) *limitsRig {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	hook := &redistest.Counter{}
	rdb.AddHook(hook)
	lim := ratelimit.New(ratelimit.Options{Redis: rdb, Timeout: 5 * time.Second})
	if err := lim.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Config: func() *config.Runtime { return cfg }, Translator: openaiKinds, Limiter: lim})
	return &limitsRig{s: s, rdb: rdb, hook: hook}
}

func (r *limitsRig) exchange(t *testing.T) *exchange {
	rec := &recorder{}
	return &exchange{t: t, h: newHandler(r.s, context.Background(), rec), rec: rec}
}

const chatBody = `{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`

const chatUpstream = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}`

// complete runs a whole non-streamed exchange and returns the response
// headers reply.
func completeExchange(t *testing.T, x *exchange, body string) *extprocv3.ProcessingResponse {
	t.Helper()
	forward(t, x, body)
	if _, err := x.send(respHeaders(false, ":status", "200", "content-type", "application/json")); err != nil {
		t.Fatal(err)
	}
	if _, err := x.send(respBody(chatUpstream, true)); err != nil {
		t.Fatal(err)
	}
	x.h.end()
	for _, r := range x.rec.sent {
		if r.GetResponseHeaders() != nil {
			return r
		}
	}
	t.Fatal("no response headers reply")
	return nil
}

func TestLimitsDenyAndHeaders(t *testing.T) {
	srv := redistest.Start(t)
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: per-key, scope: key, requests_per_minute: 2, tokens_per_minute: 100000}
`)
	rig := newLimitsRig(t, srv, cfg)
	for i := range 2 {
		x := rig.exchange(t)
		hr := completeExchange(t, x, chatBody)
		mut := hr.GetResponseHeaders().GetResponse().GetHeaderMutation()
		if got := setHeader(mut, "x-ratelimit-limit-requests"); got != "2" {
			t.Fatalf("limit-requests %q", got)
		}
		if got := setHeader(mut, "x-ratelimit-remaining-requests"); got != strconv.Itoa(1-i) {
			t.Fatalf("request %d: remaining-requests %q", i, got)
		}
		if got := setHeader(mut, "x-ratelimit-limit-tokens"); got != "100000" {
			t.Fatalf("limit-tokens %q", got)
		}
		if setHeader(mut, "x-ratelimit-reset-requests") == "" || setHeader(mut, "x-ratelimit-remaining-tokens") == "" {
			t.Fatalf("headers %v", mut)
		}
		md := br2md(x.rec.sent[len(x.rec.sent)-1])
		if md["ratelimit_decision"].GetStringValue() != "allowed" || md["ratelimit_source"].GetStringValue() != "redis" {
			t.Fatalf("metadata %v", md)
		}
	}
	x := rig.exchange(t)
	x.must(post("/v1/chat/completions", bearer()...))
	r := x.must(reqBody(chatBody))
	st, code := immediate(t, r)
	ir := r.GetImmediateResponse()
	if st != 429 || code != "rate_limit_exceeded" || setHeader(ir.GetHeaders(), "retry-after") == "" ||
		setHeader(ir.GetHeaders(), "x-ratelimit-remaining-requests") != "0" || setHeader(ir.GetHeaders(), "x-ratelimit-limit-requests") != "2" {
		t.Fatalf("%d %s %v", st, code, ir.GetHeaders())
	}
	if !strings.Contains(string(ir.GetBody()), "policy per-key") {
		t.Fatalf("body %s", ir.GetBody())
	}
	md := br2md(r)
	if md["ratelimit_decision"].GetStringValue() != "denied" || md["ratelimit_policy"].GetStringValue() != "per-key" || md["ratelimit_limit"].GetStringValue() != "requests/minute" {
		t.Fatalf("metadata %v", md)
	}
	x.h.end()
	// A denied request was not sent to routing as a deployment failure.
	for _, s := range rig.s.RoutingStatus() {
		if s.Deployment == "gpt-4o-mini-openai" && (!s.CoolUntil.IsZero() || s.InFlight != 0) {
			t.Fatal("a limit denial cooled the deployment down")
		}
	}
}

// TestLimitsSettleExactUsage: the tokens counted are the usage the
// provider reported, not the estimate; one Redis round trip per phase.
func TestLimitsSettleExactUsage(t *testing.T) {
	srv := redistest.Start(t)
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: tpm, scope: tenant, tokens_per_minute: 100000, concurrent_requests: 5}
`)
	rig := newLimitsRig(t, srv, cfg)
	x := rig.exchange(t)
	rig.hook.N.Store(0)
	x.must(post("/v1/chat/completions", bearer()...))
	if n := rig.hook.N.Load(); n != 0 {
		t.Fatalf("request headers: %d Redis calls", n)
	}
	x.must(reqBody(chatBody))
	if n := rig.hook.N.Load(); n != 1 {
		t.Fatalf("request body: %d Redis calls, want 1", n)
	}
	if _, err := x.send(respHeaders(false, ":status", "200", "content-type", "application/json")); err != nil {
		t.Fatal(err)
	}
	if _, err := x.send(respBody(chatUpstream, true)); err != nil {
		t.Fatal(err)
	}
	x.h.end()
	if n := rig.hook.N.Load(); n != 2 {
		t.Fatalf("whole request: %d Redis calls, want 2 (reserve, settle)", n)
	}
	sum := 0
	vals, err := rig.rdb.HVals(context.Background(), "llmux:rl:{llmux}:tpm:team-a:tokens:60").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		n, _ := strconv.Atoi(v)
		sum += n
	}
	if sum != 12 {
		t.Fatalf("tokens counted %d, want the 12 the provider reported", sum)
	}
	if n, _ := rig.rdb.ZCard(context.Background(), "llmux:rl:{llmux}:tpm:team-a:concurrency").Result(); n != 0 {
		t.Fatalf("%d slots held after the end", n)
	}
}

// TestLimitsKilledStreamFreesSlot: a stream that ends without a response
// (the client went away) frees its concurrency slot.
func TestLimitsKilledStreamFreesSlot(t *testing.T) {
	srv := redistest.Start(t)
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: one, scope: key, concurrent_requests: 1}
`)
	rig := newLimitsRig(t, srv, cfg)
	first := rig.exchange(t)
	forward(t, first, `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	first.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	if _, err := first.send(respBody(`data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"he"}}]}`+"\n\n", false)); err != nil {
		t.Fatal(err)
	}
	second := rig.exchange(t)
	second.must(post("/v1/chat/completions", bearer()...))
	if st, code := immediate(t, second.must(reqBody(chatBody))); st != 429 || code != "rate_limit_exceeded" {
		t.Fatalf("second while the first streams: %d %s", st, code)
	}
	second.h.end()
	first.h.end() // Envoy ends the ext_proc stream: the client went away
	third := rig.exchange(t)
	forward(t, third, chatBody)
	third.h.end()
}

// TestLimitsDeploymentQuotaSkips: a deployment out of headroom is skipped
// for the next one in routing's order, instead of a provider 429.
func TestLimitsDeploymentQuotaSkips(t *testing.T) {
	srv := redistest.Start(t)
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: quota, scope: deployment, match: [gpt-4o-mini-openai, gpt-4o-beta], requests_per_minute: 1}
`)
	rig := newLimitsRig(t, srv, cfg)
	seen := map[string]int{}
	for range 2 {
		x := rig.exchange(t)
		forward(t, x, `{"model":"pair","messages":[{"role":"user","content":"hi"}]}`)
		seen[x.h.dep.Name]++
		x.h.end()
	}
	if seen["gpt-4o-mini-openai"] != 1 || seen["gpt-4o-beta"] != 1 {
		t.Fatalf("deployments used %v", seen)
	}
	x := rig.exchange(t)
	x.must(post("/v1/chat/completions", bearer()...))
	r := x.must(reqBody(`{"model":"pair","messages":[{"role":"user","content":"hi"}]}`))
	if st, code := immediate(t, r); st != 429 || code != "rate_limit_exceeded" {
		t.Fatalf("both out of quota: %d %s", st, code)
	}
	x.h.end()
}

func TestLimitsSpendBudget(t *testing.T) {
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: budget, scope: tenant, spend_usd_per_day: 0.000001}
`)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds})
	x := &exchange{t: t, rec: &recorder{}}
	x.h = newHandler(s, context.Background(), x.rec)
	x.must(post("/v1/chat/completions", bearer()...))
	r := x.must(reqBody(`{"model":"gpt-4o-mini","max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}`))
	st, code := immediate(t, r)
	if st != 429 || code != "insufficient_quota" || gjson.GetBytes(r.GetImmediateResponse().GetBody(), "error.type").String() != "insufficient_quota" {
		t.Fatalf("%d %s %s", st, code, r.GetImmediateResponse().GetBody())
	}
	x.h.end()
}

func TestLimitsRoutePolicy(t *testing.T) {
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: research, scope: route, requests_per_minute: 1}
`)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds})
	run := func(names ...any) (int, string) {
		x := &exchange{t: t, rec: &recorder{}}
		x.h = newHandler(s, context.Background(), x.rec)
		defer x.h.end()
		hd := post("/v1/chat/completions", bearer()...)
		hd.Attributes = routeAttrs(t, map[string]any{"io.llmux": map[string]any{"route": "research", "limits": names}})
		x.must(hd)
		r := x.must(reqBody(chatBody))
		if r.GetImmediateResponse() == nil {
			return 200, ""
		}
		return immediate(t, r)
	}
	if st, _ := run("research"); st != 200 {
		t.Fatalf("first: %d", st)
	}
	if st, code := run("research"); st != 429 || code != "rate_limit_exceeded" {
		t.Fatalf("second: %d %s", st, code)
	}
	if st, code := run("nope"); st != 500 || code != "invalid_route_metadata" {
		t.Fatalf("unknown policy: %d %s", st, code)
	}
}

// TestLimitsSharedAcrossServers: requests on three servers sharing one
// Redis never hold more concurrency slots than the policy allows.
func TestLimitsSharedAcrossServers(t *testing.T) {
	srv := redistest.Start(t)
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: shared, scope: tenant, concurrent_requests: 3, requests_per_minute: 40}
`)
	var rigs []*limitsRig
	for range 3 {
		rigs = append(rigs, newLimitsRig(t, srv, cfg))
	}
	const workers, each = 12, 5
	var inflight, peak, admitted atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rig := rigs[w%3]
			for i := range each {
				rec := &recorder{}
				h := newHandler(rig.s, context.Background(), rec)
				h.requestID = fmt.Sprintf("w%d-%d", w, i)
				if err := h.handle(post("/v1/chat/completions", bearer()...)); err != nil {
					t.Error(err)
					return
				}
				if err := h.handle(reqBody(chatBody)); err != nil {
					t.Error(err)
					return
				}
				if rec.sent[len(rec.sent)-1].GetImmediateResponse() == nil {
					admitted.Add(1)
					n := inflight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					inflight.Add(-1)
				}
				h.end()
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 3 {
		t.Fatalf("peak %d requests in flight, limit 3", p)
	}
	if a := admitted.Load(); a == 0 || a > 40 {
		t.Fatalf("admitted %d, limit 40 per minute", a)
	}
}

// TestLimitsRedisDown: with Redis stopped, a fail_closed policy answers
// 503 limits_unavailable and a fail_open one admits from the local
// limiter; after a restart the shared counters serve again.
func TestLimitsRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	for _, tc := range []struct {
		mode, source string
		status       int
		code         string
	}{
		{"fail_closed", "unavailable", 503, "limits_unavailable"},
		{"fail_open", "local", 0, ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := limitsConfig(t, `
limits:
  policies:
  - {name: p, scope: tenant, requests_per_minute: 100, on_redis_error: `+tc.mode+`}
`)
			rig := newLimitsRig(t, srv, cfg)
			srv.Stop()
			x := rig.exchange(t)
			x.must(post("/v1/chat/completions", bearer()...))
			r := x.must(reqBody(chatBody))
			if tc.status != 0 {
				st, code := immediate(t, r)
				if st != tc.status || code != tc.code || setHeader(r.GetImmediateResponse().GetHeaders(), "retry-after") != "1" {
					t.Fatalf("%d %s", st, code)
				}
			} else if r.GetImmediateResponse() != nil {
				t.Fatalf("refused: %s", r.GetImmediateResponse().GetBody())
			}
			if got := x.h.lim.dec.Source.String(); got != tc.source {
				t.Fatalf("source %s", got)
			}
			x.h.end()
			srv.Restart(t)
			y := rig.exchange(t)
			forward(t, y, chatBody)
			if y.h.lim.dec.Source != ratelimit.SourceRedis || y.h.lim.dec.Requests.Remaining != 99 {
				t.Fatalf("after the restart: %+v", y.h.lim.dec)
			}
			y.h.end()
		})
	}
}

// TestLimitsSlotNotSharedByRequestID: two concurrent requests with the
// same x-request-id hold two slots.
func TestLimitsSlotNotSharedByRequestID(t *testing.T) {
	cfg := limitsConfig(t, `
limits:
  policies:
  - {name: one, scope: key, concurrent_requests: 1}
`)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds})
	first := &exchange{t: t, rec: &recorder{}}
	first.h = newHandler(s, context.Background(), first.rec)
	forward(t, first, chatBody) // x-request-id: req-1
	defer first.h.end()
	second := &exchange{t: t, rec: &recorder{}}
	second.h = newHandler(s, context.Background(), second.rec)
	second.must(post("/v1/chat/completions", bearer()...)) // x-request-id: req-1 again
	if st, code := immediate(t, second.must(reqBody(chatBody))); st != 429 || code != "rate_limit_exceeded" {
		t.Fatalf("second request with the same id: %d %s", st, code)
	}
	second.h.end()
}
