package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/processor/telemetry"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/anthropic" // Anthropic and Claude on Vertex AI
	_ "github.com/llmux/llmux/translate/azure"     // Azure OpenAI
	_ "github.com/llmux/llmux/translate/bedrock"   // Amazon Bedrock (Converse, Titan and Cohere embeddings)
	_ "github.com/llmux/llmux/translate/gemini"    // Gemini on AI Studio and Vertex AI
	_ "github.com/llmux/llmux/translate/openai"    // OpenAI and OpenAI-compatible providers
)

// flags are the command-line settings.
type flags struct {
	config        string
	configPoll    time.Duration
	grpcListen    string
	adminListen   string
	logLevel      string
	logFormat     string
	maxRecvBytes  int
	shutdownGrace time.Duration
	kaTime        time.Duration
	kaTimeout     time.Duration
	memLimitRatio float64
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	fs := flag.NewFlagSet("llmux-extproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &flags{}
	fs.StringVar(&f.config, "config", "llmux.yaml", "path of the llmux configuration file (watched with the files it refers to; valid changes apply live; SIGHUP reloads)")
	fs.DurationVar(&f.configPoll, "config-poll-interval", config.DefaultPollInterval, "reread the configuration and the files it refers to this often even without file events")
	fs.StringVar(&f.grpcListen, "grpc-listen", "127.0.0.1:50051", "ext_proc gRPC listen address: host:port or unix:///path/to.sock")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:9090", "admin HTTP listen address (/healthz /readyz /status /metrics /config /debug/pprof); empty disables it")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&f.maxRecvBytes, "grpc-max-recv-bytes", 64<<20, "largest gRPC message accepted (Envoy sends a buffered request body as one message)")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", 30*time.Second, "how long SIGTERM waits for in-flight streams before cutting them")
	fs.DurationVar(&f.kaTime, "grpc-keepalive-time", 30*time.Second, "ping Envoy after this much idle time on a connection")
	fs.DurationVar(&f.kaTimeout, "grpc-keepalive-timeout", 10*time.Second, "close a connection whose keepalive ping is not answered in this time")
	fs.Float64Var(&f.memLimitRatio, "memory-limit-ratio", 0.8, "without GOMEMLIMIT, set the Go runtime's soft memory limit to this share of the container's cgroup memory limit (0 disables)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if f.maxRecvBytes <= 0 {
		return nil, errors.New("-grpc-max-recv-bytes must be positive")
	}
	if f.memLimitRatio < 0 || f.memLimitRatio > 1 {
		return nil, errors.New("-memory-limit-ratio must be between 0 and 1")
	}
	if f.configPoll <= 0 {
		return nil, errors.New("-config-poll-interval must be positive")
	}
	return f, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: want text or json, got %q", format)
}

// listen opens a TCP or unix:// listener.
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// hooks let tests observe the program.
type hooks struct {
	// started reports the bound addresses.
	started func(grpcAddr, adminAddr string)
	// reloaded reports each configuration reload.
	reloaded func(ok bool)
	// hup, when set, replaces SIGHUP: each value asks for a reload.
	hup <-chan os.Signal
	// memoryLimit, when set, replaces debug.SetMemoryLimit.
	memoryLimit func(int64) int64
}

// setMemoryLimit returns the function that sets the runtime's soft memory
// limit.
func (h *hooks) setMemoryLimit() func(int64) int64 {
	if h.memoryLimit != nil {
		return h.memoryLimit
	}
	return setMemoryLimit
}

// summary describes a configuration for the logs: the providers serving
// its model groups ("name (kind)"), and how many deployments and model
// groups it has.
func summary(rt *config.Runtime) []any {
	var providers []string
	seenP, seenD := map[string]bool{}, map[string]bool{}
	for _, g := range rt.Groups() {
		for _, d := range g.Deployments {
			seenD[d.Name] = true
			if p := d.Provider; !seenP[p.Name] {
				seenP[p.Name] = true
				providers = append(providers, p.Name+" ("+p.Kind+")")
			}
		}
	}
	slices.Sort(providers)
	return []any{"config_version", rt.Version(), "providers", strings.Join(providers, ", "), "deployments", len(seenD), "model_groups", len(rt.Groups())}
}

// fieldPaths lists the field paths of a configuration error, for the log.
func fieldPaths(err error) []string {
	var es config.Errors
	if !errors.As(err, &es) {
		return nil
	}
	paths := make([]string, 0, len(es))
	for _, e := range es {
		paths = append(paths, e.Path)
	}
	return slices.Compact(paths)
}

