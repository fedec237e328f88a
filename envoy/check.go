// Package envoy holds the Envoy and Istio configurations users run llmux with
// (standalone.yaml, snippets/, istio/) and the checks every one of them must
// pass: Envoy's config-load rules that protoc-gen-validate does not express,
// and what llmux itself needs from Envoy (processing modes, the cluster
// header, the dynamic metadata namespace).
//
// The checks work on go-control-plane types, so the Envoy stand-in in
// test/envoysim can run them on the configuration it loads, and refuse what
// real Envoy would refuse.
package envoy

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/llmux/llmux/processor"
)

// What llmux and its Envoy configuration agree on.
const (
	// ClusterHeader is the request header llmux sets (with clear_route_cache)
	// to the name of the chosen upstream cluster; routes read it with
	// cluster_header.
	ClusterHeader = "x-llmux-upstream"
	// MetadataNamespace is the dynamic metadata namespace llmux writes.
	MetadataNamespace = "io.llmux"
	// RouteMetadataAttribute is the request attribute llmux reads per-route
	// policy from.
	RouteMetadataAttribute = "xds.route_metadata"
)

// MetadataKeys are the keys llmux writes under MetadataNamespace.
var MetadataKeys = []string{
	"request_id", "tenant", "model_group", "deployment", "provider", "status",
	"error_code", "input_tokens", "output_tokens", "cached_tokens",
	"upstream_latency_ms", "ttft_ms",
	"routing_strategy", "routing_reason", // routing (processor/routing.go)
	"cost_usd", "cost_known", // pricing concern (docs/pricing.md)
	"attempts", "failed_deployment", "failover_cause", // failover (processor/failover.go)
	"requested_model_group",                          // a fallback group served (processor/failover.go)
	"redaction_policy", "redacted", "redacted_kinds", // redaction (processor/redaction.go)
	"repairs", "repair_cause", "usage_estimated", // stream repair (processor/repair.go)
	"ratelimit_decision", "ratelimit_source", "ratelimit_policy", "ratelimit_limit", // limits (processor/limits.go)
	"ratelimit_remaining_requests", "ratelimit_remaining_tokens",
	"trace_id", // tracing (processor/tracing.go)
}

// Problem is one rule a configuration breaks, at a field path such as
// "static_resources.listeners[ingress].…processing_mode.response_trailer_mode".
type Problem struct {
	Field string
	Msg   string
}

func (p *Problem) Error() string { return p.Field + ": " + p.Msg }

func problem(field, format string, args ...any) error {
	return &Problem{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// DecodeYAML decodes one YAML document into m the way Envoy reads its
// configuration: unknown fields and unknown "@type"s are errors. Every type
// an Any may hold must be linked into the binary (imported).
func DecodeYAML(doc []byte, m proto.Message) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	return DecodeJSON(js, m)
}

// DecodeJSON is DecodeYAML for JSON input.
func DecodeJSON(js []byte, m proto.Message) error {
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(js, m)
}

// Validate runs the protoc-gen-validate rules (ValidateAll) on m and on every
// message packed in an Any inside it, which ValidateAll does not enter.
// Errors inside an Any are prefixed with the path of that Any.
func Validate(m proto.Message) []error {
	var errs []error
	validateOne("", m, &errs)
	walk("", m.ProtoReflect(), func(path string, a *anypb.Any) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, problem(path, "%v", err))
			return
		}
		validateOne(path, inner, &errs)
	}, nil)
	return errs
}

func validateOne(path string, m proto.Message, errs *[]error) {
	v, ok := m.(interface{ ValidateAll() error })
	if !ok {
		return
	}
	if err := v.ValidateAll(); err != nil {
		if path == "" {
			*errs = append(*errs, err)
		} else {
			*errs = append(*errs, problem(path, "%v", err))
		}
	}
}

