package envoysim

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
)

// zipkinTracing is the HCM tracing block of docs/envoy-facts.md fact 11
// (flow YAML) with the collector on cluster "other"; zc adds ZipkinConfig
// fields, extra HCM tracing fields such as random_sampling.
func zipkinTracing(zc, extra string) string {
	return `tracing: {provider: {name: envoy.tracers.zipkin, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: other, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_JSON` +
		prefixComma(zc) + `}}` + prefixComma(extra) + `}`
}

const b3Log = `{json_format: {trace: "%TRACE_ID%", span: "%REQ(x-b3-spanid)%", rid: "%REQ(x-request-id)%"}}`

var (
	hex16RE = regexp.MustCompile(`^[0-9a-f]{16}$`)
	hex32RE = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// b3Keys are the headers Envoy's Zipkin tracer injects (ZipkinSpan::injectContext).
var b3Keys = []string{"x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled"}

// b3Want is what a request with Zipkin tracing should show.
type b3Want struct {
	// trace is the trace id both the ext_proc stream and the upstream
	// carry: a literal value, "new16"/"new32" (a new trace of 16 or 32
	// hex digits whose root span id is its low 64 bits), or "none" (a
	// NullSpan: nothing injected).
	trace string
	// upSpan is the upstream x-b3-spanid: a literal value (the client's,
	// shared) or "" for a new one.
	upSpan string
	// upParent is the upstream x-b3-parentspanid values (nil: none).
	upParent []string
	sampled  string
}

const (
	cTrace64  = "00f067aa0ba902b7"
	cTrace128 = "4bf92f3577b34da6a3ce929d0e0e4736"
	cSpan     = "a2fb4a1d1a96d312"
	cParent   = "0020000000000001"
	cRID      = "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17"
)

// checkB3 asserts one traced exchange against w. client is the request's
// headers (for the client's span id and what must pass through).
func checkB3(t *testing.T, x tracedExchange, client []string, w b3Want) {
	t.Helper()
	// The processor sees the client's headers as sent: Envoy injects into
	// the downstream headers only at the router.
	for _, k := range b3Keys {
		if got, _ := hv(x.reqHdrs, k); got != header(client, k) {
			t.Errorf("processor's request_headers %s %q, want the client's %q", k, got, header(client, k))
		}
	}
	for _, k := range []string{"b3", "x-b3-flags", "traceparent", "tracestate"} {
		if v := x.md.Get(k); len(v) != 0 {
			t.Errorf("ext_proc metadata %s %q: the Zipkin tracer injects only x-b3-*", k, v)
		}
	}
	// Headers Envoy never writes pass through to the upstream as sent.
	for _, k := range []string{"b3", "x-b3-flags", "traceparent"} {
		if got, want := x.up.header.Values(k), header(client, k); first(got) != want || len(got) > 1 {
			t.Errorf("upstream %s %q, want the client's %q untouched", k, got, want)
		}
	}
	wantRID := cRID[:14] + "9" + cRID[15:]
	if got := x.up.header.Get("x-request-id"); got != wantRID {
		t.Errorf("x-request-id %q, want %q (the decision's mark does not depend on B3)", got, wantRID)
	}
	if w.trace == "none" {
		for _, k := range b3Keys {
			if v := x.md.Get(k); len(v) != 0 {
				t.Errorf("ext_proc metadata %s %q for a NullSpan", k, v)
			}
			if got, want := x.up.header.Values(k), header(client, k); first(got) != want || len(got) > 1 {
				t.Errorf("upstream %s %q, want the client's %q untouched (NullSpan)", k, got, want)
			}
		}
		if x.log["trace"] != nil {
			t.Errorf("%%TRACE_ID%% %v for a NullSpan, want null", x.log["trace"])
		}
		return
	}
	one := func(where string, v []string) string {
		if len(v) != 1 {
			t.Errorf("%s: %d values %q, want one", where, len(v), v)
		}
		return first(v)
	}
	xTrace, xSpan := one("ext_proc x-b3-traceid", x.md.Get("x-b3-traceid")), one("ext_proc x-b3-spanid", x.md.Get("x-b3-spanid"))
	xParent, xSampled := one("ext_proc x-b3-parentspanid", x.md.Get("x-b3-parentspanid")), one("ext_proc x-b3-sampled", x.md.Get("x-b3-sampled"))
	uTrace, uSpan := one("upstream x-b3-traceid", x.up.header.Values("x-b3-traceid")), one("upstream x-b3-spanid", x.up.header.Values("x-b3-spanid"))
	uSampled := one("upstream x-b3-sampled", x.up.header.Values("x-b3-sampled"))
	switch w.trace {
	case "new16", "new32":
		re := hex16RE
		if w.trace == "new32" {
			re = hex32RE
		}
		if !re.MatchString(uTrace) || uTrace == cTrace64 || uTrace == cTrace128 {
			t.Errorf("upstream x-b3-traceid %q, want a new %s-digit trace id", uTrace, w.trace[3:])
		}
		// tracer.cc Tracer::startSpan: one random number is the root
		// span's id and its trace id's low half.
		if uSpan != uTrace[len(uTrace)-16:] {
			t.Errorf("root span id %s, want the trace id's low 64 bits %s", uSpan, uTrace[len(uTrace)-16:])
		}
	default:
		if uTrace != w.trace {
			t.Errorf("upstream x-b3-traceid %q, want %q", uTrace, w.trace)
		}
	}
	if xTrace != uTrace || x.log["trace"] != uTrace {
		t.Errorf("trace ids: ext_proc %q, upstream %q, %%TRACE_ID%% %v: one trace", xTrace, uTrace, x.log["trace"])
	}
	if !hex16RE.MatchString(uSpan) || !hex16RE.MatchString(xSpan) {
		t.Errorf("span ids %q (upstream), %q (ext_proc): want 16 hex digits", uSpan, xSpan)
	}
	if w.upSpan != "" && uSpan != w.upSpan {
		t.Errorf("upstream x-b3-spanid %s, want %s", uSpan, w.upSpan)
	}
	if w.upSpan == "" && uSpan == cSpan {
		t.Errorf("upstream x-b3-spanid %s is the client's: want a new span", uSpan)
	}
	if got := x.up.header.Values("x-b3-parentspanid"); strings.Join(got, ",") != strings.Join(w.upParent, ",") {
		t.Errorf("upstream x-b3-parentspanid %q, want %q", got, w.upParent)
	}
	// The ext_proc stream's span: a child (CLIENT_SEND) of the request
	// span, whatever shared_span_context says.
	if xParent != uSpan || xSpan == uSpan || xSpan == cSpan {
		t.Errorf("ext_proc span %s (parent %s), request span %s, client span %s: want a new child of the request span", xSpan, xParent, uSpan, cSpan)
	}
	if xSampled != w.sampled || uSampled != w.sampled {
		t.Errorf("x-b3-sampled: ext_proc %q, upstream %q; want %q", xSampled, uSampled, w.sampled)
	}
	if x.log["span"] != uSpan {
		t.Errorf("access log %%REQ(x-b3-spanid)%% %v, want the router's %s", x.log["span"], uSpan)
	}
}

// TestFactB3OnExtProcStream is fact 11 (docs/envoy-facts.md): with the
// HCM's Zipkin tracing (zipkin_tracer_impl.cc Driver::startSpan) the
// request span continues the client's B3 context: the single b3 header
// wins, else x-b3-traceid + x-b3-spanid (span_context_extractor.cc
// extractSpanContext / extractSpanContextFromB3SingleFormat). On a listener
// without traffic_direction (operation Ingress) and shared_span_context
// true (the default) the request span shares the client's span id and
// parent id (tracer.cc Tracer::startSpan, SERVER_RECV); with false it is a
// new span whose parent is the client's. The ext_proc stream gets a child
// span (grpc/async_client_impl.cc spawnChild with Tracing::EgressConfig:
// CLIENT_SEND, new id, parent = the request span) as x-b3-traceid,
// x-b3-spanid, x-b3-parentspanid, x-b3-sampled in its initial metadata;
// the router sets the request span's on the upstream request
// (upstream_request.cc onPoolReady → ZipkinSpan::injectContext), only the
// parent header when the span has a parent; b3, x-b3-flags, traceparent
// pass untouched. No context: a new trace, 64-bit unless trace_id_128bit,
// whose root span id is the trace id's low half. A header the extractor
// rejects leaves a NullSpan, as with the OpenTelemetry tracer. Same on
// 1.34, 1.37 and newest.
func TestFactB3OnExtProcStream(t *testing.T) {
	multi := func(trace string, more ...string) []string {
		return append([]string{"x-b3-traceid", trace, "x-b3-spanid", cSpan}, more...)
	}
	for _, version := range []string{"1.34", Envoy137, ""} {
		for _, tc := range []struct {
			name string
			zc   string // extra ZipkinConfig fields
			hdr  []string
			w    b3Want
		}{
			{"multi 64-bit, parent, sampled", "", multi(cTrace64, "x-b3-parentspanid", cParent, "x-b3-sampled", "1"),
				b3Want{cTrace64, cSpan, []string{cParent}, "1"}},
			{"multi 128-bit, no parent, no flag", "", multi(cTrace128),
				b3Want{cTrace128, cSpan, nil, "1"}},
			{"multi, shared_span_context false", "shared_span_context: false", multi(cTrace128, "x-b3-parentspanid", cParent),
				b3Want{cTrace128, "", []string{cSpan}, "1"}},
			{"multi, trace_id_128bit does not widen a 64-bit context", "trace_id_128bit: true", multi(cTrace64),
				b3Want{cTrace64, cSpan, nil, "1"}},
			{"multi 128-bit with a zero high half is 64-bit", "", multi("0000000000000000" + cTrace64),
				b3Want{cTrace64, cSpan, nil, "1"}},
			{"multi, upper case and 0x accepted (strtoull)", "", multi("0x" + strings.ToUpper(cTrace64)),
				b3Want{cTrace64, cSpan, nil, "1"}},
			{"multi, zero parent id is no parent: the client's passes", "", multi(cTrace64, "x-b3-parentspanid", "0000000000000000"),
				b3Want{cTrace64, cSpan, []string{"0000000000000000"}, "1"}},
			{"multi, x-b3-sampled 0", "", multi(cTrace64, "x-b3-sampled", "0"),
				b3Want{cTrace64, cSpan, nil, "0"}},
			{"single b3 64-bit, flag, parent", "", []string{"b3", cTrace64 + "-" + cSpan + "-1-" + cParent},
				b3Want{cTrace64, cSpan, []string{cParent}, "1"}},
			{"single b3 128-bit, debug", "", []string{"b3", cTrace128 + "-" + cSpan + "-d"},
				b3Want{cTrace128, cSpan, nil, "1"}},
			{"single b3 unsampled, shared_span_context false", "shared_span_context: false", []string{"b3", cTrace64 + "-" + cSpan + "-0"},
				b3Want{cTrace64, "", []string{cSpan}, "0"}},
			{"single b3 wins over multi", "", append([]string{"b3", cTrace64 + "-" + cSpan}, multi(cTrace128)...),
				b3Want{cTrace64, cSpan, nil, "1"}},
			{"b3 flag alone: a new trace", "", []string{"b3", "0"}, b3Want{"new16", "", nil, "0"}},
			{"no context", "", nil, b3Want{"new16", "", nil, "1"}},
			{"no context, trace_id_128bit", "trace_id_128bit: true", nil, b3Want{"new32", "", nil, "1"}},
			{"traceparent is not read", "", []string{"traceparent", "00-" + cTrace128 + "-" + cSpan + "-01"}, b3Want{"new16", "", nil, "1"}},
			{"x-b3-traceid alone: a new trace", "", []string{"x-b3-traceid", cTrace64}, b3Want{"new16", "", nil, "1"}},
			{"invalid x-b3-traceid", "", multi("xyz"), b3Want{trace: "none"}},
			{"x-b3-traceid overflows 64 bits", "", multi("1" + cTrace64), b3Want{trace: "none"}},
			{"invalid x-b3-spanid", "", []string{"x-b3-traceid", cTrace64, "x-b3-spanid", "a2fb4a1d1a96d31g"}, b3Want{trace: "none"}},
			{"invalid x-b3-parentspanid", "", multi(cTrace64, "x-b3-parentspanid", "xyz"), b3Want{trace: "none"}},
			{"b3 truncated", "", []string{"b3", cTrace64 + "-" + cSpan[:15]}, b3Want{trace: "none"}},
			{"b3 invalid flag", "", []string{"b3", cTrace64 + "-" + cSpan + "-c"}, b3Want{trace: "none"}},
			{"b3 not a flag", "", []string{"b3", "x"}, b3Want{trace: "none"}},
			{"invalid b3 hides valid multi", "", append([]string{"b3", "b970dafd-0d95-40aa-95d8-1d8725aebe40"}, multi(cTrace64)...), b3Want{trace: "none"}},
		} {
			name := tc.name + "/" + version
			if version == "" {
				name = tc.name + "/newest"
			}
			t.Run(name, func(t *testing.T) {
				e := start(t, tcfg{hcmExtra: zipkinTracing(tc.zc, ""), accessLog: b3Log, version: version}, nil)
				x := tracedGet(t, e, 1, append([]string{"x-request-id", cRID}, tc.hdr...)...)
				checkB3(t, x, tc.hdr, tc.w)
			})
		}
	}
}

// TestFactB3Sampling: with Zipkin, a sampling state in the request
// (span_context_extractor.cc extractSampled: the b3 header's flag, '0'
// unsampled, '1' or 'd' sampled; else x-b3-sampled "1" or "true" sampled,
// any other value unsampled) overrides the HCM's decision
// (zipkin_tracer_impl.cc Driver::startSpan sampled.value_or(decision)),
// with or without a trace context; without one the decision
// (random_sampling, x-client-trace-id) decides. x-b3-flags is never read.
// The decision's x-request-id mark is the same as with any tracer.
func TestFactB3Sampling(t *testing.T) {
	ids := []string{"x-b3-traceid", cTrace64, "x-b3-spanid", cSpan}
	for _, tc := range []struct {
		name, version, sampling string
		hdr                     []string
		wantRID, wantSampled    string
	}{
		{"0%, no B3", Envoy137, "random_sampling: {value: 0}", nil, cRID, "0"},
		{"0%, ids, x-b3-sampled 1", Envoy137, "random_sampling: {value: 0}", append([]string{"x-b3-sampled", "1"}, ids...), cRID, "1"},
		{"0%, x-b3-sampled 1 alone", "1.34", "random_sampling: {value: 0}", []string{"x-b3-sampled", "1"}, cRID, "1"},
		{"0%, x-b3-sampled true alone", "", "random_sampling: {value: 0}", []string{"x-b3-sampled", "true"}, cRID, "1"},
		{"0%, b3 d alone", Envoy137, "random_sampling: {value: 0}", []string{"b3", "d"}, cRID, "1"},
		{"0%, ids, x-b3-flags 1 (not read)", Envoy137, "random_sampling: {value: 0}", append([]string{"x-b3-flags", "1"}, ids...), cRID, "0"},
		{"0%, x-client-trace-id", "", "random_sampling: {value: 0}", []string{"x-client-trace-id", "c1"}, cRID[:14] + "b" + cRID[15:], "1"},
		{"100%, ids, x-b3-sampled 0", Envoy137, "", append([]string{"x-b3-sampled", "0"}, ids...), cRID[:14] + "9" + cRID[15:], "0"},
		{"100%, x-b3-sampled yes (not 1 or true)", "1.34", "", append([]string{"x-b3-sampled", "yes"}, ids...), cRID[:14] + "9" + cRID[15:], "0"},
		{"100%, b3 flag 0 at its place", "", "", []string{"b3", cTrace64 + "-" + cSpan + "-0-" + cParent}, cRID[:14] + "9" + cRID[15:], "0"},
		{"100%, ids without a flag", Envoy137, "", ids, cRID[:14] + "9" + cRID[15:], "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{hcmExtra: zipkinTracing("", tc.sampling), accessLog: b3Log, version: tc.version}, nil)
			x := tracedGet(t, e, 1, append([]string{"x-request-id", cRID}, tc.hdr...)...)
			if got, want := x.up.header.Values("x-b3-sampled"), []string{tc.wantSampled}; strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("upstream x-b3-sampled %q, want %q", got, want)
			}
			if got := x.md.Get("x-b3-sampled"); len(got) != 1 || got[0] != tc.wantSampled {
				t.Errorf("ext_proc x-b3-sampled %q, want [%s]", got, tc.wantSampled)
			}
			if got := x.up.header.Get("x-request-id"); got != tc.wantRID {
				t.Errorf("x-request-id %q, want %q", got, tc.wantRID)
			}
			if got, want := x.up.header.Get("x-b3-flags"), header(tc.hdr, "x-b3-flags"); got != want {
				t.Errorf("upstream x-b3-flags %q, want the client's %q", got, want)
			}
			if tr := x.up.header.Get("x-b3-traceid"); x.log["trace"] != tr || !hex16RE.MatchString(tr) {
				t.Errorf("%%TRACE_ID%% %v, upstream x-b3-traceid %q: an unsampled span still has a 16-digit trace id", x.log["trace"], tr)
			}
		})
	}
}

