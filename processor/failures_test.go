package processor

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// manualClock is a clock the test moves.
type manualClock struct{ now time.Time }

func (c *manualClock) Now() time.Time { return c.now }

// fakeTimer is a watchdog timer the test fires by hand.
type fakeTimer struct {
	f       func()
	d       time.Duration
	stopped bool
}

func (t *fakeTimer) Stop() bool                 { t.stopped = true; return true }
func (t *fakeTimer) Reset(d time.Duration) bool { t.d, t.stopped = d, false; return true }

// failRig is one handler with a manual clock, a fake watchdog timer, a
// captured log and metrics.
type failRig struct {
	*exchange
	clock  *manualClock
	timers []*fakeTimer
	log    *bytes.Buffer
	reader *sdkmetric.ManualReader
	idle   time.Duration
}

func newFailRig(t *testing.T, tr func(kind string) (translate.Translator, bool)) *failRig {
	t.Helper()
	cfg := testConfig(t)
	r := &failRig{clock: &manualClock{now: time.Unix(1_700_000_000, 0)}, log: &bytes.Buffer{}, reader: sdkmetric.NewManualReader(),
		idle: cfg.Server().StreamIdleTimeout}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	metrics, err := telemetry.New(mp)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{
		Config: func() *config.Runtime { return cfg }, Now: r.clock.Now, Metrics: metrics, Translator: tr,
		Logger: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AfterFunc: func(d time.Duration, f func()) Timer {
			ft := &fakeTimer{f: f, d: d}
			r.timers = append(r.timers, ft)
			return ft
		},
	})
	rec := &recorder{}
	r.exchange = &exchange{t: t, h: newHandler(s, context.Background(), rec), rec: rec}
	return r
}

// fire advances the clock by d and fires the watchdog timer, as the
// runtime would once its duration has passed; it returns the replies.
func (r *failRig) fire(d time.Duration) []*extprocv3.ProcessingResponse {
	r.t.Helper()
	if len(r.timers) != 1 {
		r.t.Fatalf("%d watchdog timers, want one per response", len(r.timers))
	}
	tm := r.timers[0]
	if tm.stopped {
		r.t.Fatal("firing a stopped timer")
	}
	r.clock.now = r.clock.now.Add(d)
	before := len(r.rec.sent)
	tm.f()
	return r.rec.sent[before:]
}

// requestLines returns the "request" log lines.
func (r *failRig) requestLines() []string {
	var out []string
	for _, l := range strings.Split(r.log.String(), "\n") {
		if strings.Contains(l, "msg=request ") {
			out = append(out, l)
		}
	}
	return out
}

// recorded returns the status and error code of every recorded request.
func (r *failRig) recorded() []string {
	r.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "llmux.requests" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				st, _ := dp.Attributes.Value("status")
				code, _ := dp.Attributes.Value("error_code")
				for range dp.Value {
					out = append(out, st.Emit()+" "+code.AsString())
				}
			}
		}
	}
	return out
}

// checkOutcome asserts one request recorded with status and code, in the
// metric and in exactly one log line.
func (r *failRig) checkOutcome(status, code string) {
	r.t.Helper()
	if got := r.recorded(); len(got) != 1 || got[0] != status+" "+code {
		r.t.Errorf("metric records %q, want [%s %s]", got, status, code)
	}
	// Failures that are not the client's doing are warnings; an
	// interrupted stream (often a client that stopped reading) is info.
	level := map[string]string{"": "DEBUG", "canceled": "DEBUG", "stream_interrupted": "INFO"}[code]
	if level == "" {
		level = "WARN"
	}
	lines := r.requestLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "error_code="+code) || !strings.Contains(lines[0], "status="+status) ||
		!strings.Contains(lines[0], "level="+level) {
		r.t.Errorf("log lines %q, want one at %s with status=%s error_code=%s", lines, level, status, code)
	}
}

func bodyOf(r *extprocv3.ProcessingResponse) *extprocv3.StreamedBodyResponse {
	return r.GetResponseBody().GetResponse().GetBodyMutation().GetStreamedResponse()
}

const (
	streamReq    = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	nonStreamReq = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	firstEvent   = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n"
)

var trailers = &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{Trailers: headerMap("x-t", "1")}}}

