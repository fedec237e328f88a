package envoysim

import (
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// shortDebugMetadata renders a Metadata message in the protobuf text format
// on one line, as C++ ShortDebugString does: map entries sorted by key,
// strings C-escaped (UTF-8 kept), fields separated by single spaces. This
// is how Envoy's ext_proc hands xds.route_metadata to the server (a CEL
// message value goes through print()).
func shortDebugMetadata(m *corev3.Metadata) string {
	var b strings.Builder
	keys := make([]string, 0, len(m.GetFilterMetadata()))
	for k := range m.GetFilterMetadata() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("filter_metadata { key: ")
		writeQuoted(&b, k)
		b.WriteString(" value { ")
		writeStructFields(&b, m.GetFilterMetadata()[k])
		b.WriteString("} }")
	}
	return b.String()
}

// writeStructFields writes the fields of s followed by a space each.
func writeStructFields(b *strings.Builder, s *structpb.Struct) {
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("fields { key: ")
		writeQuoted(b, k)
		b.WriteString(" value { ")
		writeValue(b, s.GetFields()[k])
		b.WriteString("} } ")
	}
}

// writeValue writes the set field of v followed by a space.
func writeValue(b *strings.Builder, v *structpb.Value) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		b.WriteString("null_value: NULL_VALUE ")
	case *structpb.Value_NumberValue:
		b.WriteString("number_value: ")
		b.WriteString(strconv.FormatFloat(k.NumberValue, 'g', -1, 64))
		b.WriteByte(' ')
	case *structpb.Value_StringValue:
		b.WriteString("string_value: ")
		writeQuoted(b, k.StringValue)
		b.WriteByte(' ')
	case *structpb.Value_BoolValue:
		b.WriteString("bool_value: ")
		b.WriteString(strconv.FormatBool(k.BoolValue))
		b.WriteByte(' ')
	case *structpb.Value_StructValue:
		b.WriteString("struct_value { ")
		writeStructFields(b, k.StructValue)
		b.WriteString("} ")
	case *structpb.Value_ListValue:
		b.WriteString("list_value { ")
		for _, e := range k.ListValue.GetValues() {
			b.WriteString("values { ")
			writeValue(b, e)
			b.WriteString("} ")
		}
		b.WriteString("} ")
	}
}

func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\'':
			b.WriteString(`\'`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 || c == 0x7f {
				b.WriteString(`\` + strconv.FormatInt(int64(c)+01000, 8)[1:])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}