// TestFactB3TracingOff: without an HCM tracing block (NullSpan) B3 headers
// are neither read nor written: the ext_proc stream has none, the client's
// reach the upstream untouched.
func TestFactB3TracingOff(t *testing.T) {
	hdr := []string{"x-b3-traceid", cTrace64, "x-b3-spanid", cSpan, "x-b3-sampled", "1", "b3", cTrace64 + "-" + cSpan + "-1"}
	e := start(t, tcfg{accessLog: b3Log}, nil)
	x := tracedGet(t, e, 1, append([]string{"x-request-id", cRID}, hdr...)...)
	for _, k := range append([]string{"b3"}, b3Keys...) {
		if v := x.md.Get(k); len(v) != 0 {
			t.Errorf("ext_proc metadata %s %q without tracing", k, v)
		}
		if got, want := x.up.header.Values(k), header(hdr, k); first(got) != want || len(got) > 1 {
			t.Errorf("upstream %s %q, want the client's %q", k, got, want)
		}
	}
	if x.log["trace"] != nil || x.log["span"] != cSpan || x.up.header.Get("x-request-id") != cRID {
		t.Errorf("access log %v, x-request-id %q: want no trace id, the client's span, the id unmarked", x.log, x.up.header.Get("x-request-id"))
	}
}

