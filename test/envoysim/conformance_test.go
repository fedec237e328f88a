package envoysim

import (
	"io"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	durationpbpkg "google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func setHdr(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, RawValue: []byte(v)}}
}

func cont() *extprocsvc.CommonResponse { return &extprocsvc.CommonResponse{} }

// §6 #1 GetAndSetHeaders
func TestGetAndSetHeaders(t *testing.T) {
	e := start(t, tcfg{}, nil)
	res := e.get(t, "/", "x-remove-this", "yes")
	ps := e.proc.next(t)
	m := ps.expect(t, "request_headers")
	if !m.GetRequestHeaders().GetEndOfStream() {
		t.Error("GET request_headers must have end_of_stream=true")
	}
	for k, want := range map[string]string{":scheme": "http", ":method": "GET", ":path": "/", "x-remove-this": "yes", "x-forwarded-proto": "http"} {
		if got, _ := hv(m, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if a, _ := hv(m, ":authority"); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf(":authority = %q", a)
	}
	if _, ok := hv(m, "x-request-id"); !ok {
		t.Error("x-request-id missing (generate_request_id defaults to true)")
	}
	for _, h := range m.GetRequestHeaders().GetHeaders().GetHeaders() {
		if h.GetValue() != "" || h.GetKey() != strings.ToLower(h.GetKey()) {
			t.Errorf("header %q: value must be empty and key lowercase", h.GetKey())
		}
	}
	if m.GetProtocolConfig() == nil || m.GetMetadataContext() == nil {
		t.Error("first message must carry protocol_config and metadata_context")
	}
	ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{"x-new-header": "new"}, "x-remove-this")}))
	u := e.up.got(t)
	if u.header.Get("x-new-header") != "new" || u.header.Get("x-remove-this") != "" {
		t.Errorf("upstream headers not mutated: %v", u.header)
	}
	m = ps.expect(t, "response_headers")
	if s, _ := hv(m, ":status"); s != "200" {
		t.Errorf(":status = %q", s)
	}
	if m.GetProtocolConfig() != nil {
		t.Error("protocol_config must be only in the first message")
	}
	if m.GetMetadataContext() == nil {
		t.Error("metadata_context must be in every message")
	}
	ps.send(t, respHeadersResp(cont()))
	r := wait(t, res)
	wantStatus(t, r, 200)
	if len(r.body) != 100 {
		t.Errorf("body length %d", len(r.body))
	}
	if st := e.sim.Stats(); st["streams_started"] != 1 {
		t.Errorf("streams_started = %d", st["streams_started"])
	}
}

