package envoy_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/llmux/llmux/envoy"
)

// A small bootstrap in the shape llmux uses; each case below replaces one
// part of it. The placeholders are filled by bootstrapYAML.
const bootstrapTmpl = `
static_resources:
  listeners:
  - name: ingress
    address:
      socket_address: { address: %s, port_value: 10000 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          local_reply_config:
            mappers:
            - filter:
                and_filter:
                  filters:
                  - metadata_filter:
                      matcher: { filter: io.llmux, path: [{ key: status }], value: { null_match: {} } }
                  - status_code_filter:
                      comparison: { op: EQ, value: { default_value: 503 } }
              body_format_override:
                json_format:
                  error: { message: "unavailable", type: server_error, code: upstream_unavailable }
          route_config:
            internal_only_headers: [x-llmux-upstream]
            virtual_hosts:
            - name: llm
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                request_headers_to_remove: [x-llmux-upstream, x-upstream]
                route: { cluster_header: %s }
          http_filters:
%s
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  tenant: "%s"
  clusters:
  - name: llmux
    type: STATIC
    circuit_breakers: { thresholds: [{ max_requests: 65536 }] }
%s
    load_assignment:
      cluster_name: llmux
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: { address: 127.0.0.1, port_value: 50051 }
`

const http2Options = `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}`

// extProc renders the ext_proc filter with extra fields (already indented
// for the typed_config level) and the given processing mode.
func extProc(extra, mode string) string {
	return `          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              grpc_service:
                envoy_grpc: { cluster_name: llmux }
              processing_mode: ` + mode + `
              request_attributes: [xds.route_metadata]
` + extra
}

const (
	goodMode = `{ request_header_mode: SEND, request_body_mode: BUFFERED, response_header_mode: SEND, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND }`
	goodMeta = `              metadata_options: { receiving_namespaces: { untyped: [io.llmux] } }
`
)

type bootstrapParts struct {
	address, header, filters, log, cluster string
}

func bootstrapYAML(p bootstrapParts) string {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&p.address, "0.0.0.0")
	def(&p.header, "x-llmux-upstream")
	def(&p.filters, extProc(goodMeta, goodMode))
	def(&p.log, "%DYNAMIC_METADATA(io.llmux:tenant)%")
	def(&p.cluster, http2Options)
	if p.filters == "-" {
		p.filters = ""
	}
	return fmt.Sprintf(bootstrapTmpl, p.address, p.header, p.filters, p.log, p.cluster)
}

