package telemetry

import (
	"context"
	"fmt"
	"testing"
)

func TestFailoverInstruments(t *testing.T) {
	m, reader := newTestMetrics(t)
	ctx := context.Background()
	m.FailoverTry(ctx, "g", "rate_limited", "deployment")
	m.FailoverTry(ctx, "g", "rate_limited", "deployment")
	m.FailoverTry(ctx, "g", "context_length_exceeded", "context_window")
	want := map[string]int64{
		"cause=context_length_exceeded,kind=context_window,model_group=g": 1,
		"cause=rate_limited,kind=deployment,model_group=g":                2,
	}
	if got := sums(t, reader, "llmux.failover.tries"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("tries %v, want %v", got, want)
	}
	var none *Metrics
	none.FailoverTry(ctx, "g", "c", "k")
}
