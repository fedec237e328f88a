// Package processor is llmux's ext_proc server: one stream handler per HTTP
// request, driven by the messages Envoy sends.
//
// The handler is a phase state machine (request headers → request body →
// response headers → response body → trailers). It authenticates the
// caller, validates the OpenAI request, picks a deployment, asks a
// translator to rewrite the request and decode the response, and reports
// what happened as Envoy dynamic metadata and OpenTelemetry metrics. It
// knows no provider: everything provider-specific sits behind
// translate.Translator.
//
// Processing modes llmux requires (see envoy/standalone.yaml): request
// headers SEND, request body BUFFERED, response headers SEND, response body
// FULL_DUPLEX_STREAMED with response trailers SEND.
// On an owned route (route metadata mode: owned, owned.go) the request body
// is FULL_DUPLEX_STREAMED instead and llmux answers with a
// StreamedImmediateResponse (Envoy 1.37+).
package processor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/llmux/llmux/processor/route"
	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/ratelimit"
	"github.com/llmux/llmux/translate"
)

// Options configure a Server.
type Options struct {
	// Config returns the configuration in force. Each stream takes one
	// snapshot when it starts and uses it to the end.
	Config func() *config.Runtime
	// Logger receives request logs; nil means slog.Default().
	Logger *slog.Logger
	// Metrics records instruments; nil records nothing.
	Metrics *telemetry.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Translator finds the translator of a provider kind; nil means
	// translate.Lookup.
	Translator func(kind string) (translate.Translator, bool)
	// AfterFunc starts the response watchdog's timer, as time.AfterFunc
	// does; nil means time.AfterFunc. The watchdog reads Now to tell a
	// stall from a timer that fired late, so tests inject both.
	AfterFunc func(d time.Duration, f func()) Timer
	// Router chooses deployments and keeps their health and latency
	// statistics (routing.go); nil means a new one on Now, whose cooldowns
	// are logged and counted (a Router given here reports them through its
	// own route.Options.OnCooldown).
	Router *route.Router
	// Limiter enforces the configuration's limits (limits.go); nil means
	// an in-memory one on Now, for a single process.
	Limiter *ratelimit.Limiter
	// Tracer records each request's trace (tracing.go); nil records none.
	Tracer *tracing.Tracer
}

// Timer is the part of *time.Timer the watchdog uses.
type Timer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// Server implements the ext_proc ExternalProcessor service.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	opts     Options
	buffered budget // request body bytes held across streams

	// Routing: deployment choice (routing.go) and the Envoy route
	// metadata parsed (routemeta.go).
	routing *routing
	routeMD routeMetaCache

	unknownPrices unknownPrices // pricing concern: deployments without a price, logged once (cost.go)

	egress egressClients // llmux's own provider calls (failover.go)

	limiter *ratelimit.Limiter // limits and budgets (limits.go)
}

// New returns a Server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Translator == nil {
		opts.Translator = translate.Lookup
	}
	if opts.AfterFunc == nil {
		opts.AfterFunc = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
	lim := opts.Limiter
	if lim == nil {
		lim = ratelimit.New(ratelimit.Options{Now: opts.Now})
	}
	if err := opts.Metrics.ObserveRateLimiter(lim.Mode, lim.RedisErrors, lim.Fallbacks); err != nil {
		opts.Logger.Error("llmux: limits gauges", "error", err)
	}
	return &Server{opts: opts, routing: newRouting(&opts), limiter: lim}
}

// Process handles one ext_proc stream, that is one HTTP request and its
// response. It returns nil when Envoy ends the stream (io.EOF or
// cancellation), which is how every stream normally ends.
func (s *Server) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := stream.Context()
	s.opts.Metrics.StreamStarted(ctx)
	defer s.opts.Metrics.StreamEnded(ctx)

	h := newHandler(s, ctx, stream)
	defer h.end()
	for {
		req, err := stream.Recv()
		if err != nil {
			if normalEnd(err) {
				return nil
			}
			return status.Errorf(codes.Unknown, "llmux: receive: %v", err)
		}
		// The watchdog may answer while this goroutine waits in Recv:
		// the handler's state and its sends are under h.mu.
		h.mu.Lock()
		if h.ph == phaseDone {
			// The watchdog ended the exchange: what Envoy still sends
			// (the abandoned upstream's late chunks) is dropped.
			h.mu.Unlock()
			return nil
		}
		err = h.handle(req)
		done := h.ph == phaseDone
		h.mu.Unlock()
		if err != nil {
			if normalEnd(err) {
				return nil // Envoy went away while llmux was answering
			}
			return err
		}
		if done {
			// Nothing more is expected: Envoy closes its side too.
			return nil
		}
	}
}

// normalEnd reports whether err is how Envoy ends a stream.
func normalEnd(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return true
	}
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	return false
}
