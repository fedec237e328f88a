package envoy

import (
	"fmt"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Owned mode (docs/recovery.md): a route whose llmux metadata says
// `mode: owned` is answered by llmux itself with ext_proc's
// StreamedImmediateResponse, which Envoy has from 1.37.0 on (PR #42424).
// Such a route needs the request body sent FULL_DUPLEX_STREAMED, through
// the route's ext_proc override: llmux reads the body while its reply to
// the request headers waits, and Envoy accepts a StreamedImmediateResponse
// only with request body mode NONE or FULL_DUPLEX_STREAMED.

// OwnedModeMinEnvoy is the first Envoy version with StreamedImmediateResponse.
const OwnedModeMinEnvoy = "1.37"

// extProcFilterName is the ext_proc filter's name, the key of its per-route
// configuration.
const extProcFilterName = "envoy.filters.http.ext_proc"

// OwnedRoute reports whether r's llmux metadata asks for owned mode.
func OwnedRoute(r *routev3.Route) bool {
	return r.GetMetadata().GetFilterMetadata()[MetadataNamespace].GetFields()["mode"].GetStringValue() == "owned"
}

// CheckOwnedRoute checks an owned route (OwnedRoute) of virtual host vh: the
// ext_proc override on the route, or else on its virtual host (at vhPath), must send the
// request headers, the request body FULL_DUPLEX_STREAMED and its trailers
// (Envoy's rule for that mode). A route that is not owned must not have such
// an override: llmux forwards only BUFFERED request bodies.
func CheckOwnedRoute(vhPath, path string, vh *routev3.VirtualHost, r *routev3.Route) []error {
	pm, where := perRouteMode(vhPath, path, vh, r)
	fd := pm.GetRequestBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED
	if !OwnedRoute(r) {
		if fd {
			return []error{problem(where, "request_body_mode FULL_DUPLEX_STREAMED is for owned routes only (metadata filter_metadata.%s.mode: owned); llmux refuses it elsewhere", MetadataNamespace)}
		}
		return nil
	}
	var errs []error
	if !fd {
		errs = append(errs, problem(path+".typed_per_filter_config["+extProcFilterName+"].overrides.processing_mode.request_body_mode",
			"an owned route needs FULL_DUPLEX_STREAMED (Envoy accepts a StreamedImmediateResponse only with NONE or FULL_DUPLEX_STREAMED, and llmux reads the body); see envoy/snippets/owned_vhost.yaml"))
		return errs
	}
	if pm.GetRequestHeaderMode() == extprocv3.ProcessingMode_SKIP {
		errs = append(errs, problem(where+".request_header_mode", "an owned route needs the request headers (SEND)"))
	}
	if pm.GetRequestTrailerMode() != extprocv3.ProcessingMode_SEND {
		errs = append(errs, problem(where+".request_trailer_mode", "must be SEND when request_body_mode is FULL_DUPLEX_STREAMED"))
	}
	return errs
}

// perRouteMode is the ext_proc processing_mode override in force on r: the
// route's, or else its virtual host's; where is its field path.
func perRouteMode(vhPath, path string, vh *routev3.VirtualHost, r *routev3.Route) (*extprocv3.ProcessingMode, string) {
	for _, c := range []struct {
		path string
		cfg  map[string]*anypb.Any
	}{{path, r.GetTypedPerFilterConfig()}, {vhPath, vh.GetTypedPerFilterConfig()}} {
		a, ok := c.cfg[extProcFilterName]
		if !ok {
			continue
		}
		var pr extprocv3.ExtProcPerRoute
		if a.UnmarshalTo(&pr) != nil {
			continue
		}
		if m := pr.GetOverrides().GetProcessingMode(); m != nil {
			return m, c.path + ".typed_per_filter_config[" + extProcFilterName + "].overrides.processing_mode"
		}
	}
	return nil, path
}

// CheckBootstrapForEnvoy is CheckBootstrap for a given Envoy version ("1.N"
// or "1.N.P"): on Envoy before 1.37 an owned route cannot work (Envoy
// treats the StreamedImmediateResponse as a spurious message and answers
// 500), so each one is a problem. Istio 1.26–1.28 ship Envoy 1.34–1.36:
// owned mode needs Istio 1.29 or later.
func CheckBootstrapForEnvoy(b *bootstrapv3.Bootstrap, version string) []error {
	errs := CheckBootstrap(b)
	minor, err := envoyMinor(version)
	if err != nil {
		return append(errs, problem("envoy version", "%v", err))
	}
	if minor >= 37 {
		return errs
	}
	for i, l := range b.GetStaticResources().GetListeners() {
		lp := fmt.Sprintf("static_resources.listeners[%s]", nameOr(l.GetName(), i))
		forEachRouteConfig(lp, l, func(path string, rc *routev3.RouteConfiguration) {
			for j, vh := range rc.GetVirtualHosts() {
				vp := fmt.Sprintf("%s.virtual_hosts[%s]", path, nameOr(vh.GetName(), j))
				for k, r := range vh.GetRoutes() {
					if OwnedRoute(r) {
						errs = append(errs, problem(fmt.Sprintf("%s.routes[%s].metadata.filter_metadata.%s.mode", vp, nameOr(r.GetName(), k), MetadataNamespace),
							"owned mode needs Envoy %s or later (ext_proc StreamedImmediateResponse); Envoy %s answers every request on this route with 500. Istio 1.26–1.28 ship Envoy 1.34–1.36: use Istio 1.29 or later, or splice mode",
							OwnedModeMinEnvoy, version))
					}
				}
			}
		})
	}
	return errs
}

// forEachRouteConfig calls f with the inline route configuration of every
// HTTP connection manager of l.
func forEachRouteConfig(path string, l *listenerv3.Listener, f func(string, *routev3.RouteConfiguration)) {
	for i, fc := range l.GetFilterChains() {
		for j, nf := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if a := nf.GetTypedConfig(); a == nil || !a.MessageIs(&hcm) || a.UnmarshalTo(&hcm) != nil {
				continue
			}
			if rc := hcm.GetRouteConfig(); rc != nil {
				f(fmt.Sprintf("%s.filter_chains[%d].filters[%s].typed_config.route_config", path, i, nameOr(nf.GetName(), j)), rc)
			}
		}
	}
}

// envoyMinor parses "1.N" or "1.N.P".
func envoyMinor(v string) (int, error) {
	parts := strings.Split(v, ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("%q: want \"1.N\" or \"1.N.P\"", v)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, fmt.Errorf("%q: %w", v, err)
	}
	return n, nil
}
