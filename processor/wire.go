package processor

import (
	"math"
	"sync"
	"unicode/utf8"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The dynamic metadata Struct is the costliest part of llmux's replies to
// marshal: protobuf-go encodes map fields through reflection, twice (size,
// then bytes). A reply that carries metadata is therefore marshalled with
// its metadata written here by hand, and sent as the unknown fields of an
// empty message: the bytes on the wire are a ProcessingResponse, as Envoy
// expects (field order is free in protobuf).

// msgSender is the part of a gRPC stream that sends any message.
type msgSender interface {
	SendMsg(m any) error
}

// processingResponseDynamicMetadata is ProcessingResponse.dynamic_metadata.
const processingResponseDynamicMetadata = 8

// encodeResponse appends resp in protobuf wire format to dst. ok is false
// when a metadata string is not valid UTF-8, which protobuf-go refuses to
// marshal: the caller then sends resp the ordinary way, for the same error.
func encodeResponse(dst []byte, resp *extprocv3.ProcessingResponse) (b []byte, ok bool, err error) {
	md := resp.DynamicMetadata
	if !validStruct(md) {
		return dst, false, nil
	}
	resp.DynamicMetadata = nil
	b, err = proto.MarshalOptions{}.MarshalAppend(dst, resp)
	resp.DynamicMetadata = md
	if err != nil {
		return dst, false, err
	}
	b = protowire.AppendTag(b, processingResponseDynamicMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeStruct(md)))
	return appendStruct(b, md), true, nil
}

// maxEncodedBody is the largest body a reply encoded by hand carries:
// past it, the copy into the reused buffer would cost more than the
// metadata saves, and the buffer would hold a large body for the rest of
// the stream.
const maxEncodedBody = 32 << 10

// replyBody is the body a reply carries, if any.
func replyBody(resp *extprocv3.ProcessingResponse) []byte {
	switch r := resp.Response.(type) {
	case *extprocv3.ProcessingResponse_RequestBody:
		return r.RequestBody.GetResponse().GetBodyMutation().GetBody()
	case *extprocv3.ProcessingResponse_ResponseBody:
		m := r.ResponseBody.GetResponse().GetBodyMutation()
		if sr := m.GetStreamedResponse(); sr != nil {
			return sr.GetBody()
		}
		return m.GetBody()
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		return r.ImmediateResponse.GetBody()
	}
	return nil
}

// wireBufs holds the buffers replies are encoded into: the codec copies
// the bytes while marshalling, so a buffer is free again once sent.
var wireBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// sendEncoded sends resp through s with its metadata encoded by hand; it
// reports false when resp must be sent the ordinary way.
func sendEncoded(s msgSender, resp *extprocv3.ProcessingResponse) (bool, error) {
	if len(replyBody(resp)) > maxEncodedBody {
		return false, nil
	}
	buf := wireBufs.Get().(*[]byte)
	defer wireBufs.Put(buf)
	b, ok, err := encodeResponse((*buf)[:0], resp)
	if !ok || err != nil {
		return false, err
	}
	if cap(b) <= 2*maxEncodedBody {
		*buf = b
	}
	raw := &emptypb.Empty{}
	raw.ProtoReflect().SetUnknown(b)
	return true, s.SendMsg(raw)
}

// google.protobuf.Struct, Value and ListValue field numbers.
const (
	structFields     = 1
	entryKey         = 1
	entryValue       = 2
	valueNull        = 1
	valueNumber      = 2
	valueString      = 3
	valueBool        = 4
	valueStruct      = 5
	valueList        = 6
	listValuesNumber = 1
)

func validStruct(s *structpb.Struct) bool {
	for k, v := range s.GetFields() {
		if !utf8.ValidString(k) || !validValue(v) {
			return false
		}
	}
	return true
}

func validValue(v *structpb.Value) bool {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return utf8.ValidString(k.StringValue)
	case *structpb.Value_StructValue:
		return validStruct(k.StructValue)
	case *structpb.Value_ListValue:
		for _, e := range k.ListValue.GetValues() {
			if !validValue(e) {
				return false
			}
		}
	}
	return true
}

func sizeStruct(s *structpb.Struct) int {
	n := 0
	for k, v := range s.GetFields() {
		e := sizeEntry(k, v)
		n += protowire.SizeTag(structFields) + protowire.SizeBytes(e)
	}
	return n
}

func sizeEntry(k string, v *structpb.Value) int {
	return protowire.SizeTag(entryKey) + protowire.SizeBytes(len(k)) +
		protowire.SizeTag(entryValue) + protowire.SizeBytes(sizeValue(v))
}

func sizeValue(v *structpb.Value) int {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return protowire.SizeTag(valueNull) + protowire.SizeVarint(uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		return protowire.SizeTag(valueNumber) + protowire.SizeFixed64()
	case *structpb.Value_StringValue:
		return protowire.SizeTag(valueString) + protowire.SizeBytes(len(k.StringValue))
	case *structpb.Value_BoolValue:
		return protowire.SizeTag(valueBool) + protowire.SizeVarint(protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		return protowire.SizeTag(valueStruct) + protowire.SizeBytes(sizeStruct(k.StructValue))
	case *structpb.Value_ListValue:
		return protowire.SizeTag(valueList) + protowire.SizeBytes(sizeList(k.ListValue))
	}
	return 0
}

func sizeList(l *structpb.ListValue) int {
	n := 0
	for _, e := range l.GetValues() {
		n += protowire.SizeTag(listValuesNumber) + protowire.SizeBytes(sizeValue(e))
	}
	return n
}

// appendStruct appends the fields of s (map entries, in map order).
func appendStruct(b []byte, s *structpb.Struct) []byte {
	for k, v := range s.GetFields() {
		b = protowire.AppendTag(b, structFields, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeEntry(k, v)))
		b = protowire.AppendTag(b, entryKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, entryValue, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeValue(v)))
		b = appendValue(b, v)
	}
	return b
}

func appendValue(b []byte, v *structpb.Value) []byte {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		b = protowire.AppendTag(b, valueNull, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(k.NumberValue))
	case *structpb.Value_StringValue:
		b = protowire.AppendTag(b, valueString, protowire.BytesType)
		b = protowire.AppendString(b, k.StringValue)
	case *structpb.Value_BoolValue:
		b = protowire.AppendTag(b, valueBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		b = protowire.AppendTag(b, valueStruct, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeStruct(k.StructValue)))
		b = appendStruct(b, k.StructValue)
	case *structpb.Value_ListValue:
		b = protowire.AppendTag(b, valueList, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizeList(k.ListValue)))
		for _, e := range k.ListValue.GetValues() {
			b = protowire.AppendTag(b, listValuesNumber, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizeValue(e)))
			b = appendValue(b, e)
		}
	}
	return b
}
