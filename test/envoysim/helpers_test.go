package envoysim

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitMax = 5 * time.Second // upper bound only; never a synchronisation sleep

// ---- scripted ext_proc server ----

type procServer struct {
	extprocsvc.UnimplementedExternalProcessorServer
	addr    string
	srv     *grpc.Server
	streams chan *procStream
}

type procStream struct {
	st     extprocsvc.ExternalProcessor_ProcessServer
	recv   chan *extprocsvc.ProcessingRequest
	ended  chan struct{} // closed when Recv fails (sim closed its side)
	finish chan error
	once   sync.Once
}

func newProcServer(t *testing.T) *procServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &procServer{addr: ln.Addr().String(), srv: grpc.NewServer(), streams: make(chan *procStream, 16)}
	extprocsvc.RegisterExternalProcessorServer(p.srv, p)
	done := make(chan struct{})
	go func() { defer close(done); _ = p.srv.Serve(ln) }()
	t.Cleanup(func() { p.srv.Stop(); <-done })
	return p
}

func (p *procServer) Process(st extprocsvc.ExternalProcessor_ProcessServer) error {
	ps := &procStream{st: st, recv: make(chan *extprocsvc.ProcessingRequest, 64), ended: make(chan struct{}), finish: make(chan error, 1)}
	go func() {
		defer close(ps.ended)
		for {
			m, err := st.Recv()
			if err != nil {
				return
			}
			select {
			case ps.recv <- m:
			case <-st.Context().Done():
				return
			}
		}
	}()
	p.streams <- ps
	select {
	case err := <-ps.finish:
		return err
	case <-st.Context().Done():
		return st.Context().Err()
	}
}

func (p *procServer) next(t *testing.T) *procStream {
	t.Helper()
	select {
	case s := <-p.streams:
		return s
	case <-time.After(waitMax):
		t.Fatal("no ext_proc stream opened")
		return nil
	}
}

// noStream asserts that no ext_proc stream is pending right now.
func (p *procServer) noStream(t *testing.T) {
	t.Helper()
	select {
	case <-p.streams:
		t.Fatal("unexpected ext_proc stream")
	default:
	}
}

// recv returns the next message, or nil if the sim closed the stream.
func (s *procStream) recvMsg(t *testing.T) *extprocsvc.ProcessingRequest {
	t.Helper()
	select {
	case m := <-s.recv:
		return m
	case <-s.ended:
		select {
		case m := <-s.recv:
			return m
		default:
			return nil
		}
	case <-time.After(waitMax):
		t.Fatal("timed out waiting for an ext_proc message")
		return nil
	}
}

func kindOf(m *extprocsvc.ProcessingRequest) string {
	switch m.GetRequest().(type) {
	case *extprocsvc.ProcessingRequest_RequestHeaders:
		return "request_headers"
	case *extprocsvc.ProcessingRequest_ResponseHeaders:
		return "response_headers"
	case *extprocsvc.ProcessingRequest_RequestBody:
		return "request_body"
	case *extprocsvc.ProcessingRequest_ResponseBody:
		return "response_body"
	case *extprocsvc.ProcessingRequest_RequestTrailers:
		return "request_trailers"
	case *extprocsvc.ProcessingRequest_ResponseTrailers:
		return "response_trailers"
	}
	return "none"
}

func (s *procStream) expect(t *testing.T, kind string) *extprocsvc.ProcessingRequest {
	t.Helper()
	m := s.recvMsg(t)
	if m == nil {
		t.Fatalf("expected %s, stream closed", kind)
	}
	if got := kindOf(m); got != kind {
		t.Fatalf("expected %s, got %s: %v", kind, got, m)
	}
	return m
}

func (s *procStream) send(t *testing.T, r *extprocsvc.ProcessingResponse) {
	t.Helper()
	if err := s.st.Send(r); err != nil {
		t.Fatalf("send: %v", err)
	}
}

// end finishes the server side of the stream with err (nil = OK).
func (s *procStream) end(err error) { s.once.Do(func() { s.finish <- err }) }

// waitClosed waits until the sim has closed (half-closed or reset) the stream.
func (s *procStream) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(waitMax):
		t.Fatal("ext_proc stream not closed by the sim")
	}
}

// ---- response builders ----

func hdrMut(set map[string]string, remove ...string) *extprocsvc.HeaderMutation {
	m := &extprocsvc.HeaderMutation{RemoveHeaders: remove}
	for k, v := range set {
		m.SetHeaders = append(m.SetHeaders, setHdr(k, v))
	}
	return m
}

