package processor

import (
	"sync"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
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
			h.recordSpend(usd)
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
	usd, st := h.tryCost()
	if st != costKnown {
		h.cost.triesUnknown = true
		return
	}
	h.cost.tries += usd
	h.recordSpend(usd)
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
	switch res := h.dec.Result(); {
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

// recordSpend adds a try's known cost to the spend counter.
func (h *handler) recordSpend(usd float64) {
	group := ""
	if h.group != nil {
		group = h.group.Name
	}
	h.s.opts.Metrics.Spend(h.ctx, h.tenant, group, h.dep.Name, usd)
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
