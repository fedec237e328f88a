package processor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/processor/route"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// routingAuth starts the test configurations.
const routingAuth = `
auth:
  keys: [{name: k, tenant: t, key_env: LLMUX_TEST_KEY}]
`

const routingConfig = routingAuth + `
providers:
- {name: a, kind: openai, cluster: cluster-a}
- {name: b, kind: openai, cluster: cluster-b}
- {name: c, kind: anthropic, cluster: cluster-c}
deployments:
- {name: dep-a, provider: a, model: m}
- {name: dep-b, provider: b, model: m, priority: 1}
- {name: dep-c, provider: c, model: m}
model_groups:
- name: g
  deployments: [dep-a, dep-b, dep-c]
  routing: {strategy: least_busy, health: {failures: 2, window: 1m, cooldown: 30s}}
- {name: other, deployments: [dep-b]}
`

// routingServer is a Server on routingConfig with a manual clock; only
// OpenAI kinds are served (dep-c never is).
type routingServer struct {
	s   *Server
	now time.Time
	log *bytes.Buffer
}

func newRoutingServer(t *testing.T, yaml string) *routingServer {
	t.Helper()
	rt, err := config.Parse([]byte(yaml), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { return testKey, k == "LLMUX_TEST_KEY" }})
	if err != nil {
		t.Fatal(err)
	}
	rs := &routingServer{now: time.Unix(1_700_000_000, 0), log: &bytes.Buffer{}}
	now := func() time.Time { return rs.now }
	rs.s = New(Options{Config: func() *config.Runtime { return rt }, Now: now, Translator: openaiKinds,
		Logger: slog.New(slog.NewTextHandler(rs.log, nil))})
	return rs
}

// start runs request headers and body on a new handler; attrs are the
// first message's attributes.
func (rs *routingServer) start(t *testing.T, attrs map[string]*structpb.Struct, body string) (*exchange, *extprocv3.ProcessingResponse) {
	t.Helper()
	x := &exchange{t: t, rec: &recorder{}}
	x.h = newHandler(rs.s, context.Background(), x.rec)
	hd := post("/v1/chat/completions", bearer()...)
	hd.Attributes = attrs
	if r := x.must(hd); r.GetImmediateResponse() != nil {
		return x, r
	}
	return x, x.must(reqBody(body))
}

func mdOf(r *extprocv3.ProcessingResponse) map[string]*structpb.Value {
	return r.GetDynamicMetadata().GetFields()["io.llmux"].GetStructValue().GetFields()
}

func TestRoutingCooldownMovesTraffic(t *testing.T) {
	rs := newRoutingServer(t, routingConfig)
	send := func(status string) (dep, reason string) {
		t.Helper()
		var last []*extprocv3.ProcessingResponse
		x, _ := rs.start(t, nil, `{"model":"g","messages":[{"role":"user","content":"hi"}]}`)
		rs.now = rs.now.Add(time.Second)
		if status == "503" {
			// Envoy's own reply: a refused connection, marked by the
			// shipped local_reply_config.
			x.send(respHeaders(false, ":status", "503", "content-type", "application/json", localReplyHeader, "envoy")) // held for the body
			last, _ = x.send(respBody(`{"error":{"message":"The provider could not be reached (upstream_reset_before_response_started{connection_refused}).","type":"server_error","code":"upstream_unavailable"}}`, true))
		} else {
			x.send(respHeaders(false, ":status", "200", "content-type", "application/json"))
			last, _ = x.send(respBody(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, true))
		}
		x.h.end()
		// The final reply's metadata names the choice.
		md := mdOf(last[len(last)-1])
		if md["routing_strategy"].GetStringValue() != "least_busy" {
			t.Errorf("routing_strategy %v", md["routing_strategy"])
		}
		return md["deployment"].GetStringValue(), md["routing_reason"].GetStringValue()
	}
	// dep-c is a kind this build cannot serve; dep-b is a lower tier.
	for range 3 {
		if dep, reason := send("200"); dep != "dep-a" || reason != "least_busy" {
			t.Fatalf("healthy: %s (%s)", dep, reason)
		}
	}
	send("503")
	send("503") // the second failure within the window: dep-a cools down
	if dep, _ := send("200"); dep != "dep-b" {
		t.Fatalf("during dep-a's cooldown: %s", dep)
	}
	if !strings.Contains(rs.log.String(), "deployment cooling down") {
		t.Errorf("no cooldown log line:\n%s", rs.log)
	}
	rs.now = rs.now.Add(30 * time.Second)
	if dep, _ := send("200"); dep != "dep-a" {
		t.Fatalf("after the cooldown: %s", dep)
	}
	for _, st := range rs.s.routing.router.Statuses() {
		if st.InFlight != 0 {
			t.Errorf("%s: %d in flight after every request ended", st.Deployment, st.InFlight)
		}
	}
}