func reqHeadersResp(c *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocsvc.HeadersResponse{Response: c}}}
}

func respHeadersResp(c *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocsvc.HeadersResponse{Response: c}}}
}

func reqBodyResp(c *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestBody{RequestBody: &extprocsvc.BodyResponse{Response: c}}}
}

func respBodyResp(c *extprocsvc.CommonResponse) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseBody{ResponseBody: &extprocsvc.BodyResponse{Response: c}}}
}

func bodySet(b string) *extprocsvc.BodyMutation {
	return &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_Body{Body: []byte(b)}}
}

func streamed(body string, eos bool) *extprocsvc.CommonResponse {
	return &extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_StreamedResponse{
		StreamedResponse: &extprocsvc.StreamedBodyResponse{Body: []byte(body), EndOfStream: eos}}}}
}

func reqTrailersResp(m *extprocsvc.HeaderMutation) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocsvc.TrailersResponse{HeaderMutation: m}}}
}

func respTrailersResp(m *extprocsvc.HeaderMutation) *extprocsvc.ProcessingResponse {
	return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocsvc.TrailersResponse{HeaderMutation: m}}}
}

func hv(m *extprocsvc.ProcessingRequest, key string) (string, bool) {
	var hm = m.GetRequestHeaders()
	if hm == nil {
		hm = m.GetResponseHeaders()
	}
	for _, h := range hm.GetHeaders().GetHeaders() {
		if h.GetKey() == key {
			return string(h.GetRawValue()), true
		}
	}
	return "", false
}

func bodyOf(m *extprocsvc.ProcessingRequest) *extprocsvc.HttpBody {
	if b := m.GetRequestBody(); b != nil {
		return b
	}
	return m.GetResponseBody()
}

// ---- loopback upstream ----

type upstreamReq struct {
	method, path, host string
	header             http.Header
	body               []byte
	trailer            http.Header
	contentLength      int64
	te                 []string
}

type upstream struct {
	addr string
	reqs chan upstreamReq
}

// newUpstream serves h (after recording the request) on 127.0.0.1; h2c
// makes it speak HTTP/2 without TLS.
func newUpstream(t *testing.T, h2c bool, h func(w http.ResponseWriter, r *http.Request, body []byte)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: ln.Addr().String(), reqs: make(chan upstreamReq, 16)}
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.reqs <- upstreamReq{method: r.Method, path: r.URL.RequestURI(), host: r.Host, header: r.Header.Clone(), body: body,
			trailer: r.Trailer.Clone(), contentLength: r.ContentLength, te: r.TransferEncoding}
		if h != nil {
			h(w, r, body)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(bytes.Repeat([]byte("x"), 100))
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return u
}

func (u *upstream) got(t *testing.T) upstreamReq {
	t.Helper()
	select {
	case r := <-u.reqs:
		return r
	case <-time.After(waitMax):
		t.Fatal("upstream never received the request")
		return upstreamReq{}
	}
}

func (u *upstream) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-u.reqs:
		t.Fatalf("upstream unexpectedly contacted: %s %s", r.method, r.path)
	default:
	}
}

// ---- configuration ----

type tcfg struct {
	extProc   string // extra flow entries of ExternalProcessor
	noExtProc bool
	vhosts    string // flow list of virtual hosts
	hcmExtra  string // extra flow entries of the HCM
	listener  string // extra flow entries of the listener
	upH2      bool
	accessLog string // flow log_format, e.g. {json_format: {...}}
	logW      io.Writer
	bootstrap string // extra top-level bootstrap YAML (e.g. layered_runtime)
	version   string // Options.EnvoyVersion
	router    string // extra flow entries of the Router
	routeCfg  string // extra flow entries of the route_config
}

