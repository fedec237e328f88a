package envoysim

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tracingv3 "github.com/envoyproxy/go-control-plane/envoy/type/tracing/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Request tracing: the HCM's `tracing` block with the OpenTelemetry tracer
// (envoy.tracers.opentelemetry, this file) or the Zipkin tracer
// (envoy.tracers.zipkin, zipkin.go). The sim models what a test can observe
// of it: the sampling decision and its mark on x-request-id, the request
// span and the trace context it propagates (W3C traceparent/tracestate for
// OpenTelemetry, B3 x-b3-* headers for Zipkin), the child span of the
// ext_proc gRPC stream (its context in the stream's initial metadata), the
// context the router puts on the upstream request, and %TRACE_ID%. Nothing
// is exported: the tracers' collectors are accepted and never called (real
// Envoy sends finished sampled spans there; no test reads them).
//
// Read in envoyproxy/envoy (see docs/envoy-facts.md facts 10 and 11):
//
//   - source/common/http/conn_manager_impl.cc ActiveStream::decodeHeaders:
//     ConnectionManagerUtility::mutateTracingRequestHeader on the first pass,
//     then `if (connection_manager_tracing_config_.has_value()) traceRequest()`
//     before the filter chain; traceRequest always calls startSpan, with the
//     decision of Tracing::TracerUtility::shouldTraceRequest (ClientForced,
//     ServiceForced, Sampling → traced).
//   - source/common/http/conn_manager_utility.cc mutateTracingRequestHeader
//     and source/extensions/request_id/uuid/config.{h,cc}: see traceDecision.
//   - source/extensions/tracers/opentelemetry/opentelemetry_tracer_impl.cc
//     Driver::startSpan: no traceparent → a root span with the HCM's
//     decision; a traceparent that SpanContextExtractor::extractSpanContext
//     rejects → a Tracing::NullSpan (no trace at all for the request); a valid
//     one → a span of the same trace with a new span id.
//   - source/extensions/tracers/opentelemetry/tracer.cc Tracer::startSpan
//     (random 128-bit trace id and 64-bit span id, Hex::uint64ToHex; with a
//     parent and no sampler "Respect the previous span's sampled flag" and
//     its tracestate), Span::spawnChild, Span::injectContext.
//   - source/extensions/filters/http/ext_proc/ext_proc.cc Filter::openStream:
//     StreamOptions().setParentSpan(decoder_callbacks_->activeSpan())
//     .setSampled(absl::nullopt) (PR #37794, Envoy 1.33: the child follows
//     the parent's sampled flag instead of the StreamOptions default true).
//   - source/common/grpc/async_client_impl.cc AsyncStreamImpl: the
//     constructor spawns the child span "async <service>.<method> egress" of
//     options.parent_span_ with Tracing::EgressConfig::get() (operation
//     Egress, spawnUpstreamSpan false: source/common/tracing/
//     http_tracer_impl.h EgressConfigImpl); initialize() evaluates
//     initial_metadata, then current_span_->injectContext(trace_context, ...)
//     on the gRPC request headers.
//   - source/common/router/upstream_request.cc UpstreamRequest::onPoolReady:
//     without an upstream span (spawn_upstream_span / start_child_span, both
//     refused here) `parent_.callbacks()->activeSpan().injectContext(...)` on
//     the downstream request headers the upstream request is encoded from.
//   - source/common/formatter/http_specific_formatter.cc TraceIDFormatter
//     (%TRACE_ID%, COMMAND_ONLY): the active span's getTraceId(), unspecified
//     ("-", JSON null) when empty, as for a NullSpan.

const otelTracerName = "envoy.tracers.opentelemetry"

// minorOTelRespectsDecision is the first Envoy minor version in which the
// OpenTelemetry driver applies a negative HCM decision to a span that has a
// parent (PR #45830 "tracing: make otel tracer respect envoy tracing
// decision", merged 2026-06-24, after 1.38: Driver::startSpan's
// applyTracingDecision sets sampled=false when !tracing_decision.traced).
// Before it, 1.34–1.38 included, a valid traceparent's sampled flag wins
// whatever random_sampling decided (issue #35721). The release is inferred
// from the merge date.
const minorOTelRespectsDecision = 39

// tracingConfig is an HCM's tracing block, resolved.
type tracingConfig struct {
	// randomSampling is random_sampling out of 10000
	// (PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT(..., 10000, 10000)).
	randomSampling uint64
	// zipkin is the Zipkin tracer's configuration; nil is the OpenTelemetry
	// tracer.
	zipkin *zipkinConfig
}