// run is the whole program; it returns when ctx is cancelled and every
// stream has drained (or the grace period ran out).
func run(ctx context.Context, args []string, stderr io.Writer, h *hooks) error {
	if h == nil {
		h = &hooks{}
	}
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}

	applyMemoryLimit(log, f.memLimitRatio, "/", h.setMemoryLimit())

	store, err := config.NewStore(f.config, config.LoadOptions{Kinds: translate.KnownKinds})
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	log.Info("configuration loaded", append([]any{"config", f.config, "files", store.Status().Files}, summary(store.Current())...)...)
	for _, g := range store.Current().Groups() {
		for _, d := range g.Deployments {
			if _, ok := translate.Lookup(d.Provider.Kind); !ok {
				log.Warn("provider kind not supported by this build; its deployments answer 503", "provider", d.Provider.Name, "kind", d.Provider.Kind, "deployment", d.Name)
			}
		}
	}

	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return fmt.Errorf("metrics exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", "llmux-extproc")))
	if err != nil {
		return fmt.Errorf("metrics resource: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	// The OpenTelemetry SDK's own metrics (with OTEL_GO_X_OBSERVABILITY=true:
	// spans dropped on a full export queue, docs/tracing.md) go to /metrics.
	otel.SetMeterProvider(mp)
	metrics, err := telemetry.New(mp)
	if err != nil {
		return err
	}
	if err := registerConfigGauges(reg, store); err != nil {
		return err
	}

	gs := grpc.NewServer(
		grpc.MaxRecvMsgSize(f.maxRecvBytes),
		// Buffered request bodies are held once, not copied twice.
		grpc.ForceServerCodecV2(processor.Codec()),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: f.kaTime, Timeout: f.kaTimeout}),
		// Envoy pings at most every few seconds when configured to.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Stop returns once every stream's handler has returned, so that
		// what they record last (metrics, spans) is in before the
		// exporters flush.
		grpc.WaitForHandlers(true),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	lim, closeLimiter := newLimiter(ctx, store.Current().Limits(), log) // limits.go
	defer closeLimiter()
	limitsAt := store.Current().Limits()
	tracer, stopTracing, err := newTracer(ctx, store.Current().Tracing(), log, metrics) // tracing.go
	if err != nil {
		return err
	}
	defer func() {
		// Flush the spans still queued, within a bound.
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(sctx); err != nil {
			log.Warn("tracing: flushing the last spans", "error", err)
		}
	}()
	tracingAt := store.Current().Tracing()
	srv := processor.New(processor.Options{
		Config:  store.Current,
		Logger:  log,
		Metrics: metrics,
		Limiter: lim,
		Tracer:  tracer,
	})
	defer srv.Close() // the egress clients' connections (failover)
	extprocv3.RegisterExternalProcessorServer(gs, srv)

	gl, err := listen(f.grpcListen)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	var st state
	var al net.Listener
	var admin *http.Server
	if f.adminListen != "" {
		if al, err = net.Listen("tcp", f.adminListen); err != nil {
			gl.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		st.limits = lim.Mode
		mux := adminMux(store, reg, &st)
		mux.HandleFunc("GET /routing", routingStatus(srv)) // deployment health and latency (docs/routing.md)
		admin = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	st.serving.Store(true)
	wg.Go(func() {
		err := gs.Serve(gl)
		st.serving.Store(false)
		if err != nil {
			errc <- fmt.Errorf("grpc serve: %w", err)
		}
	})
	if admin != nil {
		wg.Go(func() {
			if err := admin.Serve(al); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin serve: %w", err)
			}
		})
	}
	reloaded := func(ok bool, err error, cause string) {
		metrics.ConfigReload(ctx, ok)
		if ok && redisChanged(limitsAt, store.Current().Limits()) {
			log.Warn("limits.redis (or key_prefix, hash_tag) changed: the new Redis settings take effect at the next restart; the policies reloaded")
		}
		if ok && !reflect.DeepEqual(tracingAt, store.Current().Tracing()) {
			log.Warn("tracing changed: the new tracing settings take effect at the next restart")
		}
		if ok {
			log.Info("configuration reloaded", append([]any{"cause", cause, "files", store.Status().Files}, summary(store.Current())...)...)
		} else {
			cur := store.Current()
			log.Error("configuration reload failed; still serving the previous configuration",
				"cause", cause, "fields", fieldPaths(err), "error", err,
				"serving_version", cur.Version(), "serving_loaded_at", cur.LoadedAt().UTC().Format(time.RFC3339))
		}
		if h.reloaded != nil {
			h.reloaded(ok)
		}
	}
	wg.Go(func() {
		_ = store.Watch(ctx, config.WatchHooks{
			Reloaded:     reloaded,
			PollInterval: f.configPoll,
			Degraded:     func(err error) { log.Warn("configuration watch degraded; polling", "error", err) },
		})
	})
	hup := h.hup
	if hup == nil {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGHUP)
		defer signal.Stop(c)
		hup = c
	}
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading the configuration and the files it refers to")
				store.Request()
			}
		}
	})
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	adminAddr := ""
	if al != nil {
		adminAddr = al.Addr().String()
	}
	log.Info("llmux-extproc started", append([]any{"grpc", gl.Addr().String(), "admin", adminAddr, "config", f.config, "kinds_built_in", translate.Kinds()}, summary(store.Current())...)...)
	if h.started != nil {
		h.started(gl.Addr().String(), adminAddr)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	// Drain: stop accepting, report not ready, let streams finish.
	st.draining.Store(true)
	hs.Shutdown()
	log.Info("draining in-flight streams", "grace", f.shutdownGrace)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(f.shutdownGrace):
		log.Warn("grace period over; cutting the remaining streams")
		gs.Stop()
		<-done
	}
	if admin != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = admin.Shutdown(sctx)
		scancel()
	}
	cancel()
	wg.Wait()
	log.Info("llmux-extproc stopped")
	return runErr
}

