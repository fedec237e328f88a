package telemetry

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func newTestMetrics(t *testing.T) (*Metrics, *sdkmetric.ManualReader) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	m, err := New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithCardinalityLimit(2*maxCachedSets)))
	if err != nil {
		t.Fatal(err)
	}
	return m, reader
}

// sums returns the int64 sums of the named counter by attribute set.
func sums(t *testing.T, reader *sdkmetric.ManualReader, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				out[dp.Attributes.Encoded(attribute.DefaultEncoder())] += dp.Value
			}
		}
	}
	return out
}

func TestRecordRequestLabels(t *testing.T) {
	m, reader := newTestMetrics(t)
	ctx := context.Background()
	a := Request{Endpoint: "chat.completions", ModelGroup: "g", Provider: "p", Deployment: "d", Tenant: "t1", Status: 200,
		UpstreamLatencySeconds: 0.1, TTFTSeconds: -1, Tokens: [NumTokenKinds]int64{TokensInput: 3, TokensOutput: 5, TokensCached: 0}}
	b := a
	b.Tenant, b.Status, b.ErrorCode = "t2", 429, "rate_limit"
	b.Tokens = [NumTokenKinds]int64{TokensInput: 7}
	for range 3 {
		m.RecordRequest(ctx, a)
	}
	m.RecordRequest(ctx, b)

	want := map[string]int64{
		"deployment=d,endpoint=chat.completions,error_code=,model_group=g,provider=p,status=200,tenant=t1":           3,
		"deployment=d,endpoint=chat.completions,error_code=rate_limit,model_group=g,provider=p,status=429,tenant=t2": 1,
	}
	if got := sums(t, reader, "llmux.requests"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests\n got %v\nwant %v", got, want)
	}
	wantTokens := map[string]int64{
		"deployment=d,kind=input,model_group=g,tenant=t1":  9,
		"deployment=d,kind=output,model_group=g,tenant=t1": 15,
		"deployment=d,kind=input,model_group=g,tenant=t2":  7,
	}
	if got := sums(t, reader, "llmux.tokens"); fmt.Sprint(got) != fmt.Sprint(wantTokens) {
		t.Errorf("tokens\n got %v\nwant %v", got, wantTokens)
	}
}

// Past the cache bound, label sets are still recorded right.
func TestRecordRequestPastCacheBound(t *testing.T) {
	m, reader := newTestMetrics(t)
	ctx := context.Background()
	n := maxCachedSets + 10
	for i := range n {
		m.RecordRequest(ctx, Request{Endpoint: "embeddings", Tenant: fmt.Sprint("t", i), Status: 200, UpstreamLatencySeconds: -1, TTFTSeconds: -1})
	}
	m.RecordRequest(ctx, Request{Endpoint: "embeddings", Tenant: fmt.Sprint("t", n-1), Status: 200, UpstreamLatencySeconds: -1, TTFTSeconds: -1})
	got := sums(t, reader, "llmux.requests")
	if len(got) != n {
		t.Fatalf("%d series, want %d", len(got), n)
	}
	if v := got[fmt.Sprintf("deployment=,endpoint=embeddings,error_code=,model_group=,provider=,status=200,tenant=t%d", n-1)]; v != 2 {
		t.Errorf("last tenant counted %d times, want 2", v)
	}
}

// Recording a request whose labels were seen before builds no attribute
// set: only the SDK's own work remains.
func TestRecordRequestAllocs(t *testing.T) {
	m, _ := newTestMetrics(t)
	ctx := context.Background()
	r := Request{Endpoint: "chat.completions", ModelGroup: "g", Provider: "p", Deployment: "d", Tenant: "t", Status: 200,
		UpstreamLatencySeconds: 0.2, TTFTSeconds: 0.1, Tokens: [NumTokenKinds]int64{TokensInput: 3, TokensOutput: 5}}
	m.RecordRequest(ctx, r)
	if n := testing.AllocsPerRun(100, func() { m.RecordRequest(ctx, r) }); n > 0 {
		t.Errorf("%v allocations per request, want none", n)
	}
}
