package processor

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// testMetrics returns llmux's instruments on a meter provider that lives
// as long as the test, and the reader that collects them.
func testMetrics(t testing.TB) (*telemetry.Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	metrics, err := telemetry.New(mp)
	if err != nil {
		t.Fatal(err)
	}
	return metrics, reader
}

// costRig runs exchanges on one server with metrics and a captured log.
type costRig struct {
	s      *Server
	reader *sdkmetric.ManualReader
	log    *bytes.Buffer
}

func newCostRig(t testing.TB) *costRig {
	t.Helper()
	cfg := testConfig(t)
	metrics, reader := testMetrics(t)
	log := &bytes.Buffer{}
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds, Metrics: metrics,
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	return &costRig{s: s, reader: reader, log: log}
}

func (r *costRig) exchange(t *testing.T) *exchange {
	rec := &recorder{}
	return &exchange{t: t, h: newHandler(r.s, context.Background(), rec), rec: rec}
}

// metric sums a counter's points whose attributes include attrs.
func (r *costRig) metric(t *testing.T, name string, attrs ...attribute.KeyValue) float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	match := func(set attribute.Set) bool {
		for _, a := range attrs {
			if v, ok := set.Value(a.Key); !ok || v != a.Value {
				return false
			}
		}
		return true
	}
	var n float64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[float64]:
				for _, dp := range d.DataPoints {
					if match(dp.Attributes) {
						n += dp.Value
					}
				}
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					if match(dp.Attributes) {
						n += float64(dp.Value)
					}
				}
			}
		}
	}
	return n
}

const wholeUpstream = `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"prompt_tokens_details":{"cached_tokens":400}}}`

