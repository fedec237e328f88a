package envoy_test

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/llmux/llmux/envoy"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// TestIstioConfigMapIsValidLlmuxConfig loads the llmux configuration that
// envoy/istio/llmux.yaml ships in its ConfigMap with llmux's own loader,
// so the manifest cannot drift from the schema. Every environment variable
// it names is given a dummy value.
func TestIstioConfigMapIsValidLlmuxConfig(t *testing.T) {
	raw, err := os.ReadFile("istio/llmux.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, doc := range envoy.SplitYAML(raw) {
		var cm struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal(doc, &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Kind != "ConfigMap" || cm.Data["llmux.yaml"] == "" {
			continue
		}
		found = true
		_, err := config.Parse([]byte(cm.Data["llmux.yaml"]), config.LoadOptions{
			Kinds:  translate.KnownKinds,
			Getenv: func(string) (string, bool) { return "dummy-value", true },
		})
		if err != nil {
			t.Fatalf("istio/llmux.yaml ConfigMap llmux.yaml:\n%v", err)
		}
	}
	if !found {
		t.Fatal("no ConfigMap with llmux.yaml in istio/llmux.yaml")
	}
}

// TestExampleConfigClustersInStandalone: every cluster that the example
// llmux configuration (proto/config/example.yaml, what `make run` loads)
// names exists in standalone.yaml, so every model GET /v1/models lists has
// a route to a provider.
func TestExampleConfigClustersInStandalone(t *testing.T) {
	raw, err := os.ReadFile("../proto/config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := config.Parse(raw, config.LoadOptions{
		Kinds:  translate.KnownKinds,
		Getenv: func(k string) (string, bool) { return "dummy-value", k != "LLMUX_REDIS_ADDRESSES" },
	})
	if err != nil {
		t.Fatalf("proto/config/example.yaml: %v", err)
	}
	clusters := map[string]bool{}
	for _, c := range loadStandalone(t).GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	if len(rt.Groups()) == 0 {
		t.Fatal("example.yaml has no model groups")
	}
	for _, g := range rt.Groups() {
		for _, d := range g.Deployments {
			if c := d.Provider.Cluster; !clusters[c] {
				t.Errorf("model %q: deployment %q: provider %q names cluster %q, which standalone.yaml lacks",
					g.Name, d.Name, d.Provider.Name, c)
			}
		}
	}
}