// walk visits every set field of m, descending into the contents of Anys.
// onAny (if set) is called for every Any, onString (if set) for every string
// value, including those inside google.protobuf.Struct.
func walk(path string, m protoreflect.Message, onAny func(string, *anypb.Any), onString func(string, string)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		if onAny != nil {
			onAny(path, a)
		}
		inner, err := a.UnmarshalNew()
		if err == nil {
			walk(path, inner.ProtoReflect(), onAny, onString)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkValue(fmt.Sprintf("%s[%d]", p, i), fd, l.Get(i), onAny, onString)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walkValue(fmt.Sprintf("%s[%s]", p, k.String()), fd.MapValue(), mv, onAny, onString)
				return true
			})
		default:
			walkValue(p, fd, v, onAny, onString)
		}
		return true
	})
}

func walkValue(path string, fd protoreflect.FieldDescriptor, v protoreflect.Value, onAny func(string, *anypb.Any), onString func(string, string)) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		walk(path, v.Message(), onAny, onString)
	case protoreflect.StringKind:
		if onString != nil {
			onString(path, v.String())
		}
	}
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// CheckExtProc applies the rules Envoy enforces when it loads an ext_proc
// filter (extensions/filters/http/ext_proc/config.cc) and that
// protoc-gen-validate does not express.
func CheckExtProc(field string, ep *extprocv3.ExternalProcessor) []error {
	var errs []error
	hasGRPC, hasHTTP := ep.GetGrpcService() != nil, ep.GetHttpService() != nil
	switch {
	case hasGRPC && hasHTTP:
		errs = append(errs, problem(field, "only one of grpc_service and http_service may be set"))
	case !hasGRPC && !hasHTTP:
		errs = append(errs, problem(field+".grpc_service", "one of grpc_service and http_service must be set"))
	}
	pm := ep.GetProcessingMode()
	if pm.GetRequestBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
		pm.GetRequestTrailerMode() != extprocv3.ProcessingMode_SEND {
		errs = append(errs, problem(field+".processing_mode.request_trailer_mode",
			"must be SEND when request_body_mode is FULL_DUPLEX_STREAMED"))
	}
	if pm.GetResponseBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
		pm.GetResponseTrailerMode() != extprocv3.ProcessingMode_SEND {
		errs = append(errs, problem(field+".processing_mode.response_trailer_mode",
			"must be SEND when response_body_mode is FULL_DUPLEX_STREAMED"))
	}
	for _, d := range []struct {
		name string
		mode extprocv3.ProcessingMode_BodySendMode
	}{{"request_body_mode", pm.GetRequestBodyMode()}, {"response_body_mode", pm.GetResponseBodyMode()}} {
		if d.mode == extprocv3.ProcessingMode_GRPC {
			errs = append(errs, problem(field+".processing_mode."+d.name, "GRPC is not implemented by Envoy"))
		}
		if hasHTTP && d.mode != extprocv3.ProcessingMode_NONE {
			errs = append(errs, problem(field+".processing_mode."+d.name, "http_service supports headers only; body mode must be NONE"))
		}
	}
	if hasHTTP && (pm.GetRequestTrailerMode() == extprocv3.ProcessingMode_SEND || pm.GetResponseTrailerMode() == extprocv3.ProcessingMode_SEND) {
		errs = append(errs, problem(field+".processing_mode", "http_service supports headers only; trailer modes must not be SEND"))
	}
	if ep.GetDisableClearRouteCache() && ep.GetRouteCacheAction() != extprocv3.ExternalProcessor_DEFAULT {
		errs = append(errs, problem(field+".route_cache_action",
			"cannot be %s while disable_clear_route_cache is set", ep.GetRouteCacheAction()))
	}
	return errs
}

