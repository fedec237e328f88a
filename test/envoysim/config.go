package envoysim

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
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
)

// The typed_config types the sim understands. Referencing them links their
// descriptors into the binary so that "@type" Anys resolve.
var (
	_ = &hcmv3.HttpConnectionManager{}
	_ = &extprocv3.ExternalProcessor{}
	_ = &routerv3.Router{}
	_ = &streamv3.StdoutAccessLog{}
	_ = &tlsv3.UpstreamTlsContext{}
	_ = &httpv3.HttpProtocolOptions{}
)

const (
	extProcFilterName  = "envoy.filters.http.ext_proc"
	defaultBufferLimit = 1 << 20 // Envoy's default per_connection_buffer_limit_bytes
)

// UnsupportedError reports a bootstrap setting the sim does not model. The
// sim refuses such a configuration rather than silently behave differently
// from Envoy.
type UnsupportedError struct {
	// Field is the path of the offending setting.
	Field string
	// Why says what is not modelled.
	Why string
}

func (e *UnsupportedError) Error() string {
	return "envoysim: unsupported setting " + e.Field + ": " + e.Why
}

func unsupported(field, format string, args ...any) error {
	return &UnsupportedError{Field: field, Why: fmt.Sprintf(format, args...)}
}

// config is the part of a bootstrap the sim models, resolved.
type config struct {
	listeners []*listenerConfig
	clusters  map[string]*clusterConfig
	// runtime holds the bootstrap's layered_runtime static layers, merged
	// (later layers win).
	runtime map[string]*structpb.Value
	// minor is the Envoy minor version modelled (Options.EnvoyVersion; 99 =
	// newest), for configuration fields that only some versions know.
	minor int
}

type listenerConfig struct {
	name        string
	port        int // configured port (the sim listens on an ephemeral one unless pinned)
	bufferLimit int
	hcm         *hcmConfig
}

type hcmConfig struct {
	statPrefix        string
	generateRequestID bool
	idleTimeout       time.Duration // 0 = disabled
	vhosts            []*vhostConfig
	extProc           *extProcConfig // nil when the chain has only the router
	accessLogs        []*accessLogFormat
	codec             hcmv3.HttpConnectionManager_CodecType
	localReply        *localReplyConfig // nil: Envoy's default (body kept, text/plain)
	internalOnly      []string          // route_config.internal_only_headers, lowercase
	suppressEnvoy     bool              // router suppress_envoy_headers
	tracing           *tracingConfig    // nil: no tracing block (tracing.go)
}

type vhostConfig struct {
	name      string
	domains   []string
	routes    []*routeConfig
	perFilter *extprocv3.ExtProcPerRoute
}

type routeConfig struct {
	name            string
	prefix          string
	path            string
	hasPath         bool
	cluster         string
	clusterHeader   string
	timeout         time.Duration // 0 = none
	autoHostRewrite bool
	notFoundCode    int
	metadata        *corev3.Metadata
	perFilter       *extprocv3.ExtProcPerRoute
	vhost           *vhostConfig
	removeHeaders   []string // request_headers_to_remove, lowercase
}

type clusterConfig struct {
	name     string
	typ      clusterv3.Cluster_DiscoveryType
	h2       bool
	host     string // configured endpoint host (DNS name or IP)
	port     int
	tls      bool
	override string // set by Options.Clusters
}

// dialAddr is where the sim connects for this cluster.
func (c *clusterConfig) dialAddr() string {
	if c.override != "" {
		return c.override
	}
	return net.JoinHostPort(c.host, strconv.Itoa(c.port))
}

type extProcConfig struct {
	cluster            string
	failureModeAllow   bool
	mode               *extprocv3.ProcessingMode
	messageTimeout     time.Duration
	maxMessageTimeout  time.Duration
	requestAttributes  []string
	responseAttributes []string
	forwardNamespaces  []string
	receiveNamespaces  []string
	rules              mutationRules
	allowModeOverride  bool
	allowedOverrides   []*extprocv3.ProcessingMode
	disableImmediate   bool
	statusOnError      int
	routeCacheAction   extprocv3.ExternalProcessor_RouteCacheAction
	allowContentLength bool
	initialMetadata    []*corev3.HeaderValue
}

