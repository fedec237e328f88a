package envoysim

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	pm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Owned mode's exchange, as llmux runs it on an owned route
// (envoy/standalone.yaml virtual host llm-owned; docs/envoy-facts.md
// fact 6): the filter's own mode is llmux's (request body BUFFERED) and the
// virtual host's ExtProcPerRoute override switches the request body to
// FULL_DUPLEX_STREAMED. The processor
//
//  1. receives request_headers, whose protocol_config reports the
//     overridden request body mode, and does not answer them yet;
//  2. receives the request body as request_body chunks while its headers
//     reply is outstanding (FULL_DUPLEX_STREAMED sends data without waiting
//     for the headers reply; no message timer runs in that mode);
//  3. answers the request headers with a StreamedImmediateResponse:
//     headers (with :status), body chunks, end_of_stream on the last one,
//     dynamic metadata on the messages.
//
// The client gets that response; the router never runs (no upstream
// request); the access log has the metadata. On Envoy before 1.37 the same
// reply is a spurious message: 500, no metadata applied.
//
// Source: ext_proc.cc Filter::mergePerRouteConfig (the route's
// processing_mode override replaces the filter's) and Filter::onReceiveMessage
// (the streamed_immediate_response case, 1.37+; the default branch,
// "unhandled message", before); processor_state.cc
// ProcessorState::onStartProcessorCall (no message timer in
// FULL_DUPLEX_STREAMED); Envoy's tests
// ext_proc_local_reply_streaming_integration_test.cc
// RequestWithBodyDuplexAndLocalResponseWithBody (the request body flows to
// the server while the local response streams) and
// LocalHeadersOnlyRequestAndResponseWithBody (headers, body, end of stream;
// no upstream).
func TestOwnedRouteExchange(t *testing.T) {
	const ownedVhost = `[{name: owned, domains: ["*"],
	  typed_per_filter_config: {envoy.filters.http.ext_proc: {"@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute,
	    overrides: {processing_mode: {request_header_mode: SEND, request_body_mode: FULL_DUPLEX_STREAMED, request_trailer_mode: SEND,
	      response_header_mode: SEND, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND}}}},
	  routes: [{match: {prefix: "/"}, route: {cluster: upstream}, metadata: {filter_metadata: {io.llmux: {mode: owned}}}}]}]`
	md, err := structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"deployment": "dep-b", "attempts": 2}})
	if err != nil {
		t.Fatal(err)
	}
	sir := func(r *extprocsvc.StreamedImmediateResponse, md *structpb.Struct) *extprocsvc.ProcessingResponse {
		return &extprocsvc.ProcessingResponse{DynamicMetadata: md,
			Response: &extprocsvc.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: r}}
	}
	for _, tc := range []struct {
		version string
		works   bool
	}{{Envoy136, false}, {Envoy137, true}, {"", true}} {
		t.Run("v"+tc.version, func(t *testing.T) {
			e := start(t, tcfg{version: tc.version, vhosts: ownedVhost,
				extProc:   fdRespLLMux + ", message_timeout: 0.001s, metadata_options: {receiving_namespaces: {untyped: [io.llmux]}}",
				accessLog: `{json_format: {deployment: "%DYNAMIC_METADATA(io.llmux:deployment)%", attempts: "%DYNAMIC_METADATA(io.llmux:attempts)%"}}`}, nil)
			pr, pw := io.Pipe()
			req, err := http.NewRequest("POST", e.base+"/v1/chat/completions", pr)
			if err != nil {
				t.Fatal(err)
			}
			res := e.do(t, false, req)
			if _, err := pw.Write([]byte(`{"model":`)); err != nil {
				t.Fatal(err)
			}
			ps := e.proc.next(t)
			hd := ps.expect(t, "request_headers")
			if got := hd.GetProtocolConfig().GetRequestBodyMode(); got != pm.ProcessingMode_FULL_DUPLEX_STREAMED {
				t.Errorf("protocol_config request_body_mode = %s: the route's override must reach the processor", got)
			}
			// The body flows while the headers reply is outstanding.
			var body []byte
			first := ps.expect(t, "request_body")
			body = append(body, bodyOf(first).GetBody()...)
			go func() { pw.Write([]byte(`"g"}`)); pw.Close() }()
			for eos := bodyOf(first).GetEndOfStream(); !eos; {
				m := ps.recvMsg(t)
				switch kindOf(m) {
				case "request_body":
					body = append(body, bodyOf(m).GetBody()...)
					eos = bodyOf(m).GetEndOfStream()
				case "request_trailers":
					eos = true
				default:
					t.Fatalf("got %s while the body streams", kindOf(m))
				}
			}
			if string(body) != `{"model":"g"}` {
				t.Errorf("processor got body %q", body)
			}
			ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_HeadersResponse{
				HeadersResponse: &extprocsvc.HttpHeaders{Headers: hdrMap(":status", "200", "content-type", "text/event-stream")}}}, nil))
			if tc.works {
				for i, chunk := range []string{"data: a\n\n", "data: [DONE]\n\n"} {
					var m *structpb.Struct
					if i == 1 {
						m = md
					}
					ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_BodyResponse{
						BodyResponse: &extprocsvc.StreamedBodyResponse{Body: []byte(chunk), EndOfStream: i == 1}}}, m))
				}
			}
			r := wait(t, res)
			ctx, cancel := context.WithTimeout(context.Background(), waitMax)
			defer cancel()
			logs, err := e.sim.WaitAccessLogs(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			e.up.none(t) // the router never runs
			if !tc.works {
				wantStatus(t, r, 500)
				if n := e.sim.Stats()["spurious_msgs_received"]; n != 1 {
					t.Errorf("spurious_msgs_received = %d", n)
				}
				return
			}
			wantStatus(t, r, 200)
			if r.body != "data: a\n\ndata: [DONE]\n\n" || r.header.Get("content-type") != "text/event-stream" {
				t.Errorf("client got %q %v", r.body, r.header)
			}
			if n := e.sim.Stats()["message_timeouts"]; n != 0 {
				t.Errorf("message_timeouts = %d: no timer runs in FULL_DUPLEX_STREAMED", n)
			}
			if logs[0]["deployment"] != "dep-b" || logs[0]["attempts"] != 2.0 {
				t.Errorf("access log %v: the streamed immediate response's metadata must be applied", logs[0])
			}
		})
	}
}

// Options.Listeners: the sim serves on a listener it is handed (whose
// address a test could write into llmux's configuration first) and refuses
// one for a listener the bootstrap lacks, closing what it was given.
func TestGivenListeners(t *testing.T) {
	doc := tcfg{}.yaml()
	given := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ln := given()
	s, err := Start(context.Background(), Options{Bootstrap: []byte(doc), Listeners: map[string]net.Listener{"ingress": ln},
		Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr("ingress") != ln.Addr().String() {
		t.Errorf("ingress on %s, want the given %s", s.Addr("ingress"), ln.Addr())
	}
	s.Close()
	if _, err := ln.Accept(); err == nil {
		t.Error("the given listener is still open after Close")
	}

	other := given()
	_, err = Start(context.Background(), Options{Bootstrap: []byte(doc), Listeners: map[string]net.Listener{"nope": other},
		Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1"}})
	if err == nil || !strings.Contains(err.Error(), `unknown listener "nope"`) {
		t.Errorf("want unknown listener, got %v", err)
	}
	if _, err := other.Accept(); err == nil {
		t.Error("a refused listener was left open")
	}
}
