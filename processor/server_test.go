package processor

import (
	"context"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/llmux/llmux/proto/config"
)

// tracked reports when each Process call returns.
type tracked struct {
	*Server
	done chan error
}

func (t tracked) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	err := t.Server.Process(s)
	t.done <- err
	return err
}

type grpcRig struct {
	srv    *Server
	client extprocv3.ExternalProcessorClient
	done   chan error
	reader *sdkmetric.ManualReader
}

func startGRPC(t *testing.T) *grpcRig {
	t.Helper()
	cfg := testConfig(t)
	metrics, reader := testMetrics(t)
	srv := tracked{Server: New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger(), Metrics: metrics}), done: make(chan error, 4)}
	g := serveGRPC(t, srv)
	g.srv, g.reader = srv.Server, reader
	return g
}

// waitDone waits for the server's Process to return.
func (g *grpcRig) waitDone(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the stream handler did not end")
		return nil
	}
}

// activeStreams reads the in-progress stream gauge.
func (g *grpcRig) activeStreams(t *testing.T) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := g.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "llmux.extproc.active_streams" {
				var n int64
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					n += dp.Value
				}
				return n
			}
		}
	}
	return 0
}

func TestProcessEndsOnEOF(t *testing.T) {
	g := startGRPC(t)
	s, err := g.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(post("/v1/chat/completions", bearer()...)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || r.GetRequestHeaders() == nil {
		t.Fatalf("%v %v", r, err)
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := g.waitDone(t); err != nil {
		t.Fatalf("EOF is a normal end, got %v", err)
	}
	if n := g.activeStreams(t); n != 0 {
		t.Fatalf("active streams %d", n)
	}
}

// TestClientDisconnectMidStream cancels the stream while the response is
// streaming, as Envoy does when the client goes away: the handler ends
// and releases everything.
func TestClientDisconnectMidStream(t *testing.T) {
	g := startGRPC(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := g.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*extprocv3.ProcessingRequest{
		post("/v1/chat/completions", bearer()...),
		reqBody(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`),
		respHeaders(false, ":status", "200", "content-type", "text/event-stream"),
		respBody("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n", false),
	} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.activeStreams(t); n != 1 {
		t.Fatalf("active streams %d during the response", n)
	}
	cancel()
	if err := g.waitDone(t); err != nil {
		t.Fatalf("cancellation is a normal end, got %v", err)
	}
	if n := g.activeStreams(t); n != 0 {
		t.Fatalf("active streams %d after the disconnect", n)
	}
	if n := g.requests(t, "stream_interrupted"); n != 1 {
		t.Fatalf("requests recorded as stream_interrupted: %d", n)
	}
}

// requests counts recorded requests with an error code.
func (g *grpcRig) requests(t *testing.T, code string) int64 {
	t.Helper()
	return g.sum(t, "llmux.requests", func(dp metricdata.DataPoint[int64]) bool {
		v, ok := dp.Attributes.Value("error_code")
		return ok && v.AsString() == code
	})
}

// sum adds up the data points of the counter name that keep says to count.
func (g *grpcRig) sum(t *testing.T, name string, keep func(metricdata.DataPoint[int64]) bool) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := g.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				if keep(dp) {
					n += dp.Value
				}
			}
		}
	}
	return n
}

func TestProcessImmediateResponseEndsStream(t *testing.T) {
	g := startGRPC(t)
	s, err := g.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(post("/v1/chat/completions")); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil || r.GetImmediateResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("%v %v", r, err)
	}
	if err := g.waitDone(t); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err == nil {
		t.Fatal("stream still open after the immediate response")
	}
}

func TestProcessProtocolErrorIsGRPCError(t *testing.T) {
	g := startGRPC(t)
	s, err := g.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(respBody("x", true)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Recv()
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("want FailedPrecondition, got %v", err)
	}
	if err := g.waitDone(t); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("handler returned %v", err)
	}
}
