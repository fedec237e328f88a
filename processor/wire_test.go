package processor

import (
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestEncodeResponse(t *testing.T) {
	md := func(fields map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(map[string]any{"io.llmux": fields})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := []struct {
		name string
		resp *extprocv3.ProcessingResponse
	}{
		{"request body reply", &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				HeaderMutation:  &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{header(":path", "/v1/chat/completions")}, RemoveHeaders: []string{"authorization"}},
				BodyMutation:    &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(`{"model":"m"}`)}},
				ClearRouteCache: true,
			}}},
			DynamicMetadata: md(map[string]any{"request_id": "r-1", "tenant": "team-a", "deployment": "d", "empty": ""}),
		}},
		{"final chunk", &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: []byte("data: [DONE]\n\n"), EndOfStream: true}}},
			}}},
			DynamicMetadata: md(map[string]any{"status": 200, "input_tokens": 12, "ttft_ms": 0, "ratio": -1.5, "big": 1e300}),
		}},
		{"every value kind", &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
				Status: &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests}, Body: []byte(`{}`), Details: "llmux_rate_limit"}},
			DynamicMetadata: md(map[string]any{"null": nil, "yes": true, "no": false, "list": []any{"a", 1, nil, []any{}, map[string]any{"k": "v"}},
				"nested": map[string]any{"deeper": map[string]any{}}, "unicode": "é世"}),
		}},
		{"lengths of two and three bytes", &extprocv3.ProcessingResponse{
			Response:        &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
			DynamicMetadata: md(map[string]any{"a": strings.Repeat("x", 200), "b": strings.Repeat("y", 20000), "c": []any{strings.Repeat("z", 130)}}),
		}},
		{"no metadata", &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}},
		}},
		{"empty struct", &extprocv3.ProcessingResponse{
			Response:        &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}},
			DynamicMetadata: &structpb.Struct{},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := proto.Clone(c.resp)
			b, ok, err := encodeResponse(nil, c.resp, nil)
			if !ok || err != nil {
				t.Fatalf("encodeResponse: ok %v, %v", ok, err)
			}
			if !proto.Equal(c.resp, want) {
				t.Errorf("encodeResponse changed the response")
			}
			got := decodeSent(t, b)
			if !proto.Equal(got, want) {
				t.Errorf("decoded\n%v\nwant\n%v", got, want)
			}
			if n := len(got.ProtoReflect().GetUnknown()); n != 0 {
				t.Errorf("%d bytes of unknown fields", n)
			}
		})
	}
}

// decodeSent decodes what the stream sends for the bytes encodeResponse
// wrote: the bytes as an empty message's unknown fields, marshalled again
// by the codec.
func decodeSent(t *testing.T, b []byte) *extprocv3.ProcessingResponse {
	t.Helper()
	raw := &emptypb.Empty{}
	raw.ProtoReflect().SetUnknown(b)
	wire, err := proto.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got extprocv3.ProcessingResponse
	if err := proto.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestEncodeResponseInvalidUTF8(t *testing.T) {
	for _, md := range []*structpb.Struct{
		{Fields: map[string]*structpb.Value{"io.llmux": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"tenant": structpb.NewStringValue("a\xffb")}})}},
		{Fields: map[string]*structpb.Value{"k\xff": structpb.NewNullValue()}},
		{Fields: map[string]*structpb.Value{"l": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{structpb.NewStringValue("\xc0")}})}},
	} {
		resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}, DynamicMetadata: md}
		// protobuf-go refuses these strings; encodeResponse leaves them
		// to it, so that the send fails the same way.
		if _, ok, err := encodeResponse(nil, resp, nil); ok || err != nil {
			t.Errorf("%v: ok %v, err %v; want not encoded", md, ok, err)
		}
		if _, err := proto.Marshal(resp); err == nil {
			t.Errorf("%v: protobuf-go marshals it", md)
		}
	}
}

