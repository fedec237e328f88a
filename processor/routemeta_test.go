package processor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/known/structpb"
)

// routeAttrs builds the attributes Envoy sends for a route whose
// filter_metadata is md (namespace → fields), in text format as Envoy
// writes it (test/envoysim TestAttributes).
func routeAttrs(t testing.TB, md map[string]any) map[string]*structpb.Struct {
	t.Helper()
	m := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for ns, v := range md {
		s, err := structpb.NewStruct(v.(map[string]any))
		if err != nil {
			t.Fatal(err)
		}
		m.FilterMetadata[ns] = s
	}
	return rawRouteAttrs(prototext.Format(m))
}

func rawRouteAttrs(text string) map[string]*structpb.Struct {
	return map[string]*structpb.Struct{extProcAttributes: {Fields: map[string]*structpb.Value{
		routeMetadataAttribute: structpb.NewStringValue(text), "request.path": structpb.NewStringValue("/v1/chat/completions")}}}
}

func TestRouteMetadata(t *testing.T) {
	chat := `{"model":"g","messages":[{"role":"user","content":"hi"}]}`
	other := `{"model":"other","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name     string
		attrs    map[string]*structpb.Struct
		body     string
		status   int    // 0: forwarded
		code     string // the error code
		msg      string // in the error message
		strategy string // routing_strategy when forwarded
	}{
		{name: "no attributes", body: chat, strategy: "least_busy"},
		{name: "other namespaces only", attrs: routeAttrs(t, map[string]any{"envoy.lb": map[string]any{"x": "y"}}), body: chat, strategy: "least_busy"},
		{name: "a label", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"route": "default"}}), body: chat, strategy: "least_busy"},
		{name: "allowed group", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"model_groups": []any{"g"}}}), body: chat, strategy: "least_busy"},
		{name: "refused group", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"model_groups": []any{"g"}}}), body: other,
			status: 404, code: "model_not_found", msg: "`other` does not exist or you do not have access"},
		{name: "strategy override", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"routing": map[string]any{"strategy": "latency"}}}), body: chat, strategy: "latency"},
		{name: "unknown key", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"model_group": []any{"g"}}}), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux.model_group"},
		{name: "groups not a list", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"model_groups": "g"}}), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux.model_groups"},
		{name: "empty group list", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"model_groups": []any{}}}), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux.model_groups"},
		{name: "bad strategy", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"routing": map[string]any{"strategy": "fastest"}}}), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux.routing"},
		{name: "bad max_ttft", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"routing": map[string]any{"max_ttft": 2}}}), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux.routing"},
		{name: "label not a string", attrs: routeAttrs(t, map[string]any{"io.llmux": map[string]any{"route": 3}}), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux.route"},
		{name: "not text format", attrs: rawRouteAttrs("filter_metadata {"), body: chat,
			status: 500, code: "invalid_route_metadata", msg: "filter_metadata.io.llmux."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := newRoutingServer(t, routingConfig)
			x, r := rs.start(t, tc.attrs, tc.body)
			defer x.h.end()
			if tc.status == 0 {
				if r.GetImmediateResponse() != nil {
					t.Fatalf("refused: %s", r.GetImmediateResponse().GetBody())
				}
				if got := x.h.routingStrategy(); got != tc.strategy {
					t.Errorf("routing_strategy %q, want %q", got, tc.strategy)
				}
				return
			}
			st, code := immediate(t, r)
			if st != tc.status || code != tc.code || !strings.Contains(string(r.GetImmediateResponse().GetBody()), tc.msg) {
				t.Errorf("%d %s %s, want %d %s with %q", st, code, r.GetImmediateResponse().GetBody(), tc.status, tc.code, tc.msg)
			}
			if tc.status == 500 && !strings.Contains(rs.log.String(), "invalid llmux policy in the Envoy route's metadata") {
				t.Errorf("no log line:\n%s", rs.log)
			}
		})
	}
}

// The model list and lookups follow the route's allow-list; a parsed
// policy is reused, and a bad one is logged once.
func TestRouteMetadataModelsAndCache(t *testing.T) {
	rs := newRoutingServer(t, routingConfig)
	get := func(path string, attrs map[string]*structpb.Struct) *exchangeResult {
		x := &exchange{t: t, rec: &recorder{}}
		x.h = newHandler(rs.s, context.Background(), x.rec)
		hd := reqHeaders(true, ":method", "GET", ":path", path, "authorization", "Bearer "+testKey)
		hd.Attributes = attrs
		r := x.must(hd)
		x.h.end()
		return &exchangeResult{status: int(r.GetImmediateResponse().GetStatus().GetCode()), body: string(r.GetImmediateResponse().GetBody())}
	}
	only := routeAttrs(t, map[string]any{"io.llmux": map[string]any{"model_groups": []any{"other"}}})
	if r := get("/v1/models", only); r.status != 200 || !strings.Contains(r.body, `"other"`) || strings.Contains(r.body, `"g"`) {
		t.Errorf("models: %d %s", r.status, r.body)
	}
	if r := get("/v1/models/g", only); r.status != 404 {
		t.Errorf("a refused group's model: %d", r.status)
	}
	if r := get("/v1/models/g", nil); r.status != 200 {
		t.Errorf("without metadata: %d", r.status)
	}
	bad := routeAttrs(t, map[string]any{"io.llmux": map[string]any{"colour": "red"}})
	for range 3 {
		if r := get("/v1/models", bad); r.status != 500 {
			t.Fatalf("bad metadata: %d", r.status)
		}
	}
	if n := strings.Count(rs.log.String(), "invalid llmux policy"); n != 1 {
		t.Errorf("logged %d times, want once per distinct metadata", n)
	}
	if len(rs.s.routeMD.m) != 2 {
		t.Errorf("cache holds %d entries, want 2", len(rs.s.routeMD.m))
	}
}

type exchangeResult struct {
	status int
	body   string
}

func TestRouteMetaCacheBound(t *testing.T) {
	var c routeMetaCache
	for i := range routeMetaCacheSize + 10 {
		text := prototext.Format(&corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"io.llmux": {Fields: map[string]*structpb.Value{"route": structpb.NewStringValue(fmt.Sprint("r", i))}}}})
		if p, err, _ := c.get(text, "io.llmux"); err != nil || p.name != fmt.Sprint("r", i) {
			t.Fatalf("%d: %v %v", i, p, err)
		}
	}
	if len(c.m) > routeMetaCacheSize {
		t.Errorf("cache grew to %d", len(c.m))
	}
	// The same text under another namespace is parsed again.
	text := prototext.Format(&corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"a": {Fields: map[string]*structpb.Value{"route": structpb.NewStringValue("x")}}}})
	if p, _, _ := c.get(text, "a"); p == nil || p.name != "x" {
		t.Errorf("namespace a: %v", p)
	}
	if p, _, parsed := c.get(text, "b"); p != nil || !parsed {
		t.Errorf("namespace b: %v %v", p, parsed)
	}
}

// FuzzRouteMetadata: any attribute text gives a policy or an error, never
// a panic, and an error names a key or the attribute.
func FuzzRouteMetadata(f *testing.F) {
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "route" value { string_value: "default" } } } }`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "model_groups" value { list_value { values { string_value: "g" } } } } } }`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "routing" value { struct_value { fields { key: "strategy" value { string_value: "cost" } } fields { key: "max_ttft" value { string_value: "2s" } } } } } } }`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "routing" value { number_value: 1 } } } }`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "mode" value { string_value: "owned" } } } }`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "mode" value { bool_value: true } } } }`)
	f.Add(`filter_metadata {`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "routing" value { struct_value { fields { key: "expected_output_tokens" value { number_value: 1.5 } } } } } } }`)
	f.Add(`filter_metadata { key: "io.llmux" value { fields { key: "routing" value { struct_value { fields { key: "explore" value { number_value: 1e308 } } } } } } }`)
	f.Fuzz(func(t *testing.T, text string) {
		p, err := parseRouteMetadata(text, "io.llmux")
		if err != nil {
			if p != nil {
				t.Error("a policy with an error")
			}
			if _, ok := err.(*routeMetaError); !ok {
				t.Errorf("error %T", err)
			}
			return
		}
		if p != nil && p.groups != nil && len(p.groups) == 0 {
			t.Error("an empty allow-list was accepted")
		}
		if p != nil && p.mode != modeSplice && p.mode != modeOwned {
			t.Errorf("mode %d", p.mode)
		}
	})
}

