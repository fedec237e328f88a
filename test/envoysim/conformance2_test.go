package envoysim

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	pm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const fdResp = "processing_mode: {response_header_mode: SEND, response_body_mode: FULL_DUPLEX_STREAMED, response_trailer_mode: SEND}"
const fdReq = "processing_mode: {request_body_mode: FULL_DUPLEX_STREAMED, request_trailer_mode: SEND, response_header_mode: SKIP}"

// §6 #13 response trailers SEND; #14 no trailers message without real trailers.
func TestResponseTrailers(t *testing.T) {
	withTrailers := func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Trailer", "x-test-trailers")
		_, _ = w.Write(bytes.Repeat([]byte("x"), 100))
		w.Header().Set("x-test-trailers", "Yes")
	}
	e := start(t, tcfg{extProc: "processing_mode: {response_trailer_mode: SEND}"}, withTrailers)
	res, ps := e.getPastResponseHeaders(t)
	m := ps.expect(t, "response_trailers")
	if len(m.GetResponseTrailers().GetTrailers().GetHeaders()) == 0 {
		t.Error("trailers message carries no trailers")
	}
	ps.send(t, respTrailersResp(hdrMut(map[string]string{"x-modified-trailers": "xxx"})))
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.trailer.Get("x-test-trailers") != "Yes" || r.trailer.Get("x-modified-trailers") != "xxx" {
		t.Errorf("client trailers %v", r.trailer)
	}

	// #14: BUFFERED + trailers SEND, no upstream trailers ⇒ only response_body{eos}.
	// (A long message_timeout: the 200 ms default can fire on a loaded machine.)
	e = start(t, tcfg{extProc: "processing_mode: {response_body_mode: BUFFERED, response_trailer_mode: SEND}, message_timeout: 10s"}, nil)
	res = e.get(t, "/")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	m = ps.expect(t, "response_body")
	if !bodyOf(m).GetEndOfStream() {
		t.Error("body eos must be true without trailers")
	}
	ps.send(t, respBodyResp(cont()))
	wantStatus(t, wait(t, res), 200)
	if m := ps.recvMsg(t); m != nil {
		t.Errorf("unexpected message %s", kindOf(m))
	}
}

// §6 #15 GetAndSetPathHeader: only :path changes; #17 :status rules.
func TestPseudoHeaderRules(t *testing.T) {
	e := start(t, tcfg{}, nil)
	res := e.get(t, "/")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{
		":path": "/mutated_path/bluh", ":scheme": "https", ":authority": "new.host", ":method": "POST", "x-envoy-foo": "1"})}))
	u := e.up.got(t)
	if u.path != "/mutated_path/bluh" || u.method != "GET" || strings.HasPrefix(u.host, "new.host") || u.header.Get("x-envoy-foo") != "" {
		t.Errorf("upstream saw %s %s host=%s", u.method, u.path, u.host)
	}
	ps.expect(t, "response_headers")
	m := &extprocsvc.HeaderMutation{SetHeaders: []*corev3HVO{setHdr(":status", "201"), {Header: setHdr(":status", "202").Header, Append: wrapperspb.Bool(true)}}}
	ps.send(t, respHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: m}))
	wantStatus(t, wait(t, res), 201)
	if n := e.sim.Stats()["rejected_header_mutations"]; n != 5 {
		t.Errorf("rejected_header_mutations = %d, want 5 (:scheme :authority :method x-envoy-foo, appended :status)", n)
	}

	// :status 100 ignored.
	res = e.get(t, "/")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{":status": "100"})}))
	wantStatus(t, wait(t, res), 200)

	// disallow_is_error: a denied mutation is a 500.
	e = start(t, tcfg{extProc: "mutation_rules: {disallow_is_error: true}"}, nil)
	res = e.get(t, "/")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(nil, "host")}))
	wantStatus(t, wait(t, res), 500)
	e.up.none(t)

	// value and raw_value both set ⇒ 500; value only ⇒ empty string.
	for _, both := range []bool{true, false} {
		e = start(t, tcfg{}, nil)
		res = e.get(t, "/")
		ps = e.proc.next(t)
		ps.expect(t, "request_headers")
		h := setHdr("x-v", "raw")
		h.Header.Value = "plain"
		if !both {
			h.Header.RawValue = nil
		}
		ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: &extprocsvc.HeaderMutation{SetHeaders: []*corev3HVO{h}}}))
		if both {
			wantStatus(t, wait(t, res), 500)
			continue
		}
		u := e.up.got(t)
		if v, ok := u.header["X-V"]; !ok || v[0] != "" {
			t.Errorf("value-only header should be set empty, got %v", u.header["X-V"])
		}
		ps.expect(t, "response_headers")
		ps.send(t, respHeadersResp(cont()))
		wantStatus(t, wait(t, res), 200)
	}
}