// TestTruncatedStreamEndsWithAnError: a stream whose upstream ends
// without its terminal event ends with an OpenAI error event (no [DONE])
// and is recorded as upstream_truncated, whether the end came on a body
// chunk or as trailers.
func TestTruncatedStreamEndsWithAnError(t *testing.T) {
	for _, viaTrailers := range []bool{false, true} {
		name := "end_of_stream"
		if viaTrailers {
			name = "trailers"
		}
		t.Run(name, func(t *testing.T) {
			r := newFailRig(t, nil)
			forward(t, r.exchange, streamReq)
			r.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
			var got strings.Builder
			out, err := r.send(respBody(firstEvent, !viaTrailers))
			if err != nil {
				t.Fatal(err)
			}
			if viaTrailers {
				more, err := r.send(trailers)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, more...)
			}
			for _, m := range out {
				got.WriteString(string(bodyOf(m).GetBody()))
			}
			last := out[len(out)-1]
			if viaTrailers {
				if last.GetResponseTrailers() == nil || bodyOf(out[len(out)-2]).GetEndOfStream() {
					t.Fatalf("want body replies then the trailers reply: %v", out)
				}
			} else if !bodyOf(last).GetEndOfStream() {
				t.Fatal("last reply lacks end_of_stream")
			}
			events := strings.Split(strings.TrimSuffix(got.String(), "\n\n"), "\n\n")
			ev := strings.TrimPrefix(events[len(events)-1], "data: ")
			if gjson.Get(ev, "error.code").String() != "upstream_truncated" || gjson.Get(ev, "error.type").String() != "server_error" ||
				strings.Contains(got.String(), "[DONE]") || !strings.Contains(events[0], `"content":"Hel"`) {
				t.Fatalf("stream to the client:\n%s", got.String())
			}
			md := br2md(last)
			if md["error_code"].GetStringValue() != "upstream_truncated" || md["status"].GetNumberValue() != 200 {
				t.Errorf("metadata %v", md)
			}
			r.checkOutcome("200", "upstream_truncated")
			if r.timers[0].stopped != true {
				t.Error("watchdog still armed after the end")
			}
		})
	}
}

// TestCompleteStreamIsNotTruncated guards the other side: a stream with
// its [DONE] is a success.
func TestCompleteStreamIsNotTruncated(t *testing.T) {
	r := newFailRig(t, nil)
	forward(t, r.exchange, streamReq)
	r.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	out := r.must(respBody(streamUpstream, true))
	if b := string(bodyOf(out).GetBody()); strings.Contains(b, `"error"`) || !strings.HasSuffix(b, "data: [DONE]\n\n") {
		t.Fatalf("body %s", b)
	}
	r.checkOutcome("200", "")
}

// incomplete is a translator whose buffered decoder ends neither complete
// nor failed, as a cut body the decoder cannot see as cut would.
type incomplete struct{ translate.Translator }

func (t incomplete) NewDecoder(req *translate.Request, status int, ct string) translate.Decoder {
	return &incompleteDecoder{Decoder: t.Translator.NewDecoder(req, status, ct)}
}

type incompleteDecoder struct {
	translate.Decoder
	res translate.Result
}

func (d *incompleteDecoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	return append(dst, src...), nil
}
func (d *incompleteDecoder) Result() *translate.Result { return &d.res }

// TestTruncatedBufferedBodyIs502: a non-streamed response cut short
// reaches the client as a 502 OpenAI error, never as partial JSON,
// whether the decoder sees the cut (invalid JSON) or only fails to
// complete.
func TestTruncatedBufferedBodyIs502(t *testing.T) {
	base, _ := translate.Lookup("openai")
	for _, tc := range []struct {
		name string
		tr   func(string) (translate.Translator, bool)
		code string
	}{
		{"decoder sees invalid JSON", nil, "upstream_protocol"},
		{"decoder never completes", func(k string) (translate.Translator, bool) { return incomplete{base}, k == "openai" }, "upstream_truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFailRig(t, tc.tr)
			forward(t, r.exchange, nonStreamReq)
			if out, _ := r.send(respHeaders(false, ":status", "200", "content-type", "application/json")); len(out) != 0 {
				t.Fatalf("headers not held: %v", out)
			}
			out, err := r.send(respBody(`{"id":"x","object":"chat.completion","choices":[{"index":0,"mess`, true))
			if err != nil || len(out) != 2 {
				t.Fatalf("%v %v", out, err)
			}
			if st := setHeader(out[0].GetResponseHeaders().GetResponse().GetHeaderMutation(), ":status"); st != "502" {
				t.Errorf(":status %q", st)
			}
			b := bodyOf(out[1]).GetBody()
			if gjson.GetBytes(b, "error.code").String() != tc.code || !bodyOf(out[1]).GetEndOfStream() {
				t.Errorf("body %s", b)
			}
			r.checkOutcome("502", tc.code)
		})
	}
}