type mutationRules struct {
	allowAllRouting bool
	allowEnvoy      bool
	disallowSystem  bool
	disallowAll     bool
	disallowIsError bool
}

// checkFields refuses any field of m that is set and not listed in allowed.
func checkFields(path string, m proto.Message, allowed ...string) error {
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		for _, a := range allowed {
			if a == name {
				return true
			}
		}
		err = unsupported(path+"."+name, "the sim does not model this field")
		return false
	})
	return err
}

// decodeBootstrap parses Envoy bootstrap YAML (or JSON) the way Envoy does:
// unknown fields and unresolvable "@type"s are errors, then the
// protoc-gen-validate rules run.
func decodeBootstrap(doc []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("envoysim: bootstrap YAML: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("envoysim: bootstrap: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("envoysim: bootstrap validation: %w", err)
	}
	return &b, nil
}

func unpack(path string, a *anypb.Any, into proto.Message) error {
	if a == nil {
		return unsupported(path, "typed_config is required")
	}
	if err := a.UnmarshalTo(into); err != nil {
		return unsupported(path, "expected %s, got %s", into.ProtoReflect().Descriptor().FullName(), a.GetTypeUrl())
	}
	if v, ok := into.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("envoysim: %s: validation: %w", path, err)
		}
	}
	return nil
}

