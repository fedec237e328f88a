package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// redactionInstruments are the redaction concern's instruments.
type redactionInstruments struct {
	found   metric.Int64Counter
	blocked metric.Int64Counter
	sets    setCache[redactKey]
}

type redactKey struct{ policy, kind, where string }

func (r *redactionInstruments) init(m metric.Meter) error {
	var err error
	if r.found, err = m.Int64Counter("llmux.redaction.found", metric.WithDescription("Values of personal data or secrets found, by policy, kind and where (request, response); counts only, never values (docs/redaction.md).")); err != nil {
		return fmt.Errorf("telemetry: redaction found: %w", err)
	}
	if r.blocked, err = m.Int64Counter("llmux.redaction.blocked", metric.WithDescription("Requests refused because they held a kind of data their policy blocks, by policy and kind.")); err != nil {
		return fmt.Errorf("telemetry: redaction blocked: %w", err)
	}
	return nil
}

func (r *redactionInstruments) set(policy, kind, where string) metric.AddOption {
	return r.sets.get(redactKey{policy, kind, where}, func() []attribute.KeyValue {
		kv := []attribute.KeyValue{attribute.String("policy", policy), attribute.String("kind", kind)}
		if where != "" {
			kv = append(kv, attribute.String("where", where))
		}
		return kv
	}).add[0]
}

// RedactionFound adds n values of kind found by policy in the request or
// the response (where).
func (m *Metrics) RedactionFound(ctx context.Context, policy, kind, where string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.redaction.found.Add(ctx, int64(n), m.redaction.set(policy, kind, where))
}

// RedactionBlocked counts a request refused for holding kind.
func (m *Metrics) RedactionBlocked(ctx context.Context, policy, kind string) {
	if m == nil {
		return
	}
	m.redaction.blocked.Add(ctx, 1, m.redaction.set(policy, kind, ""))
}
