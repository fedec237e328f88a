package config

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/llmux/llmux/translate"
)

// docExample is one fenced yaml or json block of a Markdown file.
type docExample struct {
	file string
	line int // of the opening fence
	text string
}

// docExamples reads the fenced yaml and json blocks of the Markdown files.
func docExamples(t *testing.T, files []string) []docExample {
	t.Helper()
	var out []docExample
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		var cur *docExample
		n := 0
		for sc.Scan() {
			n++
			line := sc.Text()
			fence := strings.TrimSpace(line)
			switch {
			case cur == nil && (fence == "```yaml" || fence == "```yml" || fence == "```json"):
				cur = &docExample{file: name, line: n}
			case cur != nil && fence == "```":
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.text += line + "\n"
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// configKeys are the top-level keys of an llmux configuration file.
var configKeys = []string{"server", "auth", "providers", "deployments", "model_groups", "pricing", "redaction", "limits", "tracing"}

// asConfig reports whether an example claims to be an llmux configuration
// or a part of one, and returns it as a whole file: a mapping whose keys
// are all llmux's top-level keys, or a list of model groups (items with a
// name and deployments). Names it refers to but does not define
// (providers, deployments, fallback groups) are stubbed, so the example's
// own fields are validated as written.
func asConfig(text string) (map[string]any, bool) {
	var doc any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return nil, false
	}
	var cfg map[string]any
	switch d := doc.(type) {
	case map[string]any:
		if len(d) == 0 {
			return nil, false
		}
		for k := range d {
			if !slices.Contains(configKeys, k) {
				return nil, false
			}
		}
		cfg = d
	case []any:
		for _, it := range d {
			m, ok := it.(map[string]any)
			if !ok || m["name"] == nil || m["deployments"] == nil {
				return nil, false
			}
		}
		cfg = map[string]any{"model_groups": d}
	default:
		return nil, false
	}
	stubReferences(cfg)
	return cfg, true
}

// stubReferences adds what a partial example leaves out.
func stubReferences(cfg map[string]any) {
	list := func(k string) []any { l, _ := cfg[k].([]any); return l }
	names := func(k string) map[string]bool {
		m := map[string]bool{}
		for _, it := range list(k) {
			if e, ok := it.(map[string]any); ok {
				if n, ok := e["name"].(string); ok {
					m[n] = true
				}
			}
		}
		return m
	}
	providers, deployments, groups := names("providers"), names("deployments"), names("model_groups")
	addDeployment := func(n string) {
		if !deployments[n] {
			deployments[n] = true
			cfg["deployments"] = append(list("deployments"), map[string]any{"name": n, "provider": "docs-stub", "model": n})
		}
	}
	for _, it := range list("model_groups") {
		g, _ := it.(map[string]any)
		ds, _ := g["deployments"].([]any)
		for _, d := range ds {
			if n, ok := d.(string); ok {
				addDeployment(n)
			}
		}
		fo, _ := g["failover"].(map[string]any)
		for _, k := range []string{"context_window_fallbacks", "content_policy_fallbacks"} {
			fs, _ := fo[k].([]any)
			for _, f := range fs {
				if n, ok := f.(string); ok && !groups[n] {
					groups[n] = true
					addDeployment("docs-stub")
					cfg["model_groups"] = append(list("model_groups"), map[string]any{"name": n, "deployments": []any{"docs-stub"}})
				}
			}
		}
	}
	// Keys and model groups a redaction policy is attached to.
	red, _ := cfg["redaction"].(map[string]any)
	refGroups, _ := red["model_groups"].(map[string]any)
	for n := range refGroups {
		if !groups[n] {
			groups[n] = true
			addDeployment("docs-stub")
			cfg["model_groups"] = append(list("model_groups"), map[string]any{"name": n, "deployments": []any{"docs-stub"}})
		}
	}
	refKeys, _ := red["keys"].(map[string]any)
	if len(deployments) == 0 {
		addDeployment("docs-stub")
	}
	if len(list("model_groups")) == 0 {
		var all []any
		for _, it := range list("deployments") {
			all = append(all, it.(map[string]any)["name"])
		}
		cfg["model_groups"] = []any{map[string]any{"name": "docs-stub", "deployments": all}}
	}
	for _, it := range list("deployments") {
		d, _ := it.(map[string]any)
		if n, ok := d["provider"].(string); ok && !providers[n] {
			providers[n] = true
			cfg["providers"] = append(list("providers"), map[string]any{"name": n, "kind": "openai", "cluster": "docs-stub"})
		}
	}
	if cfg["auth"] == nil {
		keys := []any{map[string]any{"name": "docs", "tenant": "docs", "key_env": "DOCS_CLIENT_KEY"}}
		for n := range refKeys {
			keys = append(keys, map[string]any{"name": n, "tenant": "docs", "key_env": "DOCS_KEY_" + strings.ToUpper(strings.ReplaceAll(n, "-", "_"))})
		}
		cfg["auth"] = map[string]any{"keys": keys}
	}
}

// TestDocsExamples: every yaml or json example in README.md and docs/ that
// is an llmux configuration, or part of one, loads and validates.
func TestDocsExamples(t *testing.T) {
	files := []string{"../../README.md", "README.md"}
	for _, pat := range []string{"../../docs/*.md", "../../docs/*/*.md"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	opts := LoadOptions{
		Kinds:    translate.KnownKinds,
		Getenv:   func(k string) (string, bool) { return "sk-docs-" + strings.ToLower(k), true },
		ReadFile: func(p string) ([]byte, error) { return []byte("{}"), nil }, // price files; key files read as a key
	}
	checked := 0
	for _, ex := range docExamples(t, files) {
		cfg, ok := asConfig(ex.text)
		if !ok {
			continue
		}
		checked++
		b, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(b, opts); err != nil {
			t.Errorf("%s:%d: the example does not load:\n%v\nexample:\n%s", ex.file, ex.line, err, ex.text)
		}
	}
	if checked < 5 {
		t.Errorf("only %d examples checked: the docs' examples are not being found", checked)
	}
	t.Logf("%d examples checked", checked)
}

func TestAsConfig(t *testing.T) {
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"providers: []\n", true},
		{"- {name: g, deployments: [d]}\n", true},
		{"routes:\n- match: {prefix: /}\n", false},
		{"static_resources: {}\n", false},
		{`{"error": {"message": "x"}}`, false},
		{"- a\n- b\n", false},
		{"not: [valid\n", false},
	} {
		if _, got := asConfig(tc.text); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.text, got, tc.want)
		}
	}
	// A wrong example is caught: the stubs do not hide its own fields.
	cfg, _ := asConfig("- {name: g, deployments: [d], routing: {strategy: fastest}}\n")
	b, _ := yaml.Marshal(cfg)
	if _, err := Parse(b, LoadOptions{Kinds: translate.KnownKinds, Getenv: func(string) (string, bool) { return "k", true }}); err == nil ||
		!strings.Contains(err.Error(), `model_groups[0].routing.strategy: unknown strategy "fastest"`) {
		t.Errorf("a wrong example: %v", err)
	}
}
