// Package telemetry defines llmux's OpenTelemetry instruments.
//
// The instruments are created once from a MeterProvider (the binary wires a
// Prometheus exporter behind it, served on the admin listener's /metrics).
// A nil *Metrics is valid and records nothing, which keeps tests and
// benchmarks free of exporter setup.
package telemetry

import (
	"context"
	"fmt"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Meter name used for every llmux instrument.
const scope = "github.com/llmux/llmux"

// Metrics holds llmux's instruments.
type Metrics struct {
	requests        metric.Int64Counter
	tokens          metric.Int64Counter
	duration        metric.Float64Histogram
	upstreamLatency metric.Float64Histogram
	ttft            metric.Float64Histogram
	activeStreams   metric.Int64UpDownCounter
	protocolErrors  metric.Int64Counter
	configReloads   metric.Int64Counter
	bufferRejected  metric.Int64Counter
	traceExport     metric.Int64Counter

	// Attribute sets of finished requests, built once per distinct label
	// values: building a set (copy, sort, dedupe, hash) costs more than
	// recording the measurement.
	requestSets setCache[requestKey]
	routeSets   setCache[routeKey]
	tokenSets   setCache[tokenKey]

	pricing  pricingInstruments  // spend and unknown prices (pricing.go)
	routing  routingInstruments  // deployment choice (routing.go)
	failover failoverInstruments // fallback tries (failover.go)

	redaction redactionInstruments // values found and requests blocked (redaction.go)
	repair    repairInstruments    // stream repair (repair.go)
	ratelimit ratelimitInstruments // limits and budgets (ratelimit.go)
}

// maxCachedSets bounds each attribute set cache. Past it, sets are built
// per measurement as before; the SDK's own cardinality limit applies
// either way.
const maxCachedSets = 4096

// setCache maps label values to the measurement options of their
// attribute set. It is safe for concurrent use.
type setCache[K comparable] struct {
	mu sync.RWMutex
	m  map[K]measureOpts
}

// measureOpts holds an attribute set as the option lists that Add and
// Record take, so that passing them allocates nothing.
type measureOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

// get returns the options for k, building its set with attrs on a miss.
func (c *setCache[K]) get(k K, attrs func() []attribute.KeyValue) measureOpts {
	c.mu.RLock()
	opt, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return opt
	}
	set := metric.WithAttributeSet(attribute.NewSet(attrs()...))
	opt = measureOpts{add: []metric.AddOption{set}, rec: []metric.RecordOption{set}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[k]; ok {
		return prev
	}
	if len(c.m) < maxCachedSets {
		if c.m == nil {
			c.m = make(map[K]measureOpts)
		}
		c.m[k] = opt
	}
	return opt
}

type requestKey struct {
	endpoint, modelGroup, provider, deployment, tenant, errorCode string
	status                                                        int
}

type routeKey struct{ modelGroup, provider, deployment string }

type tokenKey struct{ kind, modelGroup, deployment, tenant string }

// New creates the instruments on mp.
func New(mp metric.MeterProvider) (*Metrics, error) {
	m := mp.Meter(scope)
	var (
		x   Metrics
		err error
	)
	seconds := metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
	if x.requests, err = m.Int64Counter("llmux.requests", metric.WithDescription("Requests handled, by endpoint, model group, provider, status (the status the client saw; 0 when unknown) and error code (empty on success).")); err != nil {
		return nil, fmt.Errorf("telemetry: requests: %w", err)
	}
	if x.tokens, err = m.Int64Counter("llmux.tokens", metric.WithDescription("Tokens reported by providers, by kind (input, output, cached, cache_creation, reasoning).")); err != nil {
		return nil, fmt.Errorf("telemetry: tokens: %w", err)
	}
	if x.duration, err = m.Float64Histogram("llmux.request.duration", metric.WithUnit("s"), seconds, metric.WithDescription("Time from request headers to the end of the response.")); err != nil {
		return nil, fmt.Errorf("telemetry: duration: %w", err)
	}
	if x.upstreamLatency, err = m.Float64Histogram("llmux.upstream.latency", metric.WithUnit("s"), seconds, metric.WithDescription("Time from forwarding the request to the upstream's response headers.")); err != nil {
		return nil, fmt.Errorf("telemetry: upstream latency: %w", err)
	}
	if x.ttft, err = m.Float64Histogram("llmux.time_to_first_token", metric.WithUnit("s"), seconds, metric.WithDescription("Time from forwarding the request to the first content byte.")); err != nil {
		return nil, fmt.Errorf("telemetry: ttft: %w", err)
	}
	if x.activeStreams, err = m.Int64UpDownCounter("llmux.extproc.active_streams", metric.WithDescription("ext_proc streams in progress.")); err != nil {
		return nil, fmt.Errorf("telemetry: active streams: %w", err)
	}
	if x.protocolErrors, err = m.Int64Counter("llmux.extproc.protocol_errors", metric.WithDescription("ext_proc messages that did not fit the processing mode or phase, by reason.")); err != nil {
		return nil, fmt.Errorf("telemetry: protocol errors: %w", err)
	}
	if x.configReloads, err = m.Int64Counter("llmux.config.reloads", metric.WithDescription("Configuration reloads, by result (ok, invalid).")); err != nil {
		return nil, fmt.Errorf("telemetry: config reloads: %w", err)
	}
	if x.bufferRejected, err = m.Int64Counter("llmux.buffer.rejected", metric.WithDescription("Requests refused with 503 because the request bytes held across requests reached server.max_buffered_bytes.")); err != nil {
		return nil, fmt.Errorf("telemetry: buffer rejected: %w", err)
	}
	if x.traceExport, err = m.Int64Counter("llmux.tracing.export_failures", metric.WithDescription("Spans lost because their export to the OpenTelemetry collector failed.")); err != nil {
		return nil, fmt.Errorf("telemetry: trace export failures: %w", err)
	}
	if err = x.pricing.init(m); err != nil {
		return nil, err
	}
	if err = x.ratelimit.init(m); err != nil {
		return nil, err
	}
	if err = x.routing.init(m); err != nil {
		return nil, err
	}
	if err = x.failover.init(m); err != nil {
		return nil, err
	}
	if err = x.redaction.init(m); err != nil {
		return nil, err
	}
	if err = x.repair.init(m); err != nil {
		return nil, err
	}
	return &x, nil
}

// Request describes a finished request for the request instruments.
type Request struct {
	Endpoint, ModelGroup, Provider, Deployment, Tenant, ErrorCode string
	Status                                                        int
	DurationSeconds                                               float64
	UpstreamLatencySeconds, TTFTSeconds                           float64              // <0: unknown
	Tokens                                                        [NumTokenKinds]int64 // by kind, TokenKinds order; 0: not reported
}

// Token kinds, the indexes of Request.Tokens.
const (
	TokensInput = iota
	TokensOutput
	TokensCached
	TokensCacheCreation
	TokensReasoning
	NumTokenKinds
)

// TokenKinds names the token kinds, the "kind" label of llmux.tokens.
var TokenKinds = [NumTokenKinds]string{"input", "output", "cached", "cache_creation", "reasoning"}

// RecordRequest records one finished request.
func (m *Metrics) RecordRequest(ctx context.Context, r Request) {
	if m == nil {
		return
	}
	attrs := m.requestSets.get(requestKey{r.Endpoint, r.ModelGroup, r.Provider, r.Deployment, r.Tenant, r.ErrorCode, r.Status}, func() []attribute.KeyValue {
		return []attribute.KeyValue{
			attribute.String("endpoint", r.Endpoint),
			attribute.String("model_group", r.ModelGroup),
			attribute.String("provider", r.Provider),
			attribute.String("deployment", r.Deployment),
			attribute.String("tenant", r.Tenant),
			attribute.Int("status", r.Status),
			attribute.String("error_code", r.ErrorCode),
		}
	})
	m.requests.Add(ctx, 1, attrs.add...)
	m.duration.Record(ctx, r.DurationSeconds, attrs.rec...)
	if r.UpstreamLatencySeconds >= 0 || r.TTFTSeconds >= 0 {
		route := m.routeSets.get(routeKey{r.ModelGroup, r.Provider, r.Deployment}, func() []attribute.KeyValue {
			return []attribute.KeyValue{
				attribute.String("model_group", r.ModelGroup),
				attribute.String("provider", r.Provider),
				attribute.String("deployment", r.Deployment),
			}
		})
		if r.UpstreamLatencySeconds >= 0 {
			m.upstreamLatency.Record(ctx, r.UpstreamLatencySeconds, route.rec...)
		}
		if r.TTFTSeconds >= 0 {
			m.ttft.Record(ctx, r.TTFTSeconds, route.rec...)
		}
	}
	for i, n := range r.Tokens {
		if n > 0 {
			kind := TokenKinds[i]
			m.tokens.Add(ctx, n, m.tokenSets.get(tokenKey{kind, r.ModelGroup, r.Deployment, r.Tenant}, func() []attribute.KeyValue {
				return []attribute.KeyValue{
					attribute.String("kind", kind),
					attribute.String("model_group", r.ModelGroup),
					attribute.String("deployment", r.Deployment),
					attribute.String("tenant", r.Tenant),
				}
			}).add...)
		}
	}
}

// StreamStarted and StreamEnded track in-progress ext_proc streams.
func (m *Metrics) StreamStarted(ctx context.Context) {
	if m != nil {
		m.activeStreams.Add(ctx, 1)
	}
}

// StreamEnded is the counterpart of StreamStarted.
func (m *Metrics) StreamEnded(ctx context.Context) {
	if m != nil {
		m.activeStreams.Add(ctx, -1)
	}
}

// ProtocolError counts an ext_proc message that broke the protocol.
func (m *Metrics) ProtocolError(ctx context.Context, reason string) {
	if m != nil {
		m.protocolErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", reason)))
	}
}

// BufferRejected counts a request refused because the buffered request
// bytes reached server.max_buffered_bytes.
func (m *Metrics) BufferRejected(ctx context.Context) {
	if m != nil {
		m.bufferRejected.Add(ctx, 1)
	}
}

// ConfigReload counts a configuration reload attempt.
func (m *Metrics) ConfigReload(ctx context.Context, ok bool) {
	if m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "invalid"
	}
	m.configReloads.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// TraceExportFailed counts spans whose export to the collector failed.
func (m *Metrics) TraceExportFailed(ctx context.Context, spans int) {
	if m != nil {
		m.traceExport.Add(ctx, int64(spans))
	}
}