// buildConfig turns a decoded bootstrap into the sim's model, refusing what
// it does not model.
func buildConfig(b *bootstrapv3.Bootstrap, overrides map[string]string, minor int) (*config, error) {
	if err := checkFields("bootstrap", b, "admin", "static_resources", "node", "layered_runtime"); err != nil {
		return nil, err
	}
	rt, err := buildRuntime("bootstrap.layered_runtime", b.GetLayeredRuntime())
	if err != nil {
		return nil, err
	}
	sr := b.GetStaticResources()
	if sr == nil {
		return nil, unsupported("bootstrap.static_resources", "required (no xDS in the sim)")
	}
	if err := checkFields("static_resources", sr, "listeners", "clusters"); err != nil {
		return nil, err
	}
	cfg := &config{clusters: map[string]*clusterConfig{}, runtime: rt, minor: minor}
	for i, c := range sr.GetClusters() {
		cc, err := buildCluster(fmt.Sprintf("static_resources.clusters[%s]", c.GetName()), c, overrides)
		if err != nil {
			return nil, err
		}
		if _, dup := cfg.clusters[cc.name]; dup {
			return nil, fmt.Errorf("envoysim: static_resources.clusters[%d]: duplicate cluster %q", i, cc.name)
		}
		cfg.clusters[cc.name] = cc
	}
	for name := range overrides {
		if _, ok := cfg.clusters[name]; !ok {
			return nil, fmt.Errorf("envoysim: Options.Clusters names unknown cluster %q", name)
		}
	}
	for _, l := range sr.GetListeners() {
		lc, err := buildListener(fmt.Sprintf("static_resources.listeners[%s]", l.GetName()), l, cfg)
		if err != nil {
			return nil, err
		}
		cfg.listeners = append(cfg.listeners, lc)
	}
	if len(cfg.listeners) == 0 {
		return nil, unsupported("static_resources.listeners", "at least one listener is required")
	}
	return cfg, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func buildCluster(path string, c *clusterv3.Cluster, overrides map[string]string) (*clusterConfig, error) {
	if err := checkFields(path, c, "name", "type", "connect_timeout", "dns_lookup_family", "load_assignment",
		"transport_socket", "typed_extension_protocol_options", "circuit_breakers", "http2_protocol_options",
		"lb_policy"); err != nil {
		return nil, err
	}
	cc := &clusterConfig{name: c.GetName(), typ: c.GetType(), override: overrides[c.GetName()]}
	switch c.GetType() {
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_LOGICAL_DNS, clusterv3.Cluster_STRICT_DNS:
	default:
		return nil, unsupported(path+".type", "cluster type %s is not modelled (STATIC, LOGICAL_DNS, STRICT_DNS only)", c.GetType())
	}
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		return nil, unsupported(path+".lb_policy", "only the default ROUND_ROBIN is modelled")
	}
	if c.GetHttp2ProtocolOptions() != nil {
		cc.h2 = true
	}
	for k, a := range c.GetTypedExtensionProtocolOptions() {
		if k != "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" {
			return nil, unsupported(path+".typed_extension_protocol_options["+k+"]", "unknown extension")
		}
		var po httpv3.HttpProtocolOptions
		p := path + ".typed_extension_protocol_options[" + k + "]"
		if err := unpack(p, a, &po); err != nil {
			return nil, err
		}
		if len(po.GetHttpFilters()) > 0 {
			return nil, unsupported(p+".http_filters", "upstream HTTP filters (e.g. ext_proc as an upstream filter) are not modelled")
		}
		if err := checkFields(p, &po, "explicit_http_config", "auto_config", "common_http_protocol_options"); err != nil {
			return nil, err
		}
		if e := po.GetExplicitHttpConfig(); e != nil {
			if e.GetHttp2ProtocolOptions() != nil {
				cc.h2 = true
			} else if e.GetHttp3ProtocolOptions() != nil {
				return nil, unsupported(p+".explicit_http_config.http3_protocol_options", "HTTP/3 upstreams are not modelled")
			}
		} else if a := po.GetAutoConfig(); a != nil {
			// ALPN picks the protocol. Envoy refuses auto_config without a
			// transport socket that does ALPN; an overridden cluster loses
			// its TLS here (as in LoopbackBootstrap, which drops auto_config
			// with it), so it speaks HTTP/1.1.
			if a.GetHttp3ProtocolOptions() != nil {
				return nil, unsupported(p+".auto_config.http3_protocol_options", "HTTP/3 upstreams are not modelled")
			}
			if c.GetTransportSocket() == nil {
				return nil, fmt.Errorf("envoysim: %s.auto_config: ALPN is required for auto_config: the cluster needs a TLS transport socket", p)
			}
		} else if po.GetUpstreamProtocolOptions() != nil {
			return nil, unsupported(p+".upstream_protocol_options", "only explicit_http_config and auto_config are modelled")
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		p := path + ".transport_socket"
		var tls tlsv3.UpstreamTlsContext
		if err := unpack(p, ts.GetTypedConfig(), &tls); err != nil {
			return nil, err
		}
		cc.tls = true
	}
	la := c.GetLoadAssignment()
	var addrs []*corev3.SocketAddress
	for _, e := range la.GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, unsupported(path+".load_assignment", "only socket_address endpoints are modelled")
			}
			addrs = append(addrs, sa)
		}
	}
	if len(addrs) > 1 {
		return nil, unsupported(path+".load_assignment", "more than one endpoint is not modelled (load balancing)")
	}
	if len(addrs) == 1 {
		cc.host = addrs[0].GetAddress()
		cc.port = int(addrs[0].GetPortValue())
	}
	if cc.override == "" {
		if len(addrs) == 0 {
			return nil, unsupported(path+".load_assignment", "no endpoint and no override in Options.Clusters")
		}
		if !isLoopback(cc.host) {
			return nil, unsupported(path, "endpoint %s is not loopback and Options.Clusters has no override for it (the sim never leaves the machine)", cc.host)
		}
		if cc.tls {
			return nil, unsupported(path+".transport_socket", "upstream TLS is not modelled; give the cluster an override (which drops TLS)")
		}
	}
	return cc, nil
}

