package telemetry

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func TestRoutingInstruments(t *testing.T) {
	m, reader := newTestMetrics(t)
	ctx := context.Background()
	for range 2 {
		m.RoutePicked(ctx, "g", "cost", "cost")
	}
	m.RoutePicked(ctx, "g", "cost", "cooldown_all")
	m.RouteCooldown(ctx, "d")
	cooling := int64(3)
	if err := m.ObserveCoolingDown(func() int64 { return cooling }); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"model_group=g,reason=cooldown_all,strategy=cost": 1, "model_group=g,reason=cost,strategy=cost": 2}
	if got := sums(t, reader, "llmux.routing.picks"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("picks %v, want %v", got, want)
	}
	if got := sums(t, reader, "llmux.routing.cooldowns"); got["deployment=d"] != 1 {
		t.Errorf("cooldowns %v", got)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var gauge int64 = -1
	for _, sm := range rm.ScopeMetrics {
		for _, x := range sm.Metrics {
			if x.Name == "llmux.routing.cooling_down" {
				gauge = x.Data.(metricdata.Gauge[int64]).DataPoints[0].Value
			}
		}
	}
	if gauge != 3 {
		t.Errorf("cooling_down gauge %d, want 3", gauge)
	}
	var none *Metrics
	none.RoutePicked(ctx, "g", "s", "r")
	none.RouteCooldown(ctx, "d")
	if err := none.ObserveCoolingDown(func() int64 { return 0 }); err != nil {
		t.Error(err)
	}
}