func TestCheckBootstrap(t *testing.T) {
	cases := []struct {
		name  string
		parts bootstrapParts
		edit  func(string) string // applied to the rendered YAML
		want  []string            // substrings, each of some error; none means valid
	}{
		{name: "valid"},
		{
			name: "cluster header not removed upstream",
			edit: func(y string) string {
				return strings.Replace(y, "request_headers_to_remove: [x-llmux-upstream, x-upstream]", "request_headers_to_remove: [x-upstream]", 1)
			},
			want: []string{`routes[0].request_headers_to_remove: must contain "x-llmux-upstream"`},
		},
		{
			name: "client can send the cluster header",
			edit: func(y string) string {
				return strings.Replace(y, "internal_only_headers: [x-llmux-upstream]", "internal_only_headers: []", 1)
			},
			want: []string{`route_config.internal_only_headers: must contain "x-llmux-upstream"`},
		},
		{
			name: "use_remote_address without internal ranges",
			edit: func(y string) string {
				return strings.Replace(y, "stat_prefix: ingress\n", "stat_prefix: ingress\n          use_remote_address: true\n", 1)
			},
			want: []string{"internal_address_config.cidr_ranges: must be set with use_remote_address"},
		},
		{
			name: "use_remote_address with internal ranges",
			edit: func(y string) string {
				return strings.Replace(y, "stat_prefix: ingress\n", "stat_prefix: ingress\n          use_remote_address: true\n          internal_address_config: { cidr_ranges: [{ address_prefix: 127.0.0.1, prefix_len: 32 }] }\n", 1)
			},
		},
		{
			name: "no local_reply_config",
			edit: func(y string) string {
				i, j := strings.Index(y, "          local_reply_config:"), strings.Index(y, "          route_config:")
				return y[:i] + y[j:]
			},
			want: []string{"local_reply_config: must be set"},
		},
		{
			name: "mapper without the llmux guard, with a status override and a text body",
			edit: func(y string) string {
				y = strings.Replace(y, "{ filter: io.llmux,", "{ filter: io.other,", 1)
				y = strings.Replace(y, "              body_format_override:\n", "              status_code: 500\n              body_format_override:\n", 1)
				return strings.Replace(y, "code: upstream_unavailable }", "}", 1)
			},
			want: []string{
				"mappers[0].filter: must include a metadata_filter on io.llmux status",
				"mappers[0].status_code: must not be set",
				"mappers[0].body_format_override.json_format.error.code: must be a string",
			},
		},
		{
			name: "top-level body_format",
			edit: func(y string) string {
				return strings.Replace(y, "          local_reply_config:\n", "          local_reply_config:\n            body_format: { text_format: x }\n", 1)
			},
			want: []string{"local_reply_config.body_format: must not be set"},
		},
		{
			name:  "full duplex response without trailers",
			parts: bootstrapParts{filters: extProc(goodMeta, `{ request_body_mode: BUFFERED, response_body_mode: FULL_DUPLEX_STREAMED }`)},
			want:  []string{"processing_mode.response_trailer_mode: must be SEND when response_body_mode is FULL_DUPLEX_STREAMED"},
		},
		{
			name:  "full duplex request without trailers",
			parts: bootstrapParts{filters: extProc(goodMeta, `{ request_body_mode: FULL_DUPLEX_STREAMED, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND }`)},
			want: []string{
				"processing_mode.request_trailer_mode: must be SEND when request_body_mode is FULL_DUPLEX_STREAMED",
				"processing_mode.request_body_mode: llmux needs BUFFERED, have FULL_DUPLEX_STREAMED",
			},
		},
		{
			name:  "grpc and http service",
			parts: bootstrapParts{filters: extProc(goodMeta+"              http_service: { http_service: { http_uri: { uri: \"http://x\", cluster: llmux, timeout: 1s } } }\n", goodMode)},
			want: []string{
				"typed_config: only one of grpc_service and http_service may be set",
				"processing_mode.request_body_mode: http_service supports headers only",
			},
		},
		{
			name: "neither grpc nor http service",
			parts: bootstrapParts{filters: `          - name: envoy.filters.http.ext_proc
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
              processing_mode: ` + goodMode + "\n" + goodMeta},
			want: []string{"typed_config.grpc_service: one of grpc_service and http_service must be set"},
		},
		{
			name:  "disable_clear_route_cache with a route cache action",
			parts: bootstrapParts{filters: extProc(goodMeta+"              disable_clear_route_cache: true\n              route_cache_action: CLEAR\n", goodMode)},
			want:  []string{"typed_config.route_cache_action: cannot be CLEAR while disable_clear_route_cache is set"},
		},
		{
			name:  "route cache retained",
			parts: bootstrapParts{filters: extProc(goodMeta+"              route_cache_action: RETAIN\n", goodMode)},
			want: []string{
				"typed_config.route_cache_action: llmux routes with clear_route_cache",
				"routes[0].route.cluster_header: no ext_proc filter before the router sets x-llmux-upstream",
			},
		},
		{
			name:  "ext_proc cluster without HTTP/2",
			parts: bootstrapParts{cluster: "    connect_timeout: 1s"},
			want:  []string{`grpc_service.envoy_grpc.cluster_name: cluster "llmux" must speak HTTP/2`},
		},
		{
			name:  "ext_proc cluster missing",
			parts: bootstrapParts{filters: strings.Replace(extProc(goodMeta, goodMode), "cluster_name: llmux", "cluster_name: llmuxx", 1)},
			want:  []string{`grpc_service.envoy_grpc.cluster_name: no cluster "llmuxx"`},
		},
		{
			name:  "cluster_header without ext_proc",
			parts: bootstrapParts{filters: "-"},
			want:  []string{"listeners[ingress].filter_chains[0].filters[envoy.filters.network.http_connection_manager].typed_config.route_config.virtual_hosts[llm].routes[0].route.cluster_header: no ext_proc filter"},
		},
		{
			// Loopback without ext_proc is llmux's egress listener; it must
			// not strip the header llmux itself sets there.
			name:  "cluster_header without ext_proc on loopback (llmux's egress)",
			parts: bootstrapParts{filters: "-", address: "127.0.0.1"},
			want:  []string{`route_config.internal_only_headers: must not contain "x-llmux-upstream" on the egress listener`},
		},
		{
			name:  "another cluster header",
			parts: bootstrapParts{header: "x-upstream"},
			want:  []string{`route.cluster_header: llmux sets "x-llmux-upstream", not "x-upstream"`},
		},
		{
			name:  "receiving namespace missing",
			parts: bootstrapParts{filters: extProc("              metadata_options: { receiving_namespaces: { untyped: [llmux] } }\n", goodMode)},
			want:  []string{`metadata_options.receiving_namespaces.untyped: must contain "io.llmux"`},
		},
		{
			name:  "route metadata attribute missing",
			parts: bootstrapParts{filters: strings.Replace(extProc(goodMeta, goodMode), "[xds.route_metadata]", "[xds.route_name]", 1)},
			want:  []string{`typed_config.request_attributes: must contain "xds.route_metadata"`},
		},
		{
			name: "route metadata llmux would refuse",
			edit: func(y string) string {
				return strings.Replace(y, "route: { cluster_header: x-llmux-upstream }",
					"route: { cluster_header: x-llmux-upstream }\n                metadata: { filter_metadata: { io.llmux: { model_group: [a] } } }", 1)
			},
			want: []string{`routes[0].metadata.filter_metadata.io.llmux: model_group: unknown key`},
		},
		{
			name: "route metadata llmux accepts",
			edit: func(y string) string {
				return strings.Replace(y, "route: { cluster_header: x-llmux-upstream }",
					"route: { cluster_header: x-llmux-upstream }\n                metadata: { filter_metadata: { io.llmux: { model_groups: [a], routing: { strategy: cost, max_ttft: 2s } } } }", 1)
			},
		},
		{
			name:  "access log key llmux does not write",
			parts: bootstrapParts{log: "%DYNAMIC_METADATA(io.llmux:tokens)%"},
			want:  []string{`access_log[0].typed_config.log_format.json_format.fields[tenant].string_value: %DYNAMIC_METADATA(io.llmux:tokens): llmux writes no key "tokens" in io.llmux`},
		},
		{
			name:  "access log namespace misspelt",
			parts: bootstrapParts{log: "%DYNAMIC_METADATA(llmux:tenant)%"},
			want:  []string{`%DYNAMIC_METADATA(llmux:tenant): llmux's metadata namespace is "io.llmux"`},
		},
		{
			name: "router not last",
			parts: bootstrapParts{filters: `          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
` + extProc(goodMeta, goodMode)},
			want: []string{"http_filters[envoy.filters.http.router]: the router is a terminal filter and must be last"},
		},
		{
			name:  "PGV rule inside an Any",
			parts: bootstrapParts{filters: extProc(goodMeta+"              message_timeout: 4000s\n", goodMode)},
			want:  []string{"http_filters[0].typed_config: invalid ExternalProcessor.MessageTimeout"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := bootstrapYAML(tc.parts)
			if tc.edit != nil {
				y = tc.edit(y)
			}
			errs := checkBootstrapText(t, y)
			expectErrors(t, errs, tc.want)
		})
	}
}