// TestZipkinTracingConfig: what the sim accepts of a Zipkin tracing block.
// Envoy's own refusals (otherErr): a collector cluster that does not exist
// (zipkin_tracer_impl.cc Driver::Driver checkCluster), no collector,
// collector_endpoint_version unset or GRPC (span_buffer.cc
// makeSerializer), fields 1.34/1.35 do not know (collector_service,
// trace_context_option: changelogs/1.36.0.yaml). The sim's
// (*UnsupportedError): USE_B3_WITH_W3C_PROPAGATION, split_spans_for_request,
// timestamp_trace_ids, spawn_upstream_span, sampling other than 100% for
// client/overall, formatter custom tags.
func TestZipkinTracingConfig(t *testing.T) {
	z := func(fields string) string {
		return `tracing: {provider: {name: envoy.tracers.zipkin, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig` + prefixComma(fields) + `}}}`
	}
	const legacy = `collector_cluster: other, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_JSON`
	const service = `collector_service: {http_uri: {uri: "http://zipkin.istio-system:9411/api/v2/spans", cluster: other, timeout: 5s}, request_headers_to_add: [{header: {key: x-token, value: t}}]}, collector_endpoint_version: HTTP_JSON`
	// The block Istio writes (pilot/pkg/networking/core/tracing.go
	// zipkinConfig, configureSampling, configureCustomTags).
	const istio = `tracing: {client_sampling: {value: 100}, overall_sampling: {value: 100}, random_sampling: {value: 1}, max_path_tag_length: 256, ` +
		`custom_tags: [{tag: istio.canonical_service, literal: {value: llmux}}, {tag: pod, environment: {name: POD_NAME, default_value: x}}, ` +
		`{tag: user, request_header: {name: x-user}}, {tag: istio.authorization.dry_run.allow_policy.name, metadata: {kind: {request: {}}, metadata_key: {key: envoy.filters.http.rbac, path: [{key: shadow_effective_policy_id}]}}}], ` +
		`provider: {name: envoy.tracers.zipkin, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, ` +
		`collector_cluster: other, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_JSON, collector_hostname: zipkin.istio-system, ` +
		`trace_id_128bit: true, shared_span_context: false}}}`
	for _, tc := range []struct {
		name, version, hcm string
		unsupported        string // the refused field path's suffix; "" = accepted
		otherErr           bool
	}{
		{"legacy collector", "", z(legacy), "", false},
		{"HTTP_PROTO, hostname, 128-bit, not shared", "1.34", z(`collector_cluster: other, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_PROTO, collector_hostname: h, trace_id_128bit: true, shared_span_context: false`), "", false},
		{"Istio's block", "1.34", istio, "", false},
		{"collector_service, 1.36", "1.36", z(service), "", false},
		{"collector_service, newest", "", z(service), "", false},
		{"collector_service, 1.35", "1.35", z(service), "", true},
		{"collector_service, unknown cluster", "", z(strings.Replace(service, "cluster: other", "cluster: nowhere", 1)), "", true},
		{"unknown collector cluster", "", z(strings.Replace(legacy, "other", "nowhere", 1)), "", true},
		{"no collector_endpoint", "", z(`collector_cluster: other, collector_endpoint_version: HTTP_JSON`), "", true},
		{"endpoint version unset", "", z(`collector_cluster: other, collector_endpoint: /api/v2/spans`), "", true},
		{"endpoint version GRPC", "", z(`collector_cluster: other, collector_endpoint: /api/v2/spans, collector_endpoint_version: GRPC`), "", true},
		{"W3C propagation, newest", "", z(legacy + `, trace_context_option: USE_B3_WITH_W3C_PROPAGATION`), "typed_config.trace_context_option", false},
		{"W3C propagation, 1.35", "1.35", z(legacy + `, trace_context_option: USE_B3_WITH_W3C_PROPAGATION`), "", true},
		{"split_spans_for_request", "", z(legacy + `, split_spans_for_request: true`), "typed_config.split_spans_for_request", false},
		{"timestamp_trace_ids", "", z(legacy + `, timestamp_trace_ids: true`), "typed_config.timestamp_trace_ids", false},
		{"spawn_upstream_span", "", zipkinTracing("", "spawn_upstream_span: true"), "tracing.spawn_upstream_span", false},
		{"client_sampling 50", "", zipkinTracing("", "client_sampling: {value: 50}"), "tracing.client_sampling", false},
		{"overall_sampling 50", "", zipkinTracing("", "overall_sampling: {value: 50}"), "tracing.overall_sampling", false},
		{"formatter custom tag", "", zipkinTracing("", `custom_tags: [{tag: m, value: "%REQ(:METHOD)%"}]`), "tracing.custom_tags[0]", false},
		{"unknown tracer", "", `tracing: {provider: {name: envoy.tracers.datadog, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.DatadogConfig, collector_cluster: other, service_name: s}}}`, "tracing.provider.name", false},
	} {
		t.Run(tc.name, func(t *testing.T) { checkTracingConfig(t, tc.version, tc.hcm, tc.unsupported, tc.otherErr) })
	}
}