// §6 #2 GetAndCloseStream, #4 GetAndCloseStreamOnResponse: OK close ⇒ continue unmodified.
func TestCloseStreamOK(t *testing.T) {
	for _, onResponse := range []bool{false, true} {
		t.Run(map[bool]string{false: "request", true: "response"}[onResponse], func(t *testing.T) {
			e := start(t, tcfg{}, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			if onResponse {
				ps.send(t, reqHeadersResp(cont()))
				ps.expect(t, "response_headers")
			}
			ps.end(nil)
			r := wait(t, res)
			wantStatus(t, r, 200)
			if len(r.body) != 100 {
				t.Errorf("body %d bytes", len(r.body))
			}
		})
	}
}

// §6 #3 GetAndFailStream(+OnResponse): non-OK ⇒ 500; with failure_mode_allow ⇒ 200.
func TestFailStream(t *testing.T) {
	for _, tc := range []struct {
		name       string
		onResponse bool
		allow      bool
		want       int
	}{
		{"request", false, false, 500},
		{"response", true, false, 500},
		{"request_fail_open", false, true, 200},
		{"status_on_error", false, false, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tcfg{}
			if tc.allow {
				c.extProc = "failure_mode_allow: true"
			}
			if tc.want == 503 {
				c.extProc = "status_on_error: {code: 503}"
			}
			e := start(t, c, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			if tc.onResponse {
				ps.send(t, reqHeadersResp(cont()))
				ps.expect(t, "response_headers")
			}
			ps.end(status.Error(codes.Internal, "boom"))
			wantStatus(t, wait(t, res), tc.want)
			if e.sim.Stats()["streams_failed"] != 1 {
				t.Errorf("streams_failed = %d", e.sim.Stats()["streams_failed"])
			}
		})
	}
}

// Stream cannot be opened (nothing listening) ⇒ 500.
func TestOpenStreamFails(t *testing.T) {
	e := start(t, tcfg{}, nil)
	e.proc.srv.Stop()
	wantStatus(t, wait(t, e.get(t, "/")), 500)
	e.up.none(t)
}

// §6 #5 Request/ResponseMessageTimeout (+IgnoreError).
func TestMessageTimeout(t *testing.T) {
	for _, tc := range []struct {
		name       string
		onResponse bool
		allow      bool
		want       int
	}{
		{"request", false, false, 504},
		{"response", true, false, 504},
		{"request_ignore_error", false, true, 200},
		{"response_ignore_error", true, true, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tcfg{extProc: "message_timeout: 0.05s"}
			if tc.allow {
				c.extProc += ", failure_mode_allow: true"
			}
			e := start(t, c, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			if tc.onResponse {
				ps.send(t, reqHeadersResp(cont()))
				ps.expect(t, "response_headers")
			}
			// never answer
			wantStatus(t, wait(t, res), tc.want)
			if e.sim.Stats()["message_timeouts"] != 1 {
				t.Errorf("message_timeouts = %d", e.sim.Stats()["message_timeouts"])
			}
			ps.waitClosed(t)
		})
	}
}

// override_message_timeout extends the timer once, within max_message_timeout.
func TestOverrideMessageTimeout(t *testing.T) {
	e := start(t, tcfg{extProc: "message_timeout: 0.05s, max_message_timeout: 10s"}, nil)
	res := e.get(t, "/")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, &extprocsvc.ProcessingResponse{OverrideMessageTimeout: durationpb(5)})
	// A second override in the same state is ignored.
	ps.send(t, &extprocsvc.ProcessingResponse{OverrideMessageTimeout: durationpb(6)})
	// Still within the extended timer: answer (the sim must not have timed out).
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 200)
	st := e.sim.Stats()
	if st["override_message_timeout_received"] != 1 || st["override_message_timeout_ignored"] != 1 {
		t.Errorf("override stats: %v", st)
	}
}

// §6 #6 GetAndRespondImmediately on each phase, #7 bad status ⇒ 200.
func TestImmediateResponse(t *testing.T) {
	imm := func(code typev3.StatusCode) *extprocsvc.ProcessingResponse {
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: code},
			Body:    []byte(`{"reason":"Not authorized"}`),
			Headers: hdrMut(map[string]string{"x-failure-reason": "testing", "content-type": "application/json"}),
			Details: "Failed because you are not authorized",
		}}}
	}
	for _, tc := range []struct {
		name   string
		cfg    string
		phase  string
		code   typev3.StatusCode
		want   int
		method string
	}{
		{"on_request_headers", "", "request_headers", 401, 401, "GET"},
		{"on_request_body", "processing_mode: {request_body_mode: BUFFERED}", "request_body", 401, 401, "POST"},
		{"on_response_headers", "", "response_headers", 401, 401, "GET"},
		{"on_response_body", "processing_mode: {response_body_mode: BUFFERED}", "response_body", 401, 401, "GET"},
		{"bad_status", "", "request_headers", 100, 200, "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{extProc: tc.cfg}, nil)
			var res <-chan result
			if tc.method == "POST" {
				res = e.post(t, "/", "hello")
			} else {
				res = e.get(t, "/")
			}
			ps := e.proc.next(t)
			for {
				m := ps.expect(t, kindOf(ps.recvPeek(t)))
				if kindOf(m) == tc.phase {
					break
				}
				switch kindOf(m) {
				case "request_headers":
					ps.send(t, reqHeadersResp(cont()))
				case "request_body":
					ps.send(t, reqBodyResp(cont()))
				case "response_headers":
					ps.send(t, respHeadersResp(cont()))
				}
			}
			ps.send(t, imm(tc.code))
			r := wait(t, res)
			wantStatus(t, r, tc.want)
			if r.body != `{"reason":"Not authorized"}` || r.header.Get("x-failure-reason") != "testing" || r.header.Get("content-type") != "application/json" {
				t.Errorf("immediate response not delivered: %q %v", r.body, r.header)
			}
			ps.waitClosed(t)
		})
	}
}

