package processor

import (
	"sync"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// costState says what llmux knows about a request's cost.
type costState uint8

const (
	// costNone: nothing to price (no deployment chosen, or nothing was
	// sent upstream). No cost fields in the metadata.
	costNone costState = iota
	// costKnown: cost_usd is the request's cost.
	costKnown
	// costUnknown: the request went upstream but its cost is not known
	// (the deployment has no price, or the provider reported no usage
	// for a response that may have been billed).
	costUnknown
)

// requestCost is the pricing concern's state of one request, set once by
// priceRequest when the request completes. Failed tries before the last
// (failover.go) are priced as they end, by priceTry.
type requestCost struct {
	usd   float64
	state costState

	tries        float64 // failed tries' cost
	triesIn      int64   // failed tries' input tokens, as their providers reported them
	triesOut     int64   // failed tries' output tokens
	triesUnknown bool    // a failed try's cost is not known
	priced       bool    // priceTry priced the current try (failover.go's switchTo resets it)
	final        bool    // priceRequest ran: the request's cost is set
}

// priceRequest prices the finished request from the decoder's usage and
// the deployment's price, once (complete calls it, and onResponseBody
// when the terminal event arrives before the upstream's end), adds the failed
// tries' cost, and records the spend. It does not allocate, except for
// the first log line about a deployment without a price.
func (h *handler) priceRequest() {
	if h.dep == nil || h.forwardedAt.IsZero() || h.cost.final {
		return
	}
	h.cost.final = true
	usd, st := 0.0, costKnown
	if !h.cost.priced {
		usd, st = h.tryCost()
		if st == costKnown {
			h.recordSpend(h.dep, usd)
		}
	}
	h.cost.usd, h.cost.state = usd+h.cost.tries, st
	if h.cost.triesUnknown {
		h.cost.state = costUnknown
	}
}

// priceTry prices a failed try that failover leaves (its real usage, when
// the provider billed any) into the request's cost.
func (h *handler) priceTry() {
	if h.dep == nil || h.forwardedAt.IsZero() || h.dec == nil || h.cost.priced {
		return
	}
	h.cost.priced = true
	if res := h.dec.Result(); res.HasUsage {
		// Limits settle every try's real tokens (limits.go).
		h.cost.triesIn += res.Usage.InputTokens
		h.cost.triesOut += res.Usage.OutputTokens
	}
	usd, st := h.tryCost()
	if st != costKnown {
		h.cost.triesUnknown = true
		return
	}
	h.cost.tries += usd
	h.recordSpend(h.dep, usd)
}

// priceAttempt prices a failed attempt whose usage is known or estimated
// (a stream repair's, repair.go) at its own deployment's price into the
// request's cost. Limits count its tokens with the client's usage, which
// includes them.
func (h *handler) priceAttempt(dep *config.Deployment, u translate.Usage) {
	if dep == nil {
		return
	}
	if dep.Price == nil {
		h.s.opts.Metrics.PriceUnknown(h.ctx, dep.Name)
		h.s.unknownPrices.logOnce(h, dep)
		h.cost.triesUnknown = true
		return
	}
	usd := dep.Price.Cost(u)
	h.cost.tries += usd
	h.recordSpend(dep, usd)
}

// tryCost is the cost of the current try: its deployment's price applied
// to its decoder's usage.
func (h *handler) tryCost() (float64, costState) {
	price := h.dep.Price
	if price == nil {
		h.s.opts.Metrics.PriceUnknown(h.ctx, h.dep.Name)
		h.s.unknownPrices.logOnce(h, h.dep)
		return 0, costUnknown
	}
	if h.dec == nil {
		// No response yet: the upstream may still have done (and billed)
		// the work.
		return 0, costUnknown
	}
	res := h.dec.Result()
	if sd, ok := h.dec.(*spliceDecoder); ok {
		// A continuation: its own usage; the failed attempts' were priced
		// at their own deployments' prices (priceAttempt).
		res = sd.Decoder.Result()
	}
	switch {
	case res.HasUsage:
		return price.Cost(res.Usage), costKnown
	case res.Err != nil && !res.FirstContent:
		// The provider refused the request before producing anything:
		// providers bill no tokens for that.
		return 0, costKnown
	}
	// A response without usage (cut short, or a provider that did not
	// report it) may have been billed.
	return 0, costUnknown
}

// recordSpend adds a try's known cost on dep to the spend counter.
func (h *handler) recordSpend(dep *config.Deployment, usd float64) {
	group := ""
	if h.group != nil {
		group = h.group.Name
	}
	h.s.opts.Metrics.Spend(h.ctx, h.tenant, group, dep.Name, usd)
}

// costMetadata adds cost_usd and cost_known to the final metadata.
func (h *handler) costMetadata(v *mdValues) {
	switch h.cost.state {
	case costKnown:
		v.num("cost_usd", h.cost.usd)
		v.boolean("cost_known", true)
	case costUnknown:
		v.boolean("cost_known", false)
	}
}

// The two boolean values, shared by every metadata Struct (read only).
var (
	mdTrue  = structpb.Value_BoolValue{BoolValue: true}
	mdFalse = structpb.Value_BoolValue{BoolValue: false}
)

// boolean adds a boolean field.
func (v *mdValues) boolean(k string, b bool) {
	if b {
		v.next(k).Kind = &mdTrue
	} else {
		v.next(k).Kind = &mdFalse
	}
}

// unknownPrices remembers the deployments without a price already logged
// under the configuration in force, so each is logged once per
// configuration, not once per request.
type unknownPrices struct {
	mu     sync.Mutex
	cfg    *config.Runtime
	logged map[*config.Deployment]bool
}

func (u *unknownPrices) logOnce(h *handler, d *config.Deployment) {
	u.mu.Lock()
	if u.cfg != h.cfg {
		u.cfg, u.logged = h.cfg, map[*config.Deployment]bool{}
	}
	seen := u.logged[d]
	u.logged[d] = true
	u.mu.Unlock()
	if !seen {
		h.s.opts.Logger.Warn("llmux: deployment has no price; its requests' cost is unknown (cost_known=false). Set its price_key or price (docs/pricing.md)",
			"deployment", d.Name, "provider_kind", d.Provider.Kind, "model", d.Model, "config_version", h.cfg.Version())
	}
}