// CheckLLMuxExtProc checks what llmux needs from its ext_proc filter: the
// processing modes it is written for, the dynamic metadata namespace it
// writes, the route metadata it reads, and a route cache it can clear.
func CheckLLMuxExtProc(field string, ep *extprocv3.ExternalProcessor) []error {
	var errs []error
	pm := ep.GetProcessingMode()
	send := func(name string, m extprocv3.ProcessingMode_HeaderSendMode, dflt bool) {
		if m == extprocv3.ProcessingMode_SEND || (dflt && m == extprocv3.ProcessingMode_DEFAULT) {
			return
		}
		errs = append(errs, problem(field+".processing_mode."+name, "llmux needs SEND, have %s", m))
	}
	body := func(name string, m, want extprocv3.ProcessingMode_BodySendMode) {
		if m != want {
			errs = append(errs, problem(field+".processing_mode."+name, "llmux needs %s, have %s", want, m))
		}
	}
	send("request_header_mode", pm.GetRequestHeaderMode(), true)
	body("request_body_mode", pm.GetRequestBodyMode(), extprocv3.ProcessingMode_BUFFERED)
	send("response_header_mode", pm.GetResponseHeaderMode(), true)
	body("response_body_mode", pm.GetResponseBodyMode(), extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED)
	send("response_trailer_mode", pm.GetResponseTrailerMode(), false)
	if ep.GetGrpcService() == nil {
		errs = append(errs, problem(field+".grpc_service", "llmux is a gRPC service; grpc_service must be set"))
	}
	if !slices.Contains(ep.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(), MetadataNamespace) {
		errs = append(errs, problem(field+".metadata_options.receiving_namespaces.untyped",
			"must contain %q, or Envoy drops llmux's dynamic metadata", MetadataNamespace))
	}
	if !slices.Contains(ep.GetRequestAttributes(), RouteMetadataAttribute) {
		errs = append(errs, problem(field+".request_attributes", "must contain %q (per-route llmux policy)", RouteMetadataAttribute))
	}
	if !CanClearRouteCache(ep) {
		errs = append(errs, problem(field+".route_cache_action",
			"llmux routes with clear_route_cache; the route cache must not be retained"))
	}
	if ep.GetObservabilityMode() {
		errs = append(errs, problem(field+".observability_mode", "Envoy ignores every llmux response in observability mode"))
	}
	return errs
}

// CanClearRouteCache reports whether ep honours clear_route_cache.
func CanClearRouteCache(ep *extprocv3.ExternalProcessor) bool {
	return !ep.GetDisableClearRouteCache() && ep.GetRouteCacheAction() != extprocv3.ExternalProcessor_RETAIN
}

var dynMetaRef = regexp.MustCompile(`%DYNAMIC_METADATA\(([^)]*)\)`)

// CheckMetadataRefs checks the %DYNAMIC_METADATA(…)% commands in one
// substitution format string (an access log line, a header value): keys of
// MetadataNamespace must be ones llmux writes, and a namespace that looks like
// llmux's must be exactly MetadataNamespace.
func CheckMetadataRefs(field, format string) []error {
	var errs []error
	for _, m := range dynMetaRef.FindAllStringSubmatch(format, -1) {
		parts := strings.Split(m[1], ":")
		ns := parts[0]
		switch {
		case ns == MetadataNamespace:
			if len(parts) > 1 && !slices.Contains(MetadataKeys, parts[1]) {
				errs = append(errs, problem(field, "%s: llmux writes no key %q in %s", m[0], parts[1], MetadataNamespace))
			}
		case strings.Contains(strings.ToLower(ns), "llmux"):
			errs = append(errs, problem(field, "%s: llmux's metadata namespace is %q", m[0], MetadataNamespace))
		}
	}
	return errs
}

// HTTP2 reports whether cluster c is configured to speak HTTP/2 upstream, as
// a gRPC cluster must.
func HTTP2(c *clusterv3.Cluster) bool {
	// The deprecated Cluster.http2_protocol_options still works.
	if c.GetHttp2ProtocolOptions() != nil {
		return true
	}
	a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !ok {
		return false
	}
	var o httpv3.HttpProtocolOptions
	if a.UnmarshalTo(&o) != nil {
		return false
	}
	return o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}

