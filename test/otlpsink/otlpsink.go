// Package otlpsink is an OpenTelemetry collector for tests: it receives
// traces over OTLP/gRPC and OTLP/HTTP (protobuf) on loopback and keeps the
// spans, so tests can check what llmux exported on the real wire format.
//
// Wire format: the OTLP specification,
// https://opentelemetry.io/docs/specs/otlp/ (ExportTraceServiceRequest over
// gRPC service opentelemetry.proto.collector.trace.v1.TraceService, and
// POST /v1/traces with Content-Type application/x-protobuf).
package otlpsink

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Span is a received span with its resource's attributes.
type Span struct {
	*tracepb.Span
	Resource map[string]string
	Headers  map[string]string // the export request's headers (lower case), first value each
}

// TraceID is the span's trace id in hex.
func (s Span) TraceID() string { return hex.EncodeToString(s.Span.TraceId) }

// SpanID is the span's id in hex.
func (s Span) SpanID() string { return hex.EncodeToString(s.Span.SpanId) }

// ParentID is the parent span's id in hex ("" for a root).
func (s Span) ParentID() string { return hex.EncodeToString(s.Span.ParentSpanId) }

// Attr returns an attribute's value as a string (ints in decimal), and
// whether the span has it.
func (s Span) Attr(key string) (string, bool) { return attr(s.Attributes, key) }

func attr(kvs []*commonpb.KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return value(kv.Value), true
		}
	}
	return "", false
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	}
	return ""
}

// Sink is a running collector.
type Sink struct {
	// GRPCAddr is the OTLP/gRPC endpoint (host:port); HTTPURL the
	// OTLP/HTTP traces URL.
	GRPCAddr, HTTPURL string

	mu    sync.Mutex
	spans []Span
	added chan struct{} // signalled after each export
}

// Start starts a sink on loopback; the test's cleanup stops it.
func Start(t testing.TB) *Sink {
	t.Helper()
	s := &Sink{added: make(chan struct{}, 1)}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, &grpcService{s: s})
	hs := &http.Server{Handler: http.HandlerFunc(s.serveHTTP)}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = gs.Serve(gl) }()
	go func() { defer wg.Done(); _ = hs.Serve(hl) }()
	t.Cleanup(func() {
		gs.Stop()
		_ = hs.Close()
		wg.Wait()
	})
	s.GRPCAddr, s.HTTPURL = gl.Addr().String(), "http://"+hl.Addr().String()+"/v1/traces"
	return s
}

type grpcService struct {
	collectorpb.UnimplementedTraceServiceServer
	s *Sink
}

func (g *grpcService) Export(ctx context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := map[string]string{}
	for k, vs := range md {
		if len(vs) > 0 {
			h[k] = vs[0]
		}
	}
	g.s.add(req, h)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (s *Sink) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("content-type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := map[string]string{}
	for k, vs := range r.Header {
		h[strings.ToLower(k)] = vs[0]
	}
	s.add(&req, h)
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("content-type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (s *Sink) add(req *collectorpb.ExportTraceServiceRequest, headers map[string]string) {
	s.mu.Lock()
	for _, rs := range req.ResourceSpans {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.Key] = value(kv.Value)
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s.spans = append(s.spans, Span{Span: sp, Resource: res, Headers: headers})
			}
		}
	}
	s.mu.Unlock()
	select {
	case s.added <- struct{}{}:
	default:
	}
}

// Spans returns the spans received so far.
func (s *Sink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Span(nil), s.spans...)
}

// Wait returns the spans once ok accepts them, or what came before ctx
// ended.
func (s *Sink) Wait(ctx context.Context, ok func([]Span) bool) []Span {
	for {
		spans := s.Spans()
		if ok(spans) {
			return spans
		}
		select {
		case <-s.added:
		case <-ctx.Done():
			return s.Spans()
		}
	}
}
