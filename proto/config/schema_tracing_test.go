package config

import (
	"os"
	"strings"
	"testing"
)

const tracingBase = `providers:
- {name: p, kind: openai, cluster: c}
deployments:
- {name: d, provider: p, model: m}
model_groups:
- {name: g, deployments: [d]}
`

// TestTracing: each tracing setting is checked, with an error naming the
// field; export header values come from the environment and stay secret.
func TestTracing(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		err        string // "" when valid
	}{
		{"off", "", ""},
		{"grpc", "tracing: {endpoint: 'otel-collector.observability:4317', insecure: true, sample_ratio: 0.25, service_name: gw-eu}", ""},
		{"http", "tracing: {endpoint: 'https://api.example.com/v1/traces', protocol: http/protobuf, headers_env: {x-ingest-key: OPENAI_API_KEY}}", ""},
		{"grpc_with_scheme", "tracing: {endpoint: 'http://collector:4317'}", "tracing.endpoint"},
		{"grpc_without_port", "tracing: {endpoint: collector}", "tracing.endpoint"},
		{"grpc_bad_port", "tracing: {endpoint: 'collector:99999'}", "tracing.endpoint"},
		{"http_without_scheme", "tracing: {endpoint: 'collector:4318', protocol: http/protobuf}", "tracing.endpoint"},
		{"unknown_protocol", "tracing: {endpoint: 'collector:4317', protocol: zipkin}", "tracing.protocol"},
		{"ratio_above_one", "tracing: {endpoint: 'collector:4317', sample_ratio: 1.5}", "tracing.sample_ratio"},
		{"ratio_negative", "tracing: {endpoint: 'collector:4317', sample_ratio: -0.1}", "tracing.sample_ratio"},
		{"header_env_missing", "tracing: {endpoint: 'collector:4317', headers_env: {x-key: NOT_SET}}", "tracing.headers_env.x-key"},
		{"header_name_invalid", "tracing: {endpoint: 'collector:4317', headers_env: {'X Key': OPENAI_API_KEY}}", "tracing.headers_env"},
		{"headers_without_endpoint", "tracing: {headers_env: {x-key: OPENAI_API_KEY}}", "tracing.headers_env"},
		{"unknown_field", "tracing: {endpoint: 'collector:4317', exporter: jaeger}", "tracing.exporter"},
		{"credentials_not_echoed", "tracing: {endpoint: 'ftp://user:s3cret@collector:4318/v1/traces?key=s3cret', protocol: http/protobuf}", "tracing.endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := Parse([]byte(tracingBase+tc.yaml), testOpts())
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("want an error on %s, got %v (%v)", tc.err, err, rt)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the endpoint's credentials: %v", err)
			}
		})
	}
}

func TestTracingSettings(t *testing.T) {
	rt, err := Parse([]byte(tracingBase+"tracing: {endpoint: 'https://api.example.com/v1/traces', protocol: http/protobuf, sample_ratio: 0, headers_env: {x-ingest-key: OPENAI_API_KEY}}"), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	s := rt.Tracing()
	if !s.Enabled() || s.Protocol != TracingHTTP || s.SampleRatio == nil || *s.SampleRatio != 0 || s.Headers["x-ingest-key"].Value() != providerKey {
		t.Fatalf("settings %+v", s)
	}
	red, err := rt.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(red), providerKey) || !strings.Contains(string(red), `"headers_env"`) {
		t.Errorf("redacted configuration:\n%s", red)
	}
	def, err := Parse([]byte(tracingBase+"tracing: {endpoint: 'c:4317'}"), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if def.Tracing().Protocol != TracingGRPC || def.Tracing().SampleRatio != nil {
		t.Errorf("defaults %+v", def.Tracing())
	}
	if b, err := os.ReadFile("example.yaml"); err != nil || !strings.Contains(string(b), "tracing:") {
		t.Errorf("example.yaml does not show the tracing section (%v)", err)
	}
}