// CheckBootstrap runs every check on a decoded bootstrap: Validate, each
// ext_proc filter (CheckExtProc, CheckLLMuxExtProc, its cluster exists and
// speaks HTTP/2), each HTTP connection manager (router last, every
// cluster_header route fed by an ext_proc filter), upstream TLS that verifies
// its peer, and every %DYNAMIC_METADATA% reference.
func CheckBootstrap(b *bootstrapv3.Bootstrap) []error {
	errs := Validate(b)
	clusters := map[string]*clusterv3.Cluster{}
	for i, c := range b.GetStaticResources().GetClusters() {
		path := fmt.Sprintf("static_resources.clusters[%s]", nameOr(c.GetName(), i))
		if _, dup := clusters[c.GetName()]; dup {
			errs = append(errs, problem(path, "duplicate cluster name"))
		}
		clusters[c.GetName()] = c
		errs = append(errs, CheckCluster(path, c)...)
	}
	seen := map[string]bool{}
	for i, l := range b.GetStaticResources().GetListeners() {
		path := fmt.Sprintf("static_resources.listeners[%s]", nameOr(l.GetName(), i))
		if seen[l.GetName()] {
			errs = append(errs, problem(path, "duplicate listener name"))
		}
		seen[l.GetName()] = true
		errs = append(errs, checkListener(path, l, clusters)...)
	}
	walk("", b.ProtoReflect(), nil, func(path, s string) {
		errs = append(errs, CheckMetadataRefs(path, s)...)
	})
	return errs
}

func nameOr(name string, i int) string {
	if name != "" {
		return name
	}
	return fmt.Sprint(i)
}

// CheckCluster checks one cluster beyond Validate: the DEFAULT circuit
// breaker allows more than Envoy's default 1024 concurrent requests (every
// cluster llmux uses carries long calls); a TLS transport socket must name
// the server (sni) and verify its certificate; auto_config needs TLS.
func CheckCluster(path string, c *clusterv3.Cluster) []error {
	var errs []error
	if !raisedBreaker(c) {
		errs = append(errs, problem(path+".circuit_breakers.thresholds",
			"must raise max_requests above Envoy's default 1024 for priority DEFAULT: LLM calls last minutes, and request 1025 would get a 503 (flag UO)"))
	}
	ts := c.GetTransportSocket()
	if a, ok := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; ok && ts == nil {
		var o httpv3.HttpProtocolOptions
		if a.UnmarshalTo(&o) == nil && o.GetAutoConfig() != nil {
			errs = append(errs, problem(path+".typed_extension_protocol_options", "auto_config chooses the protocol by ALPN and needs a TLS transport socket (Envoy refuses it otherwise)"))
		}
	}
	if ts == nil {
		return errs
	}
	var tls tlsv3.UpstreamTlsContext
	if ts.GetTypedConfig().MessageIs(&tls) {
		if err := ts.GetTypedConfig().UnmarshalTo(&tls); err != nil {
			return []error{problem(path+".transport_socket.typed_config", "%v", err)}
		}
		p := path + ".transport_socket.typed_config"
		if tls.GetSni() == "" {
			errs = append(errs, problem(p+".sni", "must be set: providers serve several names behind one address"))
		}
		vc := tls.GetCommonTlsContext().GetValidationContext()
		if vc.GetTrustedCa() == nil && vc.GetCaCertificateProviderInstance() == nil {
			errs = append(errs, problem(p+".common_tls_context.validation_context.trusted_ca",
				"must be set: without it Envoy accepts any certificate"))
		}
		if len(vc.GetMatchTypedSubjectAltNames()) == 0 {
			errs = append(errs, problem(p+".common_tls_context.validation_context.match_typed_subject_alt_names",
				"must be set: without it Envoy accepts a certificate for any name"))
		}
	}
	return errs
}

func checkListener(path string, l *listenerv3.Listener, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	loopback := isLoopback(l.GetAddress())
	for i, fc := range l.GetFilterChains() {
		for j, f := range fc.GetFilters() {
			a := f.GetTypedConfig()
			var hcm hcmv3.HttpConnectionManager
			if a == nil || !a.MessageIs(&hcm) {
				continue
			}
			p := fmt.Sprintf("%s.filter_chains[%d].filters[%s].typed_config", path, i, nameOr(f.GetName(), j))
			if err := a.UnmarshalTo(&hcm); err != nil {
				errs = append(errs, problem(p, "%v", err))
				continue
			}
			errs = append(errs, CheckHCM(p, &hcm, loopback, clusters)...)
		}
	}
	return errs
}