// whole runs a non-streamed exchange and returns the final metadata.
func whole(t *testing.T, x *exchange, model string, status, body string) map[string]float64 {
	t.Helper()
	forward(t, x, `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
	if _, err := x.send(respHeaders(false, ":status", status, "content-type", "application/json")); err != nil {
		t.Fatal(err)
	}
	out, err := x.send(respBody(body, true))
	if err != nil || len(out) == 0 {
		t.Fatalf("body: %v %v", out, err)
	}
	md := br2md(out[len(out)-1])
	got := map[string]float64{}
	if v, ok := md["cost_usd"]; ok {
		got["cost_usd"] = v.GetNumberValue()
	}
	if v, ok := md["cost_known"]; ok {
		got["cost_known"] = 0
		if v.GetBoolValue() {
			got["cost_known"] = 1
		}
	}
	return got
}

// TestCostMetadata: the final metadata carries the request's cost,
// computed by hand here, and the spend counter adds it up.
func TestCostMetadata(t *testing.T) {
	r := newCostRig(t)
	// gpt-4o-mini-2024-07-18: 600 × 0.15 + 400 × 0.075 + 100 × 0.6 per million.
	const want = 600*0.15e-6 + 400*0.075e-6 + 100*0.6e-6
	for i := range 2 {
		md := whole(t, r.exchange(t), "gpt-4o-mini", "200", wholeUpstream)
		if md["cost_known"] != 1 || math.Abs(md["cost_usd"]-want) > 1e-15 {
			t.Fatalf("request %d: metadata %v, want cost_usd %g", i, md, want)
		}
	}
	spend := r.metric(t, "llmux.spend_usd", attribute.String("deployment", "gpt-4o-mini-openai"), attribute.String("tenant", "team-a"), attribute.String("model_group", "gpt-4o-mini"))
	if math.Abs(spend-2*want) > 1e-15 {
		t.Errorf("spend %g, want %g", spend, 2*want)
	}

	// A provider's refusal before any content costs nothing, and says so.
	md := whole(t, r.exchange(t), "gpt-4o-mini", "429", `{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}`)
	if md["cost_known"] != 1 || md["cost_usd"] != 0 {
		t.Errorf("429: metadata %v", md)
	}

	// A local reply (an unknown model) went nowhere: no cost fields.
	x := r.exchange(t)
	x.must(post("/v1/chat/completions", bearer()...))
	out := x.must(reqBody(`{"model":"nope","messages":[{"role":"user","content":"hi"}]}`))
	if m := br2md(out); m["cost_known"] != nil || m["cost_usd"] != nil {
		t.Errorf("local reply has cost fields: %v", m)
	}
}

// TestCostUnknown: a deployment without a price reports cost_known=false
// and no cost, counts each request, and is logged once per configuration.
func TestCostUnknown(t *testing.T) {
	r := newCostRig(t)
	for i := range 3 {
		md := whole(t, r.exchange(t), "llama", "200", wholeUpstream)
		if _, ok := md["cost_usd"]; ok || md["cost_known"] != 0 {
			t.Fatalf("request %d: metadata %v", i, md)
		}
	}
	if n := r.metric(t, "llmux.price_unknown", attribute.String("deployment", "llama-vllm")); n != 3 {
		t.Errorf("llmux.price_unknown = %v, want 3", n)
	}
	if n := r.metric(t, "llmux.spend_usd"); n != 0 {
		t.Errorf("spend %v for unknown prices", n)
	}
	if n := strings.Count(r.log.String(), "deployment has no price"); n != 1 {
		t.Errorf("%d log lines, want 1:\n%s", n, r.log.String())
	}
	if !strings.Contains(r.log.String(), "deployment=llama-vllm") {
		t.Errorf("log line does not name the deployment:\n%s", r.log.String())
	}
}

// pricedHandler is a handler whose request completed on gpt-4o-mini with
// usage, ready for priceRequest.
func pricedHandler(r *costRig) *handler {
	g, _ := r.s.opts.Config().Group("gpt-4o-mini")
	h := newHandler(r.s, context.Background(), &recorder{})
	h.group, h.dep, h.tenant = g, g.Deployments[0], "team-a"
	h.forwardedAt = h.start
	h.dec = &usageDecoder{res: translate.Result{HasUsage: true, Completed: true,
		Usage: translate.Usage{InputTokens: 1000, CachedTokens: 400, OutputTokens: 100}}}
	return h
}

// usageDecoder is a finished decoder that reports usage.
type usageDecoder struct{ res translate.Result }

func (d *usageDecoder) Decode(dst, _ []byte, _ bool) ([]byte, error) { return dst, nil }
func (d *usageDecoder) ContentType() string                          { return "application/json" }
func (d *usageDecoder) Status() int                                  { return 200 }
func (d *usageDecoder) Result() *translate.Result                    { return &d.res }

// TestPriceRequestAllocs: pricing a request, recording its spend and
// adding its metadata fields allocate nothing once the spend counter's
// attribute set is cached.
func TestPriceRequestAllocs(t *testing.T) {
	r := newCostRig(t)
	h := pricedHandler(r)
	h.priceRequest() // caches the attribute set
	v := mdValues{size: mdFields}
	v.num("warm", 1)
	if n := testing.AllocsPerRun(100, func() {
		h.cost = requestCost{}
		h.priceRequest()
		v.vals, v.nums = v.vals[:0], v.nums[:0]
		h.costMetadata(&v)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	if want := 600*0.15e-6 + 400*0.075e-6 + 100*0.6e-6; h.cost.state != costKnown || math.Abs(h.cost.usd-want) > 1e-15 {
		t.Errorf("cost %+v, want %g", h.cost, want)
	}
}

// BenchmarkPriceRequest is the pricing concern's work per request: the
// cost from the usage and the spend counter.
func BenchmarkPriceRequest(b *testing.B) {
	h := pricedHandler(newCostRig(b))
	b.ReportAllocs()
	for b.Loop() {
		h.cost = requestCost{}
		h.priceRequest()
	}
}

// TestCostAtTerminalEvent: a stream's cost goes out with the reply that
// carries its terminal event, before the upstream's end of stream, so an
// access log written when the client closes early has it; the end of
// stream then prices nothing twice.
func TestCostAtTerminalEvent(t *testing.T) {
	r := newCostRig(t)
	x := r.exchange(t)
	forward(t, x, `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	if _, err := x.send(respHeaders(false, ":status", "200", "content-type", "text/event-stream")); err != nil {
		t.Fatal(err)
	}
	events := `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":null}]}` + "\n\n" +
		`data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n" +
		`data: {"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"prompt_tokens_details":{"cached_tokens":400}}}` + "\n\n" +
		"data: [DONE]\n\n"
	out, err := x.send(respBody(events, false))
	if err != nil || len(out) == 0 {
		t.Fatalf("body: %v %v", out, err)
	}
	const want = 600*0.15e-6 + 400*0.075e-6 + 100*0.6e-6
	md := br2md(out[len(out)-1])
	if md["cost_known"] == nil || !md["cost_known"].GetBoolValue() || math.Abs(md["cost_usd"].GetNumberValue()-want) > 1e-15 {
		t.Fatalf("terminal event's reply: metadata %v, want cost_usd %g", md, want)
	}
	if _, err := x.send(respBody("", true)); err != nil {
		t.Fatal(err)
	}
	spend := r.metric(t, "llmux.spend_usd", attribute.String("deployment", "gpt-4o-mini-openai"))
	if math.Abs(spend-want) > 1e-15 {
		t.Errorf("spend %g, want %g (priced once)", spend, want)
	}
}
