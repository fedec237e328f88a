// Package egress is llmux's own upstream client: it sends one provider
// request, already translated and signed, to Envoy's egress listener
// (envoy/standalone.yaml, listener "egress") with the cluster header that
// picks the provider cluster, and returns the response as a stream. Envoy
// keeps TLS, connection pooling, circuit breakers and telemetry for these
// calls; llmux never dials a provider itself.
//
// A Client is safe for concurrent use and reuses its connections to the
// listener (HTTP/1.1 keep-alive, or one multiplexed h2c connection). Every
// call is bounded: by its context, by a wait for the response headers, by an
// idle bound between body reads, and by a cap on the body bytes read.
package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	// DefaultDialTimeout bounds connecting to the egress listener.
	DefaultDialTimeout = 2 * time.Second
	// DefaultHeaderTimeout bounds the wait for the provider's response
	// headers. A non-streamed call to a reasoning model sends nothing until
	// its whole answer is ready, so it is long.
	DefaultHeaderTimeout = 10 * time.Minute
	// DefaultIdleTimeout bounds the silence between two body reads.
	DefaultIdleTimeout = 4 * time.Minute
	// DefaultMaxBodyBytes caps the response body bytes a caller may read.
	DefaultMaxBodyBytes = 32 << 20
	// DefaultClusterHeader is the header the egress route's cluster_header
	// reads.
	DefaultClusterHeader = "x-llmux-upstream"
)

// Errors a call can end with, besides the context's own error and transport
// failures (wrapped). Match them with errors.Is.
var (
	// ErrHeaderTimeout: no response headers within Options.HeaderTimeout.
	ErrHeaderTimeout = errors.New("egress: no response headers in time")
	// ErrIdleTimeout: the body was silent for longer than Options.IdleTimeout.
	ErrIdleTimeout = errors.New("egress: response body idle too long")
	// ErrBodyTooLarge: the body is longer than Options.MaxBodyBytes.
	ErrBodyTooLarge = errors.New("egress: response body too large")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("egress: client closed")
)

// Options configures a Client.
type Options struct {
	// Address is "host:port" of Envoy's egress listener
	// (config server.egress_address). Required.
	Address string
	// ClusterHeader is the header Envoy routes on (config
	// server.cluster_header; default DefaultClusterHeader).
	ClusterHeader string
	// H2C speaks HTTP/2 without TLS (prior knowledge) to the listener: one
	// multiplexed connection. Otherwise HTTP/1.1 with keep-alive. The
	// shipped listener (codec_type AUTO) speaks both.
	H2C bool
	// DialTimeout, HeaderTimeout, IdleTimeout and MaxBodyBytes default to
	// the constants above.
	DialTimeout   time.Duration
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	MaxBodyBytes  int64
	// MaxIdleConns bounds the idle HTTP/1.1 connections kept (default 64).
	MaxIdleConns int
}

// Client sends provider requests through Envoy's egress listener.
type Client struct {
	opts   Options
	tr     *http.Transport
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // calls with an open body
	dials  atomic.Int64   // connections opened to the listener
}

