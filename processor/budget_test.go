package processor

import (
	"context"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// counter reads an llmux counter's total.
func (g *grpcRig) counter(t *testing.T, name string) int64 {
	t.Helper()
	return g.sum(t, name, func(metricdata.DataPoint[int64]) bool { return true })
}

// TestBudgetOverGRPC runs requests that end every way a stream can,
// through the real gRPC server, and checks that the budget is back to
// zero after each, and that a refusal is counted.
func TestBudgetOverGRPC(t *testing.T) {
	g := startGRPC(t)
	ok := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name     string
		body     string
		closeNow bool // the client goes away right after sending the body
		want     string
	}{
		{"forwarded", ok, false, "forward"},
		{"invalid", `{"model":1}`, false, "immediate"},
		{"unknown model", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, false, "immediate"},
		{"client gone", ok, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := g.client.Process(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(post("/v1/chat/completions", bearer()...)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
			if err := s.Send(reqBody(tc.body)); err != nil {
				t.Fatal(err)
			}
			if tc.closeNow {
				cancel()
			} else {
				r, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if got := map[bool]string{true: "immediate", false: "forward"}[r.GetImmediateResponse() != nil]; got != tc.want {
					t.Fatalf("reply %s, want %s", got, tc.want)
				}
				_ = s.CloseSend()
			}
			_ = g.waitDone(t)
			if n := g.srv.Buffered(); n != 0 {
				t.Fatalf("%d bytes still held", n)
			}
		})
	}

	// All but a few bytes are held elsewhere: refused, counted, nothing
	// kept.
	limit := g.srv.opts.Config().Server().MaxBufferedBytes
	if !g.srv.buffered.acquire(limit-10, limit) {
		t.Fatal("could not take the budget")
	}
	defer g.srv.buffered.release(limit - 10)
	s, err := g.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*extprocv3.ProcessingRequest{post("/v1/chat/completions", bearer()...), reqBody(ok)} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if st, code := immediate(t, r); st != 503 || code != "gateway_overloaded" {
		t.Fatalf("got %d %s", st, code)
	}
	_ = g.waitDone(t)
	if n := g.counter(t, "llmux.buffer.rejected"); n != 1 {
		t.Fatalf("llmux.buffer.rejected = %d", n)
	}
	if n := g.srv.Buffered(); n != limit-10 {
		t.Fatalf("held %d, want only the other requests' %d", n, limit-10)
	}
}