// Every way a request ends leaves the in-flight count: a cancel before
// the response, a client gone mid-stream, a stall.
func TestRoutingOutcomeOnEveryEnd(t *testing.T) {
	rs := newRoutingServer(t, routingConfig)
	body := `{"model":"g","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	x1, _ := rs.start(t, nil, body)
	x2, _ := rs.start(t, nil, body)
	x2.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	inflight := func() int64 {
		var n int64
		for _, st := range rs.s.routing.router.Statuses() {
			n += st.InFlight
		}
		return n
	}
	if inflight() != 2 {
		t.Fatalf("in flight %d, want 2", inflight())
	}
	x1.h.end() // Envoy closed the stream before the response
	x2.h.end() // and this one mid-stream
	if inflight() != 0 {
		t.Errorf("in flight %d after both ended", inflight())
	}
	// Neither counted as a failure of dep-a.
	if rs.s.routing.router.CoolingDown() != 0 {
		t.Error("a cancellation cooled a deployment down")
	}
}

func TestRoutingNoDeployment(t *testing.T) {
	rs := newRoutingServer(t, routingAuth+`
providers:
- {name: c, kind: anthropic, cluster: cluster-c}
deployments:
- {name: dep-c, provider: c, model: m}
model_groups:
- {name: g, deployments: [dep-c]}
`)
	_, r := rs.start(t, nil, `{"model":"g","messages":[{"role":"user","content":"hi"}]}`)
	if st, code := immediate(t, r); st != 503 || code != "no_deployment_available" {
		t.Errorf("%d %s", st, code)
	}
}

func TestMaxOutputTokens(t *testing.T) {
	for body, want := range map[string]int64{
		`{"max_tokens":100}`:                            100,
		`{"max_completion_tokens":50,"max_tokens":100}`: 50,
		`{"max_tokens":"100"}`:                          0,
		`{}`:                                            0,
		`{"messages":[{"max_tokens":9}],"max_tokens":12}`: 12,
	} {
		if got := maxOutputTokens([]byte(body)); got != want {
			t.Errorf("%s: %d, want %d", body, got, want)
		}
	}
}

// The cost strategy prices each deployment from the price registry:
// gpt-4o-mini costs less than gpt-4o for the same request, and a model
// the table does not know goes last.
func TestRoutingCost(t *testing.T) {
	rs := newRoutingServer(t, routingAuth+`
providers:
- {name: a, kind: openai, cluster: cluster-a}
deployments:
- {name: big, provider: a, model: gpt-4o}
- {name: unknown, provider: a, model: no-such-model-anywhere}
- {name: small, provider: a, model: gpt-4o-mini}
model_groups:
- name: g
  deployments: [big, unknown, small]
  routing: {strategy: cost}
`)
	x, _ := rs.start(t, nil, `{"model":"g","max_tokens":50,"messages":[{"role":"user","content":"What is the capital of France?"}]}`)
	defer x.h.end()
	a := &x.h.rs.attempt
	var order []string
	for i := range a.Len() {
		order = append(order, x.h.rs.cands[a.At(i)].Name)
	}
	if strings.Join(order, ",") != "small,big,unknown" || a.Reason().String() != "cost" {
		t.Errorf("order %v (%v), want small,big,unknown (cost)", order, a.Reason())
	}
}

// Health survives a reload that keeps the deployment and is forgotten
// when a reload drops it.
func TestRoutingStateAcrossReloads(t *testing.T) {
	parse := func(yaml string, at time.Time) *config.Runtime {
		rt, err := config.Parse([]byte(yaml), config.LoadOptions{Kinds: translate.KnownKinds, Now: func() time.Time { return at },
			Getenv: func(k string) (string, bool) { return testKey, k == "LLMUX_TEST_KEY" }})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	t0 := time.Unix(1_700_000_000, 0)
	cur := parse(routingConfig, t0)
	s := New(Options{Config: func() *config.Runtime { return cur }, Now: func() time.Time { return t0 }, Translator: openaiKinds, Logger: discardLogger()})
	run := func() {
		x := &exchange{t: t, rec: &recorder{}}
		x.h = newHandler(s, context.Background(), x.rec)
		x.must(post("/v1/chat/completions", bearer()...))
		x.must(reqBody(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`))
		x.send(respHeaders(false, ":status", "503", "content-type", "application/json"))
		x.send(respBody(`{"error":{"message":"busy","type":"server_error","code":"overloaded"}}`, true))
		x.h.end()
	}
	run()
	run() // dep-a cools down (failures: 2)
	cooling := func() []string {
		var out []string
		for _, st := range s.RoutingStatus() {
			if !st.CoolUntil.IsZero() {
				out = append(out, st.Deployment)
			}
		}
		return out
	}
	if got := cooling(); len(got) != 1 || got[0] != "dep-a" {
		t.Fatalf("cooling %v", got)
	}
	cur = parse(routingConfig+"\n# touched\n", t0.Add(time.Minute)) // same deployments
	run()                                                           // on the new configuration: dep-b (dep-a still cools)
	if got := cooling(); len(got) != 1 || got[0] != "dep-a" {
		t.Fatalf("after a reload keeping dep-a: cooling %v", got)
	}
	cur = parse(strings.NewReplacer("dep-a, ", "", "- {name: dep-a, provider: a, model: m}\n", "").Replace(routingConfig), t0.Add(2*time.Minute))
	run()
	for _, st := range s.RoutingStatus() {
		if st.Deployment == "dep-a" {
			t.Fatalf("dep-a is still known after a reload dropped it: %+v", st)
		}
	}
}