// rawRecorder is a stream that can send any message, as gRPC's can.
type rawRecorder struct {
	typed, raw int
	last       []byte
}

func (r *rawRecorder) Send(*extprocv3.ProcessingResponse) error { r.typed++; return nil }

func (r *rawRecorder) SendMsg(m any) error {
	r.raw++
	b, err := proto.Marshal(m.(proto.Message))
	r.last = b
	return err
}

func TestSendEncodesMetadataReplies(t *testing.T) {
	md := &structpb.Struct{Fields: map[string]*structpb.Value{"io.llmux": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"status": structpb.NewNumberValue(200)}})}}
	body := func(n int) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: make([]byte, n), EndOfStream: true}}},
			}}},
			DynamicMetadata: md,
		}
	}
	cases := []struct {
		name       string
		resp       *extprocv3.ProcessingResponse
		typed, raw int
	}{
		{"small body with metadata", body(1000), 0, 1},
		{"large body with metadata", body(maxEncodedBody + 1), 1, 0},
		{"no metadata", &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}, 1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &rawRecorder{}
			h := &handler{out: rec}
			if err := h.send(c.resp); err != nil {
				t.Fatal(err)
			}
			if rec.typed != c.typed || rec.raw != c.raw {
				t.Fatalf("sent %d typed and %d raw, want %d and %d", rec.typed, rec.raw, c.typed, c.raw)
			}
			if c.raw == 0 {
				return
			}
			var got extprocv3.ProcessingResponse
			if err := proto.Unmarshal(rec.last, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, c.resp) {
				t.Errorf("decoded %v, want %v", &got, c.resp)
			}
		})
	}
}

// TestEncodeShell: metadata built by mdValues and encoded from its list of
// fields (its maps not built) decodes to the same reply as the Struct its
// maps make, and building the maps afterwards gives that Struct.
func TestEncodeShell(t *testing.T) {
	build := func(fill func(v *mdValues)) *mdShell {
		v := mdValues{size: mdFields}
		fill(&v)
		return v.build("io.llmux")
	}
	cases := []struct {
		name string
		fill func(v *mdValues)
		ok   bool
	}{
		{"empty", func(*mdValues) {}, true},
		{"fields", func(v *mdValues) {
			v.str("request_id", "r-1")
			v.num("status", 200)
			v.boolean("cost_known", true)
			v.num("cost_usd", 1e-7)
			v.str("model", "gpt-4o-mini")
		}, true},
		{"a field set twice", func(v *mdValues) {
			v.str("error_code", "a")
			v.num("status", 500)
			v.str("error_code", "b")
		}, true},
		{"past the arrays", func(v *mdValues) {
			for i := range 3 * mdFields {
				v.num(fmt.Sprint("n", i), float64(i))
			}
		}, true},
		{"invalid UTF-8 value", func(v *mdValues) { v.str("tenant", "a\xffb") }, false},
		{"invalid UTF-8 key", func(v *mdValues) { v.num("k\xff", 1) }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sh := build(c.fill)
			resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}, DynamicMetadata: &sh.outer}
			b, ok, err := encodeResponse(nil, resp, sh)
			if err != nil || ok != c.ok {
				t.Fatalf("encodeResponse: ok %v, %v; want ok %v", ok, err, c.ok)
			}
			if sh.outer.Fields != nil {
				t.Fatal("encoding built the maps")
			}
			want := &extprocv3.ProcessingResponse{Response: resp.Response, DynamicMetadata: build(c.fill).Struct()}
			if !ok {
				if _, err := proto.Marshal(want); err == nil {
					t.Fatal("protobuf-go marshals what encodeResponse refused")
				}
				return
			}
			if got := decodeSent(t, b); !proto.Equal(got, want) {
				t.Errorf("decoded\n%v\nwant\n%v", got, want)
			}
			if !proto.Equal(sh.Struct(), want.DynamicMetadata) {
				t.Errorf("Struct() %v, want %v", sh.Struct(), want.DynamicMetadata)
			}
		})
	}
}