func isLoopback(a *corev3.Address) bool {
	if a.GetPipe() != nil || a.GetEnvoyInternalAddress() != nil {
		return true
	}
	host := a.GetSocketAddress().GetAddress()
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// CheckHCM checks one HTTP connection manager. loopback says that only local
// clients (llmux itself, on the egress listener) reach it, so routes may read
// the cluster header without an ext_proc filter: llmux sets the header on
// its own requests. clusters are the statically known clusters; with nil,
// cluster references are not checked.
func CheckHCM(path string, hcm *hcmv3.HttpConnectionManager, loopback bool, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	routing := false // an ext_proc filter that can re-route precedes the router
	filters := hcm.GetHttpFilters()
	for i, f := range filters {
		p := fmt.Sprintf("%s.http_filters[%s]", path, nameOr(f.GetName(), i))
		a := f.GetTypedConfig()
		var router routerv3.Router
		if a.MessageIs(&router) && i != len(filters)-1 {
			errs = append(errs, problem(p, "the router is a terminal filter and must be last"))
		}
		var ep extprocv3.ExternalProcessor
		if !a.MessageIs(&ep) {
			continue
		}
		if err := a.UnmarshalTo(&ep); err != nil {
			errs = append(errs, problem(p+".typed_config", "%v", err))
			continue
		}
		p += ".typed_config"
		errs = append(errs, CheckExtProc(p, &ep)...)
		errs = append(errs, CheckLLMuxExtProc(p, &ep)...)
		if eg := ep.GetGrpcService().GetEnvoyGrpc(); eg != nil && clusters != nil {
			c, ok := clusters[eg.GetClusterName()]
			switch {
			case !ok:
				errs = append(errs, problem(p+".grpc_service.envoy_grpc.cluster_name", "no cluster %q", eg.GetClusterName()))
			case !HTTP2(c):
				errs = append(errs, problem(p+".grpc_service.envoy_grpc.cluster_name",
					"cluster %q must speak HTTP/2 for gRPC (typed_extension_protocol_options HttpProtocolOptions explicit_http_config.http2_protocol_options)", eg.GetClusterName()))
			}
		}
		if CanClearRouteCache(&ep) && ep.GetGrpcService() != nil {
			routing = true
		}
	}
	if len(filters) == 0 || !filters[len(filters)-1].GetTypedConfig().MessageIs(&routerv3.Router{}) {
		errs = append(errs, problem(path+".http_filters", "the last filter must be envoy.filters.http.router"))
	}
	if rc := hcm.GetRouteConfig(); rc != nil {
		errs = append(errs, CheckRoutes(path+".route_config", rc, routing || loopback, clusters)...)
		if !loopback && routesByHeader(rc) {
			errs = append(errs, CheckClientFacing(path, hcm)...)
		}
		if loopback && !routing && routesByHeader(rc) {
			errs = append(errs, CheckEgress(path, hcm)...) // llmux's egress listener (failover, issue 8)
		}
	}
	return errs
}

// CheckEgress checks llmux's egress listener: a loopback connection manager
// without ext_proc whose routes read the cluster from the header llmux sets
// on its own provider calls. The header must not be in
// internal_only_headers (Envoy would strip llmux's own value and every call
// would find no cluster: 503), client x-envoy-* headers are not trusted
// (CheckRemoteAddress), and an access log records the calls, which are
// otherwise invisible next to the ingress listener's lines.
func CheckEgress(path string, hcm *hcmv3.HttpConnectionManager) []error {
	var errs []error
	if containsFold(hcm.GetRouteConfig().GetInternalOnlyHeaders(), ClusterHeader) {
		errs = append(errs, problem(path+".route_config.internal_only_headers",
			"must not contain %q on the egress listener: Envoy would strip llmux's own header and every call would get 503 (no cluster)", ClusterHeader))
	}
	errs = append(errs, CheckRemoteAddress(path, hcm)...)
	if len(hcm.GetAccessLog()) == 0 {
		errs = append(errs, problem(path+".access_log",
			"must be set on the egress listener: llmux's own provider calls (failover, repair) are logged nowhere else"))
	}
	return errs
}

// routesByHeader reports whether some route of rc reads its cluster from a
// header.
func routesByHeader(rc *routev3.RouteConfiguration) bool {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetRoute().GetClusterHeader() != "" {
				return true
			}
		}
	}
	return false
}