// TestEnableZipkinTracing runs envoy/standalone.yaml through
// EnableZipkinTracing (64- and 128-bit): the collector cluster is added,
// ingress requests reach the processor with a child span's B3 headers in
// the stream metadata (the client's trace), a request without context
// starts a trace of the configured width, and egress requests (llmux's own
// provider calls) carry the egress listener's request span (shared: the
// caller's span id) to the provider.
func TestEnableZipkinTracing(t *testing.T) {
	doc, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnableZipkinTracing([]byte(strings.Replace(tcfg{}.yaml(), "name: ingress", "name: other_listener", 1)), false); err == nil {
		t.Error("EnableZipkinTracing without ingress/egress listeners: no error")
	}
	for _, wide := range []bool{false, true} {
		t.Run(map[bool]string{false: "64-bit", true: "128-bit"}[wide], func(t *testing.T) {
			traced, err := EnableZipkinTracing(doc, wide)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := EnableZipkinTracing(traced, wide); err == nil {
				t.Error("EnableZipkinTracing twice: no error")
			}
			if _, err := EnableTracing(traced); err == nil {
				t.Error("EnableTracing after EnableZipkinTracing: no error")
			}
			e, s, proc := startStandalone(t, traced)

			res := e.get(t, "/v1/models", "x-b3-traceid", cTrace128, "x-b3-spanid", cSpan, "x-b3-sampled", "1")
			ps := proc.next(t)
			md, _ := metadata.FromIncomingContext(ps.st.Context())
			if first(md.Get("x-b3-traceid")) != cTrace128 || first(md.Get("x-b3-parentspanid")) != cSpan ||
				!hex16RE.MatchString(first(md.Get("x-b3-spanid"))) || first(md.Get("x-b3-spanid")) == cSpan || first(md.Get("x-b3-sampled")) != "1" {
				t.Errorf("ingress: ext_proc metadata %v, want a child of span %s in trace %s", md, cSpan, cTrace128)
			}
			ps.end(errors.New("done")) // the request's outcome is not the point
			_ = wait(t, res)

			res = e.get(t, "/v1/models")
			ps = proc.next(t)
			md, _ = metadata.FromIncomingContext(ps.st.Context())
			re := map[bool]*regexp.Regexp{false: hex16RE, true: hex32RE}[wide]
			if tr := first(md.Get("x-b3-traceid")); !re.MatchString(tr) || !strings.HasSuffix(tr, first(md.Get("x-b3-parentspanid"))) {
				t.Errorf("ingress, no context: ext_proc metadata %v, want a new trace (%v) whose root span is the parent", md, re)
			}
			ps.end(errors.New("done"))
			_ = wait(t, res)

			e.base = "http://" + s.Addr("egress")
			res = e.get(t, "/v1/messages", "x-llmux-upstream", "anthropic", "x-b3-traceid", cTrace64, "x-b3-spanid", cSpan, "x-b3-sampled", "1")
			_ = wait(t, res)
			got := e.up.got(t)
			if got.header.Get("x-b3-traceid") != cTrace64 || got.header.Get("x-b3-spanid") != cSpan || got.header.Get("x-b3-sampled") != "1" {
				t.Errorf("egress: provider B3 %q %q %q, want trace %s, the caller's span %s (shared_span_context), sampled",
					got.header.Get("x-b3-traceid"), got.header.Get("x-b3-spanid"), got.header.Get("x-b3-sampled"), cTrace64, cSpan)
			}
		})
	}
}

// TestAtoull16 pins StringUtil::atoull's base-16 cases the B3 extractor
// meets (strtoull: sign, 0x prefix, overflow).
func TestAtoull16(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"00f067aa0ba902b7", 0x00f067aa0ba902b7, true},
		{"ABC", 0xabc, true},
		{"0x1f", 0x1f, true},
		{"+1", 1, true},
		{"-1", ^uint64(0), true},
		{"ffffffffffffffff", ^uint64(0), true},
		{"10000000000000000", 0, false},
		{"", 0, false},
		{"0x", 0, false},
		{"0xg", 0, false},
		{"12g", 0, false},
		{"-", 0, false},
	} {
		got, ok := atoull16(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("atoull16(%q) = %x, %v; want %x, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
