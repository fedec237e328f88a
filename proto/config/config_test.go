package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var kinds = []string{"openai", "openai_compatible", "azure_openai", "anthropic", "bedrock", "gemini", "vertex"}

// Secret values: none may ever appear in output.
const (
	providerKey   = "sk-provider-very-secret-123"
	clientKey     = "sk-client-abc"
	clientFileKey = "sk-from-file"
)

var secrets = []string{providerKey, clientKey, clientFileKey}

func testOpts() LoadOptions {
	env := map[string]string{"OPENAI_API_KEY": providerKey, "CLIENT_KEY": clientKey, "BLANK": " "}
	files := map[string]string{
		"/keys/client":   clientFileKey + "\n",
		"/keys/client2":  "sk-other\r\n",
		"/keys/provider": providerKey + "\n",
		"/keys/empty":    "\n",
	}
	return LoadOptions{
		Kinds:  kinds,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := files[p]; ok {
				return []byte(v), nil
			}
			return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
		},
		Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
}

func digest(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func mustParseFile(t *testing.T, name string) *Runtime {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := Parse(b, testOpts())
	if err != nil {
		t.Fatalf("%s:\n%v", name, err)
	}
	return rt
}

func TestValidFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) { mustParseFile(t, name) })
	}
}

// TestInvalidFixtures checks that each file in testdata/invalid fails with
// exactly the error lines its "# want:" comments list, in that order.
func TestInvalidFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for line := range strings.Lines(string(b)) {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					want = append(want, strings.TrimRight(w, "\n"))
				}
			}
			_, err = Parse(b, testOpts())
			if err == nil {
				t.Fatal("accepted")
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows secret %q", s)
				}
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/full.yaml")
	if got := rt.Server(); got != (Server{ClusterHeader: "x-upstream", MetadataNamespace: "com.example.llmux", MaxRequestBodyBytes: 1 << 20, MaxResponseBodyBytes: 256 << 20, StreamIdleTimeout: 90 * time.Second, MaxBufferedBytes: 8 << 20}) {
		t.Errorf("server %+v", got)
	}
	if rt.IdentityHeader() != "x-tenant" {
		t.Errorf("identity header %q", rt.IdentityHeader())
	}
	g, ok := rt.Group("gpt-4o")
	if !ok || len(g.Deployments) != 2 {
		t.Fatalf("group %+v", g)
	}
	d1, d2 := g.Deployments[0], g.Deployments[1]
	if d1.Name != "d1" || d1.Model != "gpt-4o" || d1.Weight != 2 || d1.Priority != 0 || d2.Weight != 0 || d2.Priority != 1 {
		t.Errorf("deployments %+v %+v", d1, d2)
	}
	p := d1.Provider
	want := Provider{Name: "openai", Kind: "openai", Cluster: "outbound|443||api.openai.com", BasePath: "/v1", APIVersion: "2024-10-21"}
	if p.Name != want.Name || p.Kind != want.Kind || p.Cluster != want.Cluster || p.BasePath != want.BasePath || p.APIVersion != want.APIVersion ||
		p.Headers["openai-organization"] != "org-1" || p.APIKey.Value() != providerKey || !slices.Equal(p.ForwardHeaders, []string{"openai-beta", "x-stainless-lang"}) {
		t.Errorf("provider %s %s %s %s %s %v %v", p.Name, p.Kind, p.Cluster, p.BasePath, p.APIVersion, p.Headers, p.ForwardHeaders)
	}
	if v := d2.Provider.APIKey.Value(); v != providerKey {
		t.Errorf("api_key_file not read and trimmed: %d bytes", len(v))
	}
	l, _ := rt.Group("llama")
	if lp := l.Deployments[0].Provider; lp.APIKey.IsSet() || lp.Headers == nil || l.Deployments[0].Weight != 1 {
		t.Errorf("keyless provider %+v, weight %d", lp, l.Deployments[0].Weight)
	}
	if !rt.LoadedAt().Equal(testOpts().Now()) {
		t.Errorf("loaded at %v", rt.LoadedAt())
	}
	b, _ := os.ReadFile("testdata/valid/full.yaml")
	if v := rt.Version(); v != Version(b) || len(v) != 12 {
		t.Errorf("version %q", v)
	}
}

