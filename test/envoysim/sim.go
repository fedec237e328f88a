package envoysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Options configures a Sim.
type Options struct {
	// Bootstrap is the Envoy bootstrap YAML (or JSON). If empty,
	// BootstrapPath is read instead.
	Bootstrap []byte
	// BootstrapPath is a file holding the bootstrap; used when Bootstrap is
	// empty.
	BootstrapPath string
	// Clusters overrides cluster endpoints: cluster name → "host:port"
	// (normally 127.0.0.1:port) or "unix:/path". An overridden cluster
	// never uses TLS, whatever its transport_socket says: the fakes tests
	// run speak plain HTTP (or h2c).
	Clusters map[string]string
	// ListenerPorts pins listener ports (listener name → port). Listeners
	// not named here listen on an ephemeral 127.0.0.1 port.
	ListenerPorts map[string]int
	// Listeners hands the sim listeners that are already open (listener
	// name → an open 127.0.0.1 TCP listener), e.g. one whose address a test
	// wrote into llmux's configuration before the gateway started: unlike a
	// port picked, closed and pinned with ListenerPorts, no other process
	// can take it meanwhile. The gateway closes them. With real Envoy,
	// StartGateway closes each and pins its port instead.
	Listeners map[string]net.Listener
	// AccessLog receives the access log lines of every stdout access logger
	// (one line per request). Nil discards them; Sim.AccessLogs keeps them
	// either way.
	AccessLog io.Writer
	// Logf, if set, receives debug traces of what the sim does.
	Logf func(format string, args ...any)
	// EnvoyVersion selects version-dependent behaviour: Envoy136 ("1.36",
	// also "1.34", "1.35") lets Envoy's local replies skip ext_proc unless
	// the bootstrap's runtime sets SkipExtProcOnLocalReply to false;
	// Envoy137 ("1.37") and later, and "", pass them through ext_proc.
	// StartGateway refuses it with real Envoy (the binary decides).
	EnvoyVersion string
}

// Sim is a running Envoy stand-in.
type Sim struct {
	opts Options
	cfg  *config
	// skipLocalReply: Envoy's local replies bypass ext_proc (1.34–1.36).
	skipLocalReply bool
	// minor is the Envoy minor version modelled (99 = newest).
	minor  int
	ctx    context.Context
	cancel context.CancelFunc

	servers   map[string]*http.Server
	addrs     map[string]string
	listeners []*runningListener

	grpcMu    sync.Mutex
	grpcConns map[string]*grpc.ClientConn

	transports map[string]*http.Transport

	wg sync.WaitGroup

	statsMu sync.Mutex
	stats   map[string]uint64

	logMu    sync.Mutex
	logLines []string
	logJSON  []map[string]any
	logCh    chan struct{} // closed and replaced on every line

	closeOnce sync.Once
	closeErr  error
}

type runningListener struct {
	cfg *listenerConfig
	sim *Sim
	ln  net.Listener
	srv *http.Server
}

// Start loads the bootstrap, refuses anything the sim does not model, and
// starts every listener on 127.0.0.1. It returns once all listeners accept
// connections. Cancelling ctx closes the sim.
func Start(ctx context.Context, opts Options) (*Sim, error) {
	doc := opts.Bootstrap
	if len(doc) == 0 {
		if opts.BootstrapPath == "" {
			return nil, errors.New("envoysim: Options.Bootstrap or Options.BootstrapPath is required")
		}
		b, err := os.ReadFile(opts.BootstrapPath)
		if err != nil {
			return nil, fmt.Errorf("envoysim: reading bootstrap: %w", err)
		}
		doc = b
	}
	b, err := decodeBootstrap(doc)
	if err != nil {
		return nil, err
	}
	minor, err := envoyMinor(opts.EnvoyVersion)
	if err != nil {
		return nil, err
	}
	cfg, err := buildConfig(b, opts.Clusters, minor)
	if err != nil {
		return nil, err
	}
	for name := range opts.Listeners {
		if !slices.ContainsFunc(cfg.listeners, func(l *listenerConfig) bool { return l.name == name }) {
			closeListeners(opts.Listeners)
			return nil, fmt.Errorf("envoysim: Options.Listeners names unknown listener %q", name)
		}
	}
	for name := range opts.ListenerPorts {
		found := false
		for _, l := range cfg.listeners {
			found = found || l.name == name
		}
		if !found {
			return nil, fmt.Errorf("envoysim: Options.ListenerPorts names unknown listener %q", name)
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		opts: opts, cfg: cfg, ctx: sctx, cancel: cancel,
		skipLocalReply: skipExtProcOnLocalReply(minor, cfg.runtime), minor: minor,
		servers: map[string]*http.Server{}, addrs: map[string]string{},
		grpcConns: map[string]*grpc.ClientConn{}, transports: map[string]*http.Transport{},
		stats: map[string]uint64{}, logCh: make(chan struct{}),
	}
	for _, c := range cfg.clusters {
		s.transports[c.name] = newTransport(c)
	}
	for _, lc := range cfg.listeners {
		ln, given := opts.Listeners[lc.name]
		if !given {
			port := opts.ListenerPorts[lc.name]
			ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		}
		if err != nil {
			s.Close()
			closeListeners(opts.Listeners)
			return nil, fmt.Errorf("envoysim: listener %s: %w", lc.name, err)
		}
		rl := &runningListener{cfg: lc, sim: s, ln: ln}
		var protos http.Protocols
		switch lc.hcm.codec {
		case 1: // HTTP1
			protos.SetHTTP1(true)
		case 2: // HTTP2
			protos.SetUnencryptedHTTP2(true)
		default:
			protos.SetHTTP1(true)
			protos.SetUnencryptedHTTP2(true)
		}
		rl.srv = &http.Server{
			Handler:           rl,
			Protocols:         &protos,
			ReadHeaderTimeout: 30 * time.Second,
			BaseContext:       func(net.Listener) context.Context { return sctx },
			ErrorLog:          nil,
		}
		s.listeners = append(s.listeners, rl)
		s.addrs[lc.name] = ln.Addr().String()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = rl.srv.Serve(ln)
		}()
	}
	if ctx != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			select {
			case <-ctx.Done():
				go s.Close()
			case <-sctx.Done():
			}
		}()
	}
	return s, nil
}

