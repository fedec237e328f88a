package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, return neither a
// runtime nor an error, or show a secret. The seeds are every fixture in
// testdata plus the example (and testdata/fuzz/FuzzParse, go's own corpus).
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	seeds = append(seeds, "example.yaml")
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{"", "~", "[]", "a: &x [*x]\n", "{<<: {<<: 1}}", "providers: [{headers: {a: [1]}}]", "\xff\xfe", "model_groups: [*x]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rt, err := Parse(b, testOpts())
		if (rt == nil) == (err == nil) {
			t.Fatalf("runtime %v, error %v", rt, err)
		}
		if err != nil {
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) && !strings.Contains(string(b), s) {
					t.Fatalf("secret %q in the error", s)
				}
			}
			return
		}
		if _, err := rt.Redacted(); err != nil {
			t.Fatal(err)
		}
		if len(rt.Groups()) == 0 {
			t.Fatal("a valid configuration without model groups")
		}
	})
}
