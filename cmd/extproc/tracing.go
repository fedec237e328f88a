package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/proto/config"
)

// tracingOn says whether traces are exported, and over which protocol: the
// configuration's tracing.endpoint, else the OTEL_* environment when it
// names a collector (OTEL_TRACES_EXPORTER=none turns that off).
func tracingOn(s config.TracingSettings, getenv func(string) string) (on bool, protocol string) {
	if s.Enabled() {
		return true, s.Protocol
	}
	if getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false, ""
	}
	if getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return false, ""
	}
	protocol = getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case config.TracingHTTP, config.TracingGRPC:
	case "":
		protocol = config.TracingGRPC
	}
	return true, protocol // anything else is refused by newTracer
}

// newTracer builds the tracer provider that exports each request's trace
// over OTLP, or returns a nil Tracer when tracing is off. Spans are
// batched and exported in the background; a full queue drops spans rather
// than slowing requests, and a failed export is logged and counted
// (llmux.tracing.export_failures). shutdown flushes what is queued.
func newTracer(ctx context.Context, s config.TracingSettings, log *slog.Logger, m *telemetry.Metrics) (*tracing.Tracer, func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	on, protocol := tracingOn(s, os.Getenv)
	if !on {
		return nil, noop, nil
	}
	headers := make(map[string]string, len(s.Headers))
	for k, v := range s.Headers {
		headers[k] = v.Value()
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol {
	case config.TracingGRPC, config.TracingHTTP:
	default:
		// http/json, which the OTLP specification allows, has no Go
		// exporter.
		return nil, noop, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL %q is not supported: use grpc or http/protobuf", protocol)
	}
	switch protocol {
	case config.TracingHTTP:
		var opts []otlptracehttp.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(s.Endpoint))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		var opts []otlptracegrpc.Option
		if s.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpoint(s.Endpoint))
			if s.Insecure {
				opts = append(opts, otlptracegrpc.WithInsecure())
			}
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	}
	if err != nil {
		return nil, noop, fmt.Errorf("tracing exporter: %w", err)
	}
	name := s.ServiceName
	if name == "" && os.Getenv("OTEL_SERVICE_NAME") == "" {
		name = "llmux-extproc"
	}
	// Read now, not resource.Default's value cached at its first use.
	ropts := []resource.Option{resource.WithFromEnv(), resource.WithTelemetrySDK()}
	if name != "" {
		ropts = append(ropts, resource.WithAttributes(attribute.String("service.name", name)))
	}
	res, err := resource.New(ctx, ropts...)
	switch {
	case errors.Is(err, resource.ErrPartialResource):
		// A malformed OTEL_RESOURCE_ATTRIBUTES: what could be read is kept.
		log.Warn("tracing: some resource attributes could not be read", "error", err)
	case err != nil:
		_ = exp.Shutdown(ctx)
		return nil, noop, fmt.Errorf("tracing resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithBatcher(&countingExporter{SpanExporter: exp, log: log, m: m}),
		sdktrace.WithResource(res),
	}
	switch r := s.SampleRatio; {
	case r != nil:
		opts = append(opts, sdktrace.WithSampler(tracing.Sampler(*r)))
	case os.Getenv("OTEL_TRACES_SAMPLER") == "":
		// Envoy's decision stands; requests without one, or with only the
		// client's, are all recorded whatever the client's flag says.
		opts = append(opts, sdktrace.WithSampler(tracing.Sampler(1)))
	}
	// Otherwise OTEL_TRACES_SAMPLER decides, as the SDK reads it.
	tp := sdktrace.NewTracerProvider(opts...)
	// The SDK reports its own troubles (a dropped batch, say) here.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: OpenTelemetry SDK", "error", err) }))
	endpoint := config.RedactedURL(s.Endpoint)
	if endpoint == "" {
		endpoint = "(from OTEL_EXPORTER_OTLP_* environment)"
	}
	log.Info("tracing on", "endpoint", endpoint, "protocol", protocol, "service_name", name)
	return tracing.New(tp), tp.Shutdown, nil
}

// countingExporter logs and counts failed exports. It reports them itself
// and returns nil, so the SDK does not report each one a second time.
type countingExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
	m   *telemetry.Metrics
}

// ExportSpans implements sdktrace.SpanExporter.
func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		e.m.TraceExportFailed(ctx, len(spans))
		e.log.Warn("tracing: export to the collector failed; these spans are lost", "spans", len(spans), "error", err)
	}
	return nil
}
