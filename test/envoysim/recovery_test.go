package envoysim

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// The Envoy behaviours llmux's failover and stream repair (issue 8) build on,
// each with the Envoy source it was read in. docs/envoy-facts.md lists them.

// fdRespLLMux is llmux's own processing mode (envoy/standalone.yaml).
const fdRespLLMux = "processing_mode: {request_header_mode: SEND, request_body_mode: BUFFERED, request_trailer_mode: SKIP, " +
	"response_header_mode: SEND, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND}"

// Fact 1 and 3 together, the shape of failover before the first byte: the
// upstream answers 503; the processor holds the response-headers reply
// while it reads the whole failed body (Envoy's end of stream included) and
// fetches a fallback; then it answers the held headers with :status 200
// and a new content-type, and streams the fallback's body in several
// streamed_response chunks after Envoy's end of stream, ending with its own
// end_of_stream.
//
// Source: processor_state.cc ProcessorState::onStartProcessorCall (no
// message timer when the direction's body mode is FULL_DUPLEX_STREAMED,
// headers call included); getCallbackStateAfterHeaderResp (a headers reply
// after body chunks arrived moves to StreamedBodyCallback);
// handleDuplexStreamedBodyResponse (each non-empty body is injected with its
// end_of_stream; without end_of_stream the state stays StreamedBodyCallback,
// so further replies are accepted after Envoy's own end of stream);
// mutation_rules.cc Checker::isValidValue (:status must parse as a number
// ≥ 200). Envoy's test: ServerSendBodyRespWithouRecvEntireBodyDuplexStreamed
// (an "END" chunk sent after the upstream's end, full-duplex integration
// test).
func TestFactHeldHeadersFallbackAfterUpstreamEnd(t *testing.T) {
	for _, version := range []string{Envoy136, Envoy137} {
		t.Run(version, func(t *testing.T) {
			// A 1 ms message_timeout: any per-message timer would fire while
			// the processor holds the headers across several round trips.
			// (The request direction is skipped here: its BUFFERED body does
			// run the timer, as it should.)
			e := start(t, tcfg{version: version, extProc: "processing_mode: {request_header_mode: SKIP, response_header_mode: SEND, " +
				"response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND}, message_timeout: 0.001s"},
				func(w http.ResponseWriter, r *http.Request, _ []byte) {
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(503)
					_, _ = io.WriteString(w, "overloaded")
				})
			res := e.post(t, "/", "{}")
			ps := e.proc.next(t)
			m := ps.expect(t, "response_headers")
			if st, _ := hv(m, ":status"); st != "503" {
				t.Fatalf("response_headers :status = %q", st)
			}
			// Headers held: Envoy keeps sending the body.
			var failed strings.Builder
			for {
				b := bodyOf(ps.expect(t, "response_body"))
				failed.WriteString(string(b.GetBody()))
				if b.GetEndOfStream() {
					break
				}
			}
			if failed.String() != "overloaded" {
				t.Errorf("failed body %q", failed.String())
			}
			// The processor calls a fallback meanwhile (here: the "other" fake).
			fb, err := http.Get("http://" + e.alt.addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			fbBody, _ := io.ReadAll(fb.Body)
			fb.Body.Close()
			ps.send(t, respHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{
				":status": "200", "content-type": "application/json"})}))
			for _, chunk := range []string{"{", string(fbBody), "}"} {
				ps.send(t, respBodyResp(streamed(chunk, false)))
			}
			ps.send(t, respBodyResp(streamed("", true)))
			r := wait(t, res)
			wantStatus(t, r, 200)
			if r.body != "{from other}" || r.header.Get("content-type") != "application/json" {
				t.Errorf("client got %q %q", r.body, r.header.Get("content-type"))
			}
			if n := e.sim.Stats()["message_timeouts"]; n != 0 {
				t.Errorf("message_timeouts = %d: FULL_DUPLEX_STREAMED runs no message timer", n)
			}
			if n := e.sim.Stats()["spurious_msgs_received"]; n != 0 {
				t.Errorf("spurious = %d", n)
			}
		})
	}
}