// §6 #16 SetHostHeaderRouting(Succeeded/Failed) and §5 cluster_header routing.
func TestRouteCacheRouting(t *testing.T) {
	vh := `[{name: a, domains: ["new_host"], routes: [{match: {prefix: "/"}, route: {cluster: other}}]}, {name: b, domains: ["127.0.0.1", "localhost"], routes: [{match: {prefix: "/"}, route: {cluster: upstream}}]}]`
	for _, tc := range []struct {
		name string
		host string
		want int
	}{{"succeeded", "new_host", 200}, {"failed", "unknown_host", 404}} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{vhosts: vh, extProc: "mutation_rules: {allow_all_routing: true}, processing_mode: {response_header_mode: SKIP}"}, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{":authority": tc.host}), ClearRouteCache: true}))
			r := wait(t, res)
			wantStatus(t, r, tc.want)
			if tc.want == 200 && r.body != "from other" {
				t.Errorf("routed to the wrong cluster: %q", r.body)
			}
		})
	}
}

func TestClusterHeaderRouting(t *testing.T) {
	vh := `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster_header: x-target}}]}]`
	for _, tc := range []struct {
		name     string
		mut      map[string]string
		clear    bool
		buffered bool
		want     int
		body     string
		ignored  uint64
	}{
		{"with_clear", map[string]string{"x-target": "other"}, true, false, 200, "from other", 0},
		{"in_buffered_body_response", map[string]string{"x-target": "other"}, true, true, 200, "from other", 0},
		{"without_clear", map[string]string{"x-target": "other"}, false, false, 200, "from other", 0},
		{"clear_without_header_mutation", nil, true, false, 503, "", 1},
		{"unknown_cluster", map[string]string{"x-target": "nope"}, true, false, 503, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := "processing_mode: {response_header_mode: SKIP}"
			if tc.buffered {
				ep = "processing_mode: {response_header_mode: SKIP, request_body_mode: BUFFERED}"
			}
			e := start(t, tcfg{vhosts: vh, extProc: ep}, nil)
			var res <-chan result
			if tc.buffered {
				res = e.post(t, "/", "{}")
			} else {
				res = e.get(t, "/")
			}
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			c := &extprocsvc.CommonResponse{ClearRouteCache: tc.clear}
			if tc.mut != nil {
				c.HeaderMutation = hdrMut(tc.mut)
			}
			if tc.buffered {
				ps.send(t, reqHeadersResp(cont()))
				ps.expect(t, "request_body")
				ps.send(t, reqBodyResp(c))
			} else {
				ps.send(t, reqHeadersResp(c))
			}
			r := wait(t, res)
			wantStatus(t, r, tc.want)
			if tc.body != "" && r.body != tc.body {
				t.Errorf("body %q", r.body)
			}
			if got := e.sim.Stats()["clear_route_cache_ignored"]; got != tc.ignored {
				t.Errorf("clear_route_cache_ignored = %d, want %d", got, tc.ignored)
			}
		})
	}
}

// Route cache is computed before the filters: without the clear, a
// cluster_header set on a static-cluster route changes nothing; with
// route_cache_action RETAIN the clear is refused.
func TestRouteCacheRetain(t *testing.T) {
	vh := `[{name: a, domains: ["*"], routes: [{match: {path: "/x"}, route: {cluster: other}}, {match: {prefix: "/"}, route: {cluster: upstream}}]}]`
	for _, tc := range []struct {
		name, cfg string
		clear     bool
		body      string
	}{
		{"no_clear", "", false, strings.Repeat("x", 100)},
		{"clear", "", true, "from other"},
		{"retain", "route_cache_action: RETAIN, ", true, strings.Repeat("x", 100)},
		{"action_clear", "route_cache_action: CLEAR, ", false, "from other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tcfg{vhosts: vh, extProc: tc.cfg + "processing_mode: {response_header_mode: SKIP}"}, nil)
			res := e.get(t, "/")
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(&extprocsvc.CommonResponse{HeaderMutation: hdrMut(map[string]string{":path": "/x"}), ClearRouteCache: tc.clear}))
			r := wait(t, res)
			wantStatus(t, r, 200)
			if r.body != tc.body {
				t.Errorf("body %q, want %q", r.body, tc.body)
			}
		})
	}
}