func checkBootstrapText(t *testing.T, y string) []error {
	t.Helper()
	d := &doc{file: "case.yaml", raw: []byte(y)}
	return checkDoc(mustObj(t, d))
}

func mustObj(t *testing.T, d *doc) *doc {
	t.Helper()
	docs := parseDocs(t, d.file, d.raw)
	if len(docs) != 1 {
		t.Fatalf("want one document, have %d", len(docs))
	}
	return docs[0]
}

// expectErrors requires each wanted substring in some error, and no errors
// when nothing is wanted. Every error must name the file.
func expectErrors(t *testing.T, errs []error, want []string) {
	t.Helper()
	if len(want) == 0 {
		for _, e := range errs {
			t.Errorf("unexpected: %v", e)
		}
		return
	}
	if len(errs) == 0 {
		t.Fatalf("no errors, want %q", want)
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			found = found || strings.Contains(e.Error(), w)
		}
		if !found {
			t.Errorf("no error contains %q; have:\n%v", w, errors.Join(errs...))
		}
	}
	for _, e := range errs {
		if !strings.HasPrefix(e.Error(), "case.yaml") {
			t.Errorf("error does not name the file: %v", e)
		}
	}
}

// Documents that must fail to decode, or fail a rule, on their own.
func TestCheckDocument(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{
			name: "unknown field",
			yaml: "# proto: envoy.config.route.v3.Route\nmatch: { prefix: / }\nroute: { cluster_headr: x-llmux-upstream }\n",
			want: []string{`case.yaml: decoding envoy.config.route.v3.Route:`, `unknown field "cluster_headr"`},
		},
		{
			name: "unknown @type",
			yaml: "# proto: envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter\nname: x\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope\n",
			want: []string{`envoy.extensions.filters.http.nope.v3.Nope`},
		},
		{
			name: "unknown proto header",
			yaml: "# proto: envoy.config.cluster.v3.Clusterr\nname: x\n",
			want: []string{`# proto: envoy.config.cluster.v3.Clusterr`},
		},
		{
			name: "PGV rule",
			yaml: "# proto: envoy.config.cluster.v3.Cluster\nname: x\nconnect_timeout: -1s\n",
			want: []string{`invalid Cluster.ConnectTimeout`},
		},
		{
			name: "TLS without verification",
			yaml: `# proto: envoy.config.cluster.v3.Cluster
name: openai
type: LOGICAL_DNS
load_assignment:
  cluster_name: openai
  endpoints:
  - lb_endpoints:
    - endpoint: { address: { socket_address: { address: api.openai.com, port_value: 443 } } }
transport_socket:
  name: envoy.transport_sockets.tls
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
`,
			want: []string{
				"circuit_breakers.thresholds: must raise max_requests above Envoy's default 1024",
				"transport_socket.typed_config.sni: must be set",
				"validation_context.trusted_ca: must be set",
				"validation_context.match_typed_subject_alt_names: must be set",
			},
		},
		{
			name: "auto_config without TLS",
			yaml: `# proto: envoy.config.cluster.v3.Cluster
name: p
circuit_breakers: { thresholds: [{ max_requests: 2048 }] }
typed_extension_protocol_options:
  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
    "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
    auto_config: { http2_protocol_options: {} }
`,
			want: []string{"typed_extension_protocol_options: auto_config chooses the protocol by ALPN and needs a TLS transport socket"},
		},
		{
			name: "unknown bootstrap field",
			yaml: "static_resources:\n  clusterz: []\n",
			want: []string{`case.yaml: decoding Bootstrap:`, `unknown field "clusterz"`},
		},
		{
			name: "unrecognised document",
			yaml: "foo: bar\n",
			want: []string{"case.yaml: not an Envoy bootstrap"},
		},
		{
			name: "Kubernetes object without a name",
			yaml: "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
			want: []string{"case.yaml: metadata.name: must be set"},
		},
		{
			name: "EnvoyFilter patch with an unknown field",
			yaml: `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: x }
spec:
  configPatches:
  - applyTo: HTTP_ROUTE
    match: { context: GATEWAY }
    patch:
      operation: MERGE
      value: { route: { clusterheader: x } }
`,
			want: []string{`spec.configPatches[0].patch.value: decoding envoy.config.route.v3.Route:`, `unknown field "clusterheader"`},
		},
		{
			name: "EnvoyFilter patch failing validation",
			yaml: `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: x }
spec:
  configPatches:
  - applyTo: CLUSTER
    patch:
      operation: ADD
      value: { name: "", connect_timeout: 1s }
`,
			want: []string{`spec.configPatches[0].patch.value: invalid Cluster.Name`},
		},
		{
			name: "EnvoyFilter unknown applyTo and operation",
			yaml: `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: { name: x }
spec:
  configPatches:
  - applyTo: HTTP_FILTERS
    patch: { operation: MERGE, value: {} }
  - applyTo: HTTP_FILTER
    patch: { operation: PREPEND, value: {} }
`,
			want: []string{`spec.configPatches[0].applyTo: unknown or unsupported applyTo "HTTP_FILTERS"`, `spec.configPatches[1].patch.operation: unknown operation "PREPEND"`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := checkBootstrapText(t, tc.yaml)
			expectErrors(t, errs, tc.want)
		})
	}
}

