// Package pricing is llmux's price registry: a table of model prices in
// litellm's model_prices_and_context_window.json format (a copy is embedded
// as the default table), the resolution of a deployment to its price entry,
// the cost of a finished request from its usage, and an estimate of a
// request's input tokens before it is sent.
//
// Tables are immutable once built and safe for concurrent use. Cost and
// Estimate do not allocate.
package pricing

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
)

//go:embed data/model_prices.json
var defaultData []byte

// Table maps price keys (litellm's model names, e.g. "gpt-4o-mini",
// "bedrock/anthropic.claude-…", "azure/gpt-4o") to entries.
type Table struct {
	entries map[string]*Entry
}

var (
	defaultOnce  sync.Once
	defaultTable *Table
)

// Default is the embedded default table, parsed on first use. The
// embedded file is checked by the package's tests; were it ever broken,
// Default would be an empty table (every price unknown), never a guess.
func Default() *Table {
	defaultOnce.Do(func() {
		t, err := Parse(defaultData)
		if err != nil {
			t = &Table{entries: map[string]*Entry{}}
		}
		defaultTable = t
	})
	return defaultTable
}

// Len is the number of entries.
func (t *Table) Len() int { return len(t.entries) }

// Lookup returns the entry with exactly this key.
func (t *Table) Lookup(key string) (*Entry, bool) {
	e, ok := t.entries[key]
	return e, ok
}

// Merge returns a table with t's entries and over's; where both have a key,
// over's entry replaces t's whole (fields are not mixed). Neither input
// changes.
func (t *Table) Merge(over *Table) *Table {
	m := make(map[string]*Entry, len(t.entries)+len(over.entries))
	maps.Copy(m, t.entries)
	maps.Copy(m, over.entries)
	return &Table{entries: m}
}

// sampleSpec is the key of litellm's documentation entry, whose values
// describe the fields instead of pricing a model.
const sampleSpec = "sample_spec"