func buildListener(path string, l *listenerv3.Listener, cfg *config) (*listenerConfig, error) {
	if err := checkFields(path, l, "name", "address", "filter_chains", "per_connection_buffer_limit_bytes"); err != nil {
		return nil, err
	}
	lc := &listenerConfig{name: l.GetName(), bufferLimit: defaultBufferLimit}
	if sa := l.GetAddress().GetSocketAddress(); sa != nil {
		lc.port = int(sa.GetPortValue())
	} else {
		return nil, unsupported(path+".address", "only socket_address is modelled")
	}
	if v := l.GetPerConnectionBufferLimitBytes(); v != nil {
		lc.bufferLimit = int(v.GetValue())
	}
	if len(l.GetFilterChains()) != 1 {
		return nil, unsupported(path+".filter_chains", "exactly one filter chain is modelled")
	}
	fc := l.GetFilterChains()[0]
	if err := checkFields(path+".filter_chains[0]", fc, "filters"); err != nil {
		return nil, err
	}
	if len(fc.GetFilters()) != 1 {
		return nil, unsupported(path+".filter_chains[0].filters", "exactly one network filter (the HTTP connection manager) is modelled")
	}
	f := fc.GetFilters()[0]
	fp := path + ".filter_chains[0].filters[" + f.GetName() + "]"
	var hcm hcmv3.HttpConnectionManager
	if err := unpack(fp, f.GetTypedConfig(), &hcm); err != nil {
		return nil, err
	}
	h, err := buildHCM(fp, &hcm, cfg)
	if err != nil {
		return nil, err
	}
	lc.hcm = h
	return lc, nil
}

func buildHCM(path string, hcm *hcmv3.HttpConnectionManager, cfg *config) (*hcmConfig, error) {
	if err := checkFields(path, hcm, "stat_prefix", "codec_type", "generate_request_id", "stream_idle_timeout",
		"route_config", "http_filters", "access_log", "local_reply_config", "use_remote_address", "tracing"); err != nil {
		return nil, err
	}
	if hcm.GetUseRemoteAddress().GetValue() {
		// With use_remote_address a request from an internal address (RFC 1918 by default on
		// some versions, internal_address_config on others) keeps its x-envoy-* headers, and
		// edge requests get a fresh x-request-id: neither is modelled.
		return nil, unsupported(path+".use_remote_address", "only false (every request external) is modelled")
	}
	h := &hcmConfig{statPrefix: hcm.GetStatPrefix(), codec: hcm.GetCodecType(), generateRequestID: true,
		idleTimeout: 5 * time.Minute}
	switch hcm.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO, hcmv3.HttpConnectionManager_HTTP1, hcmv3.HttpConnectionManager_HTTP2:
	default:
		return nil, unsupported(path+".codec_type", "%s is not modelled", hcm.GetCodecType())
	}
	if v := hcm.GetGenerateRequestId(); v != nil {
		h.generateRequestID = v.GetValue()
	}
	if v := hcm.GetStreamIdleTimeout(); v != nil {
		h.idleTimeout = v.AsDuration()
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return nil, unsupported(path+".route_specifier", "only an inline route_config is modelled (no RDS)")
	}
	if err := checkFields(path+".route_config", rc, "name", "virtual_hosts", "internal_only_headers"); err != nil {
		return nil, err
	}
	for _, k := range rc.GetInternalOnlyHeaders() {
		h.internalOnly = append(h.internalOnly, strings.ToLower(k))
	}
	if t := hcm.GetTracing(); t != nil {
		tc, err := buildTracing(path+".tracing", t, cfg)
		if err != nil {
			return nil, err
		}
		h.tracing = tc
	}
	if lr := hcm.GetLocalReplyConfig(); lr != nil {
		l, err := buildLocalReply(path+".local_reply_config", lr)
		if err != nil {
			return nil, err
		}
		h.localReply = l
	}
	for _, vh := range rc.GetVirtualHosts() {
		v, err := buildVhost(path+".route_config.virtual_hosts["+vh.GetName()+"]", vh, cfg)
		if err != nil {
			return nil, err
		}
		h.vhosts = append(h.vhosts, v)
	}
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetTypedConfig().GetTypeUrl() != "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" {
		return nil, unsupported(path+".http_filters", "the last HTTP filter must be the router")
	}
	for i, f := range filters {
		fp := fmt.Sprintf("%s.http_filters[%s]", path, f.GetName())
		if err := checkFields(fp, f, "name", "typed_config"); err != nil {
			return nil, err
		}
		if i == len(filters)-1 {
			var r routerv3.Router
			if err := unpack(fp, f.GetTypedConfig(), &r); err != nil {
				return nil, err
			}
			if err := checkFields(fp+".typed_config", &r, "suppress_envoy_headers"); err != nil {
				return nil, err
			}
			h.suppressEnvoy = r.GetSuppressEnvoyHeaders()
			continue
		}
		if f.GetTypedConfig().GetTypeUrl() != "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor" {
			return nil, unsupported(fp, "HTTP filter %s is not modelled (only ext_proc and the router)", f.GetTypedConfig().GetTypeUrl())
		}
		if h.extProc != nil {
			return nil, unsupported(fp, "more than one ext_proc filter is not modelled")
		}
		var ep extprocv3.ExternalProcessor
		if err := unpack(fp, f.GetTypedConfig(), &ep); err != nil {
			return nil, err
		}
		x, err := buildExtProc(fp+".typed_config", &ep, cfg)
		if err != nil {
			return nil, err
		}
		h.extProc = x
	}
	for i, al := range hcm.GetAccessLog() {
		fmtr, err := buildAccessLog(fmt.Sprintf("%s.access_log[%d]", path, i), al)
		if err != nil {
			return nil, err
		}
		h.accessLogs = append(h.accessLogs, fmtr)
	}
	return h, nil
}

