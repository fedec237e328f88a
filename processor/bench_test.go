package processor

import (
	"context"
	"io"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llmux/llmux/processor/internal/extproctest"
	"github.com/llmux/llmux/proto/config"
)

// The benchmarks compare llmux's stream handler with a no-op ext_proc
// server doing the same exchange over the same gRPC transport: the
// difference is what llmux costs above the floor every processor pays.

// benchConn starts srv on loopback and returns a client.
func benchConn(b *testing.B, srv extprocv3.ExternalProcessorServer) extprocv3.ExternalProcessorClient {
	b.Helper()
	addr, stop, err := extproctest.Serve(srv)
	if err != nil {
		b.Fatal(err)
	}
	client, conn, err := extproctest.Dial(addr)
	if err != nil {
		stop()
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(); stop() })
	return client
}

const benchChatBody = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about gateways."}]}`

var benchChunk = []byte(`data: {"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_4d06ba6ea9","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null}` + "\n\n")

func roundTrip(b *testing.B, s extprocv3.ExternalProcessor_ProcessClient, req *extprocv3.ProcessingRequest) {
	if err := s.Send(req); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		b.Fatal(err)
	}
}

func benchServers(b *testing.B) map[string]extprocv3.ExternalProcessorServer {
	cfg := testConfig(b)
	return map[string]extprocv3.ExternalProcessorServer{
		"floor": extproctest.Noop{},
		"llmux": New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger()}),
	}
}

// BenchmarkRequestPhases measures a whole request phase: request headers
// and the buffered request body, each a gRPC round trip.
func BenchmarkRequestPhases(b *testing.B) {
	for _, name := range []string{"floor", "llmux"} {
		b.Run(name, func(b *testing.B) { benchRequestPhases(b, benchServers(b)[name]) })
	}
}

// benchRequestPhases runs request headers and body on srv per iteration.
func benchRequestPhases(b *testing.B, srv extprocv3.ExternalProcessorServer) {
	client := benchConn(b, srv)
	hdr := post("/v1/chat/completions", bearer()...)
	body := reqBody(benchChatBody)
	b.ReportAllocs()
	for b.Loop() {
		s, err := client.Process(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		roundTrip(b, s, hdr)
		roundTrip(b, s, body)
		_ = s.CloseSend()
		for {
			if _, err := s.Recv(); err != nil {
				break
			}
		}
	}
}

// BenchmarkStreamChunk measures one streamed response chunk through a
// stream handler over gRPC.
func BenchmarkStreamChunk(b *testing.B) {
	for _, name := range []string{"floor", "llmux"} {
		b.Run(name, func(b *testing.B) {
			client := benchConn(b, benchServers(b)[name])
			s, err := client.Process(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			roundTrip(b, s, post("/v1/chat/completions", bearer()...))
			roundTrip(b, s, reqBody(benchChatBody))
			roundTrip(b, s, respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
			chunk := respBody(string(benchChunk), false)
			b.ReportAllocs()
			b.SetBytes(int64(len(benchChunk)))
			for b.Loop() {
				roundTrip(b, s, chunk)
			}
			b.StopTimer()
			_ = s.CloseSend()
			for {
				if _, err := s.Recv(); err == io.EOF || err != nil {
					break
				}
			}
		})
	}
}

// discardSender drops replies: for measuring the handler alone.
type discardSender struct{}

func (discardSender) Send(*extprocv3.ProcessingResponse) error { return nil }

// BenchmarkHandlerChunk measures the handler's own work per chunk, without
// gRPC: decode, buffer reuse, reply assembly.
func BenchmarkHandlerChunk(b *testing.B) {
	h := benchHandlerAtBody(b)
	chunk := respBody(string(benchChunk), false)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchChunk)))
	for b.Loop() {
		if err := h.handle(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// benchHandlerAtBody is a handler past the response headers of a streamed
// chat completion, ready for body chunks.
func benchHandlerAtBody(b *testing.B) *handler {
	b.Helper()
	cfg := testConfig(b)
	s := New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger()})
	h := newHandler(s, context.Background(), discardSender{})
	for _, m := range []*extprocv3.ProcessingRequest{post("/v1/chat/completions", bearer()...), reqBody(benchChatBody), respHeaders(false, ":status", "200", "content-type", "text/event-stream")} {
		if err := h.handle(m); err != nil {
			b.Fatal(err)
		}
	}
	return h
}