// §6 #18 per-route processing mode and disable.
func TestPerRoute(t *testing.T) {
	epr := `"@type": type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute`
	vh := `[{name: vh, domains: ["*"], typed_per_filter_config: {envoy.filters.http.ext_proc: {` + epr + `, overrides: {processing_mode: {request_header_mode: SKIP, response_header_mode: SKIP}}}}, routes: [` +
		`{match: {path: "/disabled"}, route: {cluster: upstream}, typed_per_filter_config: {envoy.filters.http.ext_proc: {` + epr + `, disabled: true}}},` +
		`{match: {path: "/buffered"}, route: {cluster: upstream}, typed_per_filter_config: {envoy.filters.http.ext_proc: {` + epr + `, overrides: {processing_mode: {response_body_mode: BUFFERED}}}}},` +
		`{match: {prefix: "/"}, route: {cluster: upstream}}]}]`
	e := start(t, tcfg{vhosts: vh}, nil)
	wantStatus(t, wait(t, e.get(t, "/disabled")), 200)
	wantStatus(t, wait(t, e.get(t, "/vhost")), 200) // vhost-level: everything SKIP
	e.proc.noStream(t)
	// route-level {response_body_mode: BUFFERED} replaces the whole mode: headers SEND again.
	res, ps := e.getPathPastResponseHeaders(t, "/buffered")
	ps.expect(t, "response_body")
	ps.send(t, respBodyResp(cont()))
	wantStatus(t, wait(t, res), 200)
	if e.sim.Stats()["streams_started"] != 1 {
		t.Errorf("streams_started = %d", e.sim.Stats()["streams_started"])
	}
}

// §6 #19 attributes only in the first message of each direction; route
// metadata encoded as protobuf text (print of a CEL message).
func TestAttributes(t *testing.T) {
	vh := `[{name: vh, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: upstream}, metadata: {filter_metadata: {io.llmux: {route: default, num: 2}}}}]}]`
	e := start(t, tcfg{vhosts: vh, extProc: "request_attributes: [xds.route_metadata, request.path, request.id], response_attributes: [response.code], processing_mode: {request_body_mode: BUFFERED}"}, nil)
	res := e.post(t, "/p?q=1", "body")
	ps := e.proc.next(t)
	m := ps.expect(t, "request_headers")
	a := m.GetAttributes()["envoy.filters.http.ext_proc"].GetFields()
	want := `filter_metadata { key: "io.llmux" value { fields { key: "num" value { number_value: 2 } } fields { key: "route" value { string_value: "default" } } } }`
	if got := a["xds.route_metadata"].GetStringValue(); got != want {
		t.Errorf("xds.route_metadata = %q\nwant %q", got, want)
	}
	if a["request.path"].GetStringValue() != "/p?q=1" || a["request.id"].GetStringValue() == "" {
		t.Errorf("request attributes %v", a)
	}
	ps.send(t, reqHeadersResp(cont()))
	m = ps.expect(t, "request_body")
	if m.GetAttributes() != nil {
		t.Error("attributes must only be in the first message of a direction")
	}
	ps.send(t, reqBodyResp(cont()))
	m = ps.expect(t, "response_headers")
	if m.GetAttributes()["envoy.filters.http.ext_proc"].GetFields()["response.code"].GetNumberValue() != 200 {
		t.Errorf("response attributes %v", m.GetAttributes())
	}
	ps.send(t, respHeadersResp(cont()))
	wantStatus(t, wait(t, res), 200)
}

