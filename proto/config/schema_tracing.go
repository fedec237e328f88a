package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Tracing sends each request's trace to an OpenTelemetry collector over
// OTLP (docs/tracing.md). It is read when llmux starts: a change applies at
// the next restart, like limits.redis.
type Tracing struct {
	// Endpoint is the collector: host:port for protocol grpc (OTLP's port
	// is 4317), a URL for http/protobuf (http://host:4318/v1/traces).
	// Empty: tracing is off, unless the environment names a collector
	// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT,
	// whose OTEL_* companions then apply).
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"`
	// Protocol is grpc (the default) or http/protobuf.
	Protocol string `yaml:"protocol" json:"protocol,omitempty"`
	// Insecure sends without TLS (a collector on loopback or a sidecar).
	// With an http/protobuf URL the scheme decides.
	Insecure bool `yaml:"insecure" json:"insecure,omitempty"`
	// HeadersEnv are headers sent with every export, each value read from
	// the named environment variable (an ingest key, say).
	HeadersEnv map[string]string `yaml:"headers_env" json:"headers_env,omitempty"`
	// SampleRatio is the share of requests llmux records (0 to 1) among
	// those that arrive without Envoy's sampling decision (its trace
	// context on the ext_proc stream), which is followed. A client's
	// traceparent names the trace but its sampled flag is not trusted.
	// Unset: 1, or OTEL_TRACES_SAMPLER decides.
	SampleRatio *float64 `yaml:"sample_ratio" json:"sample_ratio,omitempty"`
	// ServiceName is the service.name resource attribute (default
	// llmux-extproc, or OTEL_SERVICE_NAME).
	ServiceName string `yaml:"service_name" json:"service_name,omitempty"`
}

// Tracing protocols.
const (
	TracingGRPC = "grpc"
	TracingHTTP = "http/protobuf"
)

// Enabled reports whether the configuration names a collector.
func (t Tracing) Enabled() bool { return t.Endpoint != "" }

// TracingSettings are the tracing section with the exporter's header values
// read from the environment.
type TracingSettings struct {
	Tracing
	// Headers are the export headers, their values secret.
	Headers map[string]Secret
}

// Tracing returns the tracing settings.
func (r *Runtime) Tracing() TracingSettings { return r.tracing }

// RedactedURL is s without the user information and query a URL may
// carry credentials in, for logs and error messages; s itself when it is
// not a URL with a host.
func RedactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return s
	}
	if u.User == nil && u.RawQuery == "" && u.Fragment == "" {
		return s
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// validateTracing checks the tracing section and reads its headers'
// values from the environment.
func validateTracing(c *errs, f *File, rt *Runtime, opts LoadOptions) {
	t := f.Tracing
	const p = "tracing"
	switch t.Protocol {
	case "":
		t.Protocol = TracingGRPC
	case TracingGRPC, TracingHTTP:
	default:
		c.add(p+".protocol", "%q: want %s or %s", t.Protocol, TracingGRPC, TracingHTTP)
	}
	if t.Endpoint != "" {
		e := RedactedURL(t.Endpoint) // errors show in logs and /readyz
		switch t.Protocol {
		case TracingGRPC:
			if strings.Contains(e, "://") {
				c.add(p+".endpoint", "%q: protocol grpc wants host:port, without a scheme", e)
			} else if _, port, err := net.SplitHostPort(e); err != nil {
				c.add(p+".endpoint", "%q: want host:port (OTLP/gRPC listens on 4317): %v", e, err)
			} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				c.add(p+".endpoint", "%q: port must be 1-65535", e)
			}
		case TracingHTTP:
			u, err := url.Parse(t.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				c.add(p+".endpoint", "%q: protocol http/protobuf wants an http:// or https:// URL, such as http://collector:4318/v1/traces", e)
			}
		}
	}
	if r := t.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
		c.add(p+".sample_ratio", "must be between 0 and 1, got %v", *r)
	}
	if strings.ContainsFunc(t.ServiceName, func(r rune) bool { return r < ' ' }) {
		c.add(p+".service_name", "%q has control characters", t.ServiceName)
	}
	s := TracingSettings{Tracing: t}
	names := make([]string, 0, len(t.HeadersEnv))
	for h := range t.HeadersEnv {
		names = append(names, h)
	}
	slices.Sort(names)
	for _, h := range names {
		path := fmt.Sprintf("%s.headers_env.%s", p, h)
		if !headerName.MatchString(h) {
			c.add(path, "%q is not a valid lowercase header name", h)
			continue
		}
		env := t.HeadersEnv[h]
		v, ok := opts.Getenv(env)
		if !ok || v == "" {
			c.add(path, "environment variable %q is not set", env)
			continue
		}
		if s.Headers == nil {
			s.Headers = map[string]Secret{}
		}
		s.Headers[h] = NewSecret(v)
	}
	if len(t.HeadersEnv) > 0 && t.Endpoint == "" {
		c.add(p+".headers_env", "set without tracing.endpoint")
	}
	rt.tracing = s
}
