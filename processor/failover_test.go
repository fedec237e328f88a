package processor

import (
	"strings"
	"testing"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// The order fallbacks are tried in: untried deployments this build serves,
// lowest priority, then highest weight, then configuration order; weight 0
// never.
func TestNextDeployment(t *testing.T) {
	p := &config.Provider{Name: "p", Kind: "openai"}
	none := &config.Provider{Name: "q", Kind: "no-such-kind"}
	d := func(name string, pri, w int, prov *config.Provider) *config.Deployment {
		return &config.Deployment{Name: name, Priority: pri, Weight: w, Provider: prov}
	}
	first, heavy, light, later, off, unserved := d("first", 0, 1, p), d("heavy", 1, 5, p), d("light", 1, 1, p), d("later", 2, 9, p), d("off", 0, 0, p), d("unserved", 0, 9, none)
	h := &handler{s: New(Options{}), group: &config.Group{Deployments: []*config.Deployment{first, off, unserved, light, heavy, later}}}
	h.fo.tried = []*config.Deployment{first}
	var got []string
	for {
		dep, tr := h.nextDeployment()
		if dep == nil {
			break
		}
		if tr == nil {
			t.Fatalf("%s: no translator", dep.Name)
		}
		got = append(got, dep.Name)
		h.fo.tried = append(h.fo.tried, dep)
	}
	if want := "heavy light later"; strings.Join(got, " ") != want {
		t.Errorf("order %q, want %q", strings.Join(got, " "), want)
	}
}

// The client gets the most informative of several failures.
func TestMoreInformative(t *testing.T) {
	e := func(c translate.Code) *translate.Error { return &translate.Error{Code: c} }
	for _, tc := range []struct {
		a, b *translate.Error
		want bool
	}{
		{e(translate.CodeRateLimited), e(translate.CodeUpstreamUnavailable), true},
		{e(translate.CodeUpstreamUnavailable), e(translate.CodeRateLimited), false},
		{e(translate.CodeContextLengthExceeded), e(translate.CodeRateLimited), true},
		{e(translate.CodeOverloaded), e(translate.CodeTimeout), true},
		{e(translate.CodeTimeout), e(translate.CodeOverloaded), false},
		{e(translate.CodeTimeout), nil, true},
		{e(translate.CodeUpstreamUnavailable), e(translate.CodeUpstreamUnavailable), false},
	} {
		if got := moreInformative(tc.a, tc.b); got != tc.want {
			t.Errorf("moreInformative(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}