// Dynamic metadata: only receiving namespaces land, visible to the access log.
func TestDynamicMetadata(t *testing.T) {
	log := `{json_format: {status: "%RESPONSE_CODE%", tenant: "%DYNAMIC_METADATA(io.llmux:tenant)%", tokens: "%DYNAMIC_METADATA(io.llmux:tokens)%", other: "%DYNAMIC_METADATA(other.ns:k)%", path: "%REQ(:PATH)%", flags: "%RESPONSE_FLAGS%", cluster: "%UPSTREAM_CLUSTER%", d: "%DURATION%", t: "%START_TIME%"}}`
	var buf lockedBuf
	e := start(t, tcfg{accessLog: log, logW: &buf, extProc: "metadata_options: {receiving_namespaces: {untyped: [io.llmux]}}"}, nil)
	res := e.get(t, "/m")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	md, _ := structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"tenant": "acme"}, "other.ns": map[string]any{"k": "v"}})
	r := reqHeadersResp(cont())
	r.DynamicMetadata = md
	ps.send(t, r)
	ps.expect(t, "response_headers")
	md2, _ := structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"tokens": 42}})
	r = respHeadersResp(cont())
	r.DynamicMetadata = md2
	ps.send(t, r)
	wantStatus(t, wait(t, res), 200)
	ctx, cancel := context.WithTimeout(context.Background(), waitMax)
	defer cancel()
	logs, err := e.sim.WaitAccessLogs(ctx, 1)
	if err != nil || len(logs) != 1 {
		t.Fatalf("access logs: %v", logs)
	}
	l := logs[0]
	if l["tenant"] != "acme" || l["tokens"] != float64(42) || l["other"] != nil || l["status"] != float64(200) ||
		l["path"] != "/m" || l["flags"] != "-" || l["cluster"] != "upstream" {
		t.Errorf("access log %v", l)
	}
	if !strings.Contains(buf.String(), `"tenant":"acme"`) {
		t.Errorf("access log writer got %q", buf.String())
	}
}

// §6 #20/#22 FULL_DUPLEX_STREAMED request body: server buffers everything,
// answers headers late, sends N streamed responses; synthesized trailers.
func TestFullDuplexRequest(t *testing.T) {
	for _, synth := range []bool{false, true} {
		t.Run(map[bool]string{false: "eos", true: "synthesized_trailers"}[synth], func(t *testing.T) {
			e := start(t, tcfg{extProc: fdReq}, nil)
			body := strings.Repeat("a", 64*1024)
			res := e.post(t, "/", body)
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			got := 0
			for {
				m := ps.expect(t, "request_body")
				got += len(bodyOf(m).GetBody())
				if bodyOf(m).GetEndOfStream() {
					break
				}
			}
			if got != len(body) {
				t.Fatalf("server got %d bytes", got)
			}
			ps.send(t, reqHeadersResp(cont()))
			for i := 0; i < 4; i++ {
				ps.send(t, reqBodyResp(streamed(strings.Repeat("r", 32*1024), i == 3 && !synth)))
			}
			if synth {
				ps.send(t, reqTrailersResp(nil))
			}
			u := e.up.got(t)
			if len(u.body) != 128*1024 || strings.Trim(string(u.body), "r") != "" || len(u.trailer) != 0 {
				t.Errorf("upstream got %d bytes, trailers %v", len(u.body), u.trailer)
			}
			if u.contentLength != -1 {
				t.Errorf("content-length must be removed, got %d", u.contentLength)
			}
			wantStatus(t, wait(t, res), 200)
		})
	}
}

// §6 #21 FULL_DUPLEX with request trailers: extra chunk after trailers arrive.
func TestFullDuplexRequestTrailers(t *testing.T) {
	e := start(t, tcfg{extProc: fdReq}, nil)
	req, _ := http.NewRequest("POST", e.base+"/", io.NopCloser(strings.NewReader("hello")))
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Trailer": {"t1"}}
	res := e.do(t, false, req)
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqHeadersResp(cont()))
	var seen []string
	for {
		m := ps.recvMsg(t)
		seen = append(seen, kindOf(m))
		if kindOf(m) == "request_body" {
			if bodyOf(m).GetEndOfStream() {
				t.Error("body eos must be false when trailers follow")
			}
			ps.send(t, reqBodyResp(streamed(string(bodyOf(m).GetBody()), false)))
			continue
		}
		if kindOf(m) != "request_trailers" {
			t.Fatalf("unexpected %v", seen)
		}
		break
	}
	ps.send(t, reqBodyResp(streamed("END", false)))
	ps.send(t, reqTrailersResp(hdrMut(map[string]string{"x-trailer": "t2"})))
	u := e.up.got(t)
	if string(u.body) != "helloEND" || u.trailer.Get("x-trailer") != "t2" {
		t.Errorf("upstream body %q trailers %v", u.body, u.trailer)
	}
	wantStatus(t, wait(t, res), 200)
}

