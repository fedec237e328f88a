package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llmux/llmux/translate"
)

// TestExamplePrices: every deployment of example.yaml resolves to the
// price users expect, but the self-hosted one, whose cost is unknown.
func TestExamplePrices(t *testing.T) {
	rt, err := Load("example.yaml", exampleOpts())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"gpt-4o-mini-openai":            "gpt-4o-mini",
		"text-embedding-3-small-openai": "text-embedding-3-small",
		"claude-sonnet":                 "claude-sonnet-4-5",
		"claude-sonnet-bedrock":         "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
		"gemini-flash":                  "gemini/gemini-2.5-flash",
		"gpt-4o-mini-azure":             "azure/gpt-4o-mini",
		"llama-local":                   "",
	}
	seen := 0
	for _, g := range rt.Groups() {
		for _, d := range g.Deployments {
			k, ok := want[d.Name]
			if !ok {
				continue
			}
			seen++
			if d.PriceKey != k || (d.Price == nil) != (k == "") {
				t.Errorf("%s: price key %q (entry %v), want %q", d.Name, d.PriceKey, d.Price != nil, k)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("saw %d of the %d deployments", seen, len(want))
	}
	if rt.Prices() == nil || rt.Prices().Len() < 2000 {
		t.Error("the default table is not in force")
	}
}

const priceCfg = `pricing:
  default_table: %s
  files: [%s]
providers:
- {name: oa, kind: openai, cluster: c}
- {name: az, kind: azure_openai, cluster: c}
- {name: local, kind: openai_compatible, cluster: c}
deployments:
- {name: table, provider: oa, model: gpt-4o-mini}
- {name: file, provider: oa, model: my-model}
- {name: keyed, provider: az, model: prod-4o, price_key: azure/gpt-4o}
- {name: own, provider: oa, model: gpt-4o, price: {input_per_million: 2, output_per_million: 8, cached_read_per_million: 0.5}}
- {name: own-min, provider: local, model: llama, price: {input_per_million: 0.1}}
- {name: unknown, provider: local, model: llama}
model_groups:
- {name: g, deployments: [table, file, keyed, own, own-min, unknown]}
`

func priceOpts(files map[string]string) LoadOptions {
	o := testOpts()
	o.ReadFile = func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
	}
	return o
}

func deployment(t *testing.T, rt *Runtime, name string) *Deployment {
	t.Helper()
	g, _ := rt.Group("g")
	for _, d := range g.Deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no deployment %s", name)
	return nil
}

func TestPricingPrecedence(t *testing.T) {
	files := map[string]string{
		"/p/a.json": `{"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}, "gpt-4o-mini": {"input_cost_per_token": 9e-6}}`,
		"/p/b.json": `{"my-model": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6, "max_input_tokens": 1000}}`,
	}
	opts := priceOpts(files)
	opts.BaseDir = "/p"
	rt, err := Parse([]byte(fmt.Sprintf(priceCfg, "true", "/p/a.json, b.json")), opts)
	if err != nil {
		t.Fatal(err)
	}
	u := translate.Usage{InputTokens: 1000, CachedTokens: 400, OutputTokens: 100}
	for _, tc := range []struct {
		name, key string
		cost      float64 // of u
	}{
		// The file's gpt-4o-mini replaces the default's: no cache rate, so cached reads at 9.
		{"table", "gpt-4o-mini", 1000*9e-6 + 0},
		// b.json is later than a.json.
		{"file", "my-model", 1000*3e-6 + 100*4e-6},
		{"keyed", "azure/gpt-4o", 600*2.5e-6 + 400*1.25e-6 + 100*1e-5},
		// The deployment's own price beats the table.
		{"own", PriceKeyDeployment, 600*2e-6 + 400*0.5e-6 + 100*8e-6},
		// Left-out rates: cached reads at the input rate, output free.
		{"own-min", PriceKeyDeployment, 1000 * 0.1e-6},
	} {
		d := deployment(t, rt, tc.name)
		if d.Price == nil || d.PriceKey != tc.key {
			t.Errorf("%s: key %q (entry %v), want %q", tc.name, d.PriceKey, d.Price != nil, tc.key)
			continue
		}
		if got := d.Price.Cost(u); math.Abs(got-tc.cost) > 1e-15 {
			t.Errorf("%s: cost %.12g, want %.12g", tc.name, got, tc.cost)
		}
	}
	if d := deployment(t, rt, "file"); d.Price.MaxInputTokens != 1000 {
		t.Errorf("file: max input %d", d.Price.MaxInputTokens)
	}
	if d := deployment(t, rt, "own"); d.Price.MaxInputTokens != 128000 {
		t.Errorf("own price keeps the table's context window: %d", d.Price.MaxInputTokens)
	}
	if d := deployment(t, rt, "unknown"); d.Price != nil || d.PriceKey != "" {
		t.Errorf("unknown: %q", d.PriceKey)
	}

	// Without the default table only the files price.
	_, err = Parse([]byte(fmt.Sprintf(priceCfg, "false", "/p/b.json")), priceOpts(files))
	if err == nil || !strings.Contains(err.Error(), `deployments[2].price_key: "azure/gpt-4o" is not in the price table`) {
		t.Fatalf("no default table: %v", err)
	}
}

