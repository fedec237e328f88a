package processor

import (
	"fmt"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Codec returns the gRPC codec llmux's server should use
// (grpc.ForceServerCodecV2). It is gRPC's proto codec, except for large
// request bodies, which it holds once instead of copying:
//
//   - Receiving: the standard codec gathers the received frames into one
//     pooled buffer and then proto.Unmarshal copies the body out of it, so
//     a buffered 15 MiB body costs 30 MiB before llmux sees it. This codec
//     gathers the frames into one buffer of its own and points the
//     HttpBody's body into it (the buffer belongs to the message from then
//     on; nothing else writes to it).
//   - Sending: the reply to a request body carries the translated body;
//     the standard codec copies it into the marshalled message. This codec
//     marshals the reply without it, then appends a second request_body
//     field holding only the body mutation, whose bytes are the
//     translated body itself. Protobuf parsers merge repeated occurrences
//     of an embedded message field (Envoy's C++ parser as Go's), so Envoy
//     reads the same message. The caller must not modify the body after
//     Send (llmux drops it).
func Codec() encoding.CodecV2 { return codec{std: encoding.GetCodecV2("proto")} }

// aliasThreshold is the message size from which the body is aliased;
// smaller messages take the standard path (pooled buffers are cheaper
// than a fresh allocation for them).
const aliasThreshold = 64 << 10

// Field numbers of ProcessingRequest.request_body and HttpBody.body.
var (
	requestBodyField = protowire.Number((&extprocv3.ProcessingRequest{}).ProtoReflect().Descriptor().Fields().ByName("request_body").Number())
	httpBodyField    = protowire.Number((&extprocv3.HttpBody{}).ProtoReflect().Descriptor().Fields().ByName("body").Number())
)

type codec struct{ std encoding.CodecV2 }

func (c codec) Name() string { return "proto" }

// Field numbers on the path to a request-body reply's body.
var (
	replyRequestBodyField   = protowire.Number((&extprocv3.ProcessingResponse{}).ProtoReflect().Descriptor().Fields().ByName("request_body").Number())
	bodyResponseField       = protowire.Number((&extprocv3.BodyResponse{}).ProtoReflect().Descriptor().Fields().ByName("response").Number())
	commonBodyMutationField = protowire.Number((&extprocv3.CommonResponse{}).ProtoReflect().Descriptor().Fields().ByName("body_mutation").Number())
	bodyMutationBodyField   = protowire.Number((&extprocv3.BodyMutation{}).ProtoReflect().Descriptor().Fields().ByName("body").Number())
)

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*extprocv3.ProcessingResponse)
	cr := m.GetRequestBody().GetResponse()
	bm := cr.GetBodyMutation()
	body := bm.GetBody()
	if !ok || len(body) < aliasThreshold {
		return c.std.Marshal(v)
	}
	cr.BodyMutation = nil
	head, err := proto.Marshal(m)
	cr.BodyMutation = bm
	if err != nil {
		return nil, fmt.Errorf("llmux codec: marshal ProcessingResponse: %w", err)
	}
	// request_body { response { body_mutation { body: <body> } } }
	n3 := protowire.SizeTag(bodyMutationBodyField) + protowire.SizeBytes(len(body))
	n2 := protowire.SizeTag(commonBodyMutationField) + protowire.SizeBytes(n3)
	n1 := protowire.SizeTag(bodyResponseField) + protowire.SizeBytes(n2)
	hdr := make([]byte, 0, 4*(protowire.SizeTag(replyRequestBodyField)+protowire.SizeVarint(uint64(n1))))
	hdr = protowire.AppendTag(hdr, replyRequestBodyField, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(n1))
	hdr = protowire.AppendTag(hdr, bodyResponseField, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(n2))
	hdr = protowire.AppendTag(hdr, commonBodyMutationField, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(n3))
	hdr = protowire.AppendTag(hdr, bodyMutationBodyField, protowire.BytesType)
	hdr = protowire.AppendVarint(hdr, uint64(len(body)))
	return mem.BufferSlice{mem.SliceBuffer(head), mem.SliceBuffer(hdr), mem.SliceBuffer(body)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*extprocv3.ProcessingRequest)
	if !ok || data.Len() < aliasThreshold {
		return c.std.Unmarshal(data, v)
	}
	return unmarshalAliasingBody(data.Materialize(), m)
}

// unmarshalAliasingBody unmarshals buf into m with the request body's
// bytes aliasing buf. Everything except the body (attributes, metadata,
// end_of_stream, ...) goes through proto.Unmarshal, so only the body's
// placement is special. A message it cannot split (a malformed one, or a
// body field given twice) is unmarshalled by proto.Unmarshal as it is.
func unmarshalAliasingBody(buf []byte, m *extprocv3.ProcessingRequest) error {
	rest, body, ok := splitBody(buf)
	if !ok {
		return wrapUnmarshal(proto.Unmarshal(buf, m))
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return wrapUnmarshal(err)
	}
	if rb := m.GetRequestBody(); rb != nil && len(body) > 0 {
		rb.Body = body[:len(body):len(body)]
	}
	return nil
}

func wrapUnmarshal(err error) error {
	if err != nil {
		return fmt.Errorf("llmux codec: unmarshal ProcessingRequest: %w", err)
	}
	return nil
}

// splitBody returns the message without the request body's bytes, and
// those bytes (a sub-slice of buf). ok is false when buf has no single
// request_body with a single body, or does not parse.
func splitBody(buf []byte) (rest, body []byte, ok bool) {
	found := false
	rest = make([]byte, 0, 512)
	for b := buf; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false
		}
		vlen := protowire.ConsumeFieldValue(num, typ, b[n:])
		if vlen < 0 {
			return nil, nil, false
		}
		if num != requestBodyField {
			rest = append(rest, b[:n+vlen]...)
			b = b[n+vlen:]
			continue
		}
		if found || typ != protowire.BytesType {
			return nil, nil, false
		}
		found = true
		inner, _ := protowire.ConsumeBytes(b[n:])
		var innerRest []byte
		if innerRest, body, ok = splitHTTPBody(inner); !ok {
			return nil, nil, false
		}
		rest = protowire.AppendTag(rest, num, protowire.BytesType)
		rest = protowire.AppendBytes(rest, innerRest)
		b = b[n+vlen:]
	}
	return rest, body, found
}

// splitHTTPBody splits an HttpBody's encoding into its other fields and
// its body bytes.
func splitHTTPBody(buf []byte) (rest, body []byte, ok bool) {
	seen := false
	for b := buf; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, false
		}
		vlen := protowire.ConsumeFieldValue(num, typ, b[n:])
		if vlen < 0 {
			return nil, nil, false
		}
		if num == httpBodyField {
			if seen || typ != protowire.BytesType {
				return nil, nil, false
			}
			seen = true
			body, _ = protowire.ConsumeBytes(b[n:])
		} else {
			rest = append(rest, b[:n+vlen]...)
		}
		b = b[n+vlen:]
	}
	return rest, body, true
}