// §6 #23 body response before headers response in FULL_DUPLEX ⇒ 500.
// §6 #24 FULL_DUPLEX has no message timer: stream_idle_timeout ⇒ 504.
func TestFullDuplexOrderingAndIdle(t *testing.T) {
	e := start(t, tcfg{extProc: fdReq}, nil)
	res := e.post(t, "/", "x")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, reqBodyResp(streamed("x", true)))
	wantStatus(t, wait(t, res), 500)
	if e.sim.Stats()["spurious_msgs_received"] != 1 {
		t.Errorf("spurious = %d", e.sim.Stats()["spurious_msgs_received"])
	}
	e = start(t, tcfg{extProc: fdReq + ", message_timeout: 0.01s", hcmExtra: "stream_idle_timeout: 0.2s"}, nil)
	res = e.post(t, "/", "x")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.expect(t, "request_body")
	wantStatus(t, wait(t, res), 504)
	if e.sim.Stats()["message_timeouts"] != 0 {
		t.Error("no per-message timer in FULL_DUPLEX_STREAMED")
	}
}

// FULL_DUPLEX response: the server appends after the upstream's end.
func TestFullDuplexResponseAppend(t *testing.T) {
	e := start(t, tcfg{extProc: fdResp}, nil)
	res, ps := e.getPastResponseHeaders(t)
	for {
		m := ps.expect(t, "response_body")
		ps.send(t, respBodyResp(streamed(strings.ToUpper(string(bodyOf(m).GetBody())), false)))
		if bodyOf(m).GetEndOfStream() {
			break
		}
	}
	ps.send(t, respBodyResp(streamed(" [appended]", true)))
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.body != strings.Repeat("X", 100)+" [appended]" {
		t.Errorf("client body %q", r.body)
	}
}

// FULL_DUPLEX fail-open only until the first body chunk was sent.
func TestFullDuplexCanFailOpen(t *testing.T) {
	e := start(t, tcfg{extProc: fdResp + ", failure_mode_allow: true"}, nil)
	res, ps := e.getPastResponseHeaders(t)
	ps.expect(t, "response_body")
	// Spurious after a body chunk was sent: fail closed although fail-open is
	// configured; headers are already out ⇒ reset.
	ps.send(t, respBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet("nope")}))
	r := wait(t, res)
	if r.err == nil {
		t.Fatalf("want a reset, got %d %q", r.status, r.body)
	}
}

// §6 #25 ModeOverrideNoneToFullDuplex.
func TestModeOverrideToFullDuplex(t *testing.T) {
	e := start(t, tcfg{extProc: "allow_mode_override: true, processing_mode: {response_header_mode: SKIP}"}, nil)
	// Chunked: content-length was not removed at decodeHeaders (mode NONE
	// then), exactly as in Envoy, so a fixed length would now be wrong.
	req, _ := http.NewRequest("POST", e.base+"/", io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = -1
	res := e.do(t, false, req)
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	r := reqHeadersResp(cont())
	r.ModeOverride = &pm.ProcessingMode{RequestBodyMode: pm.ProcessingMode_FULL_DUPLEX_STREAMED, RequestTrailerMode: pm.ProcessingMode_SEND}
	ps.send(t, r)
	for {
		m := ps.expect(t, "request_body")
		ps.send(t, reqBodyResp(streamed("<"+string(bodyOf(m).GetBody())+">", bodyOf(m).GetEndOfStream())))
		if bodyOf(m).GetEndOfStream() {
			break
		}
	}
	u := e.up.got(t)
	if !strings.Contains(string(u.body), "<abc>") {
		t.Errorf("upstream body %q", u.body)
	}
	wantStatus(t, wait(t, res), 200)
}

// mode_override is ignored away from a headers callback and when FULL_DUPLEX is configured.
func TestModeOverrideIgnoredWithFullDuplexConfig(t *testing.T) {
	e := start(t, tcfg{extProc: "allow_mode_override: true, " + fdResp}, nil)
	res := e.get(t, "/")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	r := reqHeadersResp(cont())
	r.ModeOverride = &pm.ProcessingMode{ResponseBodyMode: pm.ProcessingMode_BUFFERED}
	ps.send(t, r)
	ps.expect(t, "response_headers")
	ps.send(t, respHeadersResp(cont()))
	for {
		m := ps.expect(t, "response_body")
		ps.send(t, respBodyResp(streamed(string(bodyOf(m).GetBody()), bodyOf(m).GetEndOfStream())))
		if bodyOf(m).GetEndOfStream() {
			break
		}
	}
	wantStatus(t, wait(t, res), 200)
}

// §6 #26 StreamedImmediateResponse (local reply streaming).
func TestStreamedImmediateResponse(t *testing.T) {
	sir := func(r *extprocsvc.StreamedImmediateResponse) *extprocsvc.ProcessingResponse {
		return &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_StreamedImmediateResponse{StreamedImmediateResponse: r}}
	}
	e := start(t, tcfg{}, nil)
	res := e.get(t, "/")
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_HeadersResponse{
		HeadersResponse: &extprocsvc.HttpHeaders{Headers: hdrMap(":status", "200", "x-owned", "yes")}}}))
	for _, chunk := range []string{"bbbb", "cccccccc"} {
		ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_BodyResponse{
			BodyResponse: &extprocsvc.StreamedBodyResponse{Body: []byte(chunk), EndOfStream: chunk == "cccccccc"}}}))
	}
	r := wait(t, res)
	wantStatus(t, r, 200)
	if r.body != "bbbbcccccccc" || r.header.Get("x-owned") != "yes" {
		t.Errorf("client got %q %v", r.body, r.header)
	}
	e.up.none(t)

	// Wrong request body mode ⇒ 500. The mode is checked whatever the
	// request: a GET keeps the client from racing its body against the
	// early 500 and the connection's close.
	e = start(t, tcfg{extProc: "processing_mode: {request_body_mode: BUFFERED}"}, nil)
	res = e.get(t, "/")
	ps = e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, sir(&extprocsvc.StreamedImmediateResponse{Response: &extprocsvc.StreamedImmediateResponse_HeadersResponse{
		HeadersResponse: &extprocsvc.HttpHeaders{Headers: hdrMap(":status", "200"), EndOfStream: true}}}))
	wantStatus(t, wait(t, res), 500)
}

