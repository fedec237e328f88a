package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/test/otlpsink"
)

// tracedModels sends GET /v1/models over ext_proc with Envoy's trace
// context in the stream's gRPC metadata, as Envoy sends it when it traces.
func tracedModels(t *testing.T, grpcAddr, traceparent string) {
	t.Helper()
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent)
	stream, err := extprocv3.NewExternalProcessorClient(conn).Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/v1/models")},
		{Key: "authorization", RawValue: []byte("Bearer sk-client-1")}}}
	if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdrs, EndOfStream: true}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.GetImmediateResponse().GetStatus().GetCode() != 200 {
		t.Fatalf("%v %v", r, err)
	}
	_ = stream.CloseSend()
}

// TestTracingExport: with tracing configured (or named by the OTEL_*
// environment), the binary exports each request's span over OTLP, gRPC or
// HTTP, to the collector, under Envoy's span, with the configured headers
// and service name.
func TestTracingExport(t *testing.T) {
	const (
		traceID = "0af7651916cd43dd8448eb211c80319c"
		parent  = "b7ad6b7169203331"
	)
	for _, tc := range []struct {
		name    string
		section func(s *otlpsink.Sink) string
		env     func(s *otlpsink.Sink) map[string]string
		service string
	}{
		{"grpc", func(s *otlpsink.Sink) string {
			return "tracing: {endpoint: '" + s.GRPCAddr + "', insecure: true, service_name: gw-test, headers_env: {x-ingest-key: LLMUX_APP_TEST_INGEST}}\n"
		}, nil, "gw-test"},
		{"http", func(s *otlpsink.Sink) string {
			return "tracing: {endpoint: '" + s.HTTPURL + "', protocol: http/protobuf, headers_env: {x-ingest-key: LLMUX_APP_TEST_INGEST}}\n"
		}, nil, "llmux-extproc"},
		{"environment", func(*otlpsink.Sink) string { return "" }, func(s *otlpsink.Sink) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + s.GRPCAddr, "OTEL_EXPORTER_OTLP_HEADERS": "x-ingest-key=ingest-secret", "OTEL_SERVICE_NAME": "from-env"}
		}, "from-env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := otlpsink.Start(t)
			t.Setenv("LLMUX_APP_TEST_INGEST", "ingest-secret")
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20") // export within 20 ms rather than 5 s
			t.Setenv("OTEL_GO_X_OBSERVABILITY", "true")
			if tc.env != nil {
				for k, v := range tc.env(sink) {
					t.Setenv(k, v)
				}
			}
			a := startApp(t, writeConfig(t, t.TempDir(), cfgText+tc.section(sink)))
			tracedModels(t, a.grpcAddr, "00-"+traceID+"-"+parent+"-01")
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			spans := sink.Wait(ctx, func(s []otlpsink.Span) bool { return len(s) > 0 })
			if len(spans) != 1 {
				t.Fatalf("%d spans; llmux log:\n%s", len(spans), a.logs)
			}
			s := spans[0]
			if s.TraceID() != traceID || s.ParentID() != parent || s.Name != "llmux models" {
				t.Errorf("span %s trace %s parent %s", s.Name, s.TraceID(), s.ParentID())
			}
			if v, _ := s.Attr("llmux.status"); v != "200" {
				t.Errorf("llmux.status %q", v)
			}
			if s.Resource["service.name"] != tc.service || s.Headers["x-ingest-key"] != "ingest-secret" {
				t.Errorf("resource %v, headers %v", s.Resource, s.Headers)
			}
			if strings.Contains(a.logs.String(), "ingest-secret") {
				t.Error("the ingest key is in the log")
			}
			// The SDK's own metrics, switched on by the environment, are
			// served with llmux's: the export queue and spans processed.
			if _, body := get(t, "http://"+a.adminAddr+"/metrics"); !strings.Contains(body, "otel_sdk_processor_span_processed") {
				t.Errorf("/metrics lacks the SDK's span processor metrics")
			}
		})
	}
}

// TestTracingOff: without an endpoint or OTEL_* environment naming one,
// there is no tracer; OTEL_TRACES_EXPORTER=none wins over the environment.
func TestTracingOff(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, tc := range []struct {
		name     string
		s        config.TracingSettings
		env      map[string]string
		on       bool
		protocol string
	}{
		{"nothing", config.TracingSettings{}, nil, false, ""},
		{"config", config.TracingSettings{Tracing: config.Tracing{Endpoint: "c:4317", Protocol: config.TracingGRPC}}, nil, true, config.TracingGRPC},
		{"env", config.TracingSettings{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, true, config.TracingHTTP},
		{"env_traces", config.TracingSettings{}, map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, true, config.TracingGRPC},
		{"env_none", config.TracingSettings{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, false, ""},
		{"env_json", config.TracingSettings{}, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, true, "http/json"},
	} {
		on, protocol := tracingOn(tc.s, env(tc.env))
		if on != tc.on || protocol != tc.protocol {
			t.Errorf("%s: on %v protocol %q, want %v %q", tc.name, on, protocol, tc.on, tc.protocol)
		}
	}
}

type failingExporter struct{ sdktrace.SpanExporter }

func (failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	return errors.New("collector unreachable")
}

// TestTracingExportFailureLogged: a failed export is logged with the
// number of spans lost.
func TestTracingExportFailureLogged(t *testing.T) {
	var log syncBuf
	e := &countingExporter{SpanExporter: failingExporter{}, log: slog.New(slog.NewTextHandler(&log, nil))}
	if err := e.ExportSpans(context.Background(), make([]sdktrace.ReadOnlySpan, 3)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "spans=3") || !strings.Contains(log.String(), "collector unreachable") {
		t.Errorf("log %q", log.String())
	}
}

// TestTracingRefusals: an OTLP protocol without a Go exporter stops the
// start with a clear error; endpoints are logged without credentials.
func TestTracingRefusals(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	var log syncBuf
	_, _, err := newTracer(context.Background(), config.TracingSettings{}, slog.New(slog.NewTextHandler(&log, nil)), nil)
	if err == nil || !strings.Contains(err.Error(), "http/json") {
		t.Errorf("http/json: %v", err)
	}
	for in, want := range map[string]string{
		"collector:4317": "collector:4317",
		"https://user:pass@collector:4318/v1/traces?token=s3cret": "https://collector:4318/v1/traces",
	} {
		if got := config.RedactedURL(in); got != want {
			t.Errorf("RedactedURL(%q) = %q, want %q", in, got, want)
		}
	}
}
