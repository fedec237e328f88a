package pricing

import (
	"math"
	"strings"
	"testing"

	"github.com/llmux/llmux/translate"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func mustEntry(t testing.TB, tab *Table, key string) *Entry {
	t.Helper()
	e, ok := tab.Lookup(key)
	if !ok {
		t.Fatalf("no entry %q", key)
	}
	return e
}

func TestDefaultTable(t *testing.T) {
	d := Default()
	if d.Len() != 2983 { // 2,984 entries less sample_spec
		t.Fatalf("default table has %d entries, want 2983", d.Len())
	}
	if _, err := Parse(defaultData); err != nil {
		t.Fatalf("embedded table: %v", err)
	}
	e := mustEntry(t, d, "claude-sonnet-4-5")
	want := Entry{
		Rates:          Rates{InputPerToken: 3e-6, OutputPerToken: 1.5e-5, CacheReadPerToken: 3e-7, CacheWritePerToken: 3.75e-6, AudioInputPerToken: 3e-6, AudioOutputPerToken: 1.5e-5},
		MaxInputTokens: 200000, MaxOutputTokens: 64000, Mode: "chat",
	}
	if e.Rates != want.Rates || e.MaxInputTokens != want.MaxInputTokens || e.MaxOutputTokens != want.MaxOutputTokens || e.Mode != want.Mode {
		t.Errorf("claude-sonnet-4-5 = %+v, want %+v", *e, want)
	}
	if len(e.Tiers) != 1 || e.Tiers[0].AboveInputTokens != 200000 || e.Tiers[0].InputPerToken != 6e-6 ||
		e.Tiers[0].OutputPerToken != 2.25e-5 || e.Tiers[0].CacheReadPerToken != 6e-7 || e.Tiers[0].CacheWritePerToken != 7.5e-6 {
		t.Errorf("claude-sonnet-4-5 tiers = %+v", e.Tiers)
	}
	if e := mustEntry(t, d, "gemini-2.5-flash"); e.ReasoningPerToken != 2.5e-6 || e.AudioInputPerToken != 1e-6 {
		t.Errorf("gemini-2.5-flash = %+v", *e)
	}
	if e := mustEntry(t, d, "text-embedding-3-small"); e.Mode != "embedding" || e.InputPerToken != 2e-8 {
		t.Errorf("text-embedding-3-small = %+v", *e)
	}
	if _, ok := d.Lookup(sampleSpec); ok {
		t.Error("sample_spec is documentation, not a model")
	}
	// Every entry prices a large request to a finite, non-negative cost,
	// and its tiers are in order with growing input rates.
	tiered := 0
	u := translate.Usage{InputTokens: 600000, CachedTokens: 1000, CacheCreationTokens: 1000, AudioInputTokens: 10, OutputTokens: 2000, ReasoningTokens: 500, AudioOutputTokens: 10}
	for key, e := range d.entries {
		if c := e.Cost(u); c < 0 || math.IsNaN(c) || math.IsInf(c, 0) {
			t.Errorf("%s: cost %g", key, c)
		}
		if len(e.Tiers) > 0 {
			tiered++
		}
		for i, tier := range e.Tiers {
			below := e.Rates
			if i > 0 {
				below = e.Tiers[i-1].Rates
				if e.Tiers[i-1].AboveInputTokens >= tier.AboveInputTokens {
					t.Errorf("%s: tiers out of order", key)
				}
			}
			if tier.InputPerToken < below.InputPerToken {
				t.Errorf("%s: tier above %d is cheaper than the one below", key, tier.AboveInputTokens)
			}
		}
	}
	if tiered < 60 {
		t.Errorf("only %d entries have tiers", tiered)
	}
}

// TestCost checks the arithmetic against figures computed by hand.
func TestCost(t *testing.T) {
	d := Default()
	custom, err := Parse([]byte(`{
	  "m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 4e-6, "cache_read_input_token_cost": 1e-7,
	        "cache_creation_input_token_cost": 2e-6, "output_cost_per_reasoning_token": 8e-6,
	        "input_cost_per_audio_token": 1e-5, "output_cost_per_audio_token": 2e-5,
	        "input_cost_per_token_above_128k_tokens": 2e-6,
	        "output_cost_per_token_above_256k_tokens": 1e-5, "input_cost_per_token_above_256k_tokens": 3e-6},
	  "plain": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
	  "ranged": {"litellm_provider": "dashscope", "tiered_pricing": [
	        {"input_cost_per_token": 5e-8, "output_cost_per_token": 4e-7, "range": [0, 256000]},
	        {"input_cost_per_token": 2.5e-7, "output_cost_per_token": 2e-6, "range": [256000, 1000000]}]}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		tab       *Table
		u         translate.Usage
		want      float64
	}{
		// 800×0.15 + 200×0.075 + 500×0.6 per million.
		{"openai cached", "gpt-4o-mini", d, translate.Usage{InputTokens: 1000, CachedTokens: 200, OutputTokens: 500}, 4.35e-4},
		// Anthropic as the decoder reports it: 1000 plain + 2000 read + 500 written = 3500 input.
		// 1000×3 + 2000×0.3 + 500×3.75 + 300×15 per million.
		{"anthropic cache read+write", "claude-sonnet-4-5", d, translate.Usage{InputTokens: 3500, CachedTokens: 2000, CacheCreationTokens: 500, OutputTokens: 300}, 9.975e-3},
		// Above 200k every token takes the tier's rate: 240000×6 + 10000×0.6 + 1000×22.5 per million.
		{"anthropic tier", "claude-sonnet-4-5", d, translate.Usage{InputTokens: 250000, CachedTokens: 10000, OutputTokens: 1000}, 1.4685},
		// At the threshold itself the base rates apply: 200000×3 per million.
		{"anthropic at threshold", "claude-sonnet-4-5", d, translate.Usage{InputTokens: 200000}, 0.6},
		// Bedrock's us. profile has its own (10% higher) prices: 1000×3.3 + 100×0.33 + 100×4.125 + 10×16.5 per million.
		{"bedrock profile", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", d, translate.Usage{InputTokens: 1200, CachedTokens: 100, CacheCreationTokens: 100, OutputTokens: 10}, 3.9105e-3},
		{"embedding", "text-embedding-3-small", d, translate.Usage{InputTokens: 1000}, 2e-5},
		// Gemini reports thoughts inside output: 100×0.3 + 20×2.5 + 30×2.5 per million.
		{"gemini reasoning", "gemini-2.5-flash", d, translate.Usage{InputTokens: 100, OutputTokens: 50, ReasoningTokens: 30}, 1.55e-4},
		// 600×1 + 100×0.1 + 200×2 + 100×10 (audio) | 100×4 + 50×8 + 50×20 per million.
		{"every part", "m", custom, translate.Usage{InputTokens: 1000, CachedTokens: 100, CacheCreationTokens: 200, AudioInputTokens: 100, OutputTokens: 200, ReasoningTokens: 50, AudioOutputTokens: 50}, 2.01e-3 + 1.8e-3},
		// Tier 128k: input 2, output inherited 4.
		{"tier 128k", "m", custom, translate.Usage{InputTokens: 130000, OutputTokens: 1000}, 0.26 + 0.004},
		// Tier 256k: input 3, output 10; cache reads keep the base 0.1.
		{"tier 256k", "m", custom, translate.Usage{InputTokens: 300000, CachedTokens: 100000, OutputTokens: 1000}, 0.6 + 0.01 + 0.01},
		// No cache rates in the table: cache reads and writes at the input rate, not free.
		{"no cache rates", "plain", custom, translate.Usage{InputTokens: 1000, CachedTokens: 500, CacheCreationTokens: 100, OutputTokens: 100}, 1e-3 + 2e-4},
		// Inconsistent usage is clamped, never priced twice: cached > input.
		{"clamped", "plain", custom, translate.Usage{InputTokens: 100, CachedTokens: 500, OutputTokens: 10, ReasoningTokens: 50}, 1e-4 + 2e-5},
		{"negative", "plain", custom, translate.Usage{InputTokens: -5, OutputTokens: -1}, 0},
		{"ranged low", "ranged", custom, translate.Usage{InputTokens: 1000, OutputTokens: 1000}, 5e-5 + 4e-4},
		{"ranged high", "ranged", custom, translate.Usage{InputTokens: 300000, OutputTokens: 1000}, 0.075 + 2e-3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustEntry(t, tc.tab, tc.key)
			if got := e.Cost(tc.u); !near(got, tc.want) {
				t.Errorf("Cost(%+v) = %.10g, want %.10g", tc.u, got, tc.want)
			}
		})
	}
}

func TestEstimate(t *testing.T) {
	e := mustEntry(t, Default(), "claude-sonnet-4-5")
	for _, tc := range []struct {
		in, out int64
		want    float64
	}{
		{1000, 500, 3e-3 + 7.5e-3},
		{300000, 1000, 1.8 + 2.25e-2}, // the tier
		{0, 0, 0},
		{-1, -1, 0},
	} {
		if got := e.Estimate(tc.in, tc.out); !near(got, tc.want) {
			t.Errorf("Estimate(%d, %d) = %g, want %g", tc.in, tc.out, got, tc.want)
		}
	}
}

// TestResolve resolves real model ids of every provider kind in
// proto/config/example.yaml, and the forms users write them in.
func TestResolve(t *testing.T) {
	d := Default()
	for _, tc := range []struct {
		kind, model, priceKey string
		want                  string // "" = unknown
	}{
		{"openai", "gpt-4o-mini", "", "gpt-4o-mini"},
		{"openai", "text-embedding-3-small", "", "text-embedding-3-small"},
		{"anthropic", "claude-sonnet-4-5", "", "claude-sonnet-4-5"},
		{"anthropic", "claude-haiku-4-5-20251001", "", "claude-haiku-4-5-20251001"},
		// Bedrock: the profile as given (it has its own price), then stripped.
		{"bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"bedrock", "global.anthropic.claude-haiku-4-5-20251001-v1:0", "", "global.anthropic.claude-haiku-4-5-20251001-v1:0"},
		{"bedrock", "apac.anthropic.claude-sonnet-4-5-20250929-v1:0", "", "anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0", "", "anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"bedrock", "eu.amazon.nova-lite-v1:0", "", "eu.amazon.nova-lite-v1:0"},
		{"bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"bedrock", "amazon.titan-embed-text-v2:0", "", "amazon.titan-embed-text-v2:0"},
		{"bedrock", "moonshotai.kimi-k2.5", "", "bedrock/moonshotai.kimi-k2.5"},
		// Gemini: the gemini/ key before the bare (Vertex) one.
		{"gemini", "gemini-2.5-flash", "", "gemini/gemini-2.5-flash"},
		{"gemini", "models/gemini-2.5-pro", "", "gemini/gemini-2.5-pro"},
		{"gemini", "gemini-embedding-001", "", "gemini/gemini-embedding-001"},
		// Azure: the deployment's name under azure/, then bare; a price_key when the name differs.
		{"azure_openai", "gpt-4o-mini", "", "azure/gpt-4o-mini"},
		{"azure_openai", "text-embedding-3-small", "", "azure/text-embedding-3-small"},
		{"azure_openai", "prod-4o", "", ""},
		{"azure_openai", "prod-4o", "azure/gpt-4o", "azure/gpt-4o"},
		// Vertex.
		{"vertex", "gemini-2.5-pro", "", "gemini-2.5-pro"},
		{"vertex_anthropic", "claude-sonnet-4-5@20250929", "", "vertex_ai/claude-sonnet-4-5@20250929"},
		{"vertex_anthropic", "claude-haiku-4-5@20991231", "", "vertex_ai/claude-haiku-4-5"},
		// OpenAI-compatible: bare id only; unknown stays unknown.
		{"openai_compatible", "meta-llama/Llama-3.1-8B-Instruct", "", ""},
		{"openai_compatible", "llama", "groq/llama-3.1-8b-instant", "groq/llama-3.1-8b-instant"},
		// An explicit key is the only one tried.
		{"openai", "gpt-4o-mini", "no-such-key", ""},
		{"openai", "", "", ""},
	} {
		e, key, ok := d.Resolve(tc.kind, tc.model, tc.priceKey)
		switch {
		case tc.want == "" && ok:
			t.Errorf("Resolve(%q, %q, %q) = %q, want unknown", tc.kind, tc.model, tc.priceKey, key)
		case tc.want != "" && (!ok || key != tc.want || e == nil):
			t.Errorf("Resolve(%q, %q, %q) = %q, %v, want %q", tc.kind, tc.model, tc.priceKey, key, ok, tc.want)
		case ok:
			if want, _ := d.Lookup(tc.want); want != e {
				t.Errorf("Resolve(%q, %q) returned another entry than %q's", tc.kind, tc.model, tc.want)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"m": {"input_cost_per_token": "0.1"}}`, `"m": input_cost_per_token: must be a number, got a string`},
		{`{"m": {"output_cost_per_token": -1}}`, `"m": output_cost_per_token: must be a non-negative number, got -1`},
		{`{"m": {"cache_read_input_token_cost_above_200k_tokens": true}}`, `"m": cache_read_input_token_cost_above_200k_tokens: must be a number, got a boolean`},
		{`{"m": {"max_input_tokens": {}}}`, `"m": max_input_tokens: must be a number, got an object`},
		{`{"m": {"mode": 3}}`, `"m": mode: must be a string`},
		{`{"m": []}`, `"m": must be an object, got an array`},
		{`{"m": {"tiered_pricing": [{"range": [0]}]}}`, `"m": tiered_pricing[0].range: must be [from, to]`},
		{`{"m": {"tiered_pricing": [{"range": [0, 10], "input_cost_per_token": "x"}]}}`, `tiered_pricing[0].input_cost_per_token: must be a number`},
		{`[]`, `must be a JSON object`},
		{`{"m": `, `pricing: unexpected end of JSON input`},
	} {
		_, err := Parse([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
	// Unknown fields and null are ignored.
	tab, err := Parse([]byte(`{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": null, "whatever": {"x": [1]}, "search_context_cost_per_query": {"a": 1}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if e := mustEntry(t, tab, "m"); e.InputPerToken != 1e-6 || e.OutputPerToken != 0 {
		t.Errorf("m = %+v", *e)
	}
}

func TestMerge(t *testing.T) {
	a, _ := Parse([]byte(`{"x": {"input_cost_per_token": 1, "max_input_tokens": 10}, "y": {"input_cost_per_token": 2}}`))
	b, _ := Parse([]byte(`{"x": {"input_cost_per_token": 3}, "z": {"input_cost_per_token": 4}}`))
	m := a.Merge(b)
	if m.Len() != 3 || a.Len() != 2 || b.Len() != 2 {
		t.Fatalf("lens %d %d %d", m.Len(), a.Len(), b.Len())
	}
	for key, want := range map[string]float64{"x": 3, "y": 2, "z": 4} {
		if e := mustEntry(t, m, key); e.InputPerToken != want {
			t.Errorf("%s = %g, want %g", key, e.InputPerToken, want)
		}
	}
	if e := mustEntry(t, m, "x"); e.MaxInputTokens != 0 {
		t.Errorf("the later entry replaces the earlier whole; max_input_tokens = %d", e.MaxInputTokens)
	}
}

func TestCostAllocs(t *testing.T) {
	e := mustEntry(t, Default(), "claude-sonnet-4-5")
	u := translate.Usage{InputTokens: 250000, CachedTokens: 1000, OutputTokens: 10}
	if n := testing.AllocsPerRun(100, func() { _ = e.Cost(u); _ = e.Estimate(1000, 100) }); n != 0 {
		t.Errorf("Cost and Estimate allocate %v times", n)
	}
}

func BenchmarkCost(b *testing.B) {
	e := mustEntry(b, Default(), "claude-sonnet-4-5")
	u := translate.Usage{InputTokens: 3500, CachedTokens: 2000, CacheCreationTokens: 500, OutputTokens: 300}
	b.ReportAllocs()
	var s float64
	for b.Loop() {
		s += e.Cost(u)
	}
	_ = s
}

func BenchmarkEstimate(b *testing.B) {
	e := mustEntry(b, Default(), "claude-sonnet-4-5")
	b.ReportAllocs()
	var s float64
	for b.Loop() {
		s += e.Estimate(3500, 300)
	}
	_ = s
}

func BenchmarkResolve(b *testing.B) {
	d := Default()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := d.Resolve("bedrock", "apac.anthropic.claude-sonnet-4-5-20250929-v1:0", ""); !ok {
			b.Fatal("unknown")
		}
	}
}

func BenchmarkParseDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(defaultData); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"m": {"input_cost_per_token": 1e-6, "output_cost_per_token_above_200k_tokens": 2e-6}}`))
	f.Add([]byte(`{"m": {"tiered_pricing": [{"range": [0, 10], "input_cost_per_token": 1}, {"range": [10, 20], "output_cost_per_token": 2}]}}`))
	f.Add([]byte(`{"sample_spec": {"max_input_tokens": "x"}, "a": {"mode": "chat", "max_output_tokens": 5}}`))
	f.Add(defaultData[:4096])
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := Parse(data)
		if err != nil {
			return
		}
		for _, k := range []string{"m", "a"} {
			e, ok := tab.Lookup(k)
			if !ok {
				continue
			}
			u := translate.Usage{InputTokens: 300000, CachedTokens: 1000, CacheCreationTokens: 10, OutputTokens: 100, ReasoningTokens: 10}
			if c := e.Cost(u); c < 0 || math.IsNaN(c) {
				t.Fatalf("cost %g", c)
			}
			for i := 1; i < len(e.Tiers); i++ {
				if e.Tiers[i-1].AboveInputTokens >= e.Tiers[i].AboveInputTokens {
					t.Fatalf("tiers out of order: %+v", e.Tiers)
				}
			}
		}
	})
}
