package envoy_test

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/llmux/llmux/envoy"
)

// The shipped bootstrap has an owned route: fine on Envoy 1.37 and later,
// refused, with the reason and the Istio versions, before.
func TestCheckBootstrapForEnvoy(t *testing.T) {
	b := loadStandalone(t)
	for _, tc := range []struct {
		version string
		refused bool
	}{{"1.34", true}, {"1.36", true}, {"1.36.4", true}, {"1.37", false}, {"1.37.0", false}, {"1.40", false}} {
		errs := envoy.CheckBootstrapForEnvoy(b, tc.version)
		if !tc.refused {
			if len(errs) > 0 {
				t.Errorf("Envoy %s: %v", tc.version, errs)
			}
			continue
		}
		if len(errs) != 1 {
			t.Fatalf("Envoy %s: want one problem (the owned route), have %v", tc.version, errs)
		}
		msg := errs[0].Error()
		for _, want := range []string{"virtual_hosts[llm-owned]", ".mode:", "Envoy 1.37 or later", "Istio 1.29"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Envoy %s: problem %q lacks %q", tc.version, msg, want)
			}
		}
	}
	if errs := envoy.CheckBootstrapForEnvoy(b, "2"); len(errs) != 1 || !strings.Contains(errs[0].Error(), "1.N") {
		t.Errorf("bad version: %v", errs)
	}
}

func TestCheckOwnedRoute(t *testing.T) {
	const override = `
typed_per_filter_config:
  envoy.filters.http.ext_proc:
    "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute
    overrides: {processing_mode: {request_body_mode: BODY, request_trailer_mode: TRAILERS}}
`
	const owned = `
routes:
- match: {prefix: "/"}
  route: {cluster_header: x-llmux-upstream}
  request_headers_to_remove: [x-llmux-upstream]
  metadata: {filter_metadata: {io.llmux: {mode: MODE}}}
`
	for _, tc := range []struct {
		name, mode, override string
		want                 string // substring of the one problem; "" for none
	}{
		{"owned_on_vhost", "owned", strings.NewReplacer("BODY", "FULL_DUPLEX_STREAMED", "TRAILERS", "SEND").Replace(override), ""},
		{"owned_without_override", "owned", "", "request_body_mode: an owned route needs FULL_DUPLEX_STREAMED"},
		{"owned_buffered", "owned", strings.NewReplacer("BODY", "BUFFERED", "TRAILERS", "SEND").Replace(override), "an owned route needs FULL_DUPLEX_STREAMED"},
		{"owned_no_trailers", "owned", strings.NewReplacer("BODY", "FULL_DUPLEX_STREAMED", "TRAILERS", "SKIP").Replace(override), "request_trailer_mode: must be SEND"},
		{"splice_full_duplex", "splice", strings.NewReplacer("BODY", "FULL_DUPLEX_STREAMED", "TRAILERS", "SEND").Replace(override), "for owned routes only"},
		{"splice_plain", "splice", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vh routev3.VirtualHost
			doc := "name: v\ndomains: ['*']\n" + strings.Replace(owned, "MODE", tc.mode, 1) + tc.override
			if err := envoy.DecodeYAML([]byte(doc), &vh); err != nil {
				t.Fatal(err)
			}
			errs := envoy.CheckOwnedRoute("vh", "vh.routes[0]", &vh, vh.GetRoutes()[0])
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("unexpected %v", errs)
			case tc.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want)):
				t.Errorf("want one problem with %q, have %v", tc.want, errs)
			}
			if got := envoy.OwnedRoute(vh.GetRoutes()[0]); got != (tc.mode == "owned") {
				t.Errorf("OwnedRoute = %v", got)
			}
		})
	}
}