func buildTracing(path string, t *hcmv3.HttpConnectionManager_Tracing, cfg *config) (*tracingConfig, error) {
	// client_sampling and overall_sampling are accepted at 100% (what Istio
	// writes; the default, the only value traceDecision models); custom_tags
	// and max_path_tag_length only shape exported spans, which the sim does
	// not export.
	if err := checkFields(path, t, "provider", "random_sampling", "client_sampling", "overall_sampling",
		"custom_tags", "max_path_tag_length"); err != nil {
		return nil, err
	}
	if cs := t.GetClientSampling(); cs != nil && cs.GetValue() != 100 {
		return nil, unsupported(path+".client_sampling", "only 100%% (the default) is modelled")
	}
	if os := t.GetOverallSampling(); os != nil && os.GetValue() != 100 {
		return nil, unsupported(path+".overall_sampling", "only 100%% (the default) is modelled")
	}
	for i, ct := range t.GetCustomTags() {
		switch ct.GetType().(type) {
		case *tracingv3.CustomTag_Literal_, *tracingv3.CustomTag_Environment_, *tracingv3.CustomTag_RequestHeader, *tracingv3.CustomTag_Metadata_:
		default:
			return nil, unsupported(fmt.Sprintf("%s.custom_tags[%d]", path, i), "only literal, environment, request_header and metadata tags are modelled (as nothing: no span is exported)")
		}
	}
	p := t.GetProvider()
	if p == nil {
		return nil, unsupported(path+".provider", "tracing without a provider (a bootstrap-level tracer) is not modelled")
	}
	if err := checkFields(path+".provider", p, "name", "typed_config"); err != nil {
		return nil, err
	}
	tc := &tracingConfig{randomSampling: 10000}
	if rs := t.GetRandomSampling(); rs != nil {
		tc.randomSampling = uint64(math.Round(rs.GetValue() * 10000 / 100))
	}
	switch p.GetName() {
	case otelTracerName:
		if err := buildOTel(path, p); err != nil {
			return nil, err
		}
	case zipkinTracerName:
		zc, err := buildZipkin(path+".provider.typed_config", p.GetTypedConfig(), cfg)
		if err != nil {
			return nil, err
		}
		tc.zipkin = zc
	default:
		return nil, unsupported(path+".provider.name", "tracer %q is not modelled (only %s and %s)", p.GetName(), otelTracerName, zipkinTracerName)
	}
	return tc, nil
}

func buildOTel(path string, p *tracev3.Tracing_Http) error {
	var oc tracev3.OpenTelemetryConfig
	if err := unpack(path+".provider.typed_config", p.GetTypedConfig(), &oc); err != nil {
		return err
	}
	// The exporter is accepted and never used: the sim exports no span.
	if err := checkFields(path+".provider.typed_config", &oc, "grpc_service", "http_service", "service_name"); err != nil {
		return err
	}
	if oc.GetGrpcService() == nil && oc.GetHttpService() == nil {
		// 1.34–1.37 start such a tracer and log "no exporter configured";
		// later Envoy (the custom exporter's Driver::Driver) refuses it.
		return unsupported(path+".provider.typed_config.grpc_service", "an OpenTelemetry tracer without grpc_service or http_service is not modelled")
	}
	if oc.GetGrpcService() != nil && oc.GetHttpService() != nil {
		// opentelemetry_tracer_impl.cc Driver::Driver throws.
		return fmt.Errorf("envoysim: %s.provider.typed_config: OpenTelemetry Tracer cannot have both gRPC and HTTP exporters configured", path)
	}
	return nil
}

// startSpan is the tracer's Driver::startSpan for the request span, after
// traceDecision. A nil span is Envoy's Tracing::NullSpan.
func (tc *tracingConfig) startSpan(h hmap, traced bool, minor int) span {
	if tc.zipkin != nil {
		if s := tc.zipkin.startSpan(h, traced); s != nil {
			return s
		}
		return nil
	}
	if s := startOTelSpan(h, traced, minor); s != nil {
		return s
	}
	return nil
}

// span is a request's trace span as far as propagation goes: *otelSpan or
// *zipkinSpan. A nil span is Envoy's Tracing::NullSpan (injects nothing, no
// trace id); callers test for nil before calling.
type span interface {
	// spawnChild is Span::spawnChild with Tracing::EgressConfig, as the gRPC
	// async client calls it for the ext_proc stream.
	spawnChild() span
	// injected is what Span::injectContext sets, in order; each key replaces
	// any value of it (setRefKey).
	injected() []hkv
	// traceID is Span::getTraceId (%TRACE_ID%).
	traceID() string
}

