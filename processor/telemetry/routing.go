package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// routingInstruments are the routing concern's instruments
// (docs/routing.md).
type routingInstruments struct {
	meter     metric.Meter
	picks     metric.Int64Counter
	cooldowns metric.Int64Counter
	pickSets  setCache[pickKey]
}

type pickKey struct{ modelGroup, strategy, reason string }

func (r *routingInstruments) init(m metric.Meter) error {
	r.meter = m
	var err error
	if r.picks, err = m.Int64Counter("llmux.routing.picks", metric.WithDescription("Deployments chosen, by model group, strategy and reason (cost, latency, latency_explore, least_busy, weighted, cooldown_all, ...).")); err != nil {
		return fmt.Errorf("telemetry: routing picks: %w", err)
	}
	if r.cooldowns, err = m.Int64Counter("llmux.routing.cooldowns", metric.WithDescription("Cooldowns a deployment entered after failing (model_groups[].routing.health), by deployment.")); err != nil {
		return fmt.Errorf("telemetry: routing cooldowns: %w", err)
	}
	return nil
}

// RoutePicked counts a deployment chosen for a request.
func (m *Metrics) RoutePicked(ctx context.Context, modelGroup, strategy, reason string) {
	if m == nil {
		return
	}
	m.routing.picks.Add(ctx, 1, m.routing.pickSets.get(pickKey{modelGroup, strategy, reason}, func() []attribute.KeyValue {
		return []attribute.KeyValue{
			attribute.String("model_group", modelGroup),
			attribute.String("strategy", strategy),
			attribute.String("reason", reason),
		}
	}).add...)
}

// RouteCooldown counts a cooldown a deployment entered.
func (m *Metrics) RouteCooldown(ctx context.Context, deployment string) {
	if m != nil {
		m.routing.cooldowns.Add(ctx, 1, metric.WithAttributes(attribute.String("deployment", deployment)))
	}
}

// ObserveCoolingDown registers the gauge of deployments cooling down,
// read from f at each collection.
func (m *Metrics) ObserveCoolingDown(f func() int64) error {
	if m == nil {
		return nil
	}
	_, err := m.routing.meter.Int64ObservableGauge("llmux.routing.cooling_down",
		metric.WithDescription("Deployments in cooldown in this process (skipped by routing until their cooldown ends)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(f())
			return nil
		}))
	if err != nil {
		return fmt.Errorf("telemetry: routing cooling down: %w", err)
	}
	return nil
}
