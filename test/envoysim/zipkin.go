package envoysim

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	"google.golang.org/protobuf/types/known/anypb"
	durpb "google.golang.org/protobuf/types/known/durationpb"
)

// The HCM tracing block with the Zipkin tracer (envoy.tracers.zipkin): B3
// propagation. Read in envoyproxy/envoy (docs/envoy-facts.md fact 11), all
// under source/extensions/tracers/zipkin/:
//
//   - zipkin_tracer_impl.cc Driver::Driver: collector_service (1.36+) or
//     collector_cluster + collector_endpoint, the cluster checked to exist
//     (Config::Utility::checkCluster("envoy.tracers.zipkin", ...)), unlike
//     the OpenTelemetry exporter's; shared_span_context defaults to
//     DEFAULT_SHARED_SPAN_CONTEXT (true, zipkin_core_constants.h).
//     span_buffer.cc SpanBuffer::makeSerializer: collector_endpoint_version
//     unset (DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE) throws, GRPC panics.
//   - zipkin_tracer_impl.cc Driver::startSpan: sampled =
//     SpanContextExtractor::extractSampled(); extractSpanContext(sampled, or
//     the HCM's decision when the headers say nothing); no context → a root
//     span (Tracer::startSpan without parent) with that sampled flag; a
//     context → Tracer::startSpan with it as previous_context; an
//     ExtractorException → a Tracing::NullSpan (no trace at all: nothing
//     injected, %TRACE_ID% "-"), as with the OpenTelemetry tracer.
//   - span_context_extractor.cc: see extractB3Sampled, extractB3Context,
//     extractB3Single. x-b3-flags (zipkin_core_constants.h X_B3_FLAGS) is
//     never read; traceparent is not read either unless
//     trace_context_option is USE_B3_WITH_W3C_PROPAGATION (1.36+, refused).
//   - tracer.cc Tracer::startSpan: a root span's span id IS its trace id's
//     low 64 bits (one random number for both), a second random number for
//     the high half with trace_id_128bit; with a previous context, a span
//     whose annotation is SERVER_RECV (the HCM's Ingress operation: a
//     listener without traffic_direction, http_connection_manager
//     config.cc) shares the context's span id (and its parent id, if not 0)
//     when shared_span_context is true; a CLIENT_SEND one (Egress: the gRPC
//     client's Tracing::EgressConfig) or shared_span_context false gets a
//     new random id whose parent is the context's span id. Trace id (the
//     high half only if not 0: SpanContext::is128BitTraceId) and sampled
//     flag are kept.
//   - span_context.h SpanContext(const Span&, inner_context): spawnChild's
//     context of the span itself.
//   - ZipkinSpan::injectContext (zipkin_tracer_impl.cc before the Span
//     became the Tracing::Span; zipkin_tracer_impl_test.cc of 1.36+ for
//     today's Span): x-b3-traceid (traceIdAsHexString: 16 or 32 lowercase
//     hex digits), x-b3-spanid, x-b3-parentspanid only if the span has a
//     parent, x-b3-sampled "1"/"0", each with setRefKey (replacing). No b3
//     single header, no x-b3-flags, no traceparent (USE_B3).
//   - Span::getTraceId: traceIdAsHexString (%TRACE_ID%).

const zipkinTracerName = "envoy.tracers.zipkin"

// minorZipkinCollectorService is the first Envoy minor version whose
// ZipkinConfig has collector_service and trace_context_option
// (changelogs/1.36.0.yaml, "tracing"). Before it Envoy rejects a bootstrap
// that sets them (unknown fields).
const minorZipkinCollectorService = 36

// zipkinConfig is the Zipkin tracer's configuration, resolved.
type zipkinConfig struct {
	trace128 bool // trace_id_128bit
	shared   bool // shared_span_context (default true)
}