// Fact 4: which :status values a response-headers reply may set.
// Source: mutation_rules.cc Checker::isAllowed (":" headers: no APPEND, not
// with disallow_system) and Checker::isValidValue (:status must parse as an
// unsigned number and be ≥ 200; no upper bound is checked there); a
// rejected value is IGNORE (counted in rejected_header_mutations) unless
// disallow_is_error makes it FAIL (mutation_utils.cc
// applyHeaderMutations → status_on_error). Envoy's tests:
// GetAndSetHeadersOnResponseBadStatus, …TwoStatuses.
func TestFactHeldStatusMutation(t *testing.T) {
	for _, tc := range []struct {
		name, set, extra string
		want             int
		rejected         uint64
		fails            bool // the mutation fails the request (status_on_error)
	}{
		{"503_to_200", "200", "", 200, 0, false},
		{"503_to_429", "429", "", 429, 0, false},
		{"503_to_500", "500", "", 500, 0, false},
		{"informational_ignored", "100", "", 503, 1, false},
		{"not_a_number_ignored", "ok", "", 503, 1, false},
		{"disallow_system_ignored", "200", ", mutation_rules: {disallow_system: true}", 503, 1, false},
		{"invalid_is_error", "100", ", mutation_rules: {disallow_is_error: true}", 500, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{extProc: fdRespLLMux + tc.extra}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.WriteHeader(503)
				_, _ = io.WriteString(w, "x")
			})
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(cont()))
			ps.expect(t, "response_headers")
			for !bodyOf(ps.expect(t, "response_body")).GetEndOfStream() {
			}
			ps.send(t, respHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{":status": tc.set})}))
			if !tc.fails {
				ps.send(t, respBodyResp(streamed("y", true)))
			}
			wantStatus(t, wait(t, res), tc.want)
			if n := e.sim.Stats()["rejected_header_mutations"]; n != tc.rejected {
				t.Errorf("rejected_header_mutations = %d, want %d", n, tc.rejected)
			}
		})
	}
}

// Fact 2: the processor ends the client response (streamed_response with
// end_of_stream) while the upstream is still sending. The client gets a
// complete response; Envoy then destroys the stream's filters, and the
// router resets the abandoned upstream request; late upstream bytes never
// reach the processor or the client.
// Source: processor_state.cc handleDuplexStreamedBodyResponse (the
// end_of_stream body is injected into the encoder chain, ending the
// response); router.cc Router::Filter::onDestroy ("Reset any in-flight
// upstream requests": resetAll()).
func TestFactEndResponseWhileUpstreamOpen(t *testing.T) {
	release := make(chan struct{})
	upstreamGone := make(chan struct{})
	e := start(t, tcfg{extProc: fdRespLLMux}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(upstreamGone)
		case <-release:
			_, _ = io.WriteString(w, "data: late\n\n")
		}
	})
	defer close(release)
	res, ps := e.getPastResponseHeaders(t)
	b := bodyOf(ps.expect(t, "response_body"))
	if b.GetEndOfStream() {
		t.Fatal("upstream must still be open")
	}
	ps.send(t, respBodyResp(streamed(string(b.GetBody())+"data: [DONE]\n\n", true)))
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.body != "data: 1\n\ndata: [DONE]\n\n" {
		t.Errorf("client body %q", r.body)
	}
	select {
	case <-upstreamGone:
	case <-time.After(waitMax):
		t.Fatal("the abandoned upstream request was not reset")
	}
	if m := ps.recvMsg(t); m != nil {
		t.Errorf("processor got %s after its end_of_stream", kindOf(m))
	}
	ps.waitClosed(t)
}