// traceReason is Tracing::Reason as far as the sim can reach it.
type traceReason int

const (
	reasonNotTraceable traceReason = iota
	reasonSampling
	reasonServiceForced
	reasonClientForced
)

// The UUID request-id extension packs the reason into the version nibble of
// x-request-id (source/extensions/request_id/uuid/config.h).
const (
	uuidLength        = 36
	traceBytePosition = 14
	traceSampled      = '9'
	traceForced       = 'a'
	traceClient       = 'b'
	noTrace           = '4'
)

// traceDecision is ConnectionManagerUtility::mutateTracingRequestHeader with
// the default UUID request-id extension (pack_trace_reason and
// use_request_id_for_trace_sampling true), client_sampling and
// overall_sampling at their default 100%, and no route-level tracing: it
// may rewrite x-request-id's trace byte and says whether the request is
// traced.
func (tc *tracingConfig) traceDecision(h *hmap) bool {
	rid, ok := h.get("x-request-id")
	if !ok || len(rid) < 8 {
		return false // UUIDRequestIDExtension::getInteger: nullopt
	}
	// getInteger: the first 8 characters as hexadecimal (StringUtil::atoull,
	// base 16); the sim does not take strtoull's sign or 0x prefix.
	n, err := strconv.ParseUint(rid[:8], 16, 64)
	if err != nil {
		return false
	}
	result := n % 10000
	reason := reasonNotTraceable // getTraceReason
	if len(rid) == uuidLength {
		switch rid[traceBytePosition] {
		case traceForced:
			reason = reasonServiceForced
		case traceSampled:
			reason = reasonSampling
		case traceClient:
			reason = reasonClientForced
		}
	}
	if reason == reasonNotTraceable {
		// x-envoy-force-trace (ServiceForced) never gets here: the HCM's
		// cleanInternalHeaders removed it from every external request.
		if _, ok := h.get("x-client-trace-id"); ok {
			reason = reasonClientForced // client_sampling 100%
			setTraceByte(h, rid, traceClient)
		} else if result < tc.randomSampling { // featureEnabled("tracing.random_sampling", ..., result)
			reason = reasonSampling
			setTraceByte(h, rid, traceSampled)
		}
	}
	// overall_sampling is 100% (the only value modelled): never NotTraceable here.
	return reason != reasonNotTraceable
}

// setTraceByte is UUIDRequestIDExtension::setTraceReason: only a 36-byte id
// is rewritten.
func setTraceByte(h *hmap, rid string, c byte) {
	if len(rid) != uuidLength {
		return
	}
	b := []byte(rid)
	b[traceBytePosition] = c
	h.set("x-request-id", string(b))
}

// otelSpan is an OpenTelemetry span as far as propagation goes.
type otelSpan struct {
	trace      string // 32 lowercase hex digits
	spanID     string // 16 lowercase hex digits
	sampled    bool
	tracestate string
}

// startOTelSpan is opentelemetry_tracer_impl.cc Driver::startSpan; nil is
// a NullSpan.
func startOTelSpan(h hmap, traced bool, minor int) *otelSpan {
	tp, present := h.get("traceparent") // TRACE_PARENT.get: the first value
	if !present {
		// Tracer::startSpan(..., tracing_decision, ...): a new trace.
		return &otelSpan{trace: randomHex(2), spanID: randomHex(1), sampled: traced}
	}
	parent, ok := extractSpanContext(tp)
	if !ok {
		// "Unable to extract span context": a NullSpan.
		return nil
	}
	var states []string
	for _, e := range h {
		if e.k == "tracestate" {
			states = append(states, e.v)
		}
	}
	s := &otelSpan{trace: parent.traceID, spanID: randomHex(1), sampled: parent.sampled,
		tracestate: strings.Join(states, ",")}
	if !traced && minor >= minorOTelRespectsDecision {
		s.sampled = false
	}
	return s
}

// spawnChild is Span::spawnChild: same trace, sampled flag and tracestate,
// a new span id.
func (s *otelSpan) spawnChild() span {
	c := *s
	c.spanID = randomHex(1)
	return &c
}

// traceparent is the value Span::injectContext writes: version 00 always,
// the trace flags byte is the sampled bit.
func (s *otelSpan) traceparent() string {
	flags := "00"
	if s.sampled {
		flags = "01"
	}
	return "00-" + s.trace + "-" + s.spanID + "-" + flags
}