// TestWatchdog: a response whose upstream goes silent for the idle bound
// is ended by llmux in the one form Envoy accepts at that point.
func TestWatchdog(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    string
		ct     string
		chunk  string // a body chunk before the stall, or none
		check  func(t *testing.T, out []*extprocv3.ProcessingResponse)
		status string
	}{
		{"stream after a chunk: an error event with end_of_stream", streamReq, "text/event-stream", firstEvent,
			func(t *testing.T, out []*extprocv3.ProcessingResponse) {
				b := bodyOf(out[0])
				if len(out) != 1 || !b.GetEndOfStream() || !strings.HasPrefix(string(b.GetBody()), "data: {") ||
					gjson.Get(strings.TrimPrefix(string(b.GetBody()), "data: "), "error.code").String() != "stream_stalled" ||
					br2md(out[0])["error_code"].GetStringValue() != "stream_stalled" {
					t.Fatalf("replies %v", out)
				}
			}, "200"},
		{"stream before any chunk: an immediate response (Envoy resets the client)", streamReq, "text/event-stream", "",
			func(t *testing.T, out []*extprocv3.ProcessingResponse) {
				if len(out) != 1 {
					t.Fatalf("replies %v", out)
				}
				if st, code := immediate(t, out[0]); st != 504 || code != "stream_stalled" {
					t.Fatalf("%d %s", st, code)
				}
			}, "200"},
		{"held headers after a chunk: 504 headers and an error body", nonStreamReq, "application/json", `{"id":"x",`,
			func(t *testing.T, out []*extprocv3.ProcessingResponse) {
				if len(out) != 2 || setHeader(out[0].GetResponseHeaders().GetResponse().GetHeaderMutation(), ":status") != "504" {
					t.Fatalf("replies %v", out)
				}
				b := bodyOf(out[1])
				if !b.GetEndOfStream() || gjson.GetBytes(b.GetBody(), "error.code").String() != "stream_stalled" || br2md(out[1])["status"].GetNumberValue() != 504 {
					t.Fatalf("body reply %v", b)
				}
			}, "504"},
		{"held headers before any chunk: an immediate 504", nonStreamReq, "application/json", "",
			func(t *testing.T, out []*extprocv3.ProcessingResponse) {
				if len(out) != 1 {
					t.Fatalf("replies %v", out)
				}
				if st, code := immediate(t, out[0]); st != 504 || code != "stream_stalled" {
					t.Fatalf("%d %s", st, code)
				}
			}, "504"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFailRig(t, nil)
			forward(t, r.exchange, tc.req)
			if _, err := r.send(respHeaders(false, ":status", "200", "content-type", tc.ct)); err != nil {
				t.Fatal(err)
			}
			if len(r.timers) != 1 || r.timers[0].d != r.idle {
				t.Fatalf("watchdog not armed at the response headers: %v", r.timers)
			}
			if tc.chunk != "" {
				r.clock.now = r.clock.now.Add(r.idle / 2)
				if _, err := r.send(respBody(tc.chunk, false)); err != nil {
					t.Fatal(err)
				}
				// The timer fires at the bound counted from the headers:
				// a chunk came since, so it re-arms for the rest.
				if out := r.fire(r.idle / 2); len(out) != 0 || r.timers[0].d != r.idle/2 {
					t.Fatalf("fired early: %v, re-armed for %v", out, r.timers[0].d)
				}
			}
			out := r.fire(r.idle)
			tc.check(t, out)
			if r.h.ph != phaseDone {
				t.Errorf("phase %s", r.h.ph)
			}
			r.checkOutcome(tc.status, "stream_stalled")
			// A late chunk from the abandoned upstream changes nothing.
			r.h.end()
			if got := r.recorded(); len(got) != 1 {
				t.Errorf("recorded %v", got)
			}
		})
	}
}

