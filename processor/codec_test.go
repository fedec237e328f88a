package processor

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// frames splits b into a BufferSlice of HTTP/2-sized pieces, the way gRPC
// hands a received message to the codec.
func frames(b []byte) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		n := min(len(b), 16<<10)
		s = append(s, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return s
}

func TestCodecMatchesProto(t *testing.T) {
	big := []byte(strings.Repeat("a", 200<<10))
	attrs := map[string]*structpb.Struct{"envoy.filters.http.ext_proc": {Fields: map[string]*structpb.Value{"xds.route_metadata": structpb.NewStringValue("r")}}}
	tests := []struct {
		name string
		msg  *extprocv3.ProcessingRequest
		raw  []byte // used instead of msg when set
	}{
		{"large body with everything around it", &extprocv3.ProcessingRequest{
			Request:         &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: big, EndOfStream: true}},
			Attributes:      attrs,
			MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"io.llmux": {Fields: map[string]*structpb.Value{"k": structpb.NewStringValue("v")}}}},
			ProtocolConfig:  &extprocv3.ProtocolConfiguration{RequestBodyMode: extprocfilterv3.ProcessingMode_BUFFERED},
		}, nil},
		{"small body", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte("{}"), EndOfStream: true}}}, nil},
		{"large response body", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: big}}}, nil},
		{"large headers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-big", RawValue: big}}}}}}, nil},
		{"body field twice", nil, twiceBody(big)},
	}
	c := Codec()
	std := encoding.GetCodecV2("proto")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.raw
			if raw == nil {
				var err error
				if raw, err = proto.Marshal(tc.msg); err != nil {
					t.Fatal(err)
				}
			}
			var got, want extprocv3.ProcessingRequest
			if err := c.Unmarshal(frames(raw), &got); err != nil {
				t.Fatal(err)
			}
			if err := std.Unmarshal(frames(raw), &want); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, &want) {
				t.Fatalf("codec and proto disagree:\n%v\n%v", &got, &want)
			}
		})
	}
	var m extprocv3.ProcessingRequest
	if err := c.Unmarshal(frames(append(bytes.Repeat([]byte{0xff}, 70<<10), 1)), &m); err == nil {
		t.Fatal("garbage unmarshalled without an error")
	}
}

// twiceBody encodes a request_body whose body field appears twice (proto:
// the last wins).
func twiceBody(big []byte) []byte {
	var inner []byte
	inner = protowire.AppendTag(inner, httpBodyField, protowire.BytesType)
	inner = protowire.AppendBytes(inner, []byte("first"))
	inner = protowire.AppendTag(inner, httpBodyField, protowire.BytesType)
	inner = protowire.AppendBytes(inner, big)
	out := protowire.AppendTag(nil, requestBodyField, protowire.BytesType)
	return protowire.AppendBytes(out, inner)
}

// TestCodecHoldsBodyOnce: unmarshalling a large request body allocates
// about the body once (the standard codec: twice).
func TestCodecHoldsBodyOnce(t *testing.T) {
	const size = 8 << 20
	raw, err := proto.Marshal(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: bytes.Repeat([]byte("a"), size), EndOfStream: true}}})
	if err != nil {
		t.Fatal(err)
	}
	data := frames(raw)
	c := Codec()
	var m extprocv3.ProcessingRequest
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := c.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > size*5/4 {
		t.Fatalf("unmarshalling an %d-byte body allocated %d bytes", size, got)
	}
	if len(m.GetRequestBody().GetBody()) != size || !m.GetRequestBody().GetEndOfStream() {
		t.Fatal("body lost")
	}
}

func TestCodecMarshalRequestBodyReply(t *testing.T) {
	big := bytes.Repeat([]byte("b"), 300<<10)
	md, _ := structpb.NewStruct(map[string]any{"io.llmux": map[string]any{"request_id": "r1", "deployment": "d"}})
	reply := func(body []byte) *extprocv3.ProcessingResponse {
		return &extprocv3.ProcessingResponse{
			Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				HeaderMutation:  &extprocv3.HeaderMutation{RemoveHeaders: []string{"cookie"}, SetHeaders: []*corev3.HeaderValueOption{header(":path", "/v1/messages")}},
				BodyMutation:    &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: body}},
				ClearRouteCache: true,
			}}},
			DynamicMetadata: md,
		}
	}
	tests := []struct {
		name    string
		msg     *extprocv3.ProcessingResponse
		aliased bool
	}{
		{"large translated body", reply(big), true},
		{"small body", reply([]byte(`{"model":"m"}`)), false},
		{"immediate response", immediateResponse(400, big, "llmux_x", md), false},
	}
	c := Codec()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.Clone(tc.msg)
			data, err := c.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(tc.msg, before) {
				t.Fatal("Marshal changed the message")
			}
			var got extprocv3.ProcessingResponse
			if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, tc.msg) {
				t.Fatalf("round trip differs:\n%v", &got)
			}
			// The large body goes out as the caller's own bytes, not a copy.
			last := data[len(data)-1].ReadOnlyData()
			if aliased := len(last) == len(big) && &last[0] == &big[0]; aliased != tc.aliased {
				t.Fatalf("body aliased %v, want %v", aliased, tc.aliased)
			}
		})
	}
}