func buildZipkin(path string, a *anypb.Any, cfg *config) (*zipkinConfig, error) {
	var zc tracev3.ZipkinConfig
	if err := unpack(path, a, &zc); err != nil {
		return nil, err
	}
	// The collector is accepted and never called: the sim exports no span.
	// split_spans_for_request (deprecated: an upstream span of its own) and
	// timestamp_trace_ids (after 1.37) are refused.
	if err := checkFields(path, &zc, "collector_cluster", "collector_endpoint", "collector_endpoint_version",
		"collector_hostname", "trace_id_128bit", "shared_span_context", "collector_service", "trace_context_option"); err != nil {
		return nil, err
	}
	if cfg.minor < minorZipkinCollectorService {
		if zc.GetCollectorService() != nil {
			return nil, fmt.Errorf("envoysim: %s.collector_service: unknown field in Envoy 1.%d (added in 1.36.0)", path, cfg.minor)
		}
		if zc.GetTraceContextOption() != tracev3.ZipkinConfig_USE_B3 {
			return nil, fmt.Errorf("envoysim: %s.trace_context_option: unknown field in Envoy 1.%d (added in 1.36.0)", path, cfg.minor)
		}
	}
	if zc.GetTraceContextOption() == tracev3.ZipkinConfig_USE_B3_WITH_W3C_PROPAGATION {
		// Envoy's tests (zipkin_tracer_impl_test.cc DualHeaderExtractionAndInjection,
		// span_context_extractor_test.cc W3CFallback*) show a traceparent
		// read when no B3 header is present and injected besides the B3
		// headers; the injection code itself was not read.
		return nil, unsupported(path+".trace_context_option", "USE_B3_WITH_W3C_PROPAGATION is not modelled (only USE_B3, the default)")
	}
	cluster := zc.GetCollectorCluster()
	if cs := zc.GetCollectorService(); cs != nil {
		// Driver::Driver: collector_service takes precedence over the
		// legacy fields.
		if err := checkFields(path+".collector_service", cs, "http_uri", "request_headers_to_add"); err != nil {
			return nil, err
		}
		cluster = cs.GetHttpUri().GetCluster()
	} else if zc.GetCollectorCluster() == "" || zc.GetCollectorEndpoint() == "" {
		return nil, fmt.Errorf("envoysim: %s: collector_cluster and collector_endpoint must be specified when not using collector_service", path)
	}
	if _, ok := cfg.clusters[cluster]; !ok {
		// Config::Utility::checkCluster: the tracer refuses to start.
		return nil, fmt.Errorf("envoysim: %s: envoy.tracers.zipkin: unknown cluster '%s'", path, cluster)
	}
	switch zc.GetCollectorEndpointVersion() {
	case tracev3.ZipkinConfig_HTTP_JSON, tracev3.ZipkinConfig_HTTP_PROTO:
	case tracev3.ZipkinConfig_GRPC:
		return nil, fmt.Errorf("envoysim: %s.collector_endpoint_version: GRPC is not handled (Envoy panics)", path)
	default:
		return nil, fmt.Errorf("envoysim: %s.collector_endpoint_version: hidden_envoy_deprecated_HTTP_JSON_V1 has been deprecated. Please use a non-default envoy::config::trace::v3::ZipkinConfig::CollectorEndpointVersion value", path)
	}
	out := &zipkinConfig{trace128: zc.GetTraceId_128Bit(), shared: true}
	if s := zc.GetSharedSpanContext(); s != nil {
		out.shared = s.GetValue()
	}
	return out, nil
}

// zipkinSpan is a Zipkin span as far as propagation goes.
type zipkinSpan struct {
	high, low uint64 // trace id
	has128    bool   // trace_id_high_ set: the trace id is written as 32 digits
	id        uint64
	parent    uint64
	hasParent bool
	sampled   bool
	shared    bool // the tracer's shared_span_context
}

// b3Context is Zipkin's SpanContext as the extractor builds it.
type b3Context struct {
	high, low, id, parent uint64
	sampled               bool
}