func TestDefaults(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/minimal.yaml")
	want := Server{ClusterHeader: "x-llmux-upstream", MetadataNamespace: "io.llmux", MaxRequestBodyBytes: 16 << 20, MaxResponseBodyBytes: 32 << 20, StreamIdleTimeout: DefaultStreamIdleTimeout, MaxBufferedBytes: 256 << 20}
	if got := rt.Server(); got != want {
		t.Errorf("server %+v, want %+v", got, want)
	}
	g, _ := rt.Group("g")
	if d := g.Deployments[0]; d.Weight != 1 || d.Priority != 0 || d.Provider.BasePath != "" || d.Provider.APIVersion != "" {
		t.Errorf("deployment defaults %+v", d)
	}
	if rt.IdentityHeader() != "" {
		t.Error("identity header set")
	}
	if _, _, ok := rt.Authenticate("anything"); ok {
		t.Error("no keys configured, yet a key was accepted")
	}
}

func TestAuthenticate(t *testing.T) {
	cfg := fmt.Sprintf(`
auth:
  keys:
  - {name: a, tenant: team-a, key_env: CLIENT_KEY}
  - {name: b, tenant: team-b, key_file: /keys/client}
  - {name: c, tenant: team-c, sha256: %s}
  - {name: d, tenant: team-c, sha256: %s}
providers: [{name: p, kind: openai, cluster: c}]
deployments: [{name: d, provider: p, model: m}]
model_groups: [{name: g, deployments: [d]}]
`, digest("sk-hashed"), strings.ToUpper(digest("sk-upper")))
	rt, err := Parse([]byte(cfg), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, tenant, name string
		ok                bool
	}{
		{clientKey, "team-a", "a", true},
		{clientFileKey, "team-b", "b", true}, // trailing newline trimmed
		{"sk-hashed", "team-c", "c", true},
		{"sk-upper", "team-c", "d", true}, // upper-case hex digest
		{"sk-hashed ", "", "", false},
		{"SK-HASHED", "", "", false},
		{"", "", "", false},
		{digest("sk-hashed"), "", "", false}, // the digest is not the key
	}
	for _, tc := range tests {
		tenant, name, ok := rt.Authenticate(tc.key)
		if tenant != tc.tenant || name != tc.name || ok != tc.ok {
			t.Errorf("Authenticate(%q) = %q %q %v, want %q %q %v", tc.key, tenant, name, ok, tc.tenant, tc.name, tc.ok)
		}
	}
}

func TestGroupsSortedAndAnchors(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/anchors.yaml")
	var names []string
	for _, g := range rt.Groups() {
		names = append(names, g.Name)
	}
	if !slices.Equal(names, []string{"g", "h"}) {
		t.Errorf("groups %v", names)
	}
	h, _ := rt.Group("h")
	if len(h.Deployments) != 2 {
		t.Fatalf("alias list: %+v", h)
	}
	d2 := h.Deployments[1]
	if d2.Name != "d2" || d2.Model != "m" || d2.Priority != 1 || d2.Provider.Name != "b" || d2.Provider.Cluster != "shared" || d2.Provider.Headers["x-team"] != "blue" {
		t.Errorf("merge keys: %+v %+v", d2, d2.Provider)
	}
	if _, ok := rt.Group("nope"); ok {
		t.Error("unknown group found")
	}
}

