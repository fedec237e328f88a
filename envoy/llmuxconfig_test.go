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
