package telemetry

import (
	"context"
	"fmt"
	"testing"
)

func TestRepairInstruments(t *testing.T) {
	m, reader := newTestMetrics(t)
	ctx := context.Background()
	m.StreamRepair(ctx, "stalled", "repaired")
	m.StreamRepair(ctx, "stalled", "repaired")
	m.StreamRepair(ctx, "inband_error", "refused")
	want := map[string]int64{"cause=inband_error,outcome=refused": 1, "cause=stalled,outcome=repaired": 2}
	if got := sums(t, reader, "llmux.stream.repairs"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("repairs %v, want %v", got, want)
	}
	var none *Metrics
	none.StreamRepair(ctx, "truncated", "failed")
}
