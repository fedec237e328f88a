package envoysim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Routes whose cluster comes from a header nobody sets: every request ends
// in the router's 503 "cluster_not_found" local reply (flag NC).
const ncVhosts = `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster_header: x-pick}}]}]`

// TestLocalReplyExtProcByVersion: on Envoy 1.34–1.36 the router's local
// reply skips ext_proc (the processor sees no response_headers, only its
// stream end) unless the runtime guard is turned off; from 1.37 on it passes
// through ext_proc whatever a leftover runtime key says.
func TestLocalReplyExtProcByVersion(t *testing.T) {
	guardOff := "layered_runtime: {layers: [{name: static, static_layer: {" + SkipExtProcOnLocalReply + ": false}}]}"
	guardOn := "layered_runtime: {layers: [{name: static, static_layer: {" + SkipExtProcOnLocalReply + ": true}}, {name: admin, admin_layer: {}}]}"
	for _, tc := range []struct {
		name      string
		version   string
		bootstrap string
		through   bool
	}{
		{"1.36 default", Envoy136, "", false},
		{"1.34 default", "1.34", "", false},
		{"1.36 guard off", Envoy136, guardOff, true},
		{"1.37", Envoy137, "", true},
		{"1.37 leftover guard", Envoy137, guardOn, true},
		{"newest", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{vhosts: ncVhosts, version: tc.version, bootstrap: tc.bootstrap,
				extProc: `processing_mode: {request_header_mode: SEND, response_header_mode: SEND}`}, nil)
			ch := e.get(t, "/x")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(cont()))
			if tc.through {
				m := ps.expect(t, "response_headers")
				if st, _ := hv(m, ":status"); st != "503" {
					t.Errorf("response_headers :status = %q, want 503", st)
				}
				ps.send(t, respHeadersResp(cont()))
			} else if m := ps.recvMsg(t); m != nil {
				t.Fatalf("processor got %s; the local reply must skip ext_proc", kindOf(m))
			}
			r := wait(t, ch)
			wantStatus(t, r, 503)
			skipped := e.sim.Stats()["ext_proc.local_reply_skipped_ext_proc"]
			if (skipped == 1) == tc.through {
				t.Errorf("local_reply_skipped_ext_proc = %d, through = %v", skipped, tc.through)
			}
		})
	}
}

// A local_reply_config in the shape the shipped configurations use: Envoy's
// own replies (no io.llmux status in the dynamic metadata) become JSON.
const replyConfig = `local_reply_config: {mappers: [
  {filter: {and_filter: {filters: [
     {metadata_filter: {matcher: {filter: io.llmux, path: [{key: status}], value: {null_match: {}}}}},
     {status_code_filter: {comparison: {op: EQ, value: {default_value: 503}}}}]}},
   body_format_override: {json_format: {error: {message: "unavailable (%RESPONSE_CODE_DETAILS%)", type: server_error, code: upstream_unavailable}}}},
  {filter: {and_filter: {filters: [
     {metadata_filter: {matcher: {filter: io.llmux, path: [{key: status}], value: {null_match: {}}}}},
     {or_filter: {filters: [{status_code_filter: {comparison: {op: EQ, value: {default_value: 504}}}}, {response_flag_filter: {flags: [SI]}}]}}]}},
   status_code: 504,
   body_format_override: {json_format: {error: {message: "timeout: %LOCAL_REPLY_BODY%", type: server_error, code: timeout}}}}]}`

type openAIErr struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func decodeErr(t *testing.T, r result) openAIErr {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type = %q, want application/json (body %q)", ct, r.body)
	}
	var e openAIErr
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.body, err)
	}
	return e
}

