package envoysim

import (
	"net/http"
	"testing"
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
		res := e.get(t, "/")
		ps := e.proc.next(t)
		ps.expect(t, "request_headers")
		ps.send(t, reqHeadersResp(cont()))
		ps.expect(t, "response_headers")
		ps.send(t, respHeadersResp(cont()))
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