// Facts 1 and 5 together, the shape of a stall repair (llmux's
// processor/repair.go): the upstream sent a chunk and went silent, its
// request still open; the processor, answering no message, sends several
// streamed_response chunks (a continuation it fetched elsewhere), then its
// end_of_stream. The client gets the first chunk and every spliced one in
// order, then a complete response; the silent upstream is reset.
// Source: processor_state.cc handleDuplexStreamedBodyResponse (in
// FULL_DUPLEX_STREAMED a body reply is not paired with a received chunk:
// each non-empty body is injected at once, and without end_of_stream the
// state stays StreamedBodyCallback, accepting the next reply);
// router.cc Router::Filter::onDestroy (resetAll() of the abandoned
// upstream request). Envoy's test:
// ServerSendBodyRespWithouRecvEntireBodyDuplexStreamed.
func TestFactSpliceIntoOpenUpstream(t *testing.T) {
	upstreamGone := make(chan struct{})
	e := start(t, tcfg{extProc: fdRespLLMux}, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(upstreamGone)
	})
	res, ps := e.getPastResponseHeaders(t)
	b := bodyOf(ps.expect(t, "response_body"))
	if b.GetEndOfStream() {
		t.Fatal("upstream must still be open")
	}
	ps.send(t, respBodyResp(streamed(string(b.GetBody()), false)))
	for _, c := range []string{"data: 2\n\n", "data: 3\n\n", "data: [DONE]\n\n"} {
		ps.send(t, respBodyResp(streamed(c, false)))
	}
	ps.send(t, respBodyResp(streamed("", true)))
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.body != "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: [DONE]\n\n" {
		t.Errorf("client body %q", r.body)
	}
	select {
	case <-upstreamGone:
	case <-time.After(waitMax):
		t.Fatal("the silent upstream request was not reset")
	}
	ps.waitClosed(t)
}

// Fact 5: StreamedImmediateResponse exists from Envoy 1.37 (PR #42424). On
// older versions the message's field is unknown: Envoy sees no response
// case and treats it as spurious (Filter::onReceiveMessage default branch,
// "unhandled message"; fail closed: 500). From 1.37: headers, body chunks
// and end_of_stream go to the client in order, the router never runs, and
// the message's dynamic_metadata is applied (reference errata, read in
// ext_proc.cc of January 2026). Envoy's tests:
// ext_proc_local_reply_streaming_integration_test.cc
// (LocalHeadersOnlyRequestAndResponseWithBody, RequestWithBodyDuplexAndLocalResponseWithBody).
func TestFactStreamedImmediateByVersion(t *testing.T) {
	sir := func(r *extprocsvc.StreamedImmediateResponse, md *structpb.Struct) *extprocsvc.ProcessingResponse {
		return &extprocsvc.ProcessingResponse{DynamicMetadata: md,
			Response: &extprocsvc.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: r}}
	}
	md, err := structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"mode": "owned"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		version string
		works   bool
	}{{Envoy136, false}, {"1.35", false}, {Envoy137, true}, {"", true}} {
		t.Run("v"+tc.version, func(t *testing.T) {
			e := start(t, tcfg{version: tc.version,
				extProc:   "processing_mode: {request_body_mode: NONE}, metadata_options: {receiving_namespaces: {untyped: [io.llmux]}}",
				accessLog: `{json_format: {mode: "%DYNAMIC_METADATA(io.llmux:mode)%"}}`}, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_HeadersResponse{
				HeadersResponse: &extprocsvc.HttpHeaders{Headers: hdrMap(":status", "200")}}}, md))
			if tc.works {
				for i, chunk := range []string{"a", "b"} {
					ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_BodyResponse{
						BodyResponse: &extprocsvc.StreamedBodyResponse{Body: []byte(chunk), EndOfStream: i == 1}}}, nil))
				}
			}
			r := wait(t, res)
			ctx, cancel := context.WithTimeout(context.Background(), waitMax)
			defer cancel()
			logs, err := e.sim.WaitAccessLogs(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.works {
				wantStatus(t, r, 500)
				if n := e.sim.Stats()["spurious_msgs_received"]; n != 1 {
					t.Errorf("spurious = %d", n)
				}
				if logs[0]["mode"] != nil {
					t.Errorf("metadata of a spurious message applied: %v", logs[0])
				}
				return
			}
			wantStatus(t, r, 200)
			if r.body != "ab" {
				t.Errorf("body %q", r.body)
			}
			e.up.none(t)
			if logs[0]["mode"] != "owned" {
				t.Errorf("access log mode = %v: dynamic_metadata on StreamedImmediateResponse must be applied", logs[0]["mode"])
			}
		})
	}
}
