package envoysim

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// §2.1 / §3: in FULL_DUPLEX_STREAMED a streamed_response is accepted only
// while Envoy is in a body callback, i.e. after it sent a body chunk
// (ProcessorState::handleBodyResponse → isValidBodyCallbackState;
// getCallbackStateAfterHeaderResp leaves the state Idle, or TrailersCallback,
// when no chunk went out yet). A body response sent right after the headers
// response, before any chunk, is spurious: fail-closed, and since the
// response headers already went to the client, a reset.
func TestFullDuplexBodyResponseBeforeAnyChunkIsSpurious(t *testing.T) {
	t.Run("headers_only_so_far", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		e := start(t, tcfg{extProc: fdResp}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select { // the body comes only after the verdict
			case <-release:
			case <-r.Context().Done():
			}
			_, _ = w.Write([]byte("late"))
		})
		res, ps := e.getPastResponseHeaders(t)
		ps.send(t, respBodyResp(streamed("injected", false)))
		r := wait(t, res)
		if r.err == nil {
			t.Fatalf("want a reset (spurious body response after the headers were sent), got %d %q", r.status, r.body)
		}
		if n := e.sim.Stats()["spurious_msgs_received"]; n != 1 {
			t.Errorf("spurious_msgs_received = %d, want 1", n)
		}
		ps.waitClosed(t)
	})
	// Headers and trailers, no body: the state after the headers response is
	// TrailersCallback; only a trailers response fits.
	t.Run("trailers_only", func(t *testing.T) {
		e := start(t, tcfg{extProc: fdResp}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.Header().Set("Trailer", "x-t")
			w.WriteHeader(200)
			w.Header().Set("x-t", "1")
		})
		res := e.get(t, "/")
		ps := e.proc.next(t)
		ps.expect(t, "request_headers")
		ps.send(t, reqHeadersResp(cont()))
		ps.expect(t, "response_headers")
		ps.expect(t, "response_trailers")
		ps.send(t, respHeadersResp(cont()))
		ps.send(t, respBodyResp(streamed("flush", false)))
		r := wait(t, res)
		if r.err == nil {
			t.Fatalf("want a reset, got %d %q", r.status, r.body)
		}
		if n := e.sim.Stats()["spurious_msgs_received"]; n != 1 {
			t.Errorf("spurious_msgs_received = %d, want 1", n)
		}
	})
	// Control: the same server answering the trailers instead is fine.
	t.Run("trailers_only_answered", func(t *testing.T) {
		e := start(t, tcfg{extProc: fdResp}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			w.Header().Set("Trailer", "x-t")
			w.WriteHeader(200)
			w.Header().Set("x-t", "1")
		})
		res := e.get(t, "/")
		ps := e.proc.next(t)
		ps.expect(t, "request_headers")
		ps.send(t, reqHeadersResp(cont()))
		ps.expect(t, "response_headers")
		ps.expect(t, "response_trailers")
		ps.send(t, respHeadersResp(cont()))
		ps.send(t, respTrailersResp(nil))
		r := wait(t, res)
		wantStatus(t, r, 200)
		if r.trailer.Get("x-t") != "1" {
			t.Errorf("trailers %v", r.trailer)
		}
	})
}

// §1.5 / HCM: with use_remote_address false (the sim's only mode) Envoy
// keeps the client's x-forwarded-proto and adds one only when it is absent
// (ConnectionManagerUtility::mutateRequestHeaders).
func TestForwardedProtoKept(t *testing.T) {
	e := start(t, tcfg{noExtProc: true}, nil)
	wantStatus(t, wait(t, e.get(t, "/", "X-Forwarded-Proto", "https")), 200)
	if got := e.up.got(t).header.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "https" {
		t.Errorf("upstream x-forwarded-proto %q, want the client's [https]", got)
	}
	wantStatus(t, wait(t, e.get(t, "/")), 200)
	if got := e.up.got(t).header.Get("X-Forwarded-Proto"); got != "http" {
		t.Errorf("upstream x-forwarded-proto %q, want http", got)
	}
}

// Access log values as Envoy renders them: %PROTOCOL% is
// Http::Utility::getProtocolString ("HTTP/2", not Go's "HTTP/2.0");
// %RESPONSE_CODE_DETAILS% is "via_upstream" for a proxied response and the
// absl::Status message of an ext_proc error (spaces → '_') for its local
// reply: "spurious_message", "mismatch_between_content_length_and_the_length_of_the_mutated_body".
func TestAccessLogProtocolAndDetails(t *testing.T) {
	log := `{json_format: {proto: "%PROTOCOL%", details: "%RESPONSE_CODE_DETAILS%", status: "%RESPONSE_CODE%"}}`
	e := start(t, tcfg{accessLog: log, extProc: "processing_mode: {request_body_mode: BUFFERED}"}, nil)
	logs := func(n int) []map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		defer cancel()
		l, err := e.sim.WaitAccessLogs(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	// h2 request, proxied.
	req, _ := http.NewRequest("GET", e.base+"/", nil)
	res := e.do(t, true, req)
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 200)
	e.up.got(t)
	if l := logs(1)[0]; l["proto"] != "HTTP/2" || l["details"] != "via_upstream" {
		t.Errorf("access log %v, want proto HTTP/2 and details via_upstream", l)
	}

	// Spurious message, fail-closed.
	res = e.post(t, "/", "data")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 500)
	if l := logs(2)[1]; l["proto"] != "HTTP/1.1" || l["details"] != "spurious_message" {
		t.Errorf("access log %v, want details spurious_message", l)
	}

	// Content-length mismatch in BUFFERED mode.
	res = e.post(t, "/", "data")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "request_body")
	ps.send(t, reqBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet("longer body")}))
	wantStatus(t, wait(t, res), 500)
	if l := logs(3)[2]; l["details"] != "mismatch_between_content_length_and_the_length_of_the_mutated_body" {
		t.Errorf("access log %v", l)
	}
	e.up.none(t)
}

