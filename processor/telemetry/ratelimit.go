package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ratelimitInstruments are the limits concern's instruments
// (docs/limits.md).
type ratelimitInstruments struct {
	meter     metric.Meter
	decisions metric.Int64Counter
	sets      setCache[decisionKey]
}

type decisionKey struct{ decision, source string }

func (r *ratelimitInstruments) init(m metric.Meter) error {
	r.meter = m
	var err error
	if r.decisions, err = m.Int64Counter("llmux.ratelimit.decisions", metric.WithDescription("Limit decisions: allowed, denied (429) or unavailable (503, Redis failing under fail_closed), by source (redis, local, unavailable).")); err != nil {
		return fmt.Errorf("telemetry: ratelimit decisions: %w", err)
	}
	return nil
}

// RateLimitDecision counts a limits decision.
func (m *Metrics) RateLimitDecision(ctx context.Context, decision, source string) {
	if m == nil {
		return
	}
	m.ratelimit.decisions.Add(ctx, 1, m.ratelimit.sets.get(decisionKey{decision, source}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("decision", decision), attribute.String("source", source)}
	}).add...)
}

// ObserveRateLimiter registers the limiter's gauges and counters, read at
// each collection: its mode (1 for the current one of memory, redis,
// fallback), the Redis calls that failed, and the decisions taken without
// Redis because it failed.
func (m *Metrics) ObserveRateLimiter(mode func() string, redisErrors, fallbacks func() int64) error {
	if m == nil {
		return nil
	}
	mt := m.ratelimit.meter
	if _, err := mt.Int64ObservableGauge("llmux.ratelimit.mode",
		metric.WithDescription("The limiter's mode: 1 for the current one of memory (no Redis configured), redis, fallback (Redis failing: the circuit breaker is open)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			cur := mode()
			for _, md := range []string{"memory", "redis", "fallback"} {
				v := int64(0)
				if md == cur {
					v = 1
				}
				o.Observe(v, metric.WithAttributes(attribute.String("mode", md)))
			}
			return nil
		})); err != nil {
		return fmt.Errorf("telemetry: ratelimit mode: %w", err)
	}
	if _, err := mt.Int64ObservableCounter("llmux.ratelimit.redis.errors",
		metric.WithDescription("Redis calls of the limiter that failed or timed out."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(redisErrors())
			return nil
		})); err != nil {
		return fmt.Errorf("telemetry: ratelimit redis errors: %w", err)
	}
	if _, err := mt.Int64ObservableCounter("llmux.ratelimit.fallbacks",
		metric.WithDescription("Limit decisions taken without Redis because it failed (fail_open locally, or fail_closed denials)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(fallbacks())
			return nil
		})); err != nil {
		return fmt.Errorf("telemetry: ratelimit fallbacks: %w", err)
	}
	return nil
}
