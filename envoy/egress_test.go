package envoy_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/llmux/llmux/envoy"
)

// TestStandaloneEgress checks llmux's egress listener in standalone.yaml
// (issue 8: llmux's own provider calls go through Envoy): loopback only, no
// ext_proc (a call must not loop back into llmux), the cluster picked from
// llmux's header and removed before the provider, an access log, and each
// mistake CheckEgress catches.
func TestStandaloneEgress(t *testing.T) {
	hcm := hcmOf(t, loadStandalone(t), "egress")
	for _, f := range hcm.GetHttpFilters() {
		if strings.Contains(f.GetTypedConfig().GetTypeUrl(), "ext_proc") {
			t.Errorf("egress: http_filters[%s]: llmux's own calls must not pass through ext_proc", f.GetName())
		}
	}
	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	if len(routes) != 1 || routes[0].GetRoute().GetClusterHeader() != envoy.ClusterHeader {
		t.Errorf("egress: want one route with cluster_header %q, have %v", envoy.ClusterHeader, routes)
	}
	if len(envoy.CheckEgress("egress", hcm)) != 0 {
		t.Errorf("egress: %v", errors.Join(envoy.CheckEgress("egress", hcm)...))
	}

	raw, err := os.ReadFile("standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const egressRoute = "            name: egress_routes\n"
	for _, tc := range []struct{ name, from, to, want string }{
		{"public address", "address: 127.0.0.1, port_value: 10001", "address: 0.0.0.0, port_value: 10001",
			"listeners[egress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.route_config.virtual_hosts[egress].routes[0].route.cluster_header: no ext_proc filter"},
		{"strips llmux's header", egressRoute, egressRoute + "            internal_only_headers: [x-llmux-upstream]\n",
			`listeners[egress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.route_config.internal_only_headers: must not contain "x-llmux-upstream"`},
		{"header reaches provider", "                request_headers_to_remove: [x-llmux-upstream]\n          http_filters:\n          - name: envoy.filters.http.router",
			"          http_filters:\n          - name: envoy.filters.http.router",
			`routes[0].request_headers_to_remove: must contain "x-llmux-upstream"`},
		{"no access log", "          access_log:\n          - name: envoy.access_loggers.stdout\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n              log_format:\n                json_format:\n                  listener: egress",
			"          xaccess_log:\n          - name: envoy.access_loggers.stdout\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n              log_format:\n                json_format:\n                  listener: egress",
			"listeners[egress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.access_log: must be set on the egress listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(raw), tc.from) {
				t.Fatalf("standalone.yaml no longer contains %q", tc.from)
			}
			doc := strings.Replace(string(raw), tc.from, tc.to, 1)
			if tc.name == "no access log" {
				// Drop the whole block: cut from the renamed key to the clusters.
				i := strings.Index(doc, "          xaccess_log:")
				j := strings.Index(doc[i:], "\n  clusters:")
				doc = doc[:i] + doc[i+j+1:]
			}
			_, errs := checkBootstrap([]byte(doc))
			found := false
			for _, e := range errs {
				found = found || strings.Contains(e.Error(), tc.want)
			}
			if !found {
				t.Errorf("no error contains %q; have:\n%v", tc.want, errors.Join(errs...))
			}
		})
	}
}