// recvPeek returns the next message without consuming it (re-queued).
func (s *procStream) recvPeek(t *testing.T) *extprocsvc.ProcessingRequest {
	t.Helper()
	m := s.recvMsg(t)
	if m == nil {
		t.Fatal("stream closed")
	}
	// put it back at the front
	rest := []*extprocsvc.ProcessingRequest{m}
	for len(s.recv) > 0 {
		rest = append(rest, <-s.recv)
	}
	for _, r := range rest {
		s.recv <- r
	}
	return m
}

// §6 #8 ConvertGetToPost / ReplaceCompleteRequest(Buffered).
func TestContinueAndReplace(t *testing.T) {
	for _, buffered := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "buffered"}[buffered], func(t *testing.T) {
			c := tcfg{extProc: "mutation_rules: {}"}
			if buffered {
				c.extProc = "processing_mode: {request_body_mode: BUFFERED}"
			}
			e := start(t, c, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{
				Status:         extprocsvc.CommonResponse_CONTINUE_AND_REPLACE,
				HeaderMutation: hdrMut(map[string]string{":method": "POST", "content-type": "text/plain"}),
				BodyMutation:   bodySet("Hello, Server!"),
			}))
			u := e.up.got(t)
			if u.method != "POST" || string(u.body) != "Hello, Server!" {
				t.Errorf("upstream got %s %q", u.method, u.body)
			}
			// next message must be response headers, no request_body
			ps.expect(t, "response_headers")
			ps.send(t, respHeadersResp(cont()))
			wantStatus(t, wait(t, res), 200)
		})
	}
}

// §6 #9 GetAndSetBodyOnBoth / GetAndSetBodyAndHeadersOnResponse: BUFFERED with
// content-length kept and set to the new size.
func TestBufferedBodies(t *testing.T) {
	e := start(t, tcfg{extProc: "processing_mode: {request_body_mode: BUFFERED, response_body_mode: BUFFERED}"}, nil)
	res := e.post(t, "/", "Original request")
	ps := e.proc.next(t)
	m := ps.expect(t, "request_headers")
	if m.GetRequestHeaders().GetEndOfStream() {
		t.Error("POST headers eos must be false")
	}
	ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{"content-length": "13"})}))
	m = ps.expect(t, "request_body")
	if b := bodyOf(m); string(b.GetBody()) != "Original request" || !b.GetEndOfStream() {
		t.Errorf("request_body = %q eos=%v", b.GetBody(), b.GetEndOfStream())
	}
	ps.send(t, reqBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet("Hello, World!")}))
	u := e.up.got(t)
	if string(u.body) != "Hello, World!" || u.contentLength != 13 {
		t.Errorf("upstream body %q cl=%d", u.body, u.contentLength)
	}
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{"content-length": "13"})}))
	m = ps.expect(t, "response_body")
	if len(bodyOf(m).GetBody()) != 100 || !bodyOf(m).GetEndOfStream() {
		t.Errorf("response_body %d bytes eos=%v", len(bodyOf(m).GetBody()), bodyOf(m).GetEndOfStream())
	}
	ps.send(t, respBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet("Hello, World!")}))
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.body != "Hello, World!" || r.header.Get("Content-Length") != "13" {
		t.Errorf("client got %q cl=%q", r.body, r.header.Get("Content-Length"))
	}
}

// §6 #10 MismatchedContentLengthAndBodyLength: 500 and the upstream is never contacted.
func TestContentLengthMismatch(t *testing.T) {
	e := start(t, tcfg{extProc: "processing_mode: {request_body_mode: BUFFERED}"}, nil)
	res := e.post(t, "/", "Original request")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{"content-length": "11"})}))
	ps.expect(t, "request_body")
	ps.send(t, reqBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet("Hello, World!")}))
	wantStatus(t, wait(t, res), 500)
	e.up.none(t)
}