// startSpan is Driver::startSpan; nil is a NullSpan.
func (zc *zipkinConfig) startSpan(h hmap, traced bool) *zipkinSpan {
	sampled, ok := extractB3Sampled(h)
	if !ok {
		sampled = traced // sampled.value_or(tracing_decision.traced)
	}
	ctx, found, err := extractB3Context(h, sampled)
	if err != nil {
		return nil // ExtractorException: a NullSpan
	}
	if !found {
		// Tracer::startSpan without a previous context, then setSampled.
		r := random64()
		s := &zipkinSpan{low: r, id: r, sampled: sampled, shared: zc.shared}
		if zc.trace128 {
			s.high, s.has128 = random64(), true
		}
		return s
	}
	return startZipkinChild(ctx, false, zc.shared)
}

// startZipkinChild is Tracer::startSpan with a previous context; egress
// is the CLIENT_SEND case (the Egress operation), false the HCM's Ingress
// (SERVER_RECV).
func startZipkinChild(ctx b3Context, egress, shared bool) *zipkinSpan {
	s := &zipkinSpan{low: ctx.low, sampled: ctx.sampled, shared: shared}
	if egress || !shared {
		s.id, s.parent, s.hasParent = random64(), ctx.id, true
	} else {
		s.id = ctx.id
		if ctx.parent != 0 {
			s.parent, s.hasParent = ctx.parent, true
		}
	}
	if ctx.high != 0 { // SpanContext::is128BitTraceId
		s.high, s.has128 = ctx.high, true
	}
	return s
}

// spawnChild: SpanContext(span) and Tracer::startSpan with the gRPC
// client's Tracing::EgressConfig: a new span id whose parent is this span.
func (s *zipkinSpan) spawnChild() span {
	ctx := b3Context{low: s.low, id: s.id, sampled: s.sampled}
	if s.has128 {
		ctx.high = s.high
	}
	if s.hasParent {
		ctx.parent = s.parent
	}
	return startZipkinChild(ctx, true, s.shared)
}

func (s *zipkinSpan) traceID() string {
	if s.has128 {
		return fmt.Sprintf("%016x%016x", s.high, s.low)
	}
	return fmt.Sprintf("%016x", s.low)
}

func (s *zipkinSpan) injected() []hkv {
	out := []hkv{{"x-b3-traceid", s.traceID()}, {"x-b3-spanid", fmt.Sprintf("%016x", s.id)}}
	if s.hasParent {
		out = append(out, hkv{"x-b3-parentspanid", fmt.Sprintf("%016x", s.parent)})
	}
	sampled := "0"
	if s.sampled {
		sampled = "1"
	}
	return append(out, hkv{"x-b3-sampled", sampled})
}

// extractB3Sampled is SpanContextExtractor::extractSampled; ok false is
// "nothing said" (absl::nullopt; before the optional, the HCM's decision:
// the same). A b3 header is looked at alone: its flag is at a position
// fixed by its length (1, 35/52 for 64-bit, 51/68 for 128-bit trace ids),
// '0' unsampled, '1' or 'd' (debug) sampled, anything else nothing. Else
// x-b3-sampled: "1" or "true" sampled, any other value unsampled.
func extractB3Sampled(h hmap) (sampled, ok bool) {
	if b3, present := h.get("b3"); present { // first value only
		pos := -1
		switch len(b3) {
		case 1:
			pos = 0
		case 35, 52:
			pos = 34
		case 51, 68:
			pos = 50
		}
		if pos < 0 {
			return false, false
		}
		switch b3[pos] {
		case '0':
			return false, true
		case '1', 'd':
			return true, true
		}
		return false, false
	}
	if v, present := h.get("x-b3-sampled"); present {
		return v == "1" || v == "true", true
	}
	return false, false
}

// errB3 is an ExtractorException.
type errB3 string

func (e errB3) Error() string { return string(e) }