// state is what readiness depends on.
type state struct {
	serving  atomic.Bool   // the gRPC server is up
	draining atomic.Bool   // shutting down
	limits   func() string // the limiter's mode (memory, redis, fallback), for /readyz
}

// readiness says whether llmux can serve, and why not. A configuration
// file rejected on reload does not make llmux unready: the previous
// configuration keeps serving (the failure shows in /status, /readyz's
// body, the log and the llmux_config_* metrics).
func readiness(store *config.Store, st *state) (bool, string) {
	switch {
	case st.draining.Load():
		return false, "shutting down"
	case !st.serving.Load():
		return false, "the gRPC server is not serving"
	case store.Current() == nil:
		return false, "no configuration loaded"
	}
	return true, ""
}

// describe is the configuration part of /readyz's body.
func describe(cs config.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "serving config %s loaded at %s\n", cs.Version, cs.LoadedAt.UTC().Format(time.RFC3339))
	if !cs.Healthy {
		fmt.Fprintf(&b, "last reload at %s failed (the config above is still serving):\n%v\n", cs.LastAttempt.UTC().Format(time.RFC3339), cs.LastError)
	}
	return b.String()
}

// status is /status's JSON body.
type status struct {
	Ready           bool      `json:"ready"`
	Reason          string    `json:"reason,omitempty"`
	ConfigVersion   string    `json:"config_version"`
	ConfigLoadedAt  time.Time `json:"config_loaded_at"`
	LastReloadAt    time.Time `json:"last_reload_at"`
	LastReloadOK    bool      `json:"last_reload_ok"`
	LastReloadError string    `json:"last_reload_error,omitempty"`
	Files           []string  `json:"files"`
}

// registerConfigGauges exports the store's status: whether the newest
// reload succeeded, when it was tried, and when the configuration in force
// was loaded.
func registerConfigGauges(reg prometheus.Registerer, store *config.Store) error {
	unix := func(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llmux_config_last_reload_success", Help: "1 if the newest configuration reload succeeded, 0 if the file (or a file it refers to) was rejected and an older configuration is serving."}, func() float64 {
			if store.Status().Healthy {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llmux_config_last_reload_timestamp_seconds", Help: "When a configuration reload was last tried (Unix time)."}, func() float64 { return unix(store.Status().LastAttempt) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llmux_config_loaded_timestamp_seconds", Help: "When the configuration serving now was loaded (Unix time)."}, func() float64 { return unix(store.Status().LoadedAt) }),
	} {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("config metrics: %w", err)
		}
	}
	return nil
}

// adminMux serves health, readiness, status, metrics, the effective
// configuration and pprof.
func adminMux(store *config.Store, reg *prometheus.Registry, st *state) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready, why := readiness(store, st)
		if !ready {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		out := "ready\n" + describe(store.Status())
		if st.limits != nil {
			out += "limits: " + st.limits() + "\n"
		}
		_, _ = io.WriteString(w, out)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		ready, why := readiness(store, st)
		cs := store.Status()
		out := status{Ready: ready, Reason: why, ConfigVersion: cs.Version, ConfigLoadedAt: cs.LoadedAt, LastReloadAt: cs.LastAttempt, LastReloadOK: cs.Healthy, Files: cs.Files}
		if cs.LastError != nil {
			out.LastReloadError = cs.LastError.Error()
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		b, err := store.Current().Redacted()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write(b)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// routingStatus serves what this process knows about each deployment it
// routed to: requests in flight, cooldown, latency statistics.
func routingStatus(srv *processor.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		b, err := json.MarshalIndent(srv.RoutingStatus(), "", "  ")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("content-type", "application/json")
		_, _ = w.Write(append(b, '\n'))
	}
}