// §6 #11 content-length removed in STREAMED / BUFFERED_PARTIAL / BUFFERED+SKIP /
// FULL_DUPLEX, even if the server sets it; HTTP/1 then uses chunked.
func TestContentLengthRemoved(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode string
	}{
		{"streamed", "processing_mode: {request_body_mode: STREAMED}"},
		{"buffered_partial", "processing_mode: {request_body_mode: BUFFERED_PARTIAL}"},
		{"buffered_header_skip", "processing_mode: {request_header_mode: SKIP, request_body_mode: BUFFERED}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{extProc: tc.mode + ", failure_mode_allow: false"}, nil)
			res := e.post(t, "/", "hello world")
			ps := e.proc.next(t)
			for {
				m := ps.recvMsg(t)
				if m == nil {
					t.Fatal("stream closed early")
				}
				switch kindOf(m) {
				case "request_headers":
					if cl, _ := hv(m, "content-length"); cl != "11" {
						t.Errorf("server must see the original content-length, got %q", cl)
					}
					ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{"content-length": "11"})}))
					continue
				case "request_body":
					b := bodyOf(m)
					ps.send(t, reqBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet(strings.ToUpper(string(b.GetBody())))}))
					if !b.GetEndOfStream() {
						continue
					}
				}
				break
			}
			u := e.up.got(t)
			if u.contentLength != -1 || len(u.te) == 0 || u.te[0] != "chunked" || string(u.body) != "HELLO WORLD" {
				t.Errorf("upstream cl=%d te=%v body=%q", u.contentLength, u.te, u.body)
			}
			ps.expect(t, "response_headers")
			ps.send(t, respHeadersResp(cont()))
			wantStatus(t, wait(t, res), 200)
		})
	}
}

// §6 #11 RemoveResponseContentLength (STREAMED response).
func TestResponseContentLengthRemoved(t *testing.T) {
	e := start(t, tcfg{extProc: "processing_mode: {response_body_mode: STREAMED}"}, nil)
	res := e.get(t, "/")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{"content-length": "100"})}))
	for {
		m := ps.expect(t, "response_body")
		ps.send(t, respBodyResp(cont()))
		if bodyOf(m).GetEndOfStream() {
			break
		}
	}
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.header.Get("Content-Length") != "" || len(r.body) != 100 {
		t.Errorf("client cl=%q body=%d", r.header.Get("Content-Length"), len(r.body))
	}
}

// §6 #12 BufferBodyOverridePostWithEmptyBody / GetRequestNoBody.
func TestEmptyBodies(t *testing.T) {
	e := start(t, tcfg{extProc: "processing_mode: {request_body_mode: BUFFERED}"}, nil)
	// POST with an (empty) chunked body: headers eos=false, then body "" eos=true.
	req, _ := http.NewRequest("POST", e.base+"/", emptyReader{})
	req.ContentLength = -1
	res := e.do(t, false, req)
	ps := e.proc.next(t)
	m := ps.expect(t, "request_headers")
	if m.GetRequestHeaders().GetEndOfStream() {
		t.Error("headers eos must be false")
	}
	ps.send(t, reqHeadersResp(cont()))
	m = ps.expect(t, "request_body")
	if b := bodyOf(m); len(b.GetBody()) != 0 || !b.GetEndOfStream() {
		t.Errorf("want empty body eos=true, got %q %v", b.GetBody(), b.GetEndOfStream())
	}
	ps.send(t, reqBodyResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 200)

	// GET: headers eos=true and no body message.
	res = e.get(t, "/")
	ps = e.proc.next(t)
	m = ps.expect(t, "request_headers")
	if !m.GetRequestHeaders().GetEndOfStream() {
		t.Error("GET headers eos must be true")
	}
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 200)
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, io.EOF }

func durationpb(sec int64) *durationpbpkg.Duration { return &durationpbpkg.Duration{Seconds: sec} }

var _ = structpb.NewNullValue
var _ = wrapperspb.Bool
