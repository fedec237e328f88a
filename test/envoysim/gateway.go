package envoysim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Gateway is whatever plays Envoy in an end-to-end test: real Envoy when it
// is installed, otherwise the Sim.
type Gateway interface {
	// Addr returns "127.0.0.1:port" of the named listener.
	Addr(listener string) string
	// Kind is "envoy" or "sim".
	Kind() string
	// Close stops the gateway and waits for it.
	Close() error
}

// Kind reports "sim"; it makes *Sim a Gateway.
func (s *Sim) Kind() string { return "sim" }

// StartGateway runs real Envoy (found with exec.LookPath("envoy")) unless
// the environment variable LLMUX_E2E_ENVOY is "sim" or no envoy binary is
// on PATH, in which case it starts the Sim. opts.Bootstrap/BootstrapPath and
// opts.Clusters apply to both; for real Envoy the bootstrap is rewritten
// with LoopbackBootstrap, every listener gets a free loopback port and the
// admin interface a free loopback port, and StartGateway returns once every
// listener accepts connections (admin /ready, then a dial per listener).
// Cancelling ctx closes either kind of gateway.
func StartGateway(ctx context.Context, opts Options) (Gateway, error) {
	bin, err := exec.LookPath("envoy")
	if err != nil || os.Getenv("LLMUX_E2E_ENVOY") == "sim" || opts.EnvoyVersion != "" {
		// A version mode is the sim's to emulate: a binary is one version.
		return Start(ctx, opts)
	}
	if len(opts.Listeners) > 0 {
		// Real Envoy binds its own sockets: free the given ones and pin
		// their ports.
		ports := make(map[string]int, len(opts.ListenerPorts)+len(opts.Listeners))
		for n, p := range opts.ListenerPorts {
			ports[n] = p
		}
		for n, l := range opts.Listeners {
			ports[n] = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		opts.ListenerPorts, opts.Listeners = ports, nil
	}
	return startEnvoy(ctx, bin, opts)
}

type envoyGateway struct {
	cmd    *exec.Cmd
	dir    string
	addrs  map[string]string
	cancel context.CancelFunc
	waited chan struct{}
	once   sync.Once
	stderr *bytes.Buffer
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startEnvoy(ctx context.Context, bin string, opts Options) (*envoyGateway, error) {
	doc := opts.Bootstrap
	if len(doc) == 0 {
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
	ports := map[string]int{}
	addrs := map[string]string{}
	for _, l := range b.GetStaticResources().GetListeners() {
		p := opts.ListenerPorts[l.GetName()]
		if p == 0 {
			if p, err = freePort(); err != nil {
				return nil, fmt.Errorf("envoysim: free port: %w", err)
			}
		}
		ports[l.GetName()] = p
		addrs[l.GetName()] = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	}
	if err := rewriteLoopback(b, opts.Clusters, ports); err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("envoysim: free port: %w", err)
	}
	b.Admin = nil
	js, err := marshalWithAdmin(b, admin)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "envoysim-envoy-")
	if err != nil {
		return nil, fmt.Errorf("envoysim: temp dir: %w", err)
	}
	cfgPath := filepath.Join(dir, "bootstrap.json")
	if err := os.WriteFile(cfgPath, js, 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("envoysim: writing bootstrap: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(cctx, bin, "-c", cfgPath, "--base-id", strconv.Itoa(rand.IntN(1<<20)+1),
		"--log-level", "warn", "--disable-hot-restart")
	g := &envoyGateway{cmd: cmd, dir: dir, addrs: addrs, cancel: cancel, waited: make(chan struct{}), stderr: &bytes.Buffer{}}
	cmd.Stderr = g.stderr
	setParentDeathSignal(cmd) // no envoy left behind if the test binary dies
	if opts.AccessLog != nil {
		cmd.Stdout = opts.AccessLog
	}
	if err := cmd.Start(); err != nil {
		cancel()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("envoysim: starting envoy: %w", err)
	}
	go func() { _ = cmd.Wait(); close(g.waited) }()
	if err := g.waitReady(ctx, admin); err != nil {
		g.Close()
		return nil, fmt.Errorf("envoysim: envoy not ready: %w\n%s", err, g.stderr.String())
	}
	// As with the Sim, cancelling ctx stops the gateway.
	go func() {
		select {
		case <-ctx.Done():
			g.Close()
		case <-g.waited:
		}
	}()
	return g, nil
}

// waitReady polls the admin /ready endpoint and then dials each listener.
// The poll interval is a bounded back-off, not a synchronisation sleep:
// Envoy offers no readiness notification to a parent process.
func (g *envoyGateway) waitReady(ctx context.Context, admin int) error {
	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: time.Second}
	url := "http://127.0.0.1:" + strconv.Itoa(admin) + "/ready"
	backoff := 5 * time.Millisecond
	for {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for /ready")
		}
		select {
		case <-g.waited:
			return errors.New("envoy exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
	for _, a := range g.addrs {
		conn, err := net.DialTimeout("tcp", a, 5*time.Second)
		if err != nil {
			return err
		}
		conn.Close()
	}
	return nil
}

func (g *envoyGateway) Addr(listener string) string { return g.addrs[listener] }
func (g *envoyGateway) Kind() string                { return "envoy" }

func (g *envoyGateway) Close() error {
	g.once.Do(func() {
		if g.cmd.Process != nil {
			_ = g.cmd.Process.Signal(os.Interrupt)
		}
		select {
		case <-g.waited:
		case <-time.After(10 * time.Second):
			g.cancel()
			<-g.waited
		}
		g.cancel()
		os.RemoveAll(g.dir)
	})
	if s := g.stderr.String(); strings.Contains(s, "critical") {
		return fmt.Errorf("envoysim: envoy: %s", s)
	}
	return nil
}
