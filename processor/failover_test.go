package processor

import (
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/llmux/llmux/pricing"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// The order fallbacks are tried in without routing: untried deployments this build serves,
// lowest priority, then highest weight, then configuration order; weight 0
// never.
func TestNextDeployment(t *testing.T) {
	p := &config.Provider{Name: "p", Kind: "openai"}
	none := &config.Provider{Name: "q", Kind: "no-such-kind"}
	d := func(name string, pri, w int, prov *config.Provider) *config.Deployment {
		return &config.Deployment{Name: name, Priority: pri, Weight: w, Provider: prov}
	}
	first, heavy, light, later, off, unserved := d("first", 0, 1, p), d("heavy", 1, 5, p), d("light", 1, 1, p), d("later", 2, 9, p), d("off", 0, 0, p), d("unserved", 0, 9, none)
	h := &handler{s: New(Options{}), group: &config.Group{Deployments: []*config.Deployment{first, off, unserved, light, heavy, later}}}
	for _, tc := range []struct {
		tried []*config.Deployment
		want  string
	}{
		{[]*config.Deployment{first}, "heavy"},
		{[]*config.Deployment{first, heavy}, "light"},
		{[]*config.Deployment{first, heavy, light}, "later"},
		{[]*config.Deployment{heavy, light, later}, "first"},
	} {
		h.fo.ntried = copy(h.fo.tried[:], tc.tried)
		dep, tr := h.nextDeployment()
		if dep == nil || tr == nil || dep.Name != tc.want {
			t.Errorf("after %d tried: %v, want %s", len(tc.tried), dep, tc.want)
		}
	}
	// Nothing left: weight 0 and kinds this build lacks are never tried.
	h.group.Deployments = []*config.Deployment{first, off, unserved}
	h.fo.ntried = copy(h.fo.tried[:], []*config.Deployment{first})
	if dep, _ := h.nextDeployment(); dep != nil {
		t.Errorf("got %s, want none", dep.Name)
	}
}

// The client gets the most informative of several failures.
func TestMoreInformative(t *testing.T) {
	e := func(c translate.Code) *translate.Error { return &translate.Error{Code: c} }
	for _, tc := range []struct {
		a, b *translate.Error
		want bool
	}{
		{e(translate.CodeRateLimited), e(translate.CodeUpstreamUnavailable), true},
		{e(translate.CodeUpstreamUnavailable), e(translate.CodeRateLimited), false},
		{e(translate.CodeContextLengthExceeded), e(translate.CodeRateLimited), true},
		{e(translate.CodeOverloaded), e(translate.CodeTimeout), true},
		{e(translate.CodeTimeout), e(translate.CodeOverloaded), false},
		{e(translate.CodeTimeout), nil, true},
		{e(translate.CodeUpstreamUnavailable), e(translate.CodeUpstreamUnavailable), false},
	} {
		if got := moreInformative(tc.a, tc.b); got != tc.want {
			t.Errorf("moreInformative(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}

// resultDecoder is a decoder that only reports a result.
type resultDecoder struct{ res translate.Result }

func (d *resultDecoder) Status() int                                  { return 200 }
func (d *resultDecoder) ContentType() string                          { return "application/json" }
func (d *resultDecoder) Decode(dst, _ []byte, _ bool) ([]byte, error) { return dst, nil }
func (d *resultDecoder) Result() *translate.Result                    { return &d.res }

// pricedDeployments are a cheap and a dear deployment and one without a
// price.
func pricedDeployments() (cheap, dear, unpriced *config.Deployment) {
	cheap = &config.Deployment{Name: "cheap", Provider: &config.Provider{Name: "p"},
		Price: &pricing.Entry{Rates: pricing.Rates{InputPerToken: 1e-6, OutputPerToken: 2e-6}}}
	dear = &config.Deployment{Name: "dear", Provider: &config.Provider{Name: "p"},
		Price: &pricing.Entry{Rates: pricing.Rates{InputPerToken: 10e-6, OutputPerToken: 20e-6}}}
	unpriced = &config.Deployment{Name: "unpriced", Provider: &config.Provider{Name: "p", Kind: "openai"}}
	return cheap, dear, unpriced
}

// Failed tries' real usage is added to the request's cost, each at its
// own deployment's price, once; an unknown one makes the total unknown.
func TestFailedTriesCost(t *testing.T) {
	cheap, dear, unpriced := pricedDeployments()
	used := func(in, out int64) *resultDecoder {
		return &resultDecoder{translate.Result{HasUsage: true, Usage: translate.Usage{InputTokens: in, OutputTokens: out}}}
	}
	refused := &resultDecoder{translate.Result{Err: &translate.Error{Code: translate.CodeOverloaded}}}
	type try struct {
		dep *config.Deployment
		dec translate.Decoder
	}
	for _, tc := range []struct {
		name      string
		failed    []try
		last      try
		wantUSD   float64
		wantState costState
	}{
		{"refusals cost nothing", []try{{cheap, refused}}, try{dear, used(100, 10)}, 100*10e-6 + 10*20e-6, costKnown},
		{"a billed failure adds up", []try{{cheap, used(1000, 50)}}, try{dear, used(100, 10)}, 1000*1e-6 + 50*2e-6 + 100*10e-6 + 10*20e-6, costKnown},
		{"an unpriced failure", []try{{unpriced, used(1000, 50)}}, try{dear, used(100, 10)}, 0, costUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &handler{s: New(Options{Logger: slog.New(slog.DiscardHandler)}), cfg: testConfig(t), forwardedAt: time.Unix(1, 0)}
			for _, f := range tc.failed {
				h.dep, h.dec, h.cost.priced = f.dep, f.dec, false
				h.priceTry()
				h.priceTry() // once per try
			}
			h.dep, h.dec, h.cost.priced = tc.last.dep, tc.last.dec, false
			h.priceRequest()
			if h.cost.state != tc.wantState || tc.wantState == costKnown && math.Abs(h.cost.usd-tc.wantUSD) > 1e-12 {
				t.Errorf("cost %g (%v), want %g (%v)", h.cost.usd, h.cost.state, tc.wantUSD, tc.wantState)
			}
		})
	}
}

// The kept request body stays counted in the server's bounded bytes while
// failover may need it, and is given back at the request's end; without
// failover it is given back once the request phase ends.
func TestKeptBodyBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		egress string
		kept   bool
	}{
		{"failover on", "\nserver:\n  egress_address: 127.0.0.1:1", true},
		{"failover off", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRoutingServer(t, tc.egress+"\n"+routingConfig)
			body := `{"model":"g","messages":[{"role":"user","content":"hi"}]}`
			x, r := rs.start(t, nil, body)
			if r.GetImmediateResponse() != nil {
				t.Fatalf("refused: %s", r.GetImmediateResponse().GetBody())
			}
			want := int64(0)
			if tc.kept {
				want = int64(len(body))
			}
			if got := rs.s.Buffered(); got != want {
				t.Errorf("after forwarding: %d bytes held, want %d", got, want)
			}
			x.send(respHeaders(false, ":status", "200", "content-type", "application/json"))
			x.send(respBody(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, true))
			if got := rs.s.Buffered(); got != 0 {
				t.Errorf("after the response: %d bytes held", got)
			}
			x.h.end()
		})
	}
}

// The group a refusal moves to: the first configured one not entered yet
// and allowed by the route; none for other errors, and none once every
// one was entered (a cycle ends).
func TestFallbackGroup(t *testing.T) {
	a, b, c := &config.Group{Name: "a"}, &config.Group{Name: "b"}, &config.Group{Name: "c"}
	a.Failover.ContextWindow = []*config.Group{b, c}
	a.Failover.ContentPolicy = []*config.Group{c}
	b.Failover.ContextWindow = []*config.Group{a}
	e := func(c translate.Code) *translate.Error { return &translate.Error{Code: c} }
	for _, tc := range []struct {
		name    string
		current *config.Group
		entered []*config.Group
		allowed []string // the route's allow-list; nil: every group
		err     *translate.Error
		want    *config.Group
	}{
		{"context window", a, []*config.Group{a}, nil, e(translate.CodeContextLengthExceeded), b},
		{"content policy", a, []*config.Group{a}, nil, e(translate.CodeContentFiltered), c},
		{"next when the first was entered", a, []*config.Group{a, b}, nil, e(translate.CodeContextLengthExceeded), c},
		{"a cycle ends", b, []*config.Group{a, b}, nil, e(translate.CodeContextLengthExceeded), nil},
		{"route allow-list", a, []*config.Group{a}, []string{"a", "c"}, e(translate.CodeContextLengthExceeded), c},
		{"not a fallback class", a, []*config.Group{a}, nil, e(translate.CodeRateLimited), nil},
		{"none configured", c, []*config.Group{c}, nil, e(translate.CodeContentFiltered), nil},
		{"no error", a, []*config.Group{a}, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &handler{group: tc.current}
			h.fo.ngroups = copy(h.fo.groups[:], tc.entered)
			if tc.allowed != nil {
				h.routeMeta = &routePolicy{groups: map[string]struct{}{}}
				for _, n := range tc.allowed {
					h.routeMeta.groups[n] = struct{}{}
				}
			}
			if got := h.fallbackGroup(tc.err); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// A repaired stream's attempts are each priced at their own deployment's
// price: the failed attempt's usage (reported or estimated) at its
// deployment's, the continuation's own usage at the answering one's —
// while the client's usage counts both.
func TestRepairAttemptsCost(t *testing.T) {
	cheap, dear, unpriced := pricedDeployments()
	failed := translate.Usage{InputTokens: 1000, OutputTokens: 50}
	cont := &resultDecoder{translate.Result{HasUsage: true, Usage: translate.Usage{InputTokens: 1100, OutputTokens: 30}}}
	for _, tc := range []struct {
		name      string
		first     *config.Deployment
		wantUSD   float64
		wantState costState
	}{
		{"cheap then dear", cheap, 1000*1e-6 + 50*2e-6 + 1100*10e-6 + 30*20e-6, costKnown},
		{"dear then dear", dear, 1000*10e-6 + 50*20e-6 + 1100*10e-6 + 30*20e-6, costKnown},
		{"unpriced failure", unpriced, 0, costUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &handler{s: New(Options{Logger: slog.New(slog.DiscardHandler)}), cfg: testConfig(t), forwardedAt: time.Unix(1, 0)}
			h.priceAttempt(tc.first, failed)
			sd := &spliceDecoder{Decoder: cont, prior: failed}
			h.dep, h.dec = dear, sd
			h.priceRequest()
			if h.cost.state != tc.wantState || tc.wantState == costKnown && math.Abs(h.cost.usd-tc.wantUSD) > 1e-12 {
				t.Errorf("cost %g (%v), want %g (%v)", h.cost.usd, h.cost.state, tc.wantUSD, tc.wantState)
			}
			if u := sd.Result().Usage; u.InputTokens != 2100 || u.OutputTokens != 80 {
				t.Errorf("client usage %+v, want both attempts", u)
			}
		})
	}
}
