package envoy_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/llmux/llmux/envoy"
	"sigs.k8s.io/yaml"
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

// splitEgressFilters takes the EnvoyFilters that add llmux's egress listener
// (egress.yaml) out of byKind, leaving the gateway's.
func splitEgressFilters(byKind map[string][]*doc) []*doc {
	var egress, rest []*doc
	for _, d := range byKind["EnvoyFilter"] {
		if str(d.obj, "metadata", "name") == "llmux-egress" {
			egress = append(egress, d)
		} else {
			rest = append(rest, d)
		}
	}
	byKind["EnvoyFilter"] = rest
	return egress
}

// checkIstioEgress checks the Istio egress listener: one EnvoyFilter adds a
// LISTENER to llmux's own sidecar (its workloadSelector selects the
// Deployment's pods), the listener passes the same checks as standalone's
// egress (loopback, no ext_proc, cluster_header removed before the
// provider, envoy.CheckEgress), and llmux's ConfigMap points
// server.egress_address at it.
func checkIstioEgress(egress []*doc, dep, cm *doc) []error {
	if len(egress) != 1 {
		return []error{fmt.Errorf("istio/: want exactly one EnvoyFilter llmux-egress, have %d", len(egress))}
	}
	ef := egress[0]
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", ef, ef.k8sName(), fmt.Sprintf(format, args...)))
	}
	if str(ef.obj, "metadata", "namespace") != str(dep.obj, "metadata", "namespace") {
		fail("metadata.namespace: must be llmux's (%s): a workloadSelector reaches its own namespace only", str(dep.obj, "metadata", "namespace"))
	}
	podLabels, _ := get(dep.obj, "spec", "template", "metadata", "labels").(map[string]any)
	sel, _ := get(ef.obj, "spec", "workloadSelector", "labels").(map[string]any)
	if len(sel) == 0 {
		fail("spec.workloadSelector.labels: must select llmux's pods")
	}
	for k, v := range sel {
		if podLabels[k] != v {
			fail("spec.workloadSelector.labels.%s: %v does not select the pods of Deployment %s", k, v, dep.k8sName())
		}
	}
	patches, perrs := decodePatches(ef)
	for _, e := range perrs {
		fail("%v", e)
	}
	addr := ""
	for _, p := range patches {
		l, ok := p.value.(*listenerv3.Listener)
		if !ok || p.op != "ADD" {
			fail("%s: want one LISTENER ADD patch", p.field)
			continue
		}
		if p.context != "SIDECAR_OUTBOUND" {
			fail("%s.match.context: want SIDECAR_OUTBOUND (llmux's sidecar), have %q", p.field, p.context)
		}
		sa := l.GetAddress().GetSocketAddress()
		addr = net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
		if ip := net.ParseIP(sa.GetAddress()); ip == nil || !ip.IsLoopback() {
			fail("%s.patch.value.address: %s: the egress listener must be on loopback", p.field, addr)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					fail("%s: %v", p.field, err)
					continue
				}
				path := p.field + ".patch.value.filter_chains[0].filters[0].typed_config"
				for _, e := range envoy.CheckHCM(path, &hcm, true, nil) {
					fail("%v", e)
				}
				for _, hf := range hcm.GetHttpFilters() {
					if strings.Contains(hf.GetTypedConfig().GetTypeUrl(), "ext_proc") {
						fail("%s.http_filters[%s]: llmux's own calls must not pass through ext_proc", path, hf.GetName())
					}
				}
				if !routesClusterHeader(&hcm) {
					fail("%s.route_config: want a route with cluster_header %q", path, envoy.ClusterHeader)
				}
				for _, e := range envoy.CheckEgress(path, &hcm) {
					fail("%v", e)
				}
			}
		}
	}
	var conf struct {
		Server struct {
			EgressAddress string `json:"egress_address"`
		} `json:"server"`
	}
	if err := yaml.Unmarshal([]byte(str(cm.obj, "data", "llmux.yaml")), &conf); err != nil {
		errs = append(errs, fmt.Errorf("%s: %s: data.llmux.yaml: %v", cm, cm.k8sName(), err))
	} else if addr != "" && conf.Server.EgressAddress != addr {
		errs = append(errs, fmt.Errorf("%s: %s: data.llmux.yaml server.egress_address: %q, but the sidecar's egress listener is %s",
			cm, cm.k8sName(), conf.Server.EgressAddress, addr))
	}
	return errs
}

func routesClusterHeader(hcm *hcmv3.HttpConnectionManager) bool {
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetRoute().GetClusterHeader() == envoy.ClusterHeader {
				return true
			}
		}
	}
	return false
}
