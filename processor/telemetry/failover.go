package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// failoverInstruments are the failover concern's instruments
// (docs/recovery.md).
type failoverInstruments struct {
	tries    metric.Int64Counter
	tryCache setCache[failoverKey]
}

type failoverKey struct{ modelGroup, cause, kind string }

func (f *failoverInstruments) init(m metric.Meter) error {
	var err error
	if f.tries, err = m.Int64Counter("llmux.failover.tries", metric.WithDescription("Fallback tries llmux made after a failed one, by the requested model group, the failure's error class (cause) and kind (deployment: another deployment of the group; context_window, content_policy: a configured fallback group).")); err != nil {
		return fmt.Errorf("telemetry: failover tries: %w", err)
	}
	return nil
}

// FailoverTry counts one fallback try: the request for modelGroup failed
// with cause and llmux tries again, of kind "deployment",
// "context_window" or "content_policy".
func (m *Metrics) FailoverTry(ctx context.Context, modelGroup, cause, kind string) {
	if m == nil {
		return
	}
	m.failover.tries.Add(ctx, 1, m.failover.tryCache.get(failoverKey{modelGroup, cause, kind}, func() []attribute.KeyValue {
		return []attribute.KeyValue{
			attribute.String("model_group", modelGroup),
			attribute.String("cause", cause),
			attribute.String("kind", kind),
		}
	}).add...)
}