// TestParseErrorPaths covers the remaining error paths, asserting the
// exact field path of each.
func TestParseErrorPaths(t *testing.T) {
	base := `
providers:
- {name: p, kind: openai, cluster: c}
deployments:
- {name: d, provider: p, model: m}
model_groups:
- {name: g, deployments: [d]}
`
	tests := []struct {
		name, yaml string
		path, msg  string
		opts       func(*LoadOptions)
	}{
		{name: "empty", yaml: "", path: "", msg: "the file is empty"},
		{name: "only a comment", yaml: "# nothing\n", path: "", msg: "the file is empty"},
		{name: "scalar root", yaml: "hello", path: "", msg: "the root must be a mapping"},
		{name: "bad yaml", yaml: "a: [", path: "", msg: "invalid YAML"},
		{name: "tab indent", yaml: "server:\n\tcluster_header: x\n", path: "", msg: "invalid YAML"},
		{name: "null root", yaml: "~", path: "", msg: "the root must be a mapping"},
		{name: "empty groups", yaml: "model_groups: []\n", path: "model_groups", msg: "at least one model group is required"},
		{name: "group not a list", yaml: "model_groups: {}\n", path: "model_groups", msg: "expected a list"},
		{name: "nested unknown under merge", yaml: base + "auth: {<<: {foo: 1}}\n", path: "auth.foo", msg: "unknown field"},
		{name: "non-scalar key", yaml: base + "server: {[a]: 1}\n", path: "server", msg: "mapping keys must be scalars"},
		{name: "bad merge", yaml: base + "server: {<<: 1}\n", path: "server.<<", msg: "a merge key needs a mapping"},
		{name: "no kinds", yaml: base, path: "providers[0].kind", msg: "no provider kinds are available", opts: func(o *LoadOptions) { o.Kinds = nil }},
		{name: "identity is cluster header", yaml: base + "auth: {identity_header: x-llmux-upstream}\n", path: "auth.identity_header", msg: "is also server.cluster_header"},
		{name: "identity is authorization", yaml: base + "auth: {identity_header: authorization}\n", path: "auth.identity_header", msg: "carries client API keys"},
		{name: "identity pseudo header", yaml: base + "auth: {identity_header: \":authority\"}\n", path: "auth.identity_header", msg: "not a valid lowercase header name"},
		{name: "identity reserved", yaml: base + "auth: {identity_header: host}\n", path: "auth.identity_header", msg: "managed by Envoy"},
		{name: "empty group entry", yaml: strings.Replace(base, "[d]", `[""]`, 1), path: "model_groups[0].deployments[0]", msg: "must be set"},
		{name: "name with control", yaml: strings.Replace(base, "{name: g,", `{name: "g\u0000",`, 1), path: "model_groups[0].name", msg: "control characters"},
		{name: "tenant with spaces", yaml: base + "auth: {keys: [{name: k, tenant: ' t', key_env: CLIENT_KEY}]}\n", path: "auth.keys[0].tenant", msg: "leading or trailing spaces"},
		{name: "multi-line provider key file", yaml: strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_file: /keys/two}}", 1), path: "providers[0].credentials.api_key_file", msg: "/keys/two holds more than one line",
			opts: func(o *LoadOptions) {
				o.ReadFile = func(string) ([]byte, error) { return []byte(providerKey + "\n" + providerKey + "\n"), nil }
			}},
		{name: "control chars in env key", yaml: strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_env: K}}", 1), path: "providers[0].credentials.api_key_env", msg: "environment variable K holds control characters",
			opts: func(o *LoadOptions) { o.Getenv = func(string) (string, bool) { return providerKey + "\x00x", true } }},
		{name: "unreadable file", yaml: strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_file: k}}", 1), path: "providers[0].credentials.api_key_file", msg: "cannot read /etc/llmux/k: permission denied",
			opts: func(o *LoadOptions) {
				o.BaseDir = "/etc/llmux"
				o.ReadFile = func(p string) ([]byte, error) { return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrPermission} }
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOpts()
			if tc.opts != nil {
				tc.opts(&opts)
			}
			rt, err := Parse([]byte(tc.yaml), opts)
			if err == nil || rt != nil {
				t.Fatal("accepted")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T", err)
			}
			found := false
			for _, e := range es {
				if strings.HasPrefix(e.Path, tc.path) && e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want %q: ...%s..., got:\n%v", tc.path, tc.msg, err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Error("errors.As(*FieldError) fails")
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows secret %q", s)
				}
			}
		})
	}
}