func newTransport(c *clusterConfig) *http.Transport {
	addr := c.dialAddr()
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
			return d.DialContext(ctx, "unix", rest)
		}
		return d.DialContext(ctx, "tcp", addr)
	}
	t := &http.Transport{
		DialContext:         dial,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		ForceAttemptHTTP2:   false,
	}
	var p http.Protocols
	if c.h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	t.Protocols = &p
	return t
}

// Addr returns "127.0.0.1:port" of the named listener, or "" if there is
// no such listener.
func (s *Sim) Addr(listener string) string { return s.addrs[listener] }

// Stats returns a snapshot of the Envoy-style counters the sim keeps, e.g.
// "ext_proc.streams_started", "ext_proc.spurious_msgs_received",
// "ext_proc.rejected_header_mutations", "ext_proc.message_timeouts",
// "ext_proc.clear_route_cache_ignored", "downstream_rq_total",
// "upstream_rq_reset". Both the short name (without "ext_proc.") and the
// prefixed name are present for ext_proc counters.
func (s *Sim) Stats() map[string]uint64 {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	out := make(map[string]uint64, len(s.stats)*2)
	for k, v := range s.stats {
		out[k] = v
		if rest, ok := strings.CutPrefix(k, "ext_proc."); ok {
			out[rest] = v
		}
	}
	return out
}

func (s *Sim) count(name string) {
	if !strings.Contains(name, ".") && !strings.HasPrefix(name, "downstream_") && !strings.HasPrefix(name, "upstream_") {
		name = "ext_proc." + name
	}
	s.statsMu.Lock()
	s.stats[name]++
	s.statsMu.Unlock()
}

// AccessLogs returns every json_format access log line written so far,
// parsed (numbers are float64, absent values nil).
func (s *Sim) AccessLogs() []map[string]any {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return append([]map[string]any(nil), s.logJSON...)
}

// AccessLogLines returns every access log line (JSON or text) written so
// far, without newlines.
func (s *Sim) AccessLogLines() []string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return append([]string(nil), s.logLines...)
}

func (s *Sim) writeLog(line string, obj map[string]any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.logLines = append(s.logLines, line)
	if obj != nil {
		s.logJSON = append(s.logJSON, obj)
	}
	if s.opts.AccessLog != nil {
		_, _ = io.WriteString(s.opts.AccessLog, line+"\n")
	}
	close(s.logCh)
	s.logCh = make(chan struct{})
}

// WaitAccessLogs waits until at least n access log lines were written (as
// Envoy, the sim logs a request after its response completed, so a client
// can see the response before the line exists) and returns the parsed
// json_format lines.
func (s *Sim) WaitAccessLogs(ctx context.Context, n int) ([]map[string]any, error) {
	for {
		s.logMu.Lock()
		if len(s.logLines) >= n {
			out := append([]map[string]any(nil), s.logJSON...)
			s.logMu.Unlock()
			return out, nil
		}
		ch := s.logCh
		s.logMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("envoysim: waiting for %d access log lines: %w", n, ctx.Err())
		}
	}
}

func (s *Sim) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf("envoysim: "+format, args...)
	}
}

// grpcConn returns the (shared) client connection to an ext_proc cluster.
func (s *Sim) grpcConn(cluster string) (*grpc.ClientConn, error) {
	s.grpcMu.Lock()
	defer s.grpcMu.Unlock()
	if s.ctx.Err() != nil {
		return nil, errClosed
	}
	if cc := s.grpcConns[cluster]; cc != nil {
		return cc, nil
	}
	c := s.cfg.clusters[cluster]
	target := c.dialAddr()
	if !strings.HasPrefix(target, "unix:") {
		target = "passthrough:///" + target
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		return nil, fmt.Errorf("envoysim: ext_proc cluster %s: %w", cluster, err)
	}
	s.grpcConns[cluster] = cc
	return cc, nil
}

// Close stops the listeners, aborts requests in flight, closes the gRPC
// connections and waits for every goroutine the sim started.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		var errs []error
		for _, rl := range s.listeners {
			if err := rl.srv.Close(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs = append(errs, err)
			}
		}
		s.wg.Wait()
		s.grpcMu.Lock()
		for _, cc := range s.grpcConns {
			if err := cc.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		s.grpcMu.Unlock()
		for _, t := range s.transports {
			t.CloseIdleConnections()
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// closeListeners closes listeners handed to the sim that it did not start
// serving on.
func closeListeners(ls map[string]net.Listener) {
	for _, l := range ls {
		l.Close()
	}
}
