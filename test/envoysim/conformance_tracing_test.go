package envoysim

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"
)

// otelTracing is the HCM tracing block of docs/envoy-facts.md fact 10
// (flow YAML); extra adds fields such as random_sampling.
func otelTracing(extra string) string {
	return `tracing: {provider: {name: envoy.tracers.opentelemetry, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig, grpc_service: {envoy_grpc: {cluster_name: otel_collector}}, service_name: llmux}}` + prefixComma(extra) + `}`
}

const traceLog = `{json_format: {trace: "%TRACE_ID%", tp: "%REQ(traceparent)%", rid: "%REQ(x-request-id)%"}}`

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$`)

// parsedTP splits a traceparent Envoy wrote; ok is false if it is not of
// Span::injectContext's form.
type parsedTP struct{ trace, span, flags string }

func parseTP(v string) (parsedTP, bool) {
	m := traceparentRE.FindStringSubmatch(v)
	if m == nil {
		return parsedTP{}, false
	}
	return parsedTP{m[1], m[2], m[3]}, true
}

// tracedExchange is what one proxied GET showed: the ext_proc stream's
// incoming gRPC metadata and request_headers message, the upstream request
// and the access log line.
type tracedExchange struct {
	md      metadata.MD
	reqHdrs *extprocsvc.ProcessingRequest
	up      upstreamReq
	log     map[string]any
}

// tracedGet sends GET / with the given header pairs through ext_proc
// (headers in both directions answered with CONTINUE) and collects what
// every party saw. n is the access log line number (1-based).
func tracedGet(t *testing.T, e *env, n int, hdr ...string) tracedExchange {
	t.Helper()
	res := e.get(t, "/", hdr...)
	ps := e.proc.next(t)
	md, _ := metadata.FromIncomingContext(ps.st.Context())
	m := ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 200)
	up := e.up.got(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	logs, err := e.sim.WaitAccessLogs(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	x := tracedExchange{md: md, reqHdrs: m, up: up}
	if len(logs) >= n { // json_format lines only
		x.log = logs[n-1]
	}
	return x
}

// TestFactTraceContextOnExtProcStream is fact 10 (docs/envoy-facts.md):
// with the HCM's OpenTelemetry tracing on, Envoy starts a request span
// before the filter chain (conn_manager_impl.cc ActiveStream::traceRequest →
// opentelemetry_tracer_impl.cc Driver::startSpan): a child of the client's
// traceparent when SpanContextExtractor::extractSpanContext accepts it (same
// trace id, a new span id, the parent's sampled flag: tracer.cc
// Tracer::startSpan "Respect the previous span's sampled flag", and its
// tracestate), a new trace otherwise; a traceparent it rejects leaves the
// request with a Tracing::NullSpan. The ext_proc stream (ext_proc.cc
// Filter::openStream setParentSpan(activeSpan()) .setSampled(absl::nullopt))
// gets, from Grpc::AsyncStreamImpl, a CHILD span of its own, injected into
// the gRPC initial metadata (async_client_impl.cc AsyncStreamImpl::initialize
// → Span::injectContext); the router injects the request span into the
// upstream request (upstream_request.cc UpstreamRequest::onPoolReady →
// activeSpan().injectContext), replacing the client's traceparent and
// tracestate, and into the downstream request headers the access log reads.
// Span::injectContext sets tracestate even when it is empty. %TRACE_ID% is
// the span's trace id (http_specific_formatter.cc TraceIDFormatter), "-" /
// null for a NullSpan. The sampling decision (random_sampling 100% by
// default) marks x-request-id's trace byte '9' (conn_manager_utility.cc
// mutateTracingRequestHeader, request_id/uuid/config.cc setTraceReason).
// Same on 1.34–1.37 (and 1.38).
func TestFactTraceContextOnExtProcStream(t *testing.T) {
	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
		rid         = "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17"
	)
	for _, version := range []string{"1.34", Envoy137, ""} {
		for _, tc := range []struct {
			name string
			hdr  []string
			// wantTrace: "" = a fresh trace id; "none" = no span (NullSpan).
			wantTrace, wantFlags, wantState string
		}{
			{"sampled parent", []string{"traceparent", "00-" + clientTrace + "-" + clientSpan + "-01", "tracestate", "vendor=x"},
				clientTrace, "01", "vendor=x"},
			{"unsampled parent", []string{"traceparent", "00-" + clientTrace + "-" + clientSpan + "-00"},
				clientTrace, "00", ""},
			{"other flags bits", []string{"traceparent", "00-" + clientTrace + "-" + clientSpan + "-03"},
				clientTrace, "01", ""},
			{"upper-case hex, unknown version", []string{"traceparent", "cc-" + strings.ToUpper(clientTrace) + "-" + clientSpan + "-01"},
				clientTrace, "01", ""},
			{"no traceparent", nil, "", "01", ""},
			{"tracestate without traceparent", []string{"tracestate", "vendor=x"}, "", "01", ""},
			{"too short", []string{"traceparent", "00-" + clientTrace[:31] + "-" + clientSpan + "-01"}, "none", "", ""},
			{"zero trace id", []string{"traceparent", "00-" + strings.Repeat("0", 32) + "-" + clientSpan + "-01"}, "none", "", ""},
			{"zero parent id", []string{"traceparent", "00-" + clientTrace + "-" + strings.Repeat("0", 16) + "-01"}, "none", "", ""},
			{"not hex", []string{"traceparent", "00-" + clientTrace[:31] + "g-" + clientSpan + "-01"}, "none", "", ""},
			{"trailing hyphen (56 characters)", []string{"traceparent", "00-" + clientTrace + "-" + clientSpan + "-01-"}, "none", "", ""},
			{"bad hyphenation", []string{"traceparent", "00-" + clientTrace + clientSpan[:1] + "-" + clientSpan[1:] + "-01"}, "none", "", ""},
		} {
			name := tc.name + "/" + version
			if version == "" {
				name = tc.name + "/newest"
			}
			t.Run(name, func(t *testing.T) {
				e := start(t, tcfg{hcmExtra: otelTracing(""), accessLog: traceLog, version: version}, nil)
				hdr := append([]string{"x-request-id", rid}, tc.hdr...)
				x := tracedGet(t, e, 1, hdr...)
				clientTP, _ := hv(x.reqHdrs, "traceparent")
				if want := header(tc.hdr, "traceparent"); clientTP != want {
					t.Errorf("processor's request_headers traceparent %q, want the client's %q", clientTP, want)
				}
				// The decision (100%) marks the request id for every case,
				// NullSpan included: it precedes startSpan.
				wantRID := rid[:14] + "9" + rid[15:]
				if got, _ := hv(x.reqHdrs, "x-request-id"); got != wantRID || x.up.header.Get("x-request-id") != wantRID || x.log["rid"] != wantRID {
					t.Errorf("x-request-id: processor %q, upstream %q, log %v; want %q", got, x.up.header.Get("x-request-id"), x.log["rid"], wantRID)
				}
				if tc.wantTrace == "none" {
					if v := x.md.Get("traceparent"); len(v) != 0 {
						t.Errorf("ext_proc metadata traceparent %q for a NullSpan", v)
					}
					if v := x.md.Get("tracestate"); len(v) != 0 {
						t.Errorf("ext_proc metadata tracestate %q for a NullSpan", v)
					}
					if got := x.up.header.Values("Traceparent"); len(got) != 1 || got[0] != clientTP {
						t.Errorf("upstream traceparent %q, want the client's %q untouched", got, clientTP)
					}
					if x.log["trace"] != nil || x.log["tp"] != clientTP {
						t.Errorf("access log %v: want trace null and the client's traceparent", x.log)
					}
					return
				}
				xp, ok := parseTP(first(x.md.Get("traceparent")))
				if !ok || len(x.md.Get("traceparent")) != 1 {
					t.Fatalf("ext_proc metadata traceparent %q", x.md.Get("traceparent"))
				}
				upTP := x.up.header.Values("Traceparent")
				up, ok := parseTP(first(upTP))
				if !ok || len(upTP) != 1 {
					t.Fatalf("upstream traceparent %q", upTP)
				}
				if tc.wantTrace != "" && xp.trace != tc.wantTrace {
					t.Errorf("ext_proc trace id %s, want the client's %s", xp.trace, tc.wantTrace)
				}
				if tc.wantTrace == "" && (xp.trace == clientTrace || strings.Trim(xp.trace, "0") == "") {
					t.Errorf("ext_proc trace id %s, want a fresh one", xp.trace)
				}
				if up.trace != xp.trace {
					t.Errorf("upstream trace id %s, ext_proc %s: one trace", up.trace, xp.trace)
				}
				if xp.span == up.span || xp.span == clientSpan || up.span == clientSpan {
					t.Errorf("span ids: client %s, request span (upstream) %s, ext_proc child %s: want three different ones", clientSpan, up.span, xp.span)
				}
				if xp.flags != tc.wantFlags || up.flags != tc.wantFlags {
					t.Errorf("flags: ext_proc %s, upstream %s; want %s", xp.flags, up.flags, tc.wantFlags)
				}
				// tracestate: set by Span::injectContext whatever its value.
				if got := x.md.Get("tracestate"); len(got) != 1 || got[0] != tc.wantState {
					t.Errorf("ext_proc metadata tracestate %q, want [%q]", got, tc.wantState)
				}
				if got := x.up.header.Values("Tracestate"); len(got) != 1 || got[0] != tc.wantState {
					t.Errorf("upstream tracestate %q, want [%q]", got, tc.wantState)
				}
				if x.log["trace"] != xp.trace {
					t.Errorf("access log %%TRACE_ID%% %v, want %s", x.log["trace"], xp.trace)
				}
				if x.log["tp"] != first(upTP) {
					t.Errorf("access log %%REQ(traceparent)%% %v, want the router's %s", x.log["tp"], first(upTP))
				}
			})
		}
	}
}

func header(kv []string, k string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == k {
			return kv[i+1]
		}
	}
	return ""
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// TestFactTracingOff: without an HCM tracing block the active span is a
// NullSpan: the ext_proc stream carries no trace context
// (AsyncStreamImpl::initialize injects nothing), the client's traceparent
// and tracestate reach the upstream untouched, %TRACE_ID% is "-" (null in
// JSON), and x-request-id keeps its trace byte (mutateTracingRequestHeader
// returns at once without tracingConfig()).
func TestFactTracingOff(t *testing.T) {
	const rid = "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17"
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name string
		hdr  []string
	}{
		{"client traceparent", []string{"traceparent", tp, "tracestate", "vendor=x"}},
		{"none", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{accessLog: `{text_format: "trace=%TRACE_ID%"}`}, nil)
			x := tracedGet(t, e, 1, append([]string{"x-request-id", rid}, tc.hdr...)...)
			if len(x.md.Get("traceparent")) != 0 || len(x.md.Get("tracestate")) != 0 {
				t.Errorf("ext_proc metadata carries trace context without tracing: %v", x.md)
			}
			if got, want := x.up.header.Values("Traceparent"), header(tc.hdr, "traceparent"); first(got) != want || len(got) > 1 || (want == "" && len(got) != 0) {
				t.Errorf("upstream traceparent %q, want the client's %q", got, want)
			}
			if got, want := x.up.header.Values("Tracestate"), header(tc.hdr, "tracestate"); first(got) != want || (want == "" && len(got) != 0) {
				t.Errorf("upstream tracestate %q, want the client's %q", got, want)
			}
			if x.up.header.Get("x-request-id") != rid {
				t.Errorf("x-request-id %q, want %q unchanged", x.up.header.Get("x-request-id"), rid)
			}
			if got := e.sim.AccessLogLines(); len(got) != 1 || got[0] != "trace=-" {
				t.Errorf("text access log %q, want [trace=-]", got)
			}
		})
	}
}

// TestFactTraceSampling: the HCM's decision (conn_manager_utility.cc
// mutateTracingRequestHeader) comes from x-request-id: a trace byte already
// '9'/'a'/'b' keeps the request traced; else x-client-trace-id forces it
// ('b', client_sampling 100%); else the first 8 hex digits mod 10000 below
// random_sampling×100 sample it ('9'); a request left untraced keeps its
// id. Without a parent the new span's sampled flag is the decision
// (tracer.cc Tracer::startSpan). With a valid parent 1.34–1.38 keep the
// parent's flag whatever the decision (issue #35721); from PR #45830
// (merged 2026-06, taken as 1.39: the sim's newest) a negative decision
// clears it.
func TestFactTraceSampling(t *testing.T) {
	const sampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name, version, sampling string
		hdr                     []string
		rid, wantRID, wantFlags string
	}{
		{"0%, no parent", Envoy137, "random_sampling: {value: 0}", nil,
			"0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "00"},
		{"0%, sampled parent, 1.37", Envoy137, "random_sampling: {value: 0}", []string{"traceparent", sampledParent},
			"0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "01"},
		{"0%, sampled parent, 1.34", "1.34", "random_sampling: {value: 0}", []string{"traceparent", sampledParent},
			"0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "01"},
		{"0%, sampled parent, newest", "", "random_sampling: {value: 0}", []string{"traceparent", sampledParent},
			"0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "00"},
		{"0%, x-client-trace-id", Envoy137, "random_sampling: {value: 0}", []string{"x-client-trace-id", "c1"},
			"0af7651f-6f14-4c54-b1a8-4f6e2b0c9d17", "0af7651f-6f14-bc54-b1a8-4f6e2b0c9d17", "01"},
		{"0%, request id already sampled", Envoy137, "random_sampling: {value: 0}", nil,
			"0af7651f-6f14-9c54-b1a8-4f6e2b0c9d17", "0af7651f-6f14-9c54-b1a8-4f6e2b0c9d17", "01"},
		{"50%, 0x00001387 mod 10000 = 4999", Envoy137, "random_sampling: {value: 50}", nil,
			"00001387-6f14-4c54-b1a8-4f6e2b0c9d17", "00001387-6f14-9c54-b1a8-4f6e2b0c9d17", "01"},
		{"50%, 0x00001388 mod 10000 = 5000", Envoy137, "random_sampling: {value: 50}", nil,
			"00001388-6f14-4c54-b1a8-4f6e2b0c9d17", "00001388-6f14-4c54-b1a8-4f6e2b0c9d17", "00"},
		{"100%, id not a UUID: sampled, not rewritten", Envoy137, "", nil,
			"0af7651f-short", "0af7651f-short", "01"},
		{"100%, id not hex: not traced", Envoy137, "", nil,
			"req-0001-6f14-4c54-b1a8-4f6e2b0c9d17", "req-0001-6f14-4c54-b1a8-4f6e2b0c9d17", "00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{hcmExtra: otelTracing(tc.sampling), accessLog: traceLog, version: tc.version}, nil)
			x := tracedGet(t, e, 1, append([]string{"x-request-id", tc.rid}, tc.hdr...)...)
			xp, ok1 := parseTP(first(x.md.Get("traceparent")))
			up, ok2 := parseTP(x.up.header.Get("Traceparent"))
			if !ok1 || !ok2 {
				t.Fatalf("traceparent: ext_proc %q, upstream %q", x.md.Get("traceparent"), x.up.header.Get("Traceparent"))
			}
			if xp.flags != tc.wantFlags || up.flags != tc.wantFlags {
				t.Errorf("flags: ext_proc %s, upstream %s; want %s", xp.flags, up.flags, tc.wantFlags)
			}
			if got := x.up.header.Get("x-request-id"); got != tc.wantRID {
				t.Errorf("x-request-id %q, want %q", got, tc.wantRID)
			}
			if x.log["trace"] != up.trace {
				t.Errorf("%%TRACE_ID%% %v, want %s (an unsampled span still has a trace id)", x.log["trace"], up.trace)
			}
		})
	}
}

// TestTracingConfig: what the sim accepts of the HCM tracing block, in the
// existing refusal style: the OpenTelemetry provider with grpc_service or
// http_service (never called) and service_name, random_sampling; anything
// else is an *UnsupportedError. Both exporters at once is Envoy's own
// config error (opentelemetry_tracer_impl.cc Driver::Driver).
func TestTracingConfig(t *testing.T) {
	otel := func(fields string) string {
		return `tracing: {provider: {name: envoy.tracers.opentelemetry, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig` + prefixComma(fields) + `}}}`
	}
	grpc := `grpc_service: {envoy_grpc: {cluster_name: nowhere}}`
	httpSvc := `http_service: {http_uri: {uri: "http://collector:4318/v1/traces", cluster: nowhere, timeout: 1s}}`
	for _, tc := range []struct {
		name, hcm   string
		unsupported string // the refused field path's suffix; "" = accepted
		otherErr    bool
	}{
		{"grpc exporter", otel(grpc + ", service_name: llmux"), "", false},
		{"http exporter", otel(httpSvc), "", false},
		{"no exporter", otel("service_name: llmux"), "typed_config.grpc_service", false},
		{"random_sampling", otelTracing("random_sampling: {value: 12.5}"), "", false},
		{"both exporters", otel(grpc + ", " + httpSvc), "", true},
		{"max_cache_size", otel(grpc + ", max_cache_size: 10"), "typed_config.max_cache_size", false},
		{"client_sampling", otelTracing("client_sampling: {value: 10}"), "tracing.client_sampling", false},
		{"overall_sampling", otelTracing("overall_sampling: {value: 10}"), "tracing.overall_sampling", false},
		{"spawn_upstream_span", otelTracing("spawn_upstream_span: true"), "tracing.spawn_upstream_span", false},
		{"verbose", otelTracing("verbose: true"), "tracing.verbose", false},
		{"no provider", `tracing: {random_sampling: {value: 10}}`, "tracing.provider", false},
		{"zipkin (fact 11, TestZipkinTracingConfig)", zipkinTracing("", ""), "", false},
		{"other tracer", `tracing: {provider: {name: envoy.tracers.datadog, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.DatadogConfig, collector_cluster: other, service_name: s}}}`, "tracing.provider.name", false},
		{"zipkin type under the otel name", `tracing: {provider: {name: envoy.tracers.opentelemetry, typed_config: {"@type": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig, collector_cluster: z, collector_endpoint: /api/v2/spans, collector_endpoint_version: HTTP_JSON}}}`, "tracing.provider.typed_config", false},
	} {
		t.Run(tc.name, func(t *testing.T) { checkTracingConfig(t, "", tc.hcm, tc.unsupported, tc.otherErr) })
	}
	// %TRACE_ID% takes no argument (COMMAND_ONLY).
	// (checkTracingConfig below serves TestZipkinTracingConfig too.)
	c := tcfg{accessLog: `{text_format: "%TRACE_ID(x)%\n"}`}
	if s, err := Start(context.Background(), Options{Bootstrap: []byte(c.yaml()),
		Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1", "other": "127.0.0.1:1"}}); err == nil {
		s.Close()
		t.Error("an argument to TRACE_ID accepted")
	}
}

// TestEnableTracing runs envoy/standalone.yaml through EnableTracing (its
// tracer's cluster otel_collector does not exist, as Envoy allows): ingress
// requests reach the processor with a child span's traceparent in the
// stream metadata, egress requests (llmux's own provider calls) carry the
// egress listener's request span of the same trace to the provider.
func TestEnableTracing(t *testing.T) {
	doc, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	traced, err := EnableTracing(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := EnableTracing(traced); err == nil {
		t.Error("EnableTracing twice: no error")
	}
	if _, err := EnableTracing([]byte(strings.Replace(tcfg{}.yaml(), "name: ingress", "name: other_listener", 1))); err == nil {
		t.Error("EnableTracing without ingress/egress listeners: no error")
	}
	e, s, proc := startStandalone(t, traced)

	const trace = "4bf92f3577b34da6a3ce929d0e0e4736"
	res := e.get(t, "/v1/models", "traceparent", "00-"+trace+"-00f067aa0ba902b7-01")
	ps := proc.next(t)
	md, _ := metadata.FromIncomingContext(ps.st.Context())
	if tp, ok := parseTP(first(md.Get("traceparent"))); !ok || tp.trace != trace || tp.span == "00f067aa0ba902b7" {
		t.Errorf("ingress: ext_proc metadata traceparent %q, want a child in trace %s", md.Get("traceparent"), trace)
	}
	ps.end(errors.New("done")) // the request's outcome is not the point
	_ = wait(t, res)

	e.base = "http://" + s.Addr("egress")
	res = e.get(t, "/v1/messages", "x-llmux-upstream", "anthropic", "traceparent", "00-"+trace+"-1111111111111111-01")
	_ = wait(t, res)
	got := e.up.got(t)
	if tp, ok := parseTP(got.header.Get("Traceparent")); !ok || tp.trace != trace || tp.span == "1111111111111111" || tp.flags != "01" {
		t.Errorf("egress: provider traceparent %q, want Envoy's span in trace %s", got.header.Get("Traceparent"), trace)
	}
}

// checkTracingConfig starts the stand-in (Envoy version, "" for the newest)
// with hcm added to the connection manager and checks the outcome: an
// UnsupportedError naming the field ending in unsupported, else Envoy's own
// configuration error when otherErr, else a start.
func checkTracingConfig(t *testing.T, version, hcm, unsupported string, otherErr bool) {
	t.Helper()
	c := tcfg{hcmExtra: hcm}
	s, err := Start(context.Background(), Options{Bootstrap: []byte(c.yaml()), EnvoyVersion: version,
		Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1", "other": "127.0.0.1:1"}})
	if err == nil {
		s.Close()
	}
	var ue *UnsupportedError
	switch {
	case unsupported != "":
		if !errors.As(err, &ue) || !strings.HasSuffix(ue.Field, unsupported) {
			t.Fatalf("Start: %v, want an UnsupportedError for …%s", err, unsupported)
		}
	case otherErr:
		if err == nil || errors.As(err, &ue) {
			t.Fatalf("Start: %v, want Envoy's configuration error", err)
		}
	case err != nil:
		t.Fatalf("Start: %v", err)
	}
}

// startStandalone starts the stand-in on a version of envoy/standalone.yaml
// (bootstrap), its llmux cluster on a fake processor and the OpenAI and
// Anthropic clusters on one fake upstream (the other provider clusters
// unreachable); the test's cleanup closes it.
func startStandalone(t *testing.T, bootstrap []byte) (*env, *Sim, *procServer) {
	t.Helper()
	proc := newProcServer(t)
	provider := newUpstream(t, false, nil)
	clusters := map[string]string{"llmux": proc.addr, "openai": provider.addr, "anthropic": provider.addr}
	for _, c := range []string{"bedrock_us_east_1", "gemini", "vertex_us_central1", "azure", "vllm"} {
		clusters[c] = "127.0.0.1:1"
	}
	s, err := Start(context.Background(), Options{Bootstrap: bootstrap, Clusters: clusters, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &env{sim: s, proc: proc, up: provider, base: "http://" + s.Addr("ingress")}, s, proc
}