// The spurious family (§6 tail): each ⇒ 500 (fail closed), or continue with
// failure_mode_allow.
func TestSpurious(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  string
		resp *extprocsvc.ProcessingResponse
	}{
		{"body_when_only_headers_sent", "", reqBodyResp(cont())},
		{"response_headers_to_request_headers", "", respHeadersResp(cont())},
		{"empty_response", "", &extprocsvc.ProcessingResponse{}},
		{"trailers_without_trailers_callback", "", reqTrailersResp(nil)},
		{"streamed_response_in_streamed_mode", "processing_mode: {request_body_mode: STREAMED}", nil},
		{"body_in_full_duplex", fdReq, nil},
		{"clear_body_in_full_duplex", fdReq, nil},
		{"immediate_response_disabled", "disable_immediate_response: true", &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{}}}},
	} {
		for _, allow := range []bool{false, true} {
			name := tc.name
			if allow {
				name += "/fail_open"
			}
			t.Run(name, func(t *testing.T) {
				cfg := tc.cfg
				if allow {
					cfg = strings.TrimPrefix(cfg+", failure_mode_allow: true", ", ")
				}
				e := start(t, tcfg{extProc: cfg}, nil)
				res := e.post(t, "/", "data")
				ps := e.proc.next(t)
				ps.expect(t, "request_headers")
				resp := tc.resp
				if resp == nil {
					ps.send(t, reqHeadersResp(cont()))
					ps.expect(t, "request_body")
					switch tc.name {
					case "streamed_response_in_streamed_mode":
						resp = reqBodyResp(streamed("x", true))
					case "body_in_full_duplex":
						resp = reqBodyResp(&extprocsvc.CommonResponse{BodyMutation: bodySet("x")})
					default:
						resp = reqBodyResp(&extprocsvc.CommonResponse{BodyMutation: &extprocsvc.BodyMutation{Mutation: &extprocsvc.BodyMutation_ClearBody{ClearBody: true}}})
					}
				}
				ps.send(t, resp)
				r := wait(t, res)
				fdBodySent := strings.Contains(tc.cfg, "FULL_DUPLEX")
				if allow && !fdBodySent {
					wantStatus(t, r, 200)
				} else {
					wantStatus(t, r, 500)
				}
				if e.sim.Stats()["spurious_msgs_received"] != 1 {
					t.Errorf("spurious_msgs_received = %d", e.sim.Stats()["spurious_msgs_received"])
				}
				ps.waitClosed(t)
			})
		}
	}
}

// BUFFERED request above the listener buffer limit ⇒ 413.
func TestBufferLimit413(t *testing.T) {
	e := start(t, tcfg{extProc: "processing_mode: {request_body_mode: BUFFERED}", listener: "per_connection_buffer_limit_bytes: 1024"}, nil)
	res := e.post(t, "/", strings.Repeat("z", 4096))
	// The body overflows while request_headers is outstanding: 413 at once.
	r := wait(t, res)
	if r.err == nil {
		wantStatus(t, r, 413)
	}
	e.up.none(t)
}