// CheckClientFacing checks a connection manager that clients reach and that
// routes by the cluster header: a client's x-llmux-upstream is removed before
// any filter runs (route_config.internal_only_headers), client x-envoy-*
// headers are never trusted (every request external: use_remote_address
// false, or internal_address_config naming the only internal ranges, since
// without it some Envoy versions trust every RFC 1918 address), and Envoy's
// own errors are OpenAI JSON (CheckLocalReply).
func CheckClientFacing(path string, hcm *hcmv3.HttpConnectionManager) []error {
	var errs []error
	if rc := hcm.GetRouteConfig(); rc != nil && !containsFold(rc.GetInternalOnlyHeaders(), ClusterHeader) {
		errs = append(errs, problem(path+".route_config.internal_only_headers",
			"must contain %q: otherwise a client's own header can pick the cluster of a request llmux did not route", ClusterHeader))
	}
	errs = append(errs, CheckRemoteAddress(path, hcm)...)
	errs = append(errs, CheckLocalReply(path+".local_reply_config", hcm.GetLocalReplyConfig())...)
	return errs
}

// CheckRemoteAddress: with use_remote_address, Envoy treats a request from
// an internal address without x-forwarded-for as internal and obeys its
// x-envoy-* headers (retries, timeouts); internal_address_config must then
// name the internal ranges (an empty list falls back to RFC 1918).
func CheckRemoteAddress(path string, hcm *hcmv3.HttpConnectionManager) []error {
	if hcm.GetUseRemoteAddress().GetValue() && len(hcm.GetInternalAddressConfig().GetCidrRanges()) == 0 {
		return []error{problem(path+".internal_address_config.cidr_ranges",
			"must be set with use_remote_address: otherwise clients from RFC 1918 addresses count as internal and Envoy obeys their x-envoy-* headers")}
	}
	return nil
}

// CheckRouteHeaders: a route that reads the cluster header removes it
// before the upstream request, so it never reaches a provider.
func CheckRouteHeaders(path string, r *routev3.Route) []error {
	if r.GetRoute().GetClusterHeader() == "" || containsFold(r.GetRequestHeadersToRemove(), r.GetRoute().GetClusterHeader()) {
		return nil
	}
	return []error{problem(path+".request_headers_to_remove", "must contain %q: the routing header must not reach the provider", r.GetRoute().GetClusterHeader())}
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// CheckLocalReply checks the connection manager's local_reply_config llmux
// needs: Envoy's own local replies (503, 504, 413, ...) become OpenAI errors
// on every version, while llmux's own replies (ImmediateResponse, also a
// local reply, marked by dynamic metadata io.llmux.status) are left alone.
// So: mappers only, no top-level body_format (it would rewrite every reply);
// every mapper's filter guarded by a metadata_filter on io.llmux status with
// null_match (alone or inside an and_filter); no status override (the client
// sees Envoy's status); a json_format body_format_override with string
// error.message, error.type and error.code.
func CheckLocalReply(path string, lr *hcmv3.LocalReplyConfig) []error {
	if lr == nil {
		return []error{problem(path, "must be set: without it Envoy's own errors reach clients as empty or text/plain bodies (and skip llmux entirely on Envoy 1.34–1.36)")}
	}
	var errs []error
	if lr.GetBodyFormat() != nil {
		errs = append(errs, problem(path+".body_format", "must not be set: it would rewrite llmux's own error bodies too; use body_format_override in mappers"))
	}
	if len(lr.GetMappers()) == 0 {
		errs = append(errs, problem(path+".mappers", "no mappers: Envoy's own errors stay as they are"))
	}
	for i, m := range lr.GetMappers() {
		p := fmt.Sprintf("%s.mappers[%d]", path, i)
		if !llmuxGuarded(m.GetFilter()) {
			errs = append(errs, problem(p+".filter",
				"must include a metadata_filter on %s status with null_match (alone or in an and_filter), or it rewrites llmux's own replies", MetadataNamespace))
		}
		if m.GetStatusCode() != nil {
			errs = append(errs, problem(p+".status_code", "must not be set: the client sees the status Envoy chose"))
		}
		js := m.GetBodyFormatOverride().GetJsonFormat()
		e := js.GetFields()["error"].GetStructValue()
		for _, k := range []string{"message", "type", "code"} {
			if _, ok := e.GetFields()[k].GetKind().(*structpb.Value_StringValue); !ok {
				errs = append(errs, problem(p+".body_format_override.json_format.error."+k, "must be a string: clients expect OpenAI's error shape"))
			}
		}
	}
	return errs
}

// raisedBreaker reports whether c's DEFAULT-priority circuit breaker allows
// more than 1024 concurrent requests.
func raisedBreaker(c *clusterv3.Cluster) bool {
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() == corev3.RoutingPriority_DEFAULT && t.GetMaxRequests().GetValue() > 1024 {
			return true
		}
	}
	return false
}