// §1.3 / §6 #12 over HTTP/2: a request whose HEADERS frame ends the stream
// (a GET, or an empty POST as Go's h2 client sends it) gives
// request_headers{end_of_stream=true} and no body message, as over HTTP/1.
func TestH2HeadersOnlyRequestHasNoBodyMessage(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			e := start(t, tcfg{extProc: "processing_mode: {request_body_mode: BUFFERED}"}, nil)
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(method, e.base+"/", body)
			res := e.do(t, true, req)
			ps := e.proc.next(t)
			m := ps.expect(t, "request_headers")
			if !m.GetRequestHeaders().GetEndOfStream() {
				t.Error("request_headers end_of_stream = false, want true")
			}
			ps.send(t, reqHeadersResp(cont()))
			ps.expect(t, "response_headers")
			ps.send(t, respHeadersResp(cont()))
			wantStatus(t, wait(t, res), 200)
		})
	}
}

// §2.7 ImmediateResponse → sendLocalReply → Http::Utility::prepareLocalReply:
// the header mutations run first; then content-length is set from the body
// (a mutated content-length does not survive), text/plain is added only
// when no content-type was set, and an empty body drops content-type and
// content-length. grpc_status is ignored for a non-gRPC request.
func TestImmediateResponseLocalReplyHeaders(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		set        map[string]string
		wantCT     string
	}{
		{"json_body_wrong_length", `{"e":1}`, map[string]string{"content-type": "application/json", "content-length": "999"}, "application/json"},
		{"empty_body_drops_content_type", "", map[string]string{"content-type": "application/json", "x-a": "1"}, ""},
		{"text_plain_default", "denied", map[string]string{"x-a": "1"}, "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{}, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: 403}, Body: []byte(tc.body), Headers: hdrMut(tc.set),
				GrpcStatus: &extprocsvc.GrpcStatus{Status: 7},
			}}})
			r := wait(t, res)
			wantStatus(t, r, 403)
			if r.body != tc.body || r.header.Get("content-type") != tc.wantCT || r.header.Get("x-a") != tc.set["x-a"] {
				t.Errorf("client got %q content-type %q headers %v", r.body, r.header.Get("content-type"), r.header)
			}
			if cl := r.header.Get("content-length"); tc.body != "" && cl != strconv.Itoa(len(tc.body)) {
				t.Errorf("content-length %q, want %d", cl, len(tc.body))
			}
			if g := r.header.Get("grpc-status"); g != "" {
				t.Errorf("grpc-status %q on a non-gRPC local reply", g)
			}
			e.up.none(t)
		})
	}
}

// §2.9: metadata from several replies merges per namespace, key by key
// (StreamInfo::setDynamicMetadata → Struct::MergeFrom: a later value for a
// key replaces it, a nested struct is replaced whole, not merged); a
// namespace whose value is not a struct still creates the (empty) entry.
func TestDynamicMetadataMerge(t *testing.T) {
	log := `{json_format: {a: "%DYNAMIC_METADATA(io.llmux:a)%", b: "%DYNAMIC_METADATA(io.llmux:b)%", nest: "%DYNAMIC_METADATA(io.llmux:n)%", x: "%DYNAMIC_METADATA(x.ns)%", missing: "%DYNAMIC_METADATA(io.llmux:missing)%"}}`
	e := start(t, tcfg{accessLog: log, extProc: "metadata_options: {receiving_namespaces: {untyped: [io.llmux, x.ns]}}"}, nil)
	res := e.get(t, "/")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	r := reqHeadersResp(cont())
	r.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"a": "1", "b": 2, "n": map[string]any{"p": 1, "q": 2}}, "x.ns": "scalar"})
	ps.send(t, r)
	ps.expect(t, "response_headers")
	r = respHeadersResp(cont())
	r.DynamicMetadata, _ = structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"b": 3, "n": map[string]any{"q": 4}}})
	ps.send(t, r)
	wantStatus(t, wait(t, res), 200)
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	logs, err := e.sim.WaitAccessLogs(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	l := logs[0]
	n, _ := l["nest"].(map[string]any)
	x, isMap := l["x"].(map[string]any)
	if l["a"] != "1" || l["b"] != float64(3) || len(n) != 1 || n["q"] != float64(4) || !isMap || len(x) != 0 || l["missing"] != nil {
		t.Errorf("access log %v", l)
	}
}