// injected is Span::injectContext: traceparent, then tracestate, set even
// when empty.
func (s *otelSpan) injected() []hkv {
	return []hkv{{"traceparent", s.traceparent()}, {"tracestate", s.tracestate}}
}

func (s *otelSpan) traceID() string { return s.trace }

// spanContext is what SpanContextExtractor keeps of a traceparent.
type spanContext struct {
	traceID string
	sampled bool
}

// extractSpanContext is SpanContextExtractor::extractSpanContext's
// validation: 55 characters, four '-'-separated fields (empty ones
// skipped) of 2, 32, 16 and 2 hex digits (either case; the version is not
// otherwise checked), trace id and parent id not all zeros; sampled is bit 0
// of the flags. The trace id is kept as bytes (SpanContext → span_.trace_id)
// and written back in lowercase.
func extractSpanContext(v string) (spanContext, bool) {
	if len(v) != 55 {
		return spanContext{}, false
	}
	var parts []string
	for _, p := range strings.Split(v, "-") {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) != 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return spanContext{}, false
	}
	for _, p := range parts {
		if _, err := hex.DecodeString(p); err != nil {
			return spanContext{}, false
		}
	}
	if strings.Trim(parts[1], "0") == "" || strings.Trim(parts[2], "0") == "" {
		return spanContext{}, false
	}
	flags, _ := hex.DecodeString(parts[3])
	return spanContext{traceID: strings.ToLower(parts[1]), sampled: flags[0]&1 == 1}, true
}

// randomHex returns n random 64-bit numbers as Hex::uint64ToHex does
// (16 zero-padded lowercase hex digits each).
func randomHex(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			panic(err)
		}
		fmt.Fprintf(&b, "%016x", binary.BigEndian.Uint64(r[:]))
	}
	return b.String()
}

// EnableTracing returns bootstrapYAML (YAML or JSON) with an OpenTelemetry
// `tracing` block added to the HTTP connection manager of every listener
// named "ingress" or "egress", so that an end-to-end test runs
// envoy/standalone.yaml with request tracing on:
//
//	tracing:
//	  provider:
//	    name: envoy.tracers.opentelemetry
//	    typed_config:
//	      "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
//	      grpc_service: {envoy_grpc: {cluster_name: otel_collector}}
//	      service_name: llmux-e2e
//
// random_sampling is left at its default (100%). The cluster otel_collector
// need not exist: Envoy builds the exporter's gRPC client with the cluster
// check skipped (Driver::Driver, factoryForGrpcService(..., true)) and a
// missing cluster only fails the exports; the sim exports nothing. The
// result is JSON (Envoy and Start accept it). An error is returned if no
// such listener exists or one already has tracing.
func EnableTracing(bootstrapYAML []byte) ([]byte, error) {
	b, err := decodeBootstrap(bootstrapYAML)
	if err != nil {
		return nil, err
	}
	oc := &tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "otel_collector"}}},
		ServiceName: "llmux-e2e",
	}
	if err := addTracing(b, otelTracerName, oc); err != nil {
		return nil, fmt.Errorf("envoysim: EnableTracing: %w", err)
	}
	return marshalBootstrap("EnableTracing", b)
}

// addTracing adds an HCM tracing block with the given tracer to the HTTP
// connection manager of every listener named "ingress" or "egress". It
// fails if there is none or one already has tracing.
func addTracing(b *bootstrapv3.Bootstrap, tracer string, typed proto.Message) error {
	tcAny, err := anypb.New(typed)
	if err != nil {
		return err
	}
	n := 0
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != "ingress" && l.GetName() != "egress" {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetTypedConfig().GetTypeUrl() != "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
					continue
				}
				var hcm hcmv3.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&hcm); err != nil {
					return fmt.Errorf("listener %s: %w", l.GetName(), err)
				}
				if hcm.GetTracing() != nil {
					return fmt.Errorf("listener %s already has tracing", l.GetName())
				}
				hcm.Tracing = &hcmv3.HttpConnectionManager_Tracing{Provider: &tracev3.Tracing_Http{
					Name: tracer, ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: tcAny}}}
				a, err := anypb.New(&hcm)
				if err != nil {
					return err
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
				n++
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("no HTTP connection manager on a listener named ingress or egress")
	}
	return nil
}

// marshalBootstrap encodes b as JSON (Envoy and Start accept it).
func marshalBootstrap(fn string, b *bootstrapv3.Bootstrap) ([]byte, error) {
	out, err := protojson.MarshalOptions{Indent: "  ", UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("envoysim: %s: %w", fn, err)
	}
	return out, nil
}