func (c tcfg) yaml() string {
	vh := c.vhosts
	if vh == "" {
		vh = `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: upstream}}]}]`
	}
	filters := ""
	if !c.noExtProc {
		ep := `"@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor, grpc_service: {envoy_grpc: {cluster_name: extproc}}`
		if c.extProc != "" {
			ep += ", " + c.extProc
		}
		filters = `{name: envoy.filters.http.ext_proc, typed_config: {` + ep + `}}, `
	}
	hcm := `"@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager, stat_prefix: t, route_config: {name: r, virtual_hosts: ` + vh + prefixComma(c.routeCfg) + `}, http_filters: [` + filters + `{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router` + prefixComma(c.router) + `}}]`
	if c.hcmExtra != "" {
		hcm += ", " + c.hcmExtra
	}
	if c.accessLog != "" {
		hcm += `, access_log: [{name: envoy.access_loggers.stdout, typed_config: {"@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog, log_format: ` + c.accessLog + `}}]`
	}
	l := `name: ingress, address: {socket_address: {address: 127.0.0.1, port_value: 0}}, filter_chains: [{filters: [{name: envoy.filters.network.http_connection_manager, typed_config: {` + hcm + `}}]}]`
	if c.listener != "" {
		l += ", " + c.listener
	}
	h2 := `typed_extension_protocol_options: {envoy.extensions.upstreams.http.v3.HttpProtocolOptions: {"@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions, explicit_http_config: {http2_protocol_options: {}}}}`
	cl := func(name string, h2c bool) string {
		s := `{name: ` + name + `, type: STATIC, load_assignment: {cluster_name: ` + name + `, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}`
		if h2c {
			s += ", " + h2
		}
		return s + "}"
	}
	return c.bootstrap + "\nstatic_resources:\n  listeners: [{" + l + "}]\n  clusters: [" + cl("extproc", true) + ", " + cl("upstream", c.upH2) + ", " + cl("other", c.upH2) + "]\n"
}

func prefixComma(s string) string {
	if s == "" {
		return ""
	}
	return ", " + s
}

type env struct {
	sim  *Sim
	proc *procServer
	up   *upstream
	alt  *upstream // cluster "other"
	base string
}

func start(t *testing.T, c tcfg, h func(w http.ResponseWriter, r *http.Request, body []byte)) *env {
	t.Helper()
	e := &env{proc: newProcServer(t), up: newUpstream(t, c.upH2, h)}
	e.alt = newUpstream(t, c.upH2, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		_, _ = io.WriteString(w, "from other")
	})
	s, err := Start(context.Background(), Options{Bootstrap: []byte(c.yaml()),
		Clusters: map[string]string{"extproc": e.proc.addr, "upstream": e.up.addr, "other": e.alt.addr},
		Logf:     t.Logf, AccessLog: c.logW, EnvoyVersion: c.version})
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, c.yaml())
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	e.sim = s
	e.base = "http://" + s.Addr("ingress")
	return e
}

type result struct {
	status  int
	header  http.Header
	body    string
	trailer http.Header
	err     error // transport/body error (reset)
}

func client(h2 bool) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	if h2 {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr.Protocols = &p
		tr.TLSClientConfig = &tls.Config{}
	}
	return &http.Client{Transport: tr, Timeout: 2 * waitMax}
}

// do sends a request in the background and returns a channel for the result.
func (e *env) do(t *testing.T, h2 bool, req *http.Request) <-chan result {
	t.Helper()
	ch := make(chan result, 1)
	go func() {
		c := client(h2)
		defer c.CloseIdleConnections()
		resp, err := c.Do(req)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, header: resp.Header, body: string(b), trailer: resp.Trailer, err: err}
	}()
	return ch
}

func (e *env) get(t *testing.T, path string, hdr ...string) <-chan result {
	t.Helper()
	req, err := http.NewRequest("GET", e.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.do(t, false, req)
}

// getPastResponseHeaders sends GET / and lets the request and response
// headers through unchanged; the response body comes next.
func (e *env) getPastResponseHeaders(t *testing.T) (<-chan result, *procStream) {
	t.Helper()
	return e.getPathPastResponseHeaders(t, "/")
}

// getPathPastResponseHeaders is getPastResponseHeaders for another path.
func (e *env) getPathPastResponseHeaders(t *testing.T, path string) (<-chan result, *procStream) {
	t.Helper()
	res := e.get(t, path)
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	return res, ps
}

func (e *env) post(t *testing.T, path, body string, hdr ...string) <-chan result {
	t.Helper()
	req, err := http.NewRequest("POST", e.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return e.do(t, false, req)
}

func wait(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(2 * waitMax):
		t.Fatal("no HTTP response")
		return result{}
	}
}

func wantStatus(t *testing.T, r result, code int) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("request failed: %v (want %d)", r.err, code)
	}
	if r.status != code {
		t.Fatalf("status = %d, want %d (body %q)", r.status, code, r.body)
	}
}

func fmtKinds(ms []*extprocsvc.ProcessingRequest) string {
	var ks []string
	for _, m := range ms {
		ks = append(ks, kindOf(m))
	}
	return fmt.Sprint(ks)
}

type corev3HVO = corev3.HeaderValueOption

func hdrMap(kv ...string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return m
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