// TestLocalReplyConfig: the mapper semantics of local_reply.cc — first
// match wins; an access-log filter tree over status, response flags and
// dynamic metadata; the format renders %RESPONSE_CODE_DETAILS% and
// %LOCAL_REPLY_BODY%; the format's content type replaces text/plain; a reply
// no mapper matches keeps its body; the processor's own ImmediateResponse
// (with io.llmux status metadata) is left alone.
func TestLocalReplyConfig(t *testing.T) {
	t.Run("unknown cluster becomes JSON", func(t *testing.T) {
		e := start(t, tcfg{vhosts: ncVhosts, noExtProc: true, hcmExtra: replyConfig}, nil)
		r := wait(t, e.get(t, "/x"))
		wantStatus(t, r, 503)
		oe := decodeErr(t, r)
		if oe.Error.Code == nil || *oe.Error.Code != "upstream_unavailable" || oe.Error.Type != "server_error" ||
			oe.Error.Message != "unavailable (cluster_not_found)" {
			t.Errorf("error = %+v", oe.Error)
		}
		if r.header.Get("Content-Length") != "" && r.header.Get("Content-Length") != itoa(len(r.body)) {
			t.Errorf("content-length %s for %d bytes", r.header.Get("Content-Length"), len(r.body))
		}
	})
	t.Run("without local_reply_config the body is empty", func(t *testing.T) {
		e := start(t, tcfg{vhosts: ncVhosts, noExtProc: true}, nil)
		r := wait(t, e.get(t, "/x"))
		wantStatus(t, r, 503)
		if r.body != "" {
			t.Errorf("body = %q, want empty (Envoy's default)", r.body)
		}
	})
	t.Run("idle timeout: second mapper, status and body substituted", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		e := start(t, tcfg{noExtProc: true, hcmExtra: replyConfig + ", stream_idle_timeout: 0.05s"},
			func(w http.ResponseWriter, r *http.Request, _ []byte) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			})
		r := wait(t, e.get(t, "/x"))
		wantStatus(t, r, 504)
		oe := decodeErr(t, r)
		if oe.Error.Code == nil || *oe.Error.Code != "timeout" || oe.Error.Message != "timeout: stream timeout" {
			t.Errorf("error = %+v", oe.Error)
		}
	})
	t.Run("processor's immediate response is kept", func(t *testing.T) {
		e := start(t, tcfg{hcmExtra: replyConfig,
			extProc: `metadata_options: {receiving_namespaces: {untyped: [io.llmux]}}`}, nil)
		ch := e.get(t, "/x")
		ps := e.proc.next(t)
		ps.expect(t, "request_headers")
		md, _ := structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"status": 503}})
		body := `{"error":{"message":"no deployment","type":"server_error","param":null,"code":"upstream_unavailable"}}`
		ps.send(t, &extprocsvc.ProcessingResponse{DynamicMetadata: md, Response: &extprocsvc.ProcessingResponse_ImmediateResponse{
			ImmediateResponse: &extprocsvc.ImmediateResponse{Status: &typev3.HttpStatus{Code: 503}, Body: []byte(body),
				Headers: hdrMut(map[string]string{"content-type": "application/json"})}}})
		r := wait(t, ch)
		wantStatus(t, r, 503)
		if r.body != body {
			t.Errorf("body = %q, want the processor's %q", r.body, body)
		}
	})
	t.Run("unmatched reply keeps its text", func(t *testing.T) {
		e := start(t, tcfg{noExtProc: true, hcmExtra: replyConfig,
			vhosts: `[{name: vh, domains: ["*"], routes: [{match: {path: "/only"}, route: {cluster: upstream}}]}]`}, nil)
		r := wait(t, e.get(t, "/x"))
		wantStatus(t, r, 404)
		if r.body != "" || r.header.Get("Content-Type") != "" {
			t.Errorf("404 NR: body %q content-type %q, want Envoy's empty reply", r.body, r.header.Get("Content-Type"))
		}
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestLocalReplyConfigRefused: what the sim does not model is refused,
// naming the field.
func TestLocalReplyConfigRefused(t *testing.T) {
	for _, tc := range []struct{ name, hcm, field string }{
		{"bool in json_format", `local_reply_config: {body_format: {json_format: {ok: true}}}`, "json_format.ok"},
		{"lone command", `local_reply_config: {body_format: {json_format: {code: "%RESPONSE_CODE%"}}}`, "json_format.code"},
		{"unknown command", `local_reply_config: {body_format: {text_format: "%REQ(x)%"}}`, "text_format"},
		{"headers_to_add", `local_reply_config: {mappers: [{filter: {status_code_filter: {comparison: {value: {default_value: 503}}}}, headers_to_add: [{header: {key: a, value: b}}]}]}`, "headers_to_add"},
		{"runtime status", `local_reply_config: {mappers: [{filter: {status_code_filter: {comparison: {value: {default_value: 503, runtime_key: k}}}}, status_code: 500}]}`, "runtime_key"},
		{"duration filter", `local_reply_config: {mappers: [{filter: {duration_filter: {comparison: {value: {default_value: 1}}}}, status_code: 500}]}`, "filter"},
		{"use_remote_address", `use_remote_address: true`, "use_remote_address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tcfg{noExtProc: true, hcmExtra: tc.hcm}
			_, err := Start(context.Background(), Options{Bootstrap: []byte(c.yaml()),
				Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1", "other": "127.0.0.1:1"}})
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !strings.Contains(ue.Field, tc.field) {
				t.Fatalf("Start = %v, want an UnsupportedError naming %q", err, tc.field)
			}
		})
	}
	for _, tc := range []struct{ name, bootstrap, version string }{
		{"other runtime key", "layered_runtime: {layers: [{name: s, static_layer: {envoy.reloadable_features.x: true}}]}", ""},
		{"too old", "", "1.33"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tcfg{noExtProc: true, bootstrap: tc.bootstrap}
			if _, err := Start(context.Background(), Options{Bootstrap: []byte(c.yaml()), EnvoyVersion: tc.version,
				Clusters: map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1", "other": "127.0.0.1:1"}}); err == nil {
				t.Fatal("Start accepted it")
			}
		})
	}
}

// TestClientEnvoyHeaders: with use_remote_address false every request is
// external, so the HCM strips the x-envoy-* headers the router would obey
// (cleanInternalHeaders) and the route config's internal_only_headers before
// any filter runs; request_headers_to_remove keeps a routing header from
// the upstream; suppress_envoy_headers keeps Envoy's own x-envoy-* off both
// sides.
func TestClientEnvoyHeaders(t *testing.T) {
	t.Run("router headers stripped", func(t *testing.T) {
		e := start(t, tcfg{noExtProc: true,
			vhosts: `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: upstream, timeout: 600s}}]}]`}, nil)
		r := wait(t, e.get(t, "/x", "x-envoy-upstream-rq-timeout-ms", "1", "x-envoy-max-retries", "5",
			"x-envoy-retry-on", "5xx", "x-envoy-internal", "true"))
		wantStatus(t, r, 200)
		got := e.up.got(t)
		if v := got.header.Get("X-Envoy-Expected-Rq-Timeout-Ms"); v != "600000" {
			t.Errorf("upstream x-envoy-expected-rq-timeout-ms = %q, want the route's 600000 (the client's 1 obeyed?)", v)
		}
		for _, k := range []string{"X-Envoy-Max-Retries", "X-Envoy-Retry-On", "X-Envoy-Internal", "X-Envoy-Upstream-Rq-Timeout-Ms"} {
			if v := got.header.Get(k); v != "" {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
	})
	t.Run("internal_only cluster header", func(t *testing.T) {
		e := start(t, tcfg{noExtProc: true, vhosts: `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster_header: x-pick}}]}]`,
			routeCfg: `internal_only_headers: [X-Pick]`}, nil)
		r := wait(t, e.get(t, "/x", "x-pick", "upstream"))
		wantStatus(t, r, 503)
		e.up.none(t)
	})
	t.Run("request_headers_to_remove and suppress_envoy_headers", func(t *testing.T) {
		e := start(t, tcfg{noExtProc: true, router: "suppress_envoy_headers: true",
			vhosts: `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, request_headers_to_remove: [X-Pick], route: {cluster_header: x-pick, timeout: 5s}}]}]`}, nil)
		r := wait(t, e.get(t, "/x", "x-pick", "upstream"))
		wantStatus(t, r, 200)
		got := e.up.got(t)
		for _, k := range []string{"X-Pick", "X-Envoy-Expected-Rq-Timeout-Ms"} {
			if v := got.header.Get(k); v != "" {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
		if v := r.header.Get("X-Envoy-Upstream-Service-Time"); v != "" {
			t.Errorf("client got x-envoy-upstream-service-time %q", v)
		}
	})
}