func TestPricingErrors(t *testing.T) {
	cfg := func(pricing, dep string) string {
		return pricing + "providers: [{name: p, kind: openai, cluster: c}]\ndeployments: [{name: d, provider: p, model: gpt-4o" + dep + "}]\nmodel_groups: [{name: g, deployments: [d]}]\n"
	}
	files := map[string]string{"/bad.json": `{"m": {"input_cost_per_token": "1"}}`, "/notjson": `{`}
	for _, tc := range []struct{ in, want string }{
		{cfg("pricing: {files: [/missing.json]}\n", ""), "pricing.files[0]: cannot read /missing.json: file does not exist"},
		{cfg("pricing: {files: [/bad.json]}\n", ""), `pricing.files[0]: /bad.json: pricing: "m": input_cost_per_token: must be a number, got a string`},
		{cfg("pricing: {files: [/notjson]}\n", ""), `pricing.files[0]: /notjson: pricing: unexpected end of JSON input`},
		{cfg("pricing: {files: ['']}\n", ""), `pricing.files[0]: not a valid file name`},
		{cfg("pricing: {default_table: maybe}\n", ""), `pricing.default_table: expected a boolean`},
		{cfg("pricing: {tables: []}\n", ""), `pricing.tables: unknown field`},
		{cfg("", ", price_key: nope"), `deployments[0].price_key: "nope" is not in the price table`},
		{cfg("", ", price_key: ' gpt-4o'"), `deployments[0].price_key: " gpt-4o" has surrounding spaces`},
		{cfg("", ", price: {input_per_million: -1}"), `deployments[0].price.input_per_million: must be a non-negative number, got -1`},
		{cfg("", ", price: {}"), `deployments[0].price: set at least input_per_million`},
		{cfg("", ", price: {input_per_million: .inf}"), `deployments[0].price.input_per_million: must be a non-negative number, got +Inf`},
		{cfg("", ", price: {output_per_million: x}"), `deployments[0].price.output_per_million: expected a float64, got "x"`},
		{cfg("", ", price: {per_token: 1}"), `deployments[0].price.per_token: unknown field`},
	} {
		_, err := Parse([]byte(tc.in), priceOpts(files))
		var es Errors
		if err == nil || !errors.As(err, &es) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s\n=> %v\nwant %q", tc.in, err, tc.want)
		}
	}
}

// TestWatchPriceFile: editing a price override file reloads the
// configuration; an invalid or deleted file is rejected and the prices in
// force stay.
func TestWatchPriceFile(t *testing.T) {
	dir := t.TempDir()
	prices := filepath.Join(dir, "prices", "override.json")
	if err := os.Mkdir(filepath.Dir(prices), 0o755); err != nil {
		t.Fatal(err)
	}
	replace(t, prices, `{"my-model": {"input_cost_per_token": 1e-6}}`)
	s, _ := newStore(t, "pricing: {files: ["+prices+"]}\n"+strings.Replace(watchCfg, "%s", "my-model", 1))
	input := func() float64 {
		g, _ := s.Current().Group("g")
		if p := g.Deployments[0].Price; p != nil {
			return p.InputPerToken
		}
		return -1
	}
	if input() != 1e-6 {
		t.Fatalf("initial price %g", input())
	}
	if st := s.Status(); len(st.Files) != 1 || st.Files[0] != prices {
		t.Fatalf("watched files %v", st.Files)
	}
	ch := watch(t, s)

	replace(t, prices, `{"my-model": {"input_cost_per_token": 2e-6}}`)
	if r := next(t, ch); !r.ok || r.cause != CauseChange {
		t.Fatalf("valid change: %+v", r)
	}
	if input() != 2e-6 {
		t.Fatalf("price after a valid change %g", input())
	}

	replace(t, prices, `{"my-model": {"input_cost_per_token": -3}}`)
	r := next(t, ch)
	if r.ok || !strings.Contains(r.err.Error(), `pricing.files[0]: `+prices+`: pricing: "my-model": input_cost_per_token: must be a non-negative number, got -3`) {
		t.Fatalf("invalid file: %+v", r)
	}
	if input() != 2e-6 || s.Status().Healthy {
		t.Fatal("an invalid price file changed the prices in force or left the store healthy")
	}

	replace(t, prices, `{"my-model": {"input_cost_per_token": 4e-6}}`)
	if r := next(t, ch); !r.ok || input() != 4e-6 {
		t.Fatalf("repaired file: %+v, price %g", r, input())
	}

	if err := os.Remove(prices); err != nil {
		t.Fatal(err)
	}
	r = next(t, ch)
	if r.ok || !strings.Contains(r.err.Error(), "pricing.files[0]: cannot read "+prices) {
		t.Fatalf("deleted file: %+v", r)
	}
	if input() != 4e-6 || s.Status().Healthy || s.Status().LastError == nil {
		t.Fatal("a deleted price file changed the prices in force or left the store healthy")
	}
}

// TestRedactedPricing: /config shows which key priced each deployment.
func TestRedactedPricing(t *testing.T) {
	rt, err := Load("example.yaml", exampleOpts())
	if err != nil {
		t.Fatal(err)
	}
	b, err := rt.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"default_table": true`, `"claude-sonnet-bedrock": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"`, `"llama-local": null`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/config lacks %s:\n%s", want, b)
		}
	}
}
