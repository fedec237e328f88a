package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var kinds = []string{"openai", "openai_compatible", "azure_openai", "anthropic", "bedrock", "gemini", "vertex"}

const secretKey = "sk-provider-very-secret-123"

func testOpts() LoadOptions {
	env := map[string]string{"OPENAI_API_KEY": secretKey, "CLIENT_KEY": "sk-client-abc", "EMPTY": " "}
	files := map[string]string{"/keys/client": "sk-from-file\n", "/keys/provider": secretKey + "\n", "/keys/empty": "\n"}
	return LoadOptions{
		Kinds:  kinds,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		ReadFile: func(p string) ([]byte, error) {
			if v, ok := files[p]; ok {
				return []byte(v), nil
			}
			return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
		},
	}
}

const valid = `
server:
  max_request_body_bytes: 1024
auth:
  identity_header: x-llmux-tenant
  keys:
  - {name: a, tenant: team-a, key_env: CLIENT_KEY}
  - {name: b, tenant: team-b, key_file: /keys/client}
  - {name: c, tenant: team-c, sha256: "%s"}
providers:
- name: openai
  kind: openai
  cluster: openai
  headers: {openai-organization: org-1}
  credentials: {api_key_env: OPENAI_API_KEY}
- name: vllm
  kind: openai_compatible
  cluster: vllm
  base_path: /v1
deployments:
- {name: d1, provider: openai, model: gpt-4o-mini}
- {name: d2, provider: vllm, model: llama, weight: 3, priority: 1}
model_groups:
- {name: small, deployments: [d1, d2]}
- {name: another, deployments: [d2]}
`

