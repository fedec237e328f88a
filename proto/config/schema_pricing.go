package config

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/llmux/llmux/pricing"
)

// Pricing says where prices come from (docs/pricing.md).
type Pricing struct {
	// DefaultTable uses the price table embedded in llmux (litellm's
	// model_prices_and_context_window.json); default true.
	DefaultTable *bool `yaml:"default_table" json:"default_table"`
	// Files are price tables in the same format whose entries replace the
	// default table's and each earlier file's (later wins, entry by entry).
	// Relative paths resolve against the configuration file's directory.
	// They are watched and reloaded with the configuration: a file that
	// becomes invalid or disappears rejects the reload.
	Files []string `yaml:"files" json:"files,omitempty"`
}

// PriceSpec is a deployment's own price, which beats every table. Rates
// left out fall back as in the tables: cached reads and cache writes at
// the input rate, reasoning at the output rate.
type PriceSpec struct {
	// InputPerMillion is USD per million input tokens.
	InputPerMillion *float64 `yaml:"input_per_million" json:"input_per_million,omitempty"`
	// OutputPerMillion is USD per million output tokens.
	OutputPerMillion *float64 `yaml:"output_per_million" json:"output_per_million,omitempty"`
	// CachedReadPerMillion is USD per million input tokens read from a
	// prompt cache.
	CachedReadPerMillion *float64 `yaml:"cached_read_per_million" json:"cached_read_per_million,omitempty"`
	// CacheWritePerMillion is USD per million input tokens written to a
	// prompt cache.
	CacheWritePerMillion *float64 `yaml:"cache_write_per_million" json:"cache_write_per_million,omitempty"`
	// ReasoningPerMillion is USD per million reasoning tokens.
	ReasoningPerMillion *float64 `yaml:"reasoning_per_million" json:"reasoning_per_million,omitempty"`
	// PerImage is USD per input image.
	PerImage *float64 `yaml:"per_image" json:"per_image,omitempty"`
	// PerAudioSecond is USD per second of input audio.
	PerAudioSecond *float64 `yaml:"per_audio_second" json:"per_audio_second,omitempty"`
}

// PriceKeyDeployment is Deployment.PriceKey for a deployment priced by its
// own price settings.
const PriceKeyDeployment = "deployment"

// Prices is the price table in force: the default table (unless
// pricing.default_table is false) merged with pricing.files.
func (r *Runtime) Prices() *pricing.Table { return r.prices }

// redactedPricing is the pricing section as /config shows it: as
// configured, plus the key each deployment's price resolved to ("deployment"
// for its own price, null when its cost is unknown).
type redactedPricing struct {
	Pricing
	Resolved map[string]*string `json:"resolved"`
}

func (r *Runtime) redactedPricing() redactedPricing {
	out := redactedPricing{Pricing: r.file.Pricing, Resolved: map[string]*string{}}
	for _, g := range r.sorted {
		for _, d := range g.Deployments {
			if d.Price == nil {
				out.Resolved[d.Name] = nil
			} else {
				out.Resolved[d.Name] = &d.PriceKey
			}
		}
	}
	return out
}

// emptyPrices is the table with no entries.
var emptyPrices, _ = pricing.Parse([]byte("{}"))

// validatePricing builds the price table and gives every deployment its
// price: its own price settings, else the entry its price_key or its
// model resolves to, else none (unknown cost).
func validatePricing(c *errs, f *File, rt *Runtime, opts LoadOptions, deployments map[string]*Deployment) {
	table := emptyPrices
	if p := f.Pricing.DefaultTable; p == nil || *p {
		table = pricing.Default()
	}
	for i, name := range f.Pricing.Files {
		path := fmt.Sprintf("pricing.files[%d]", i)
		if name == "" || strings.ContainsFunc(name, unicode.IsControl) {
			c.add(path, "not a valid file name")
			continue
		}
		if !filepath.IsAbs(name) && opts.BaseDir != "" {
			name = filepath.Join(opts.BaseDir, name)
		}
		data, err := opts.ReadFile(name)
		if err != nil {
			c.add(path, "cannot read %s: %v", name, errorsCause(err))
			continue
		}
		over, err := pricing.Parse(data)
		if err != nil {
			c.add(path, "%s: %v", name, err)
			continue
		}
		table = table.Merge(over)
	}
	rt.prices = table
	for i, ds := range f.Deployments {
		d := deployments[ds.Name]
		if d == nil || d.Provider == nil || d.Name != ds.Name || d.Model != ds.Model {
			continue // invalid, or a duplicate name: reported already
		}
		p := fmt.Sprintf("deployments[%d]", i)
		if ds.PriceKey != "" && (strings.TrimSpace(ds.PriceKey) != ds.PriceKey || strings.ContainsFunc(ds.PriceKey, unicode.IsControl)) {
			c.add(p+".price_key", "%q has surrounding spaces or control characters", ds.PriceKey)
			continue
		}
		e, key, ok := table.Resolve(d.Provider.Kind, ds.Model, ds.PriceKey)
		if ds.PriceKey != "" && !ok {
			c.add(p+".price_key", "%q is not in the price table (the default table and pricing.files)", ds.PriceKey)
			continue
		}
		if ds.Price != nil {
			own, okPrice := priceEntry(c, p+".price", ds.Price)
			if !okPrice {
				continue
			}
			if ok {
				own.MaxInputTokens, own.MaxOutputTokens, own.Mode = e.MaxInputTokens, e.MaxOutputTokens, e.Mode
			}
			d.Price, d.PriceKey = own, PriceKeyDeployment
			continue
		}
		if ok {
			d.Price, d.PriceKey = e, key
		}
	}
}

// priceEntry checks a deployment's price and builds its entry.
func priceEntry(c *errs, path string, ps *PriceSpec) (*pricing.Entry, bool) {
	ok, set := true, false
	get := func(field string, v *float64, scale float64) float64 {
		if v == nil {
			return math.NaN()
		}
		set = true
		if *v < 0 || math.IsNaN(*v) || math.IsInf(*v, 0) {
			c.add(path+"."+field, "must be a non-negative number, got %v", *v)
			ok = false
			return 0
		}
		return *v / scale
	}
	const m = 1e6
	in := get("input_per_million", ps.InputPerMillion, m)
	out := get("output_per_million", ps.OutputPerMillion, m)
	read := get("cached_read_per_million", ps.CachedReadPerMillion, m)
	write := get("cache_write_per_million", ps.CacheWritePerMillion, m)
	reasoning := get("reasoning_per_million", ps.ReasoningPerMillion, m)
	image := get("per_image", ps.PerImage, 1)
	audio := get("per_audio_second", ps.PerAudioSecond, 1)
	if !set {
		c.add(path, "set at least input_per_million (or remove price to use the price table)")
		return nil, false
	}
	if !ok {
		return nil, false
	}
	or := func(v, def float64) float64 {
		if math.IsNaN(v) {
			return def
		}
		return v
	}
	in, out = or(in, 0), or(out, 0)
	e := &pricing.Entry{Rates: pricing.Rates{
		InputPerToken:       in,
		OutputPerToken:      out,
		CacheReadPerToken:   or(read, in),
		CacheWritePerToken:  or(write, in),
		ReasoningPerToken:   or(reasoning, 0),
		AudioInputPerToken:  in,
		AudioOutputPerToken: out,
	}, PerImage: or(image, 0), PerAudioSecond: or(audio, 0)}
	return e, true
}