// Parse reads a table in litellm's format: a JSON object whose members are
// model entries (JSON objects). Unknown fields are ignored, and so is the
// "sample_spec" entry; a price or limit field that is not a non-negative
// number (or null, meaning absent) is an error naming the key and field.
func Parse(data []byte) (*Table, error) {
	if !gjson.ValidBytes(data) {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("pricing: %w", err)
		}
		return nil, errors.New("pricing: invalid JSON")
	}
	root := gjson.ParseBytes(data)
	if !root.IsObject() {
		return nil, errors.New("pricing: the table must be a JSON object of model entries")
	}
	t := &Table{entries: map[string]*Entry{}}
	var err error
	root.ForEach(func(k, v gjson.Result) bool {
		key := k.String()
		if key == sampleSpec {
			return true
		}
		var e *Entry
		if e, err = parseEntry(v); err != nil {
			err = fmt.Errorf("pricing: %q: %w", key, err)
			return false
		}
		t.entries[key] = e
		return true
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// rateField says where a litellm field goes in Rates.
type rateField uint8

const (
	fInput rateField = iota + 1
	fOutput
	fCacheRead
	fCacheWrite
	fReasoning
	fAudioIn
	fAudioOut
)

// baseFields are the litellm fields of the base rates.
var baseFields = map[string]rateField{
	"input_cost_per_token":            fInput,
	"output_cost_per_token":           fOutput,
	"cache_read_input_token_cost":     fCacheRead,
	"input_cost_per_token_cache_hit":  fCacheRead, // DeepSeek's name for it
	"cache_creation_input_token_cost": fCacheWrite,
	"output_cost_per_reasoning_token": fReasoning,
	"input_cost_per_audio_token":      fAudioIn,
	"output_cost_per_audio_token":     fAudioOut,
}

// tierFields are the litellm fields that have "_above_<N>k_tokens"
// variants.
var tierFields = map[string]rateField{
	"input_cost_per_token":            fInput,
	"output_cost_per_token":           fOutput,
	"cache_read_input_token_cost":     fCacheRead,
	"cache_creation_input_token_cost": fCacheWrite,
}

// partial is a set of rates as a source gives them: set says which.
type partial struct {
	v   [fAudioOut + 1]float64
	set [fAudioOut + 1]bool
}

func (p *partial) put(f rateField, v float64) { p.v[f], p.set[f] = v, true }

// apply overrides r's rates with those p sets.
func (p *partial) apply(r *Rates) {
	ptrs := [...]*float64{fInput: &r.InputPerToken, fOutput: &r.OutputPerToken, fCacheRead: &r.CacheReadPerToken,
		fCacheWrite: &r.CacheWritePerToken, fReasoning: &r.ReasoningPerToken, fAudioIn: &r.AudioInputPerToken, fAudioOut: &r.AudioOutputPerToken}
	for f := fInput; f <= fAudioOut; f++ {
		if p.set[f] {
			*ptrs[f] = p.v[f]
		}
	}
}

// complete fills the rates p leaves out in the base: cache and audio input
// at the input rate, audio output at the output rate.
func (p *partial) complete() Rates {
	var r Rates
	p.apply(&r)
	if !p.set[fCacheRead] {
		r.CacheReadPerToken = r.InputPerToken
	}
	if !p.set[fCacheWrite] {
		r.CacheWritePerToken = r.InputPerToken
	}
	if !p.set[fAudioIn] {
		r.AudioInputPerToken = r.InputPerToken
	}
	if !p.set[fAudioOut] {
		r.AudioOutputPerToken = r.OutputPerToken
	}
	return r
}

// number reads a non-negative number; null is absent.
func number(field string, v gjson.Result) (float64, bool, error) {
	switch v.Type {
	case gjson.Null:
		return 0, false, nil
	case gjson.Number:
		f := v.Float()
		if f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, false, fmt.Errorf("%s: must be a non-negative number, got %s", field, v.Raw)
		}
		return f, true, nil
	}
	return 0, false, fmt.Errorf("%s: must be a number, got %s", field, kind(v))
}

func kind(v gjson.Result) string {
	switch {
	case v.IsObject():
		return "an object"
	case v.IsArray():
		return "an array"
	case v.Type == gjson.String:
		return "a string"
	case v.Type == gjson.True || v.Type == gjson.False:
		return "a boolean"
	}
	return v.Type.String()
}

// tierKey splits "<field>_above_<N>k_tokens" into the field and N×1000.
func tierKey(name string) (string, int64, bool) {
	i := strings.LastIndex(name, "_above_")
	if i < 0 || !strings.HasSuffix(name, "k_tokens") {
		return "", 0, false
	}
	n, err := strconv.ParseInt(name[i+len("_above_"):len(name)-len("k_tokens")], 10, 64)
	if err != nil || n <= 0 {
		return "", 0, false
	}
	return name[:i], n * 1000, true
}

func parseEntry(v gjson.Result) (*Entry, error) {
	if !v.IsObject() {
		return nil, fmt.Errorf("must be an object, got %s", kind(v))
	}
	e := &Entry{}
	var base partial
	tiers := map[int64]*partial{}
	var ranges gjson.Result
	var err error
	v.ForEach(func(k, fv gjson.Result) bool {
		name := k.String()
		if f, ok := baseFields[name]; ok {
			var x float64
			var set bool
			if x, set, err = number(name, fv); err == nil && set {
				base.put(f, x)
			}
			return err == nil
		}
		if field, above, ok := tierKey(name); ok {
			f, ok := tierFields[field]
			if !ok {
				return true // a tier of a price llmux does not model (per character, per image, ...)
			}
			var x float64
			var set bool
			if x, set, err = number(name, fv); err == nil && set {
				if tiers[above] == nil {
					tiers[above] = &partial{}
				}
				tiers[above].put(f, x)
			}
			return err == nil
		}
		var x float64
		var set bool
		switch name {
		case "mode":
			if fv.Type != gjson.String && fv.Type != gjson.Null {
				err = fmt.Errorf("mode: must be a string, got %s", kind(fv))
			}
			e.Mode = fv.String()
		case "max_input_tokens", "max_output_tokens":
			if x, set, err = number(name, fv); err == nil && set {
				if name == "max_input_tokens" {
					e.MaxInputTokens = int64(min(x, math.MaxInt64/2))
				} else {
					e.MaxOutputTokens = int64(min(x, math.MaxInt64/2))
				}
			}
		case "input_cost_per_image":
			if x, set, err = number(name, fv); err == nil && set {
				e.PerImage = x
			}
		case "input_cost_per_audio_per_second":
			if x, set, err = number(name, fv); err == nil && set {
				e.PerAudioSecond = x
			}
		case "tiered_pricing":
			ranges = fv
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	if ranges.Exists() && ranges.Type != gjson.Null {
		if err := parseRanges(ranges, &base, tiers); err != nil {
			return nil, err
		}
	}
	e.Rates = base.complete()
	above := slices.Sorted(maps.Keys(tiers))
	prev := e.Rates
	for _, a := range above {
		r := prev
		tiers[a].apply(&r)
		e.Tiers = append(e.Tiers, Tier{AboveInputTokens: a, Rates: r})
		prev = r
	}
	return e, nil
}

// rangeFields are the fields of a tiered_pricing range.
var rangeFields = map[string]rateField{
	"input_cost_per_token":            fInput,
	"output_cost_per_token":           fOutput,
	"cache_read_input_token_cost":     fCacheRead,
	"output_cost_per_reasoning_token": fReasoning,
}

// parseRanges reads litellm's tiered_pricing: a list of {"range": [lo, hi],
// rates...} by input tokens (items without "range" tier another measure and
// are skipped). The range starting at 0 gives base rates the
// entry does not set itself; every other range becomes a tier above lo.
func parseRanges(v gjson.Result, base *partial, tiers map[int64]*partial) error {
	if !v.IsArray() {
		return fmt.Errorf("tiered_pricing: must be an array, got %s", kind(v))
	}
	var err error
	i := 0
	v.ForEach(func(_, r gjson.Result) bool {
		path := fmt.Sprintf("tiered_pricing[%d]", i)
		i++
		if !r.IsObject() {
			err = fmt.Errorf("%s: must be an object, got %s", path, kind(r))
			return false
		}
		rg := r.Get("range")
		if !rg.Exists() {
			return true // a tier by another measure (e.g. max_results_range of a search API)
		}
		if !rg.IsArray() || len(rg.Array()) != 2 {
			err = fmt.Errorf("%s.range: must be [from, to]", path)
			return false
		}
		lo, _, lerr := number(path+".range[0]", rg.Array()[0])
		if lerr != nil {
			err = lerr
			return false
		}
		p := &partial{}
		for name, f := range rangeFields {
			x, set, ferr := number(path+"."+name, r.Get(name))
			if ferr != nil {
				err = ferr
				return false
			}
			if set {
				p.put(f, x)
			}
		}
		if lo == 0 {
			for f := fInput; f <= fAudioOut; f++ {
				if p.set[f] && !base.set[f] {
					base.put(f, p.v[f])
				}
			}
			return true
		}
		tiers[int64(lo)] = p
		return true
	})
	return err
}