// extractB3Context is SpanContextExtractor::extractSpanContext: a b3 header
// wins (extractB3Single); else x-b3-traceid and x-b3-spanid both present
// make a context (either alone is no context: a new trace), the trace id
// split in two when it has 32 characters, else read whole; a non-empty
// x-b3-parentspanid is read too. Each number is StringUtil::atoull base 16;
// one it refuses is an ExtractorException. No id is checked for zero.
func extractB3Context(h hmap, sampled bool) (ctx b3Context, found bool, err error) {
	if b3, present := h.get("b3"); present {
		return extractB3Single(b3, sampled)
	}
	tid, okT := h.get("x-b3-traceid")
	sid, okS := h.get("x-b3-spanid")
	if !okT || !okS {
		return b3Context{}, false, nil
	}
	var ok1, ok2 bool
	if len(tid) == 32 {
		ctx.high, ok1 = atoull16(tid[:16])
		ctx.low, ok2 = atoull16(tid[16:])
		if !ok1 || !ok2 {
			return b3Context{}, false, errB3("Invalid traceid_high or tracid")
		}
	} else if ctx.low, ok1 = atoull16(tid); !ok1 {
		return b3Context{}, false, errB3("Invalid trace_id " + tid)
	}
	if ctx.id, ok1 = atoull16(sid); !ok1 {
		return b3Context{}, false, errB3("Invalid span id " + sid)
	}
	if p, present := h.get("x-b3-parentspanid"); present && p != "" {
		if ctx.parent, ok1 = atoull16(p); !ok1 {
			return b3Context{}, false, errB3("Invalid parent span id " + p)
		}
	}
	ctx.sampled = sampled
	return ctx, true, nil
}

// extractB3Single is SpanContextExtractor::extractSpanContextFromB3SingleFormat,
// step by step: "{trace}-{span}[-{flag}[-{parent}]]" with a 16- or 32-digit
// trace id (32 when b3[32] is '-'), between 33 and 68 characters; a lone
// valid flag is no context; every other shape throws. The sampled flag is
// the caller's (extractB3Sampled's), not re-read here.
func extractB3Single(b3 string, sampled bool) (ctx b3Context, found bool, err error) {
	n := len(b3)
	substr := func(pos, l int) string { return b3[pos:min(pos+l, n)] }
	validFlag := func(c byte) bool { return c == '1' || c == '0' || c == 'd' }
	var ok, ok2 bool
	switch {
	case n == 0:
		return b3Context{}, false, errB3("Invalid input: empty")
	case n == 1:
		if validFlag(b3[0]) {
			return b3Context{}, false, nil
		}
		return b3Context{}, false, errB3("Invalid input: invalid sampling flag")
	case n < 16+1+16:
		return b3Context{}, false, errB3("Invalid input: truncated")
	case n > 32+1+16+3+16:
		return b3Context{}, false, errB3("Invalid input: too long")
	}
	pos := 0
	if b3[pos+32] == '-' {
		ctx.high, ok = atoull16(substr(pos, 16))
		pos += 16
		ctx.low, ok2 = atoull16(substr(pos, 16))
		ok = ok && ok2
	} else {
		ctx.low, ok = atoull16(substr(pos, 16))
	}
	if !ok {
		return b3Context{}, false, errB3("Invalid input: invalid trace id")
	}
	pos += 16
	if b3[pos] != '-' {
		return b3Context{}, false, errB3("Invalid input: not exists span id")
	}
	pos++
	if ctx.id, ok = atoull16(substr(pos, 16)); !ok {
		return b3Context{}, false, errB3("Invalid input: invalid span id")
	}
	pos += 16
	if n > pos {
		if n == pos+1 {
			return b3Context{}, false, errB3("Invalid input: truncated")
		}
		if b3[pos] != '-' {
			return b3Context{}, false, errB3("Invalid input: not exists sampling field")
		}
		pos++
		if n == pos+1 || (n >= pos+2 && b3[pos+1] == '-') {
			if !validFlag(b3[pos]) {
				return b3Context{}, false, errB3("Invalid input: invalid sampling flag")
			}
			pos++
		} else {
			return b3Context{}, false, errB3("Invalid input: truncated")
		}
		if n > pos {
			if n != pos+17 {
				return b3Context{}, false, errB3("Invalid input: truncated")
			}
			pos++ // the '-' the test above saw
			if ctx.parent, ok = atoull16(b3[pos:]); !ok {
				return b3Context{}, false, errB3("Invalid input: invalid parent id")
			}
		}
	}
	ctx.sampled = sampled
	return ctx, true, nil
}

