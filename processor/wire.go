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
//
// sh, when not nil, is md as replyMetadata built it: its fields are written
// from its list, its maps not built.
func encodeResponse(dst []byte, resp *extprocv3.ProcessingResponse, sh *mdShell) (b []byte, ok bool, err error) {
	md := resp.DynamicMetadata
	if md == nil {
		b, err = proto.MarshalOptions{}.MarshalAppend(dst, resp)
		return b, err == nil, err
	}
	resp.DynamicMetadata = nil
	b, err = proto.MarshalOptions{}.MarshalAppend(dst, resp)
	resp.DynamicMetadata = md
	if err != nil {
		return dst, false, err
	}
	if sh != nil && sh.outer.Fields == nil {
		b, ok = appendShell(b, processingResponseDynamicMetadata, sh)
	} else {
		b, ok = appendStructField(b, processingResponseDynamicMetadata, md)
	}
	if !ok {
		return dst, false, nil
	}
	return b, true, nil
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
func sendEncoded(s msgSender, resp *extprocv3.ProcessingResponse, sh *mdShell) (bool, error) {
	if len(replyBody(resp)) > maxEncodedBody {
		return false, nil
	}
	buf := wireBufs.Get().(*[]byte)
	defer wireBufs.Put(buf)
	b, ok, err := encodeResponse((*buf)[:0], resp, sh)
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

// lenReserve is the room left for a length prefix before its message is
// written: a varint of up to 5 bytes, enough for any length under 4 GiB.
const lenReserve = 5

// beginLen appends the tag of length-delimited field num and room for its
// length, and returns where the length goes.
func beginLen(b []byte, num protowire.Number) ([]byte, int) {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return append(b, 0, 0, 0, 0, 0), len(b)
}

// endLen writes the length of what follows the room at at, and closes up
// the room the varint does not use. Each nested message is thus written
// once, without computing its size first.
func endLen(b []byte, at int) []byte {
	n := len(b) - at - lenReserve
	k := protowire.SizeVarint(uint64(n))
	protowire.AppendVarint(b[:at], uint64(n))
	copy(b[at+k:], b[at+lenReserve:])
	return b[:len(b)-(lenReserve-k)]
}

// appendStructField appends s as field num; false if a string in it is not
// valid UTF-8.
func appendStructField(b []byte, num protowire.Number, s *structpb.Struct) ([]byte, bool) {
	b, at := beginLen(b, num)
	for k, v := range s.GetFields() {
		if !utf8.ValidString(k) {
			return b, false
		}
		var e, vat int
		b, e = beginLen(b, structFields)
		b = protowire.AppendTag(b, entryKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b, vat = beginLen(b, entryValue)
		var ok bool
		if b, ok = appendValue(b, v); !ok {
			return b, false
		}
		b = endLen(b, vat)
		b = endLen(b, e)
	}
	return endLen(b, at), true
}

// appendShell appends the metadata sh as field num, as appendStructField
// would append sh.Struct(): the namespace's entry, holding a Struct of
// sh's fields (in the order they were set; each key once). false if a
// string in it is not valid UTF-8.
func appendShell(b []byte, num protowire.Number, sh *mdShell) ([]byte, bool) {
	if !utf8.ValidString(sh.ns) {
		return b, false
	}
	b, at := beginLen(b, num)
	var e, vat, in int
	b, e = beginLen(b, structFields)
	b = protowire.AppendTag(b, entryKey, protowire.BytesType)
	b = protowire.AppendString(b, sh.ns)
	b, vat = beginLen(b, entryValue)
	b, in = beginLen(b, valueStruct)
	for _, f := range sh.fields {
		if !utf8.ValidString(f.key) {
			return b, false
		}
		var fe, fv int
		b, fe = beginLen(b, structFields)
		b = protowire.AppendTag(b, entryKey, protowire.BytesType)
		b = protowire.AppendString(b, f.key)
		b, fv = beginLen(b, entryValue)
		var ok bool
		if b, ok = appendValue(b, f.v); !ok {
			return b, false
		}
		b = endLen(b, fv)
		b = endLen(b, fe)
	}
	b = endLen(b, in)
	b = endLen(b, vat)
	b = endLen(b, e)
	return endLen(b, at), true
}

// appendValue appends the fields of v; false if a string in it is not
// valid UTF-8.
func appendValue(b []byte, v *structpb.Value) ([]byte, bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		b = protowire.AppendTag(b, valueNull, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(k.NullValue))
	case *structpb.Value_NumberValue:
		b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(k.NumberValue))
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			return b, false
		}
		b = protowire.AppendTag(b, valueString, protowire.BytesType)
		b = protowire.AppendString(b, k.StringValue)
	case *structpb.Value_BoolValue:
		b = protowire.AppendTag(b, valueBool, protowire.VarintType)
		b = protowire.AppendVarint(b, protowire.EncodeBool(k.BoolValue))
	case *structpb.Value_StructValue:
		return appendStructField(b, valueStruct, k.StructValue)
	case *structpb.Value_ListValue:
		b, at := beginLen(b, valueList)
		for _, e := range k.ListValue.GetValues() {
			var vat int
			b, vat = beginLen(b, listValuesNumber)
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
			b = endLen(b, vat)
		}
		return endLen(b, at), true
	}
	return b, true
}