// llmuxGuarded reports whether f matches only when llmux recorded no status.
func llmuxGuarded(f *accesslogv3.AccessLogFilter) bool {
	isGuard := func(f *accesslogv3.AccessLogFilter) bool {
		m := f.GetMetadataFilter().GetMatcher()
		path := m.GetPath()
		return m.GetFilter() == MetadataNamespace && len(path) == 1 && path[0].GetKey() == "status" &&
			m.GetValue().GetNullMatch() != nil && (f.GetMetadataFilter().GetMatchIfKeyNotFound() == nil || f.GetMetadataFilter().GetMatchIfKeyNotFound().GetValue())
	}
	if isGuard(f) {
		return true
	}
	for _, c := range f.GetAndFilter().GetFilters() {
		if isGuard(c) {
			return true
		}
	}
	return false
}

// CheckRoutes checks the routes of one route configuration. headerSet says
// whether something sets the cluster header before routing: an ext_proc
// filter that can clear the route cache, or llmux itself on a loopback-only
// listener.
func CheckRoutes(path string, rc *routev3.RouteConfiguration, headerSet bool, clusters map[string]*clusterv3.Cluster) []error {
	var errs []error
	for i, vh := range rc.GetVirtualHosts() {
		vp := fmt.Sprintf("%s.virtual_hosts[%s]", path, nameOr(vh.GetName(), i))
		for j, r := range vh.GetRoutes() {
			rp := fmt.Sprintf("%s.routes[%s]", vp, nameOr(r.GetName(), j))
			errs = append(errs, CheckRoute(rp+".route", r.GetRoute(), headerSet, clusters)...)
			errs = append(errs, CheckRouteHeaders(rp, r)...)
			errs = append(errs, CheckRouteMetadata(rp, r)...)
			errs = append(errs, CheckOwnedRoute(vp, rp, vh, r)...) // owned mode (owned.go)
		}
	}
	return errs
}

// CheckRouteMetadata: the llmux policy in a route's metadata
// (filter_metadata.io.llmux: route, model_groups, routing, docs/routing.md)
// is what llmux accepts; otherwise every request on the route gets a 500.
func CheckRouteMetadata(path string, r *routev3.Route) []error {
	if err := processor.CheckRouteMetadata(r.GetMetadata(), MetadataNamespace); err != nil {
		return []error{problem(path+".metadata.filter_metadata."+MetadataNamespace, "%v", err)}
	}
	return nil
}

// CheckRoute checks one route action; see CheckRoutes.
func CheckRoute(path string, ra *routev3.RouteAction, headerSet bool, clusters map[string]*clusterv3.Cluster) []error {
	if ra == nil {
		return nil
	}
	var errs []error
	if h := ra.GetClusterHeader(); h != "" {
		if h != ClusterHeader {
			errs = append(errs, problem(path+".cluster_header", "llmux sets %q, not %q", ClusterHeader, h))
		}
		if !headerSet {
			errs = append(errs, problem(path+".cluster_header",
				"no ext_proc filter before the router sets %s (and clears the route cache)", h))
		}
	}
	if c := ra.GetCluster(); c != "" && clusters != nil {
		if _, ok := clusters[c]; !ok {
			errs = append(errs, problem(path+".cluster", "no cluster %q", c))
		}
	}
	return errs
}

// SplitYAML splits a multi-document YAML file on its "---" separator lines.
// Documents holding only comments or whitespace are dropped.
func SplitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	flush := func() {
		if hasContent(cur) {
			docs = append(docs, cur)
		}
		cur = nil
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) {
			flush()
			continue
		}
		cur = append(cur, line...)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}
