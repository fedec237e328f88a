package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// repairInstruments are the stream repair concern's instruments
// (docs/recovery.md).
type repairInstruments struct {
	repairs metric.Int64Counter
	sets    setCache[repairKey]
}

type repairKey struct{ cause, outcome string }

func (r *repairInstruments) init(m metric.Meter) error {
	var err error
	if r.repairs, err = m.Int64Counter("llmux.stream.repairs", metric.WithDescription("Streams that failed after content and were continued, by cause (inband_error, truncated, stalled) and outcome (repaired, failed, refused).")); err != nil {
		return fmt.Errorf("telemetry: stream repairs: %w", err)
	}
	return nil
}

// StreamRepair counts a stream repair with its cause and outcome.
func (m *Metrics) StreamRepair(ctx context.Context, cause, outcome string) {
	if m == nil {
		return
	}
	m.repair.repairs.Add(ctx, 1, m.repair.sets.get(repairKey{cause, outcome}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("cause", cause), attribute.String("outcome", outcome)}
	}).add...)
}
