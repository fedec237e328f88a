package envoysim

import (
	"fmt"
	"net/http"
	"testing"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// TestHeaderRemovalRules: what Envoy does with remove_headers (reference
// §2.3, MutationUtils::applyHeaderMutations and the mutation rules): names
// are lower-cased, every value of a name goes, host and pseudo-headers are
// never removed, x-envoy-* only with allow_envoy, a refused removal is
// dropped and counted (or fails the request with disallow_is_error), and
// more entries than max_headers_count fail the request.
func TestHeaderRemovalRules(t *testing.T) {
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("x-h%d", i)
	}
	tests := []struct {
		name       string
		extProc    string
		remove     []string
		wantStatus int
		gone, kept []string // headers the upstream must not / must see
		rejected   int
	}{
		{"mixed case and multi-valued", "", []string{"X-Custom", "cookie"}, 200, []string{"X-Custom", "Cookie"}, []string{"X-Envoy-Foo", "X-Other"}, 0},
		{"host, pseudo and x-envoy refused", "", []string{"host", ":path", ":authority", "x-envoy-foo"}, 200, nil, []string{"X-Envoy-Foo", "X-Custom"}, 4},
		{"x-envoy with allow_envoy", "mutation_rules: {allow_envoy: true}", []string{"x-envoy-foo"}, 200, []string{"X-Envoy-Foo"}, []string{"X-Custom"}, 0},
		{"x-envoy with disallow_is_error", "mutation_rules: {disallow_is_error: true}", []string{"x-custom", "x-envoy-foo"}, 500, nil, nil, 1},
		{"over max_headers_count", "", many, 500, nil, nil, 1},
		{"exactly max_headers_count", "", many[:100], 200, nil, []string{"X-Custom"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{extProc: tc.extProc}, nil)
			hr, err := http.NewRequest("GET", e.base+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range [][2]string{{"x-custom", "1"}, {"x-envoy-foo", "2"}, {"x-other", "3"}, {"cookie", "a=1"}, {"cookie", "b=2"}} {
				hr.Header.Add(kv[0], kv[1])
			}
			req := e.do(t, false, hr)
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(nil, tc.remove...)}))
			if tc.wantStatus != 200 {
				wantStatus(t, wait(t, req), tc.wantStatus)
				e.up.none(t)
			} else {
				u := e.up.got(t)
				for _, h := range tc.gone {
					if v, ok := u.header[h]; ok {
						t.Errorf("upstream saw %s %q", h, v)
					}
				}
				for _, h := range tc.kept {
					if _, ok := u.header[h]; !ok {
						t.Errorf("upstream lost %s", h)
					}
				}
				ps.expect(t, "response_headers")
				ps.send(t, respHeadersResp(cont()))
				wantStatus(t, wait(t, req), 200)
			}
			if n := e.sim.Stats()["rejected_header_mutations"]; n != uint64(tc.rejected) {
				t.Errorf("rejected_header_mutations = %d, want %d", n, tc.rejected)
			}
		})
	}
}