// atoull16 is StringUtil::atoull(str, out, 16) (source/common/common/
// utility.cc): std::strtoull must consume the whole non-empty string and
// not overflow. strtoull also takes leading white space, a sign (a '-'
// negates, modulo 2^64) and a 0x prefix.
func atoull16(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	hexv := func(c byte) (uint64, bool) {
		switch {
		case '0' <= c && c <= '9':
			return uint64(c - '0'), true
		case 'a' <= c && c <= 'f':
			return uint64(c-'a') + 10, true
		case 'A' <= c && c <= 'F':
			return uint64(c-'A') + 10, true
		}
		return 0, false
	}
	i := 0
	for i < len(s) && (s[i] == ' ' || ('\t' <= s[i] && s[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	if i+2 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') {
		if _, ok := hexv(s[i+2]); ok {
			i += 2
		}
	}
	start := i
	var v uint64
	overflow := false
	for ; i < len(s); i++ {
		d, ok := hexv(s[i])
		if !ok {
			break
		}
		if v > (math.MaxUint64-d)/16 {
			overflow = true
		}
		v = v*16 + d
	}
	if i == start || i != len(s) || overflow { // no digits, trailing junk, ERANGE
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// random64 is Random::RandomGenerator::random().
func random64() uint64 {
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic(err)
	}
	return binary.BigEndian.Uint64(r[:])
}

// ZipkinCollectorCluster is the cluster EnableZipkinTracing points the
// Zipkin tracer at; it adds it (127.0.0.1:9411) when the bootstrap has no
// cluster of that name. Options.Clusters may override it; the sim never
// calls it.
const ZipkinCollectorCluster = "zipkin"

// EnableZipkinTracing returns bootstrapYAML (YAML or JSON) with a Zipkin
// `tracing` block added to the HTTP connection manager of every listener
// named "ingress" or "egress", so that an end-to-end test runs
// envoy/standalone.yaml with B3 propagation on:
//
//	tracing:
//	  provider:
//	    name: envoy.tracers.zipkin
//	    typed_config:
//	      "@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig
//	      collector_cluster: zipkin
//	      collector_endpoint: /api/v2/spans
//	      collector_endpoint_version: HTTP_JSON
//	      trace_id_128bit: true   # only when traceID128
//
// random_sampling is left at its default (100%) and shared_span_context at
// Envoy's default (true: a request that brings B3 headers keeps the
// client's span id on the upstream request). Envoy refuses a Zipkin tracer
// whose collector cluster does not exist, so a STATIC cluster "zipkin"
// (127.0.0.1:9411) is added unless the bootstrap has one; real Envoy's
// reports to it simply fail. The result is JSON (Envoy and Start accept
// it). An error is returned if no such listener exists or one already has
// tracing.
func EnableZipkinTracing(bootstrapYAML []byte, traceID128 bool) ([]byte, error) {
	b, err := decodeBootstrap(bootstrapYAML)
	if err != nil {
		return nil, err
	}
	zc := &tracev3.ZipkinConfig{
		CollectorCluster:         ZipkinCollectorCluster,
		CollectorEndpoint:        "/api/v2/spans",
		CollectorEndpointVersion: tracev3.ZipkinConfig_HTTP_JSON,
		TraceId_128Bit:           traceID128,
	}
	if err := addTracing(b, zipkinTracerName, zc); err != nil {
		return nil, fmt.Errorf("envoysim: EnableZipkinTracing: %w", err)
	}
	found := false
	for _, c := range b.GetStaticResources().GetClusters() {
		found = found || c.GetName() == ZipkinCollectorCluster
	}
	if !found {
		b.StaticResources.Clusters = append(b.StaticResources.Clusters, &clusterv3.Cluster{
			Name:                 ZipkinCollectorCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durpb.New(time.Second),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: ZipkinCollectorCluster,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
							Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9411}}}}}}}}}}},
		})
	}
	return marshalBootstrap("EnableZipkinTracing", b)
}