// New returns a Client for the listener at o.Address.
func New(o Options) (*Client, error) {
	if _, _, err := net.SplitHostPort(o.Address); err != nil {
		return nil, fmt.Errorf("egress: address %q: %w", o.Address, err)
	}
	if o.ClusterHeader == "" {
		o.ClusterHeader = DefaultClusterHeader
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxIdleConns <= 0 {
		o.MaxIdleConns = 64
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	addr := o.Address
	c := &Client{opts: o}
	tr := &http.Transport{
		// Always the listener, whatever the URL says.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		Proxy:               nil,
		DisableCompression:  true, // bytes go to the decoder as the provider sent them
		MaxIdleConns:        o.MaxIdleConns,
		MaxIdleConnsPerHost: o.MaxIdleConns,
		IdleConnTimeout:     90 * time.Second,
	}
	var p http.Protocols
	if o.H2C {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	tr.Protocols = &p
	c.tr = tr
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Request is one provider call, already translated (and signed) for the
// deployment: what the translator would have made Envoy send.
type Request struct {
	// Cluster is the Envoy cluster of the deployment's provider.
	Cluster string
	// Method defaults to POST.
	Method string
	// Path is the request target, query included (":path").
	Path string
	// Header holds the provider's headers (auth, content-type, version,
	// x-request-id). Hop-by-hop headers, Host and the cluster header are
	// ignored: the egress route rewrites Host to the provider's name.
	Header http.Header
	// Body is the request body; content-length is set from it.
	Body []byte
}

// Response is the provider's answer as Envoy passed it on. Body streams and
// must be closed; reads are bounded by Options.IdleTimeout between reads
// and Options.MaxBodyBytes in total.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Header is the response headers.
	Header http.Header
	// Body is the response body.
	Body io.ReadCloser
}

// Do sends r and returns once the response headers arrived. The response
// body stays tied to ctx: cancelling it ends reads with ctx's error.
func (c *Client) Do(ctx context.Context, r *Request) (*Response, error) {
	if c.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if r.Cluster == "" {
		return nil, errors.New("egress: request without a cluster")
	}
	method := r.Method
	if method == "" {
		method = http.MethodPost
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stopClose := context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })
	release := func() { stopClose(); cancel(context.Canceled) }
	req, err := http.NewRequestWithContext(cctx, method, "http://egress"+r.Path, bytes.NewReader(r.Body))
	if err != nil {
		release()
		return nil, fmt.Errorf("egress: cluster %s: %w", r.Cluster, err)
	}
	for k, vs := range r.Header {
		if skipHeader(k) {
			continue
		}
		req.Header[k] = vs
	}
	req.Header.Set(c.opts.ClusterHeader, r.Cluster)
	req.ContentLength = int64(len(r.Body))
	req.Header.Set("Content-Length", strconv.Itoa(len(r.Body)))

	headerTimer := time.AfterFunc(c.opts.HeaderTimeout, func() { cancel(ErrHeaderTimeout) })
	resp, err := c.tr.RoundTrip(req)
	if !headerTimer.Stop() && err == nil {
		// The timer fired as the headers arrived: the call is cancelled.
		resp.Body.Close()
		err = ErrHeaderTimeout
	}
	if err != nil {
		cause := context.Cause(cctx)
		release()
		if cause != nil && ctx.Err() == nil {
			err = cause // our own deadline or Close, not the caller's
		}
		return nil, fmt.Errorf("egress: cluster %s: %w", r.Cluster, err)
	}
	b := &body{rc: resp.Body, cancel: cancel, release: release, ctx: cctx, caller: ctx, left: c.opts.MaxBodyBytes, cluster: r.Cluster}
	b.idle = time.AfterFunc(c.opts.IdleTimeout, func() { cancel(ErrIdleTimeout) })
	b.idleFor = c.opts.IdleTimeout
	c.wg.Add(1)
	b.done = c.wg.Done
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Close cancels every call in flight, waits until their bodies are closed,
// and closes idle connections.
func (c *Client) Close() {
	c.cancel()
	c.wg.Wait()
	c.tr.CloseIdleConnections()
}

// skipHeader: headers a caller may not set on the egress request.
func skipHeader(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Host", "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Upgrade", "Trailer",
		"Content-Length":
		return true
	}
	return false
}

// body bounds and ties a response body to its call.
type body struct {
	rc      io.ReadCloser
	ctx     context.Context // the call's, cancelled with a cause
	caller  context.Context
	cancel  context.CancelCauseFunc
	release func()
	idle    *time.Timer
	idleFor time.Duration
	left    int64
	cluster string
	done    func()
	once    sync.Once
	err     error       // sticky; Read's only
	eof     atomic.Bool // the whole body was read
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.idle.Reset(b.idleFor)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		b.err = fmt.Errorf("egress: cluster %s: %w", b.cluster, ErrBodyTooLarge)
		b.cancel(ErrBodyTooLarge)
		return n, b.err
	}
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); cause != nil && b.caller.Err() == nil {
			err = cause
		}
		b.err = fmt.Errorf("egress: cluster %s: %w", b.cluster, err)
		return n, b.err
	}
	if err == io.EOF {
		b.err = io.EOF
		b.eof.Store(true)
	}
	return n, err
}

// Close ends the call: an unread rest of the body is abandoned (the
// connection is not reused) and the call's resources are released. It may
// be called while a Read is blocked (the Read then fails); Read itself is
// not safe for concurrent use.
func (b *body) Close() error {
	var err error
	b.once.Do(func() {
		b.idle.Stop()
		if !b.eof.Load() {
			b.cancel(context.Canceled) // abandon the rest: no drain
		}
		err = b.rc.Close()
		b.release()
		b.done()
	})
	return err
}