// TestRouteMetadataHostile: wrong types, huge values, unknown keys and deep
// nesting under every key give an error naming the key, never a policy
// with a silent default, and never a panic.
func TestRouteMetadataHostile(t *testing.T) {
	deep := any("cost")
	for range 200 {
		deep = map[string]any{"x": deep}
	}
	deepList := any("g")
	for range 200 {
		deepList = []any{deepList}
	}
	many := make([]any, 5000)
	for i := range many {
		many[i] = fmt.Sprintf("g%d", i)
	}
	tests := []struct {
		name string
		v    map[string]any // the fields under io.llmux
		key  string         // "": accepted
	}{
		{"label a list", map[string]any{"route": []any{"a"}}, "route"},
		{"label a bool", map[string]any{"route": true}, "route"},
		{"label null", map[string]any{"route": nil}, "route"},
		{"label a struct", map[string]any{"route": map[string]any{"a": "b"}}, "route"},
		{"label too long", map[string]any{"route": strings.Repeat("r", 10_000)}, "route"},
		{"groups a number", map[string]any{"model_groups": 3}, "model_groups"},
		{"groups a struct", map[string]any{"model_groups": map[string]any{"g": true}}, "model_groups"},
		{"groups with a number", map[string]any{"model_groups": []any{"g", 1}}, "model_groups"},
		{"groups with null", map[string]any{"model_groups": []any{nil}}, "model_groups"},
		{"groups with an empty name", map[string]any{"model_groups": []any{""}}, "model_groups"},
		{"groups nested lists", map[string]any{"model_groups": deepList}, "model_groups"},
		{"groups too many", map[string]any{"model_groups": many}, "model_groups"},
		{"groups a huge name", map[string]any{"model_groups": []any{strings.Repeat("g", 10_000)}}, "model_groups"},
		{"routing a string", map[string]any{"routing": "cost"}, "routing"},
		{"routing a list", map[string]any{"routing": []any{"cost"}}, "routing"},
		{"routing null", map[string]any{"routing": nil}, "routing"},
		{"routing a number", map[string]any{"routing": 1e308}, "routing"},
		{"strategy a number", map[string]any{"routing": map[string]any{"strategy": 1}}, "routing"},
		{"strategy a list", map[string]any{"routing": map[string]any{"strategy": []any{"cost"}}}, "routing"},
		{"strategy nested deep", map[string]any{"routing": map[string]any{"strategy": deep}}, "routing"},
		{"routing nested deep", map[string]any{"routing": deep}, "routing"},
		{"explore a string", map[string]any{"routing": map[string]any{"explore": "0.5"}}, "routing"},
		{"explore huge", map[string]any{"routing": map[string]any{"explore": 1e308}}, "routing"},
		{"explore negative", map[string]any{"routing": map[string]any{"explore": -0.5}}, "routing"},
		{"expected_output_tokens huge", map[string]any{"routing": map[string]any{"expected_output_tokens": 1e300}}, "routing"},
		{"expected_output_tokens fractional", map[string]any{"routing": map[string]any{"expected_output_tokens": 1.5}}, "routing"},
		{"expected_output_tokens negative", map[string]any{"routing": map[string]any{"expected_output_tokens": -1}}, "routing"},
		{"max_ttft huge", map[string]any{"routing": map[string]any{"max_ttft": "1000000h"}}, "routing"},
		{"max_ttft overflows", map[string]any{"routing": map[string]any{"max_ttft": "99999999999999999999h"}}, "routing"},
		{"max_ttft negative", map[string]any{"routing": map[string]any{"max_ttft": "-1s"}}, "routing"},
		{"stale_after a number", map[string]any{"routing": map[string]any{"stale_after": 10}}, "routing"},
		{"unknown_cost a bool", map[string]any{"routing": map[string]any{"unknown_cost": true}}, "routing"},
		{"routing unknown key", map[string]any{"routing": map[string]any{"strategy": "cost", "retries": 3}}, "routing"},
		{"routing health", map[string]any{"routing": map[string]any{"health": map[string]any{"failures": 1}}}, "routing"},
		{"unknown key beside good ones", map[string]any{"route": "r", "model_groups": []any{"g"}, "fallbacks": []any{"x"}}, "fallbacks"},
		{"unknown key deep", map[string]any{"x": deep}, "x"},
		{"empty key", map[string]any{"": "x"}, ""},
		{"all good", map[string]any{"route": "r", "model_groups": []any{"g", "g"}, "routing": map[string]any{"strategy": "cost", "explore": 0, "expected_output_tokens": 64}}, "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := structpb.NewStruct(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			text := prototext.Format(&corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"io.llmux": s}})
			p, err := parseRouteMetadata(text, "io.llmux")
			if tc.key == "-" {
				if err != nil || p == nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var me *routeMetaError
			if !errors.As(err, &me) || p != nil {
				t.Fatalf("accepted (policy %v, error %v), want an error naming %q", p != nil, err, tc.key)
			}
			if me.key != tc.key {
				t.Errorf("error %q names key %q, want %q", err, me.key, tc.key)
			}
			if len(err.Error()) > 2000 {
				t.Errorf("error of %d bytes: it must not echo a huge value", len(err.Error()))
			}
		})
	}
}
