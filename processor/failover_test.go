package processor

import (
	"testing"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// The order fallbacks are tried in without routing: untried deployments this build serves,
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
	for _, tc := range []struct {
		tried []*config.Deployment
		want  string
	}{
		{[]*config.Deployment{first}, "heavy"},
		{[]*config.Deployment{first, heavy}, "light"},
		{[]*config.Deployment{first, heavy, light}, "later"},
		{[]*config.Deployment{heavy, light, later}, "first"},
	} {
		h.fo.ntried = copy(h.fo.tried[:], tc.tried)
		dep, tr := h.nextDeployment()
		if dep == nil || tr == nil || dep.Name != tc.want {
			t.Errorf("after %d tried: %v, want %s", len(tc.tried), dep, tc.want)
		}
	}
	// Nothing left: weight 0 and kinds this build lacks are never tried.
	h.group.Deployments = []*config.Deployment{first, off, unserved}
	h.fo.ntried = copy(h.fo.tried[:], []*config.Deployment{first})
	if dep, _ := h.nextDeployment(); dep != nil {
		t.Errorf("got %s, want none", dep.Name)
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