// §4.2 upstream failures.
func TestUpstreamResets(t *testing.T) {
	var proceed chan struct{}
	abortMid := func(w http.ResponseWriter, r *http.Request, _ []byte) {
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		<-proceed
		panic(http.ErrAbortHandler)
	}
	t.Run("before_headers_goes_through_encoder_chain", func(t *testing.T) {
		e := start(t, tcfg{}, func(w http.ResponseWriter, r *http.Request, _ []byte) { panic(http.ErrAbortHandler) })
		res := e.get(t, "/")
		ps := e.proc.next(t)
		ps.expect(t, "request_headers")
		ps.send(t, reqHeadersResp(cont()))
		m := ps.expect(t, "response_headers")
		if s, _ := hv(m, ":status"); s != "503" {
			t.Errorf("ext_proc must see the 503 local reply, got %q", s)
		}
		ps.send(t, respHeadersResp(cont()))
		wantStatus(t, wait(t, res), 503)
	})
	t.Run("headers_held_by_ext_proc_direct_503", func(t *testing.T) {
		proceed = make(chan struct{})
		e := start(t, tcfg{extProc: "processing_mode: {response_body_mode: BUFFERED}"}, abortMid)
		res := e.get(t, "/")
		ps := e.proc.next(t)
		ps.expect(t, "request_headers")
		ps.send(t, reqHeadersResp(cont()))
		ps.expect(t, "response_headers")
		ps.send(t, respHeadersResp(cont()))
		close(proceed)
		// waiting for the body: the upstream resets; ext_proc gets no message.
		wantStatus(t, wait(t, res), 503)
		if m := ps.recvMsg(t); m != nil {
			t.Errorf("ext_proc must get no message, got %s", kindOf(m))
		}
	})
	for _, h2 := range []bool{false, true} {
		t.Run(map[bool]string{false: "headers_sent_http1_reset", true: "headers_sent_h2_reset"}[h2], func(t *testing.T) {
			proceed = make(chan struct{})
			e := start(t, tcfg{extProc: fdResp}, abortMid)
			type got struct {
				resp *http.Response
				err  error
			}
			ch := make(chan got, 1)
			c := client(h2)
			defer c.CloseIdleConnections()
			go func() {
				req, _ := http.NewRequest("GET", e.base+"/", nil)
				resp, err := c.Do(req)
				ch <- got{resp, err}
			}()
			ps := e.proc.next(t)
			ps.expect(t, "request_headers")
			ps.send(t, reqHeadersResp(cont()))
			ps.expect(t, "response_headers")
			ps.send(t, respHeadersResp(cont()))
			m := ps.expect(t, "response_body")
			ps.send(t, respBodyResp(streamed(string(bodyOf(m).GetBody()), false)))
			var g got
			select {
			case g = <-ch:
			case <-time.After(waitMax):
				t.Fatal("no response headers")
			}
			if g.err != nil {
				t.Fatal(g.err)
			}
			defer g.resp.Body.Close()
			buf := make([]byte, len("partial"))
			if _, err := io.ReadFull(g.resp.Body, buf); err != nil || string(buf) != "partial" {
				t.Fatalf("first chunk %q %v", buf, err)
			}
			close(proceed) // now the upstream resets
			if _, err := io.ReadAll(g.resp.Body); err == nil {
				t.Fatal("client must see a reset (truncated body)")
			}
			if m := ps.recvMsg(t); m != nil {
				t.Errorf("ext_proc must get no message, got %s", kindOf(m))
			}
			ps.waitClosed(t)
		})
	}
}

// ImmediateResponse after response headers were sent ⇒ reset (§2.7).
func TestImmediateAfterHeadersSentResets(t *testing.T) {
	e := start(t, tcfg{extProc: fdResp}, nil)
	res, ps := e.getPastResponseHeaders(t)
	ps.expect(t, "response_body")
	ps.send(t, respBodyResp(streamed("first", false)))
	ps.send(t, &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{}}})
	if r := wait(t, res); r.err == nil {
		t.Fatalf("want reset, got %d %q", r.status, r.body)
	}
}

