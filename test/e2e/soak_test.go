package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"go.uber.org/goleak"

	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

// soakRequests is how many requests TestSoak sends: 2,000, or
// LLMUX_SOAK_REQUESTS.
func soakRequests(t *testing.T) int {
	n := 2000
	if v := os.Getenv("LLMUX_SOAK_REQUESTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("LLMUX_SOAK_REQUESTS=%q: want a positive integer", v)
		}
	}
	return n
}

// soakSeed is the fault plans' seed: 1, or LLMUX_SOAK_SEED.
func soakSeed() uint64 {
	seed := uint64(1)
	if v := os.Getenv("LLMUX_SOAK_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	return seed
}

// faultPlan is a fault: a status (Kind empty) or a kind after some frames.
type faultPlan struct {
	status int
	kind   string
	after  int
}

// drawFault draws one of plans with probability 1/slots each, else a
// clean try.
func drawFault(rng *rand.Rand, slots int, plans ...faultPlan) fakeprovider.Fault {
	f := fakeprovider.DefaultFault()
	if i := rng.IntN(slots); i < len(plans) {
		f.Status, f.Kind, f.After = plans[i].status, plans[i].kind, plans[i].after
	}
	return f
}

// soakFault draws a fault plan: two in three tries are clean; the
// others fail with a status, an in-band error or a reset, before the
// first byte or after some content, or are truncated.
func soakFault(rng *rand.Rand) fakeprovider.Fault {
	return drawFault(rng, 24,
		faultPlan{status: http.StatusServiceUnavailable},
		faultPlan{status: http.StatusTooManyRequests},
		faultPlan{status: http.StatusInternalServerError},
		faultPlan{kind: fakeprovider.FaultInbandError},
		faultPlan{kind: fakeprovider.FaultInbandError, after: 3},
		faultPlan{kind: fakeprovider.FaultResetBeforeHeaders},
		faultPlan{kind: fakeprovider.FaultReset, after: 2},
		faultPlan{kind: fakeprovider.FaultTruncate, after: 2})
}

// soakResult is what the client got for one request.
type soakResult struct {
	streamResult     // a whole response is read into it too
	status       int // the API error's status, 0 when none
}

// TestSoak sends many requests, streamed and not, eight at a time, while
// every deployment fails at random (statuses, in-band errors, resets,
// truncations; before the first byte and after content). Every request
// gets exactly one answer: its own text once, or an error, or its own
// text cut short and an error — never text from two tries; the access log
// has one line per request; the request bytes, streams and goroutines
// return to their baseline.
func TestSoak(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() { // runs after the stack's own cleanups
		if err := goleak.Find(baseline); err != nil {
			t.Errorf("goroutines above the baseline after the soak: %v", err)
		}
	})
	n, seed := soakRequests(t), soakSeed()
	t.Logf("%d requests, seed %d (LLMUX_SOAK_SEED changes the fault plans)", n, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	spans := withSpanCounter(t) // every request traced, under -race too
	r := startFallbacksRigReplies(t, "", "")
	// The plans are taken in arrival order; the deployment a request
	// reaches depends on routing's health, so which request gets which
	// plan varies: the checks below hold for any assignment.
	for _, f := range []*fakeprovider.Server{r.fake, r.second, r.third} {
		for range n {
			f.Enqueue(soakFault(rng))
		}
	}

	heapBefore := liveHeap()
	start := time.Now()
	results := soakRun(n, 8, func(i int) soakResult { return r.soakOne(i, i%2 == 1) })
	elapsed := time.Since(start)
	t.Logf("%d requests in %s (%.0f/s)", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())

	var ok, failed, cut int
	statuses := map[string]int{}
	for i, res := range results {
		want := fmt.Sprintf("Hello from fake-openai: soak request %d", i)
		switch {
		case res.err == nil:
			ok++
			if res.content != want || res.finish != "stop" || i%2 == 1 && res.usage != 1 {
				t.Errorf("request %d: content %q finish %q usage chunks %d, want %q once", i, res.content, res.finish, res.usage, want)
			}
		case res.content == "":
			failed++
			statuses[fmt.Sprint(res.status, " ", errCode(res.err))]++
			if res.status != 0 && res.status < 400 {
				t.Errorf("request %d: status %d with error %v", i, res.status, res.err)
			}
		default:
			cut++
			if !strings.HasPrefix(want, res.content) {
				t.Errorf("request %d: cut short with %q, not a prefix of its own answer %q", i, res.content, want)
			}
		}
	}
	t.Logf("answered %d, failed %d %v, cut short after content %d", ok, failed, statuses, cut)
	if ok < n/2 {
		t.Errorf("only %d of %d requests answered: failover is not recovering", ok, n)
	}

	checkLogLines(t, r.rig, n, "soak-")
	r.waitNoStreams()
	// One request span per request, each in its own trace, ended once; at
	// least one provider call span each.
	if got, traces, calls := spans.counts(); got != n || traces != n || calls < n {
		t.Errorf("%d request spans in %d traces and %d call spans for %d requests", got, traces, calls, n)
	}
	if b := r.streams.Server.Buffered(); b != 0 {
		t.Errorf("%d request bytes still held after the soak", b)
	}
	// The heap is reported, not asserted: the access log and the fakes'
	// request records grow with n by design.
	t.Logf("live heap %d KiB before, %d KiB after", heapBefore>>10, liveHeap()>>10)
}

// soakRun runs one(i) for i in [0, n), workers at a time, and returns the
// results in order.
func soakRun(n, workers int, one func(i int) soakResult) []soakResult {
	results := make([]soakResult, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = one(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// checkLogLines checks that the ingress access log has one line for each
// of the n requests whose ids are prefix0 … prefix<n-1>, none twice. The
// egress listener's lines (fallbacks, continuations) are interleaved: it
// waits for one more line until every request's ingress line is in.
func checkLogLines(t *testing.T, r *rig, n int, prefix string) {
	t.Helper()
	seen := map[string]int{}
	for want, ingress := n, 0; ingress < n; want++ {
		logs := r.accessLogs(want)
		if logs == nil {
			return // real Envoy: its access log is its own stdout
		}
		clear(seen)
		ingress = 0
		for _, l := range logs {
			if l["listener"] == "egress" {
				continue
			}
			ingress++
			if id, _ := l["request_id"].(string); strings.HasPrefix(id, prefix) {
				seen[id]++
			}
		}
		want = max(want, len(logs))
	}
	for i := range n {
		if c := seen[fmt.Sprintf("%s%d", prefix, i)]; c != 1 {
			t.Errorf("request %s%d: %d ingress log lines, want 1", prefix, i, c)
		}
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// soakOne sends request i and reports what the client got.
func (r *fallbacksRig) soakOne(i int, stream bool) soakResult {
	return soakRequest(r.client, "soak", fmt.Sprintf("soak-%d", i), fmt.Sprintf("soak request %d", i), stream)
}

// soakRequest sends one chat request with request id reqID and reports
// what the client got.
func soakRequest(c openai.Client, model, reqID, msg string, stream bool) soakResult {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := option.WithHeader("x-request-id", reqID)
	params := openai.ChatCompletionNewParams{Model: model, Messages: userMsg(msg)}
	var res soakResult
	if !stream {
		resp, err := c.Chat.Completions.New(ctx, params, id)
		if err != nil {
			res.err = err
		} else if len(resp.Choices) > 0 {
			res.content, res.finish = resp.Choices[0].Message.Content, string(resp.Choices[0].FinishReason)
		}
	} else {
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
		res.streamResult = readStream(c.Chat.Completions.NewStreaming(ctx, params, id))
	}
	var apiErr *openai.Error
	if errors.As(res.err, &apiErr) {
		res.status = apiErr.StatusCode
	}
	return res
}

// errCode is an API error's code, or the error's text.
func errCode(err error) string {
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return err.Error()
}

// TestSoakEveryKind runs the soak's random faults against every provider
// kind's fake (two deployments of it, so failover and repair both have
// somewhere to go), a tenth as many requests per kind, four at a time:
// each request gets its whole reply (failed over or repaired), or an error
// with at most a prefix of it; the access log has one line per request;
// goroutines return to their baseline.
func TestSoakEveryKind(t *testing.T) {
	n := max(soakRequests(t)/10, 20)
	for ki, p := range matrixProviders {
		t.Run(p.kind, func(t *testing.T) {
			baseline := goleak.IgnoreCurrent()
			t.Cleanup(func() {
				if err := goleak.Find(baseline); err != nil {
					t.Errorf("goroutines above the baseline after the soak: %v", err)
				}
			})
			r, fake, _ := matrixRig(t, p)
			rng := rand.New(rand.NewPCG(soakSeed(), uint64(ki)))
			for range 3 * n { // more plans than tries: the rest stay queued
				fake.Enqueue(soakFault(rng))
			}
			soakWholeReplies(t, r, n, "soak-"+p.kind+"-")
		})
	}
}

// soakWholeReplies sends n requests for model group m (ids prefix0 …),
// four at a time, streamed and not, and checks that each got the fakes'
// whole reply (failed over or repaired), or an error after at most a prefix
// of it; that at least half were answered; one access log line each.
func soakWholeReplies(t *testing.T, r *rig, n int, prefix string) {
	t.Helper()
	results := soakRun(n, 4, func(i int) soakResult {
		return soakRequest(r.client, "m", fmt.Sprintf("%s%d", prefix, i), "tell me about the fox", i%2 == 1)
	})
	ok := 0
	for i, res := range results {
		id := fmt.Sprintf("%s%d", prefix, i)
		switch {
		case res.err == nil:
			ok++
			if res.content != repairReply {
				t.Errorf("request %s: %q, want the whole reply %q\n%s", id, res.content, repairReply, r.requestLog(id))
			}
		case !strings.HasPrefix(repairReply, res.content):
			t.Errorf("request %s: %v after %q, not a prefix of the reply\n%s", id, res.err, res.content, r.requestLog(id))
		}
	}
	t.Logf("%d of %d answered whole", ok, n)
	if ok < n/2 {
		t.Errorf("only %d of %d requests answered: failover and repair are not recovering", ok, n)
	}
	checkLogLines(t, r, n, prefix)
	r.waitNoStreams()
}

// TestSoakMixedKinds: one model group of four provider kinds (OpenAI,
// Anthropic, Bedrock, Gemini), each failing at random, so that failover and
// repair cross kinds: a stream one provider began is continued by another,
// through its own translator and decoder, with a prefill or a continue
// instruction as the new deployment needs. Each request still gets the
// whole reply, or an error after at most a prefix of it; one log line each;
// goroutines back to baseline.
func TestSoakMixedKinds(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(baseline); err != nil {
			t.Errorf("goroutines above the baseline after the soak: %v", err)
		}
	})
	for _, owned := range []bool{false, true} {
		name := "splice"
		if owned {
			name = "owned"
		}
		t.Run(name, func(t *testing.T) { soakMixedKinds(t, owned) })
	}
}

// soakMixedKinds runs TestSoakMixedKinds in splice mode or, owned, on
// envoy/standalone.yaml's owned host (where a reset after content is
// repaired too).
func soakMixedKinds(t *testing.T, owned bool) {
	n := max(soakRequests(t)/5, 40)
	r, fakes := mixedRig(t)
	if owned {
		r.client = openai.NewClient(option.WithBaseURL(r.baseURL), option.WithAPIKey(clientKey), option.WithMaxRetries(0), withHost(ownedHost))
	}
	rng := rand.New(rand.NewPCG(soakSeed(), 99))
	for _, f := range fakes {
		for range 3 * n {
			f.Enqueue(mixedFault(rng))
		}
	}
	soakWholeReplies(t, r, n, "mixed-")
	crossedKinds(t, r)
}

// mixedRig starts the stack with one model group "m" of four provider
// kinds (OpenAI, Anthropic, Bedrock, Gemini; each its own fake, in
// repairProviders' order), failover across all of them, and health that
// tolerates bursts.
func mixedRig(t *testing.T) (*rig, []*fakeprovider.Server) {
	t.Helper()
	egressAddr, ln := egressListener(t)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "server:\n  max_request_body_bytes: 1048576\n  egress_address: %s\n  stream_idle_timeout: 1s\n", egressAddr)
	cfg.WriteString("auth:\n  keys:\n  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}\nproviders:\n")
	var deps []string
	clusters := map[string]string{}
	var fakes []*fakeprovider.Server
	for i, p := range repairProviders {
		fmt.Fprintf(&cfg, "- {name: p%d, kind: %s, cluster: %s, %s}\n", i, p.kind, p.cluster, p.extra)
		f := p.start(t)
		fakes = append(fakes, f)
		clusters[p.cluster] = f.Addr()
	}
	cfg.WriteString("deployments:\n")
	for i, p := range repairProviders {
		fmt.Fprintf(&cfg, "- {name: d%d-%s, provider: p%d, model: %q}\n", i, p.kind, i, p.model)
		deps = append(deps, fmt.Sprintf("d%d-%s", i, p.kind))
	}
	// Health is set to tolerate bursts, as TestSoak's group does, so that
	// failover and repair rather than cooldowns are what this exercises.
	fmt.Fprintf(&cfg, "model_groups:\n- {name: m, deployments: [%s], failover: {max_attempts: %d},\n  routing: {health: {failures: 100, window: 1s, cooldown: 1s, max_cooldown: 1s}}}\n",
		strings.Join(deps, ", "), len(deps))
	r := startRigOpts(t, cfg.String(), clusters, func(so *envoysim.Options) { so.Listeners = map[string]net.Listener{"egress": ln} })
	t.Cleanup(r.streams.Server.Close)
	return r, fakes
}

// crossedKinds checks that failovers and repairs crossed provider kinds,
// from llmux's log.
func crossedKinds(t *testing.T, r *rig) {
	t.Helper()
	crossed := map[string]int{}
	for _, line := range strings.Split(r.llmuxLog.String(), "\n") {
		for _, what := range []string{"llmux: repairing a stream", "llmux: failover"} {
			if !strings.Contains(line, `msg="`+what+`"`) {
				continue
			}
			failed, next := logField(line, "failed"), logField(line, "next")
			if kind(failed) != "" && kind(next) != "" && kind(failed) != kind(next) {
				crossed[what]++
			}
		}
	}
	t.Logf("across kinds: %v", crossed)
	if crossed["llmux: repairing a stream"] == 0 || crossed["llmux: failover"] == 0 {
		t.Errorf("no repair or no failover crossed provider kinds: %v", crossed)
	}
}

// mixedFault draws TestSoakMixedKinds' fault plans: half the tries are
// clean; the others fail with a status or an in-band error before content,
// or, after content (seven frames in, past every fake's preamble), with an
// in-band error, a truncation or a reset.
func mixedFault(rng *rand.Rand) fakeprovider.Fault {
	return drawFault(rng, 10,
		faultPlan{status: http.StatusServiceUnavailable},
		faultPlan{kind: fakeprovider.FaultInbandError},
		faultPlan{kind: fakeprovider.FaultInbandError, after: 7},
		faultPlan{kind: fakeprovider.FaultTruncate, after: 7},
		faultPlan{kind: fakeprovider.FaultReset, after: 7})
}

// logField is the value of key in a text log line ("" when absent).
func logField(line, key string) string {
	_, v, ok := strings.Cut(line, " "+key+"=")
	if !ok {
		return ""
	}
	v, _, _ = strings.Cut(v, " ")
	return v
}

// kind is the provider kind in a TestSoakMixedKinds deployment name
// ("d1-anthropic").
func kind(dep string) string {
	_, k, _ := strings.Cut(dep, "-")
	return k
}

// requestLog is llmux's log lines of one request.
func (r *rig) requestLog(id string) string {
	var b strings.Builder
	for _, line := range strings.Split(r.llmuxLog.String(), "\n") {
		if strings.Contains(line, "request_id="+id+" ") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TestSoakCancels: clients that go away at random points — before the
// answer, after some chunks, during a failover or a repair, also while a
// stall is being repaired on the watchdog's goroutine — in splice and owned
// mode, with every request traced: nothing panics or races, every request
// has one access log line and one ended request span, held request bytes,
// streams and goroutines go back to their baseline.
func TestSoakCancels(t *testing.T) {
	baseline := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(baseline); err != nil {
			t.Errorf("goroutines above the baseline after the soak: %v", err)
		}
	})
	n := max(soakRequests(t)/10, 20)
	for _, owned := range []bool{false, true} {
		name := "splice"
		if owned {
			name = "owned"
		}
		t.Run(name, func(t *testing.T) {
			spans := withSpanCounter(t)
			r, fakes := mixedRig(t)
			opts := []option.RequestOption{}
			if owned {
				opts = append(opts, withHost(ownedHost))
			}
			rng := rand.New(rand.NewPCG(soakSeed(), 7))
			for _, f := range fakes {
				for range 3 * n {
					f.Enqueue(drawFault(rng, 8,
						faultPlan{status: http.StatusServiceUnavailable},
						faultPlan{kind: fakeprovider.FaultInbandError, after: 7},
						faultPlan{kind: fakeprovider.FaultTruncate, after: 7},
						faultPlan{kind: fakeprovider.FaultStall, after: 7},
						faultPlan{kind: fakeprovider.FaultReset, after: 7}))
				}
			}
			// Each client reads 0–11 chunks, then goes away (cut 12 reads
			// the whole answer).
			cuts := make([]int, n)
			for i := range cuts {
				cuts[i] = rng.IntN(13)
			}
			soakRun(n, 8, func(i int) soakResult {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox"),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}}
				s := r.client.Chat.Completions.NewStreaming(ctx, params, append(opts, option.WithHeader("x-request-id", fmt.Sprintf("cancel-%d", i)))...)
				for k := 0; k < cuts[i] && s.Next(); k++ {
				}
				cancel()
				s.Close()
				return soakResult{}
			})
			checkLogLines(t, r, n, "cancel-")
			r.waitNoStreams()
			if b := r.streams.Server.Buffered(); b != 0 {
				t.Errorf("%d request bytes still held", b)
			}
			if got, traces, _ := spans.counts(); got != n || traces != n {
				t.Errorf("%d request spans in %d traces for %d requests", got, traces, n)
			}
		})
	}
}

// TestSoakMixedShapes: the cross-kind group under random faults with three
// shapes of streamed request interleaved — plain text, tools, JSON output.
// A tool call or a JSON answer is never continued (docs/recovery.md): each
// request succeeds with its whole reply, a complete tool call with JSON
// arguments or valid JSON, or fails with an error; never broken JSON, a
// tool call after a cut, or text twice.
func TestSoakMixedShapes(t *testing.T) {
	n := max(soakRequests(t)/7, 30)
	r, fakes := mixedRig(t)
	rng := rand.New(rand.NewPCG(soakSeed(), 13))
	for _, f := range fakes {
		for range 3 * n {
			f.Enqueue(mixedFault(rng))
		}
	}
	tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
		Name: "lookup", Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}}})}
	type outcome struct {
		acc openai.ChatCompletionAccumulator
		err error
	}
	outs := make([]outcome, n)
	soakRun(n, 4, func(i int) soakResult {
		params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox"),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}}
		switch i % 3 {
		case 1:
			params.Tools = tools
		case 2:
			params.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s := r.client.Chat.Completions.NewStreaming(ctx, params, option.WithHeader("x-request-id", fmt.Sprintf("shape-%d", i)))
		for s.Next() {
			outs[i].acc.AddChunk(s.Current())
		}
		outs[i].err = s.Err()
		s.Close()
		return soakResult{}
	})
	counts := map[string]int{}
	for i, o := range outs {
		id := fmt.Sprintf("shape-%d", i)
		if o.err != nil {
			counts["error"]++
			continue
		}
		if len(o.acc.Choices) != 1 {
			t.Errorf("%s: %d choices", id, len(o.acc.Choices))
			continue
		}
		m, finish := o.acc.Choices[0].Message, o.acc.Choices[0].FinishReason
		switch {
		case len(m.ToolCalls) > 0:
			counts["tool call"]++
			for _, tc := range m.ToolCalls {
				if !json.Valid([]byte(tc.Function.Arguments)) || tc.Function.Name != "lookup" {
					t.Errorf("%s: tool call %+v\n%s", id, tc, r.requestLog(id))
				}
			}
			if finish != "tool_calls" {
				t.Errorf("%s: finish %q with a tool call", id, finish)
			}
		case i%3 == 2:
			counts["json"]++
			if !json.Valid([]byte(m.Content)) || finish != "stop" {
				t.Errorf("%s: JSON answer %q, finish %q\n%s", id, m.Content, finish, r.requestLog(id))
			}
		case i%3 == 1:
			// A tools request answered in text: some fakes answer tools
			// with text; and a stream cut in the Anthropic or Bedrock
			// fakes' "Let me use the tools." preamble is continued by
			// another kind's fake with its own whole reply (a real model
			// would go on to the call; a fake cannot know its neighbour's
			// script).
			counts["text"]++
			if !strings.HasSuffix(m.Content, repairReply) || strings.Count(m.Content, repairReply) != 1 || finish != "stop" {
				t.Errorf("%s: %q (finish %q), want the reply once, at the end\n%s", id, m.Content, finish, r.requestLog(id))
			}
		default:
			counts["text"]++
			if m.Content != repairReply || finish != "stop" {
				t.Errorf("%s: %q (finish %q), want the whole reply\n%s", id, m.Content, finish, r.requestLog(id))
			}
		}
	}
	t.Logf("%d requests: %v", n, counts)
	if counts["tool call"] == 0 || counts["json"] == 0 || counts["text"] == 0 {
		t.Errorf("a shape never succeeded: %v", counts)
	}
	checkLogLines(t, r, n, "shape-")
	r.waitNoStreams()
}