// TestCheckIstio breaks the real Istio manifests one way at a time.
func TestCheckIstio(t *testing.T) {
	cases := []struct {
		name   string
		file   string // under istio/
		from   string
		to     string
		wanted string
	}{
		{"ext_proc cluster", "envoyfilter.yaml", "cluster_name: outbound|50051", "cluster_name: outbound|50052",
			`envoyfilter.yaml: EnvoyFilter llmux-system/llmux: spec.configPatches[0].patch.value.typed_config.grpc_service.envoy_grpc.cluster_name: want "outbound|50051||llmux.llmux-system.svc.cluster.local"`},
		{"grpc-listen port", "llmux.yaml", "0.0.0.0:50051", "0.0.0.0:50052",
			"containers[llmux].ports[grpc]: containerPort 50051, but -grpc-listen listens on 50052"},
		{"appProtocol", "llmux.yaml", "appProtocol: grpc", "appProtocol: http",
			"spec.ports[grpc].appProtocol: must be grpc"},
		{"provider cluster name", "llmux.yaml", "cluster: outbound|80||api.anthropic.com", "cluster: anthropic",
			`providers[1].cluster: "anthropic" is not an Istio cluster name`},
		{"provider cluster port", "llmux.yaml", "cluster: outbound|80||api.anthropic.com", "cluster: outbound|443||api.anthropic.com",
			"ServiceEntry port 443 of api.anthropic.com must be protocol HTTP"},
		{"SNI", "providers.yaml", "sni: api.openai.com", "sni: openai.com",
			`DestinationRule for api.openai.com port 80 must set sni "api.openai.com", has "openai.com"`},
		{"route name", "gateway.yaml", "- name: llmux            #", "- name: llm            #",
			`match.routeConfiguration.vhost.route.name: no VirtualService http route named "llmux"`},
		{"receiving namespaces", "envoyfilter.yaml", "untyped: [io.llmux]", "untyped: [io.llmx]",
			`metadata_options.receiving_namespaces.untyped: must contain "io.llmux"`},
		{"readiness path", "llmux.yaml", "path: /readyz", "path: /ready",
			"readinessProbe.httpGet.path: want /readyz"},
		{"read-only root", "llmux.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false",
			"readOnlyRootFilesystem: must be true"},
		{"service entry", "providers.yaml", "- generativelanguage.googleapis.com\n  location", "- generativelanguage.example.com\n  location",
			"no ServiceEntry for generativelanguage.googleapis.com"},
		// llmux's sidecar egress listener (egress.yaml).
		{"egress selector", "egress.yaml", "app.kubernetes.io/name: llmux", "app.kubernetes.io/name: llmux-gateway",
			"spec.workloadSelector.labels.app.kubernetes.io/name: llmux-gateway does not select the pods of Deployment"},
		{"egress public", "egress.yaml", "address: 127.0.0.1, port_value: 10001", "address: 0.0.0.0, port_value: 10001",
			"the egress listener must be on loopback"},
		{"egress context", "egress.yaml", "context: SIDECAR_OUTBOUND", "context: GATEWAY", "want SIDECAR_OUTBOUND"},
		{"egress header kept", "egress.yaml", "request_headers_to_remove: [x-llmux-upstream]", "request_headers_to_remove: []",
			`request_headers_to_remove: must contain "x-llmux-upstream"`},
		{"egress address", "llmux.yaml", "egress_address: 127.0.0.1:10001", "egress_address: 127.0.0.1:10002",
			`server.egress_address: "127.0.0.1:10002", but the sidecar's egress listener is 127.0.0.1:10001`},
	}
	files := []string{"envoyfilter.yaml", "gateway.yaml", "llmux.yaml", "providers.yaml", "egress.yaml"}
	original := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile("istio/" + f)
		if err != nil {
			t.Fatal(err)
		}
		original[f] = string(data)
	}
	load := func(t *testing.T, change func(file, text string) string) []*doc {
		var docs []*doc
		for _, f := range files {
			docs = append(docs, parseDocs(t, f, []byte(change(f, original[f])))...)
		}
		return docs
	}
	if errs := checkIstio(load(t, func(_, s string) string { return s })); len(errs) > 0 {
		t.Fatalf("the unmodified manifests fail: %v", errors.Join(errs...))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(original[tc.file], tc.from) {
				t.Fatalf("%s no longer contains %q", tc.file, tc.from)
			}
			docs := load(t, func(f, s string) string {
				if f == tc.file {
					return strings.Replace(s, tc.from, tc.to, 1)
				}
				return s
			})
			var errs []error
			for _, d := range docs {
				errs = append(errs, checkDoc(d)...)
			}
			errs = append(errs, checkIstio(docs)...)
			found := false
			for _, e := range errs {
				found = found || strings.Contains(e.Error(), tc.wanted)
			}
			if !found {
				t.Errorf("no error contains %q; have:\n%v", tc.wanted, errors.Join(errs...))
			}
		})
	}
}

func TestSplitYAML(t *testing.T) {
	in := "# header only\n---\na: 1\n---\n# comment\nb: 2\n--- \n\n---\nc: |\n  ---x\n"
	got := envoy.SplitYAML([]byte(in))
	want := []string{"a: 1\n", "# comment\nb: 2\n", "c: |\n  ---x\n"}
	if len(got) != len(want) {
		t.Fatalf("got %d documents %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("document %d = %q, want %q", i, got[i], want[i])
		}
	}
}