func digest(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func TestParseValid(t *testing.T) {
	rt, err := Parse([]byte(fmt.Sprintf(valid, digest("sk-hashed"))), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	s := rt.Server()
	if s.ClusterHeader != DefaultClusterHeader || s.MetadataNamespace != DefaultMetadataNamespace || s.MaxRequestBodyBytes != 1024 || s.MaxResponseBodyBytes != DefaultMaxResponseBodyBytes {
		t.Errorf("server %+v", s)
	}
	for key, tenant := range map[string]string{"sk-client-abc": "team-a", "sk-from-file": "team-b", "sk-hashed": "team-c"} {
		if got, _, ok := rt.Authenticate(key); !ok || got != tenant {
			t.Errorf("key %s: %q %v", key, got, ok)
		}
	}
	if _, _, ok := rt.Authenticate("nope"); ok {
		t.Error("unknown key accepted")
	}
	g, ok := rt.Group("small")
	if !ok || len(g.Deployments) != 2 || g.Deployments[0].Provider.APIKey.Value() != secretKey || g.Deployments[1].Weight != 3 || g.Deployments[0].Weight != 1 {
		t.Fatalf("group %+v", g)
	}
	if names := []string{rt.Groups()[0].Name, rt.Groups()[1].Name}; names[0] != "another" || names[1] != "small" {
		t.Errorf("groups not sorted: %v", names)
	}
	if rt.IdentityHeader() != "x-llmux-tenant" || rt.Version() == "" {
		t.Error("identity header or version")
	}
}

func TestParseErrors(t *testing.T) {
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
		want       []string // each must appear as a line of the error
	}{
		{"empty", ``, []string{"the file is empty"}},
		{"not a mapping", `[1,2]`, []string{"the root must be a mapping"}},
		{"two documents", base + "\n---\nserver: {}\n", []string{"the file must hold one YAML document"}},
		{"unknown top field", base + "extra: 1\n", []string{"extra: unknown field"}},
		{"unknown nested field", strings.Replace(base, "model: m}", "model: m, nme: x}", 1), []string{"deployments[0].nme: unknown field"}},
		{"unknown deep field", strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key: x}}", 1), []string{"providers[0].credentials.api_key: unknown field"}},
		{"wrong type", strings.Replace(base, "model: m}", "model: m, priority: high}", 1), []string{`deployments[0].priority: expected a integer, got "high"`}},
		{"list expected", strings.Replace(base, "deployments: [d]", "deployments: d", 1), []string{"model_groups[0].deployments: expected a list"}},
		{"unknown kind", strings.Replace(base, "kind: openai", "kind: foo", 1), []string{`providers[0].kind: unknown kind "foo" (want one of: openai, openai_compatible, azure_openai, anthropic, bedrock, gemini, vertex)`}},
		{"missing env", strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_env: NOPE}}", 1), []string{"providers[0].credentials.api_key_env: environment variable NOPE is not set"}},
		{"blank env", strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_env: EMPTY}}", 1), []string{"providers[0].credentials.api_key_env: environment variable EMPTY is not set"}},
		{"missing key file", strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_file: /keys/none}}", 1), []string{"providers[0].credentials.api_key_file: cannot read /keys/none: file does not exist"}},
		{"two credentials", strings.Replace(base, "cluster: c}", "cluster: c, credentials: {api_key_file: /keys/provider, api_key_env: OPENAI_API_KEY}}", 1), []string{"providers[0].credentials: set at most one of api_key_env, api_key_file"}},
		{"unknown deployment", strings.Replace(base, "[d]", "[d, x]", 1), []string{`model_groups[0].deployments[1]: unknown deployment "x"`}},
		{"duplicate deployment in group", strings.Replace(base, "[d]", "[d, d]", 1), []string{`model_groups[0].deployments[1]: deployment "d" listed twice`}},
		{"unknown provider", strings.Replace(base, "provider: p", "provider: q", 1), []string{`deployments[0].provider: unknown provider "q"`}},
		{"no model", strings.Replace(base, ", model: m", "", 1), []string{"deployments[0].model: must be set"}},
		{"negative weight", strings.Replace(base, "model: m}", "model: m, weight: -1}", 1), []string{"deployments[0].weight: must be >= 0"}},
		{"no groups", "providers: []\n", []string{"model_groups: at least one model group is required"}},
		{"duplicate provider", strings.Replace(base, "- {name: p, kind: openai, cluster: c}", "- {name: p, kind: openai, cluster: c}\n- {name: p, kind: openai, cluster: c}", 1), []string{`providers[1].name: duplicate name "p"`}},
		{"bad header", strings.Replace(base, "cluster: c}", "cluster: c, headers: {Bad Header: x}}", 1), []string{"providers[0].headers.Bad Header: not a lowercase header name"}},
		{"bad cluster", strings.Replace(base, "cluster: c}", "cluster: \"c\\nx\"}", 1), []string{`providers[0].cluster: "c\nx" is not a valid header value`}},
		{"bad base path", strings.Replace(base, "cluster: c}", "cluster: c, base_path: v1}", 1), []string{"providers[0].base_path: must start with /"}},
		{"bad identity header", base + "auth: {identity_header: X Tenant}\n", []string{`auth.identity_header: "X Tenant" is not a lowercase header name`}},
		{"key with two sources", base + "auth: {keys: [{name: k, tenant: t, key_env: CLIENT_KEY, key_file: /keys/client}]}\n", []string{"auth.keys[0]: set exactly one of sha256, key_env, key_file"}},
		{"bad digest", base + "auth: {keys: [{name: k, tenant: t, sha256: abc}]}\n", []string{"auth.keys[0].sha256: must be 64 hex characters"}},
		{"key without tenant", base + "auth: {keys: [{name: k, key_env: CLIENT_KEY}]}\n", []string{"auth.keys[0].tenant: must be set"}},
		{"same key twice", base + "auth: {keys: [{name: k1, tenant: t, key_env: CLIENT_KEY}, {name: k2, tenant: t, sha256: " + digest("sk-client-abc") + "}]}\n", []string{`auth.keys[1]: the same key is already configured as "k1"`}},
		{"limit too large", base + "server: {max_request_body_bytes: 999999999999}\n", []string{"server.max_request_body_bytes: must be between 1 and 268435456"}},
		{"several at once", strings.Replace(strings.Replace(base, "kind: openai", "kind: foo", 1), "[d]", "[x]", 1), []string{`providers[0].kind: unknown kind "foo"`, `model_groups[0].deployments[0]: unknown deployment "x"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), testOpts())
			if err == nil {
				t.Fatal("accepted")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T", err)
			}
			for _, w := range tc.want {
				found := false
				for _, e := range es {
					if strings.HasPrefix(e.Error(), w) {
						found = true
					}
				}
				if !found {
					t.Errorf("want a line starting %q, got:\n%v", w, err)
				}
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	rt, err := Parse([]byte(fmt.Sprintf(valid, digest("sk-hashed"))), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	red, err := rt.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	p := rt.Groups()[1].Deployments[0].Provider
	outputs := []string{string(red), fmt.Sprintf("%v %+v %#v %s %q", p, p, p, p.APIKey, p.APIKey), fmt.Sprint(*p)}
	for _, o := range outputs {
		for _, s := range []string{secretKey, "sk-client-abc", "sk-from-file", digest("sk-hashed")} {
			if strings.Contains(o, s) {
				t.Fatalf("secret %q printed in:\n%s", s, o)
			}
		}
	}
	if !strings.Contains(string(red), "[REDACTED]") && !strings.Contains(string(red), `"api_key_env": "OPENAI_API_KEY"`) {
		t.Errorf("redacted config lacks the credential source:\n%s", red)
	}
	// An invalid file must not echo a secret either.
	_, err = Parse([]byte(strings.Replace(fmt.Sprintf(valid, digest("x")), "cluster: vllm", "cluster: \"\"", 1)), testOpts())
	if err == nil || strings.Contains(err.Error(), secretKey) {
		t.Fatalf("error %v", err)
	}
}

// TestLoadRelativeKeyFile resolves key files against the config's dir.
func TestLoadRelativeKeyFile(t *testing.T) {
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
		t.Fatal("relative key file not read")
	}
}

func TestExampleLoads(t *testing.T) {
	env := map[string]string{}
	for _, k := range []string{"LLMUX_DEMO_KEY", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_API_KEY"} {
		env[k] = "x-" + k
	}
	rt, err := Load("example.yaml", LoadOptions{Kinds: kinds, Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rt.Group("gpt-4o-mini"); !ok {
		t.Fatal("example lacks gpt-4o-mini")
	}
}

type reload struct {
	ok  bool
	err error
}

func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func next(t *testing.T, ch <-chan reload) reload {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no reload")
		return reload{}
	}
}

const watchCfg = "providers: [{name: p, kind: openai, cluster: c}]\ndeployments: [{name: d, provider: p, model: %s}]\nmodel_groups: [{name: g, deployments: [d]}]\n"

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "llmux.yaml")
	write(t, path, fmt.Sprintf(watchCfg, "m1"))
	s, err := NewStore(path, LoadOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan reload, 16)
	done := make(chan error)
	go func() { done <- s.Watch(ctx, func(ok bool, err error) { ch <- reload{ok, err} }) }()
	defer func() { cancel(); <-done }()

	model := func() string { g, _ := s.Current().Group("g"); return g.Deployments[0].Model }

	// The watcher may not be registered yet when the first write lands:
	// write until a reload is seen.
	for i := 0; ; i++ {
		write(t, path, fmt.Sprintf(watchCfg, fmt.Sprintf("m2-%d", i)))
		select {
		case r := <-ch:
			if !r.ok {
				t.Fatal(r.err)
			}
		case <-time.After(200 * time.Millisecond):
			if i > 50 {
				t.Fatal("watcher never reloaded")
			}
			continue
		}
		break
	}
	if !strings.HasPrefix(model(), "m2-") || !s.Status().Healthy {
		t.Fatalf("valid change not applied: %s", model())
	}
	before := model()

	write(t, path, fmt.Sprintf(watchCfg, "m3")+"bogus: 1\n")
	if r := next(t, ch); r.ok || !strings.Contains(r.err.Error(), "bogus: unknown field") {
		t.Fatalf("invalid change: %+v", r)
	}
	st := s.Status()
	if st.Healthy || st.LastError == nil || model() != before {
		t.Fatalf("invalid file must keep the old config: %+v %s", st, model())
	}

	write(t, path, fmt.Sprintf(watchCfg, "m4"))
	if r := next(t, ch); !r.ok {
		t.Fatal(r.err)
	}
	if model() != "m4" || !s.Status().Healthy {
		t.Fatalf("fix not applied: %s", model())
	}
}

// TestWatchConfigMapSwap mimics Kubernetes: the file is a symlink into a
// ..data directory that is swapped atomically.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, model string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "llmux.yaml"), fmt.Sprintf(watchCfg, model))
	}
	mk("v1", "a")
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/llmux.yaml", filepath.Join(dir, "llmux.yaml")); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(filepath.Join(dir, "llmux.yaml"), LoadOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan reload, 16)
	done := make(chan error)
	go func() { done <- s.Watch(ctx, func(ok bool, err error) { ch <- reload{ok, err} }) }()
	defer func() { cancel(); <-done }()
	for i := 0; ; i++ {
		v := fmt.Sprintf("v%d", i+2)
		mk(v, v)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(v, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			if !r.ok {
				t.Fatal(r.err)
			}
			g, _ := s.Current().Group("g")
			if g.Deployments[0].Model != v {
				t.Fatalf("model %s, want %s", g.Deployments[0].Model, v)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if i > 50 {
				t.Fatal("no reload after a ConfigMap swap")
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(fmt.Sprintf(valid, digest("x"))))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("providers: [{name: p, kind: openai, cluster: c, headers: {a: [1]}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rt, err := Parse(b, testOpts())
		if err == nil && rt == nil {
			t.Fatal("nil runtime without error")
		}
		if err != nil && strings.Contains(err.Error(), secretKey) {
			t.Fatal("secret in error")
		}
	})
}