// The sim loads the bootstrap users run, with overrides.
func TestLoadsStandaloneYAML(t *testing.T) {
	doc, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal("envoy/standalone.yaml, which users run, cannot be read:", err)
	}
	clusters := map[string]string{}
	for _, c := range []string{"llmux", "openai", "anthropic", "bedrock_us_east_1", "gemini", "vertex_us_central1", "azure"} {
		clusters[c] = "127.0.0.1:1"
	}
	s, err := Start(context.Background(), Options{Bootstrap: doc, Clusters: clusters})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr("ingress") == "" || s.Addr("egress") == "" {
		t.Fatal("listeners missing")
	}
	// Without overrides for the provider clusters it refuses loudly.
	_, err = Start(context.Background(), Options{Bootstrap: doc, Clusters: map[string]string{"llmux": "127.0.0.1:1"}})
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(ue.Field, "clusters[openai]") {
		t.Fatalf("want UnsupportedError naming the openai cluster, got %v", err)
	}
	lb, err := LoopbackBootstrap(doc, clusters, map[string]int{"ingress": 10000})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(lb, []byte("UpstreamTlsContext")) || !bytes.Contains(lb, []byte(`"hostname"`)) || !bytes.Contains(lb, []byte(`"api.openai.com"`)) {
		t.Errorf("LoopbackBootstrap did not rewrite clusters:\n%s", lb)
	}
}

// Unmodelled settings are refused with an error naming the field (#27, #28 included).
func TestRefusesUnmodelled(t *testing.T) {
	good := tcfg{}.yaml()
	for _, tc := range []struct {
		name, from, to, field string
	}{
		{"regex_route", `match: {prefix: "/"}`, `match: {safe_regex: {regex: ".*"}}`, "match"},
		{"retry_policy_27", `grpc_service: {envoy_grpc: {cluster_name: extproc}}`, `grpc_service: {envoy_grpc: {cluster_name: extproc}, retry_policy: {num_retries: 1}}`, "grpc_service.retry_policy"},
		{"upstream_filter_28", `explicit_http_config: {http2_protocol_options: {}}}}`, `explicit_http_config: {http2_protocol_options: {}}, http_filters: [{name: envoy.filters.http.ext_proc}]}}`, "http_filters"},
		{"other_filter", `http_filters: [`, `http_filters: [{name: envoy.filters.http.buffer, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}, `, "http_filters"},
		{"observability_mode", `grpc_service: {envoy_grpc: {cluster_name: extproc}}`, `grpc_service: {envoy_grpc: {cluster_name: extproc}}, observability_mode: true`, "observability_mode"},
		{"fd_without_trailer_send", `grpc_service: {envoy_grpc: {cluster_name: extproc}}`, `grpc_service: {envoy_grpc: {cluster_name: extproc}}, processing_mode: {request_body_mode: FULL_DUPLEX_STREAMED}`, "request_trailer_mode has to be set to SEND"},
		{"unknown_field", `stat_prefix: t`, `stat_prefix: t, bogus_field: 1`, "bogus_field"},
		{"non_loopback_cluster", `name: other, type: STATIC, load_assignment: {cluster_name: other, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1`, `name: other, type: STATIC, load_assignment: {cluster_name: other, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.1.2.3`, "clusters[other]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(good, tc.from, tc.to, 1)
			if doc == good {
				t.Fatalf("replacement %q not applied", tc.from)
			}
			clusters := map[string]string{"extproc": "127.0.0.1:1", "upstream": "127.0.0.1:1"}
			if tc.name != "non_loopback_cluster" {
				clusters["other"] = "127.0.0.1:1"
			}
			s, err := Start(context.Background(), Options{Bootstrap: []byte(doc), Clusters: clusters})
			if err == nil {
				s.Close()
				t.Fatal("accepted an unmodelled setting")
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error %q does not name %q", err, tc.field)
			}
		})
	}
}

// TestEarlyLocalReplyClosesHTTP1 checks Envoy's drain rule
// (ConnectionManagerImpl::ActiveStream::encodeHeaders): a response that
// starts before an HTTP/1 request is complete carries "connection: close",
// so clients do not reuse a connection Envoy closes.
func TestEarlyLocalReplyClosesHTTP1(t *testing.T) {
	e := start(t, tcfg{}, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPost, e.base+"/", pr)
	type out struct {
		resp *http.Response
		err  error
	}
	ch := make(chan out, 1)
	c := &http.Client{Transport: &http.Transport{}} // keep-alive on
	defer c.CloseIdleConnections()
	go func() {
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		ch <- out{resp, err}
	}()
	ps := e.proc.next(t)
	ps.expect(t, "request_headers")
	ps.send(t, &extprocsvc.ProcessingResponse{Response: &extprocsvc.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocsvc.ImmediateResponse{
		Status: &typev3.HttpStatus{Code: 401}, Body: []byte("no"),
	}}})
	r := <-ch
	if r.err != nil || r.resp.StatusCode != 401 || !r.resp.Close {
		t.Fatalf("err %v, resp %+v", r.err, r.resp)
	}
}