func buildVhost(path string, vh *routev3.VirtualHost, cfg *config) (*vhostConfig, error) {
	if err := checkFields(path, vh, "name", "domains", "routes", "typed_per_filter_config"); err != nil {
		return nil, err
	}
	v := &vhostConfig{name: vh.GetName(), domains: vh.GetDomains()}
	for _, d := range v.domains {
		if d != "*" && strings.Contains(d, "*") {
			return nil, unsupported(path+".domains", "wildcard domain %q is not modelled (only exact names and \"*\")", d)
		}
	}
	pf, err := perFilter(path, vh.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	v.perFilter = pf
	for i, r := range vh.GetRoutes() {
		rp := fmt.Sprintf("%s.routes[%d]", path, i)
		if err := checkFields(rp, r, "name", "match", "route", "metadata", "typed_per_filter_config",
			"request_headers_to_remove"); err != nil {
			return nil, err
		}
		rc := &routeConfig{name: r.GetName(), metadata: r.GetMetadata(), vhost: v, notFoundCode: 503}
		m := r.GetMatch()
		if err := checkFields(rp+".match", m, "prefix", "path"); err != nil {
			return nil, err
		}
		switch ps := m.GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Prefix:
			rc.prefix = ps.Prefix
		case *routev3.RouteMatch_Path:
			rc.path, rc.hasPath = ps.Path, true
		default:
			return nil, unsupported(rp+".match", "only prefix and path matches are modelled")
		}
		a := r.GetRoute()
		if a == nil {
			return nil, unsupported(rp, "only route actions are modelled (no redirect/direct_response)")
		}
		if err := checkFields(rp+".route", a, "cluster", "cluster_header", "timeout", "auto_host_rewrite",
			"cluster_not_found_response_code"); err != nil {
			return nil, err
		}
		for _, k := range r.GetRequestHeadersToRemove() {
			rc.removeHeaders = append(rc.removeHeaders, strings.ToLower(k))
		}
		rc.cluster, rc.clusterHeader = a.GetCluster(), strings.ToLower(a.GetClusterHeader())
		if rc.cluster == "" && rc.clusterHeader == "" {
			return nil, unsupported(rp+".route.cluster_specifier", "only cluster and cluster_header are modelled")
		}
		if rc.cluster != "" && cfg.clusters[rc.cluster] == nil {
			return nil, fmt.Errorf("envoysim: %s.route.cluster: unknown cluster %q", rp, rc.cluster)
		}
		rc.timeout = 15 * time.Second // Envoy's default route timeout
		if t := a.GetTimeout(); t != nil {
			rc.timeout = t.AsDuration()
		}
		rc.autoHostRewrite = a.GetAutoHostRewrite().GetValue()
		if a.GetClusterNotFoundResponseCode() == routev3.RouteAction_NOT_FOUND {
			rc.notFoundCode = 404
		} else if a.GetClusterNotFoundResponseCode() == routev3.RouteAction_INTERNAL_SERVER_ERROR {
			rc.notFoundCode = 500
		}
		rc.perFilter, err = perFilter(rp, r.GetTypedPerFilterConfig())
		if err != nil {
			return nil, err
		}
		v.routes = append(v.routes, rc)
	}
	return v, nil
}