// refusingTranslator refuses every request, as a translator does for a
// request its provider cannot take (llmux answers it locally, after
// routing picked the deployment).
type refusingTranslator struct{ translate.Translator }

func (refusingTranslator) Request(context.Context, *translate.Request, *translate.Target) (*translate.Upstream, error) {
	return nil, &translate.Error{Code: translate.CodeInvalidRequest, Message: "refused locally"}
}

// TestRoutingLocalRefusalCancelsPick: a request llmux refuses itself after
// routing picked a deployment leaves nothing in flight and does not count
// as the deployment's success (which would close a half-open deployment
// that never answered) nor as its failure.
func TestRoutingLocalRefusalCancelsPick(t *testing.T) {
	rs := newRoutingServer(t, routingAuth+`
providers:
- {name: a, kind: openai, cluster: cluster-a}
deployments:
- {name: dep-a, provider: a, model: m}
model_groups:
- name: g
  deployments: [dep-a]
  routing: {health: {failures: 1, window: 1m, cooldown: 30s}}
`)
	base, _ := translate.Lookup("openai")
	rs.s.opts.Translator = func(string) (translate.Translator, bool) { return refusingTranslator{base}, true }
	g, _ := rs.s.opts.Config().Group("g")
	router := rs.s.routing.router
	status := func() route.Status {
		t.Helper()
		for _, st := range router.Statuses() {
			if st.Deployment == "dep-a" {
				return st
			}
		}
		t.Fatal("dep-a unknown to the router")
		return route.Status{}
	}

	// A failure cools dep-a down; after the cooldown it is half-open.
	var a route.Attempt
	if !router.Pick(&a, &route.Request{Policy: &g.Routing, Candidates: rs.s.candidates(rs.s.opts.Config(), g)}) {
		t.Fatal("no pick")
	}
	a.Report(route.Outcome{Code: translate.CodeOverloaded})
	rs.now = rs.now.Add(31 * time.Second)
	if st := status(); !st.HalfOpen {
		t.Fatalf("after a failure: %+v, want half-open", st)
	}

	for i := range 3 {
		x, r := rs.start(t, nil, `{"model":"g","messages":[{"role":"user","content":"hi"}]}`)
		if r.GetImmediateResponse().GetStatus().GetCode() != 400 {
			t.Fatalf("request %d: %v, want the local 400", i, r)
		}
		x.h.end()
		if st := status(); st.InFlight != 0 || !st.HalfOpen {
			t.Fatalf("after local refusal %d: %+v, want nothing in flight and still half-open", i, st)
		}
	}
}