// TestAliasBombs checks that aliases cannot make a small file expand
// into a huge one ("billion laughs"), through lists or merge keys.
func TestAliasBombs(t *testing.T) {
	var list, merge strings.Builder
	list.WriteString("model_groups:\n- &g {name: g, deployments: [" + strings.Repeat("d, ", 700) + "d]}\n")
	list.WriteString(strings.Repeat("- *g\n", 700))
	merge.WriteString("defs:\n  a0: &a0 {name: x}\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&merge, "  a%d: &a%d {<<: [%s*a%d]}\n", i, i, strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), i-1)
	}
	merge.WriteString("providers: [{<<: *a9}]\n")
	for name, doc := range map[string]string{"list": list.String(), "merge": merge.String(), "cycle": "model_groups: &a [*a]\n"} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(doc), testOpts())
			if err == nil {
				t.Fatal("accepted")
			}
			if name != "cycle" && !strings.Contains(err.Error(), "more than 262144 YAML nodes") {
				t.Errorf("got %.300s", err)
			}
		})
	}
}

func TestErrorsSortedByPath(t *testing.T) {
	in := []string{"providers[10].name", "providers[2].kind", "", "auth.keys[0]", "providers[2]", "model_groups", "providers[2].cluster"}
	want := []string{"", "auth.keys[0]", "model_groups", "providers[2]", "providers[2].cluster", "providers[2].kind", "providers[10].name"}
	c := &errs{}
	for _, p := range in {
		c.add(p, "x")
	}
	var got []string
	for _, e := range c.result().(Errors) {
		got = append(got, e.Path)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key"), []byte("sk-rel\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "auth: {keys: [{name: k, tenant: t, key_file: key}]}\nproviders: [{name: p, kind: openai, cluster: c}]\ndeployments: [{name: d, provider: p, model: m}]\nmodel_groups: [{name: g, deployments: [d]}]\n"
	path := filepath.Join(dir, "llmux.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	rt, err := Load(path, LoadOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := rt.Authenticate("sk-rel"); !ok {
		t.Fatal("relative key file not read against the config's directory")
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), LoadOptions{Kinds: kinds}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte(cfg+"bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, LoadOptions{Kinds: kinds})
	var es Errors
	if !errors.As(err, &es) || !strings.Contains(err.Error(), path) || es[0].Path != "bogus" {
		t.Errorf("invalid file: %v", err)
	}
}

func exampleOpts() LoadOptions {
	return LoadOptions{Kinds: kinds, Getenv: func(k string) (string, bool) {
		if k == "LLMUX_REDIS_ADDRESSES" {
			return "", false // limits in memory, as `make run` without redis-server
		}
		if strings.HasPrefix(k, "LLMUX_") || strings.HasSuffix(k, "_API_KEY") {
			return "demo-" + k, true
		}
		return "", false
	}}
}

func TestExampleLoads(t *testing.T) {
	rt, err := Load("example.yaml", exampleOpts())
	if err != nil {
		t.Fatal(err)
	}
	g, ok := rt.Group("gpt-4o-mini")
	if !ok || g.Deployments[0].Provider.Kind != "openai" {
		t.Fatal("example lacks gpt-4o-mini served by openai")
	}
	if _, _, ok := rt.Authenticate("demo-LLMUX_DEMO_KEY"); !ok {
		t.Error("demo key not configured")
	}
	seen := map[string]bool{}
	for _, g := range rt.Groups() {
		for _, d := range g.Deployments {
			seen[d.Provider.Kind] = true
		}
	}
	for _, k := range []string{"openai", "anthropic", "bedrock", "gemini", "azure_openai", "openai_compatible"} {
		if !seen[k] {
			t.Errorf("example has no group served by kind %s", k)
		}
	}
}

func TestSecretFormatting(t *testing.T) {
	s := NewSecret(providerKey)
	if s.Value() != providerKey || !s.IsSet() || (Secret{}).IsSet() {
		t.Fatal("value")
	}
	js, _ := json.Marshal(map[string]any{"s": s, "p": &s})
	txt, _ := s.MarshalText()
	y, _ := s.MarshalYAML()
	for _, out := range []string{
		fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%X|%d|%10s|%T", s, s, s, s, s, s, s, s, s, s),
		fmt.Sprintf("%v|%+v|%#v|%s", &s, &s, &s, &s),
		fmt.Sprint(s), fmt.Sprintln(s), s.String(), s.GoString(), string(js), string(txt), fmt.Sprint(y), s.LogValue().String(),
	} {
		if strings.Contains(out, providerKey) || strings.Contains(out, hex.EncodeToString([]byte(providerKey))) {
			t.Errorf("secret printed: %s", out)
		}
		if !strings.Contains(out, "[REDACTED]") && !strings.Contains(out, "config.Secret") {
			t.Errorf("no [REDACTED] in %s", out)
		}
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	rt := mustParseFile(t, "testdata/valid/full.yaml")
	red, err := rt.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	g, _ := rt.Group("gpt-4o")
	d := g.Deployments[0]
	p := d.Provider
	outputs := map[string]string{
		"redacted":   string(red),
		"provider":   fmt.Sprintf("%v %+v %#v %s", p, p, p, p),
		"*provider":  fmt.Sprintf("%v %+v %#v %s", *p, *p, *p, *p),
		"deployment": fmt.Sprintf("%v %+v %#v", *d, *d, *d),
		"group":      fmt.Sprintf("%v %+v %#v", *g, *g, *g),
		"runtime":    fmt.Sprintf("%v %+v %#v", *rt, *rt, *rt),
	}
	if j, err := json.Marshal(p); err == nil {
		outputs["json"] = string(j)
	}
	for name, o := range outputs {
		for _, s := range secrets {
			if strings.Contains(o, s) {
				t.Errorf("%s: secret %q printed in:\n%s", name, s, o)
			}
		}
	}
	var view struct {
		Version string `json:"version"`
		Config  struct {
			Server    Server `json:"server"`
			Auth      Auth   `json:"auth"`
			Providers []struct {
				Headers     map[string]string `json:"headers"`
				Credentials struct {
					APIKeyEnv string `json:"api_key_env"`
					APIKey    string `json:"api_key"`
				} `json:"credentials"`
			} `json:"providers"`
			Deployments []struct {
				Weight *int `json:"weight"`
			} `json:"deployments"`
		} `json:"config"`
	}
	if err := json.Unmarshal(red, &view); err != nil {
		t.Fatal(err)
	}
	c := view.Config
	if view.Version != rt.Version() || c.Server != rt.Server() || c.Auth.IdentityHeader != "x-tenant" {
		t.Errorf("redacted header fields:\n%s", red)
	}
	if c.Auth.Keys[2].SHA256 != "00000000…" || c.Auth.Keys[0].KeyEnv != "CLIENT_KEY" {
		t.Errorf("keys %+v", c.Auth.Keys)
	}
	if pc := c.Providers[0].Credentials; pc.APIKeyEnv != "OPENAI_API_KEY" || pc.APIKey != "[REDACTED]" || c.Providers[2].Credentials.APIKey != "" {
		t.Errorf("credentials %+v", c.Providers)
	}
	if c.Deployments[2].Weight == nil || *c.Deployments[2].Weight != 1 {
		t.Error("default weight not shown")
	}
}

func TestRedactedHeaders(t *testing.T) {
	cfg := `
providers: [{name: p, kind: openai_compatible, cluster: c, headers: {x-custom-token: tok-123, x-team: blue}}]
deployments: [{name: d, provider: p, model: m}]
model_groups: [{name: g, deployments: [d]}]
`
	rt, err := Parse([]byte(cfg), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	red, _ := rt.Redacted()
	if strings.Contains(string(red), "tok-123") || !strings.Contains(string(red), `"x-team": "blue"`) {
		t.Errorf("headers:\n%s", red)
	}
	g, _ := rt.Group("g")
	if g.Deployments[0].Provider.Headers["x-custom-token"] != "tok-123" {
		t.Error("the runtime must keep the real value")
	}
}
