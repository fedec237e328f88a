package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// pricingInstruments are the pricing concern's instruments.
type pricingInstruments struct {
	spend        metric.Float64Counter
	priceUnknown metric.Int64Counter
	spendSets    setCache[spendKey]
	unknownSets  setCache[string]
}

type spendKey struct{ tenant, modelGroup, deployment string }

func (p *pricingInstruments) init(m metric.Meter) error {
	var err error
	if p.spend, err = m.Float64Counter("llmux.spend_usd", metric.WithDescription("Cost of finished requests in USD, by tenant, model group and deployment (requests whose cost is known; docs/pricing.md).")); err != nil {
		return fmt.Errorf("telemetry: spend: %w", err)
	}
	if p.priceUnknown, err = m.Int64Counter("llmux.price_unknown", metric.WithDescription("Requests sent to a deployment that has no price (cost_known false), by deployment.")); err != nil {
		return fmt.Errorf("telemetry: price unknown: %w", err)
	}
	return nil
}

// Spend adds the cost of a finished request.
func (m *Metrics) Spend(ctx context.Context, tenant, modelGroup, deployment string, usd float64) {
	if m == nil || usd <= 0 {
		return
	}
	m.pricing.spend.Add(ctx, usd, m.pricing.spendSets.get(spendKey{tenant, modelGroup, deployment}, func() []attribute.KeyValue {
		return []attribute.KeyValue{
			attribute.String("tenant", tenant),
			attribute.String("model_group", modelGroup),
			attribute.String("deployment", deployment),
		}
	}).add...)
}

// PriceUnknown counts a request to a deployment without a price.
func (m *Metrics) PriceUnknown(ctx context.Context, deployment string) {
	if m == nil {
		return
	}
	m.pricing.priceUnknown.Add(ctx, 1, m.pricing.unknownSets.get(deployment, func() []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("deployment", deployment)}
	}).add...)
}