// TestStreamEndClassification: when Envoy ends the stream before llmux's
// last reply, llmux records how far the exchange had got, with the status
// the client saw where llmux knows it.
func TestStreamEndClassification(t *testing.T) {
	for _, tc := range []struct {
		name   string
		steps  func(r *failRig)
		status string
		code   string
	}{
		{"before the response: canceled", func(r *failRig) {
			forward(r.t, r.exchange, streamReq)
		}, "499", "canceled"},
		{"after the response started (headers sent): interrupted, status seen", func(r *failRig) {
			forward(r.t, r.exchange, streamReq)
			r.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
			r.must(respBody(firstEvent, false))
		}, "200", "stream_interrupted"},
		{"headers still held: interrupted, status unknown", func(r *failRig) {
			forward(r.t, r.exchange, nonStreamReq)
			_, _ = r.send(respHeaders(false, ":status", "200", "content-type", "application/json"))
			_, _ = r.send(respBody(`{"id":`, false))
		}, "0", "stream_interrupted"},
		{"after the terminal event: the outcome stands", func(r *failRig) {
			forward(r.t, r.exchange, streamReq)
			r.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
			r.must(respBody(streamUpstream, false))
		}, "200", ""},
		{"Envoy's reset before headers (through ext_proc)", func(r *failRig) {
			forward(r.t, r.exchange, streamReq)
			_, _ = r.send(respHeaders(false, ":status", "503", "content-type", "text/plain"))
			_, _ = r.send(respBody("upstream connect error or disconnect/reset before headers. reset reason: connection termination", true))
		}, "503", "upstream_unavailable"},
		{"Envoy's route timeout (through ext_proc)", func(r *failRig) {
			forward(r.t, r.exchange, streamReq)
			_, _ = r.send(respHeaders(false, ":status", "504", "content-type", "text/plain"))
			_, _ = r.send(respBody("upstream request timeout", true))
		}, "504", "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newFailRig(t, nil)
			tc.steps(r)
			r.h.end()
			r.checkOutcome(tc.status, tc.code)
		})
	}
}

// syncClock is a manual clock safe for concurrent reads.
type syncClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *syncClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *syncClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// lockedTimer is a fake timer safe to use from the handler's goroutine.
type lockedTimer struct {
	mu      sync.Mutex
	stopped bool
}

func (t *lockedTimer) Stop() bool                 { t.mu.Lock(); t.stopped = true; t.mu.Unlock(); return true }
func (t *lockedTimer) Reset(d time.Duration) bool { return true }

// TestWatchdogWhileProcessWaits: over real gRPC, the watchdog answers
// while Process is blocked in Recv; the abandoned upstream's late chunk is
// dropped and the stream ends cleanly, recorded once as stream_stalled.
func TestWatchdogWhileProcessWaits(t *testing.T) {
	cfg := testConfig(t)
	clock := &syncClock{now: time.Unix(1_700_000_000, 0)}
	fire := make(chan func(), 1)
	metrics, reader := testMetrics(t)
	srv := tracked{Server: New(Options{Config: func() *config.Runtime { return cfg }, Logger: discardLogger(), Metrics: metrics, Now: clock.Now,
		AfterFunc: func(d time.Duration, f func()) Timer { fire <- f; return &lockedTimer{} }}), done: make(chan error, 1)}
	g := serveGRPC(t, srv)
	g.reader = reader
	s, err := g.client.Process(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*extprocv3.ProcessingRequest{
		post("/v1/chat/completions", bearer()...), reqBody(streamReq),
		respHeaders(false, ":status", "200", "content-type", "text/event-stream"), respBody(firstEvent, false),
	} {
		if err := s.Send(m); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	// Process now waits in Recv; the timer fires on another goroutine.
	clock.add(cfg.Server().StreamIdleTimeout)
	go (<-fire)()
	r, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if b := bodyOf(r); !b.GetEndOfStream() || !strings.Contains(string(b.GetBody()), `"code":"stream_stalled"`) {
		t.Fatalf("watchdog reply %v", r)
	}
	// Envoy may still deliver the abandoned upstream's chunk.
	if err := s.Send(respBody(firstEvent, false)); err != nil {
		t.Fatal(err)
	}
	if err := g.waitDone(t); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("want the stream closed with OK after the late chunk, got %v", err)
	}
	if n := g.requests(t, "stream_stalled"); n != 1 {
		t.Fatalf("stream_stalled recorded %d times", n)
	}
}

// serveGRPC serves srv on loopback and returns a client rig for it.
func serveGRPC(t *testing.T, srv tracked) *grpcRig {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return &grpcRig{client: extprocv3.NewExternalProcessorClient(conn), done: srv.done}
}