func perFilter(path string, m map[string]*anypb.Any) (*extprocv3.ExtProcPerRoute, error) {
	var out *extprocv3.ExtProcPerRoute
	for k, a := range m {
		p := path + ".typed_per_filter_config[" + k + "]"
		if k != extProcFilterName {
			return nil, unsupported(p, "per-route config is modelled only for %s", extProcFilterName)
		}
		var pr extprocv3.ExtProcPerRoute
		if err := unpack(p, a, &pr); err != nil {
			return nil, err
		}
		if o := pr.GetOverrides(); o != nil {
			if err := checkFields(p+".overrides", o, "processing_mode", "failure_mode_allow", "metadata_options"); err != nil {
				return nil, err
			}
		}
		out = &pr
	}
	return out, nil
}

func buildExtProc(path string, ep *extprocv3.ExternalProcessor, cfg *config) (*extProcConfig, error) {
	if err := checkFields(path, ep, "grpc_service", "failure_mode_allow", "processing_mode", "request_attributes",
		"response_attributes", "message_timeout", "stat_prefix", "mutation_rules", "max_message_timeout",
		"allow_mode_override", "disable_immediate_response", "metadata_options", "disable_clear_route_cache",
		"route_cache_action", "allowed_override_modes", "status_on_error", "allow_content_length_header"); err != nil {
		return nil, err
	}
	gs := ep.GetGrpcService()
	if gs == nil {
		return nil, unsupported(path+".http_service", "only grpc_service is modelled")
	}
	if err := checkFields(path+".grpc_service", gs, "envoy_grpc", "timeout", "initial_metadata"); err != nil {
		return nil, err
	}
	eg := gs.GetEnvoyGrpc()
	if eg == nil {
		return nil, unsupported(path+".grpc_service.google_grpc", "only envoy_grpc is modelled")
	}
	if err := checkFields(path+".grpc_service.envoy_grpc", eg, "cluster_name"); err != nil {
		return nil, err
	}
	if cfg.clusters[eg.GetClusterName()] == nil {
		return nil, fmt.Errorf("envoysim: %s.grpc_service.envoy_grpc.cluster_name: unknown cluster %q", path, eg.GetClusterName())
	}
	x := &extProcConfig{
		cluster:            eg.GetClusterName(),
		failureModeAllow:   ep.GetFailureModeAllow(),
		mode:               ep.GetProcessingMode(),
		messageTimeout:     200 * time.Millisecond,
		requestAttributes:  ep.GetRequestAttributes(),
		responseAttributes: ep.GetResponseAttributes(),
		forwardNamespaces:  ep.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(),
		receiveNamespaces:  ep.GetMetadataOptions().GetReceivingNamespaces().GetUntyped(),
		allowModeOverride:  ep.GetAllowModeOverride(),
		allowedOverrides:   ep.GetAllowedOverrideModes(),
		disableImmediate:   ep.GetDisableImmediateResponse(),
		statusOnError:      500,
		routeCacheAction:   ep.GetRouteCacheAction(),
		allowContentLength: ep.GetAllowContentLengthHeader(),
		initialMetadata:    gs.GetInitialMetadata(),
	}
	if x.mode == nil {
		x.mode = &extprocv3.ProcessingMode{}
	}
	if err := checkFields(path+".metadata_options", orEmpty(ep.GetMetadataOptions()), "forwarding_namespaces", "receiving_namespaces"); err != nil {
		return nil, err
	}
	if len(ep.GetMetadataOptions().GetForwardingNamespaces().GetTyped()) > 0 {
		return nil, unsupported(path+".metadata_options.forwarding_namespaces.typed", "typed metadata is not modelled")
	}
	if t := ep.GetMessageTimeout(); t != nil {
		x.messageTimeout = t.AsDuration()
	}
	if t := ep.GetMaxMessageTimeout(); t != nil {
		x.maxMessageTimeout = t.AsDuration()
	}
	if s := ep.GetStatusOnError(); s != nil && s.GetCode() != 0 {
		x.statusOnError = int(s.GetCode())
	}
	if ep.GetDisableClearRouteCache() {
		if x.routeCacheAction != extprocv3.ExternalProcessor_DEFAULT {
			return nil, fmt.Errorf("envoysim: %s: disable_clear_route_cache and route_cache_action can not be set to none-default at the same time", path)
		}
		x.routeCacheAction = extprocv3.ExternalProcessor_RETAIN
	}
	if mr := ep.GetMutationRules(); mr != nil {
		if err := checkFields(path+".mutation_rules", mr, "allow_all_routing", "allow_envoy", "disallow_system",
			"disallow_all", "disallow_is_error"); err != nil {
			return nil, err
		}
		x.rules = mutationRules{
			allowAllRouting: mr.GetAllowAllRouting().GetValue(),
			allowEnvoy:      mr.GetAllowEnvoy().GetValue(),
			disallowSystem:  mr.GetDisallowSystem().GetValue(),
			disallowAll:     mr.GetDisallowAll().GetValue(),
			disallowIsError: mr.GetDisallowIsError().GetValue(),
		}
	}
	if err := checkProcessingMode(path+".processing_mode", x.mode); err != nil {
		return nil, err
	}
	for _, a := range append(append([]string{}, x.requestAttributes...), x.responseAttributes...) {
		if _, ok := attributeNames[a]; !ok {
			return nil, unsupported(path+".request_attributes", "attribute %q is not modelled", a)
		}
	}
	return x, nil
}

func orEmpty(m *extprocv3.MetadataOptions) *extprocv3.MetadataOptions {
	if m == nil {
		return &extprocv3.MetadataOptions{}
	}
	return m
}

// checkProcessingMode applies Envoy's config-load rules to a processing mode.
func checkProcessingMode(path string, m *extprocv3.ProcessingMode) error {
	for _, bm := range []extprocv3.ProcessingMode_BodySendMode{m.GetRequestBodyMode(), m.GetResponseBodyMode()} {
		if bm == extprocv3.ProcessingMode_GRPC {
			return unsupported(path, "body mode GRPC is not implemented by Envoy")
		}
	}
	if m.GetRequestBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
		m.GetRequestTrailerMode() != extprocv3.ProcessingMode_SEND {
		return fmt.Errorf("envoysim: %s: If the ext_proc filter has the request_body_mode set to FULL_DUPLEX_STREAMED, then the request_trailer_mode has to be set to SEND", path)
	}
	if m.GetResponseBodyMode() == extprocv3.ProcessingMode_FULL_DUPLEX_STREAMED &&
		m.GetResponseTrailerMode() != extprocv3.ProcessingMode_SEND {
		return fmt.Errorf("envoysim: %s: If the ext_proc filter has the response_body_mode set to FULL_DUPLEX_STREAMED, then the response_trailer_mode has to be set to SEND", path)
	}
	return nil
}

// attributeNames are the CEL attributes the sim can produce.
var attributeNames = map[string]struct{}{
	"xds.route_metadata": {}, "xds.route_name": {}, "xds.cluster_name": {}, "xds.virtual_host_name": {},
	"request.path": {}, "request.url_path": {}, "request.host": {}, "request.scheme": {}, "request.method": {},
	"request.id": {}, "request.protocol": {}, "response.code": {},
}

// structFromMetadata returns the route metadata for one namespace (for tests).
func metadataNS(m *corev3.Metadata, ns string) *structpb.Struct {
	if m == nil {
		return nil
	}
	return m.GetFilterMetadata()[ns]
}

var errClosed = errors.New("envoysim: closed")
