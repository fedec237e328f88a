package eventstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

// allTypes is one header of every value type.
func allTypes() []Header {
	return []Header{
		{":event-type", String("contentBlockDelta")},
		{"t", Bool(true)},
		{"f", Bool(false)},
		{"b", Byte(-7)},
		{"s", Short(-300)},
		{"i", Int(-70000)},
		{"l", Long(-1 << 40)},
		{"bytes", Bytes([]byte{0, 1, 2, 0xff})},
		{"ts", Timestamp(time.UnixMilli(1741570283123))},
		{"id", UUID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})},
		{"empty", String("")},
	}
}

func mustEncode(t testing.TB, dst []byte, h []Header, payload []byte) []byte {
	t.Helper()
	out, err := AppendMessage(dst, h, payload)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHandBuiltFrame decodes a frame assembled field by field from the
// documented layout (not by the encoder), and checks the encoder produces
// the same bytes.
func TestHandBuiltFrame(t *testing.T) {
	payload := []byte(`{"foo":"bar"}`)
	var h []byte
	h = append(h, 13)
	h = append(h, ":message-type"...)
	h = append(h, 7, 0, 5)
	h = append(h, "event"...)
	total := 12 + len(h) + len(payload) + 4
	var f []byte
	f = binary.BigEndian.AppendUint32(f, uint32(total))
	f = binary.BigEndian.AppendUint32(f, uint32(len(h)))
	f = binary.BigEndian.AppendUint32(f, crc32.Checksum(f[:8], crc32.MakeTable(crc32.IEEE)))
	f = append(f, h...)
	f = append(f, payload...)
	f = binary.BigEndian.AppendUint32(f, crc32.Checksum(f, crc32.MakeTable(crc32.IEEE)))

	var d Decoder
	d.Push(f)
	m, ok := d.Next()
	if !ok || string(m.MessageType()) != "event" || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("decoded %v %q %q err %v", ok, m.MessageType(), m.Payload, d.Err())
	}
	enc := mustEncode(t, nil, []Header{{HeaderMessageType, String("event")}}, payload)
	if !bytes.Equal(enc, f) {
		t.Fatalf("encoder differs:\n%x\n%x", enc, f)
	}
}

func TestRoundTripAllTypes(t *testing.T) {
	hs := allTypes()
	f := mustEncode(t, nil, hs, []byte("payload"))
	var d Decoder
	d.Push(f)
	m, ok := d.Next()
	if !ok {
		t.Fatal(d.Err())
	}
	var got []Header
	m.Headers.Each(func(name []byte, v Value) bool {
		got = append(got, Header{string(name), v})
		return true
	})
	if len(got) != len(hs) {
		t.Fatalf("%d headers", len(got))
	}
	for i, h := range hs {
		if got[i].Name != h.Name || got[i].Value.Type != h.Value.Type || !bytes.Equal(got[i].Value.Raw(), h.Value.Raw()) {
			t.Errorf("header %d: %+v want %+v", i, got[i], h)
		}
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"t", mustGet(m, "t").Bool()},
		{"f", !mustGet(m, "f").Bool()},
		{"b", mustGet(m, "b").Int() == -7},
		{"s", mustGet(m, "s").Int() == -300},
		{"i", mustGet(m, "i").Int() == -70000},
		{"l", mustGet(m, "l").Int() == -1<<40},
		{"bytes", bytes.Equal(mustGet(m, "bytes").Bytes(), []byte{0, 1, 2, 0xff})},
		{"ts", mustGet(m, "ts").Time().Equal(time.UnixMilli(1741570283123))},
		{"id", mustGet(m, "id").UUID() == [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
		{"event", string(m.EventType()) == "contentBlockDelta" && mustGet(m, ":event-type").Str() == "contentBlockDelta"},
		{"empty", mustGet(m, "empty").Type == TypeString && len(m.Headers.String("empty")) == 0},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("header %s", c.name)
		}
	}
	if _, ok := m.Headers.Get("missing"); ok || m.ExceptionType() != nil {
		t.Error("missing header found")
	}
	if string(m.Payload) != "payload" {
		t.Errorf("payload %q", m.Payload)
	}
}

func mustGet(m Message, name string) Value {
	v, _ := m.Headers.Get(name)
	return v
}

// stream is three frames of different shapes back to back.
func stream(t testing.TB) ([]byte, []string) {
	var b []byte
	b = Event(b, "messageStart", []byte(`{"role":"assistant"}`))
	b = mustEncode(t, b, allTypes(), []byte(`{"contentBlockIndex":0,"delta":{"text":"Hi"}}`))
	b = mustEncode(t, b, nil, nil) // no headers, no payload
	b = Exception(b, "throttlingException", []byte(`{"message":"slow down"}`))
	return b, []string{`{"role":"assistant"}`, `{"contentBlockIndex":0,"delta":{"text":"Hi"}}`, ``, `{"message":"slow down"}`}
}

func collect(t testing.TB, d *Decoder, chunks ...[]byte) []string {
	var out []string
	for _, c := range chunks {
		d.Push(c)
		for {
			m, ok := d.Next()
			if !ok {
				break
			}
			out = append(out, string(m.Payload)+"|"+string(m.EventType())+string(m.ExceptionType()))
		}
		if d.Err() != nil {
			t.Fatal(d.Err())
		}
	}
	return out
}

// TestEverySplit decodes the stream whole, cut at every byte into two
// chunks, cut at every pair of bytes into three, and byte by byte.
func TestEverySplit(t *testing.T) {
	src, payloads := stream(t)
	var d Decoder
	whole := collect(t, &d, src)
	if len(whole) != len(payloads) {
		t.Fatalf("%d messages: %q", len(whole), whole)
	}
	for i, p := range payloads {
		if got, _, _ := bytes.Cut([]byte(whole[i]), []byte("|")); string(got) != p {
			t.Errorf("message %d: %q", i, whole[i])
		}
	}
	eq := func(got []string) bool {
		if len(got) != len(whole) {
			return false
		}
		for i := range got {
			if got[i] != whole[i] {
				return false
			}
		}
		return true
	}
	for i := 0; i <= len(src); i++ {
		var d Decoder
		if got := collect(t, &d, src[:i], src[i:]); !eq(got) || d.Buffered() != 0 {
			t.Fatalf("split at %d: %q (buffered %d)", i, got, d.Buffered())
		}
	}
	for i := 0; i <= len(src); i += 3 {
		for j := i; j <= len(src); j += 5 {
			var d Decoder
			if got := collect(t, &d, src[:i], src[i:j], src[j:]); !eq(got) {
				t.Fatalf("split at %d,%d: %q", i, j, got)
			}
		}
	}
	var chunks [][]byte
	for i := range src {
		chunks = append(chunks, src[i:i+1])
	}
	var d2 Decoder
	if got := collect(t, &d2, chunks...); !eq(got) {
		t.Fatalf("byte by byte: %q", got)
	}
}

// TestChunkNotRetained: a message taken from the carry-over is not
// overwritten by reusing the pushed chunk's memory.
func TestChunkNotRetained(t *testing.T) {
	src, _ := stream(t)
	var d Decoder
	buf := make([]byte, 10)
	var got []string
	for i := 0; i < len(src); i += 10 {
		n := copy(buf, src[i:])
		d.Push(buf[:n])
		for {
			m, ok := d.Next()
			if !ok {
				break
			}
			got = append(got, string(m.Payload))
		}
		for k := range buf {
			buf[k] = 0xAA // the caller reuses its buffer
		}
	}
	if len(got) != 4 || got[1] != `{"contentBlockIndex":0,"delta":{"text":"Hi"}}` || d.Err() != nil {
		t.Fatalf("%q %v", got, d.Err())
	}
}

func TestErrors(t *testing.T) {
	good := Event(nil, "messageStart", []byte(`{}`))
	corrupt := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		src  []byte
		max  int
		want error
	}{
		{"prelude crc", corrupt(9), 0, ErrPreludeCRC},
		{"total length", corrupt(3), 0, ErrPreludeCRC},
		{"message crc", corrupt(len(good) - 1), 0, ErrMessageCRC},
		{"payload", corrupt(len(good) - 6), 0, ErrMessageCRC},
		{"too large", good, 20, ErrTooLarge},
		{"short total", reprelude(good, 10, 0), 0, ErrMalformed},
		{"headers beyond total", reprelude(good, uint32(len(good)), uint32(len(good))), 0, ErrMalformed},
		{"bad header type", rehead(good, []byte{1, 'x', 42}), 0, ErrMalformed},
		{"header value cut", rehead(good, []byte{1, 'x', 7, 0, 9, 'a'}), 0, ErrMalformed},
		{"empty name", rehead(good, []byte{0, 7, 0, 0}), 0, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{len(tc.src), 1} {
				d := Decoder{Max: tc.max}
				for i := 0; i < len(tc.src); i += step {
					d.Push(tc.src[i:min(i+step, len(tc.src))])
					for {
						if _, ok := d.Next(); !ok {
							break
						}
					}
				}
				if !errors.Is(d.Err(), tc.want) {
					t.Fatalf("step %d: err %v, want %v", step, d.Err(), tc.want)
				}
				d.Push(good)
				if _, ok := d.Next(); ok {
					t.Fatal("decoded after an error")
				}
			}
		})
	}
}

// reprelude rewrites the lengths of a frame with a valid prelude CRC (and
// a valid message CRC).
func reprelude(f []byte, total, hlen uint32) []byte {
	b := bytes.Clone(f)
	binary.BigEndian.PutUint32(b[0:4], total)
	binary.BigEndian.PutUint32(b[4:8], hlen)
	binary.BigEndian.PutUint32(b[8:12], crc32.ChecksumIEEE(b[:8]))
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
	return b
}

// rehead builds a frame with a raw headers section and valid CRCs.
func rehead(_ []byte, h []byte) []byte {
	total := 16 + len(h)
	var b []byte
	b = binary.BigEndian.AppendUint32(b, uint32(total))
	b = binary.BigEndian.AppendUint32(b, uint32(len(h)))
	b = binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	b = append(b, h...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// TestCarryBounded: a frame announcing the maximum size is buffered no
// further than its own length, and one above it is refused from its
// prelude alone.
func TestCarryBounded(t *testing.T) {
	big := make([]byte, 1000)
	f := mustEncode(t, nil, nil, big)
	d := Decoder{Max: 2000}
	d.Push(f[:500])
	if _, ok := d.Next(); ok || d.Buffered() != 500 {
		t.Fatalf("buffered %d", d.Buffered())
	}
	d.Push(append(bytes.Clone(f[500:]), f[:100]...))
	if m, ok := d.Next(); !ok || len(m.Payload) != 1000 {
		t.Fatal("frame not decoded")
	}
	if _, ok := d.Next(); ok || d.Buffered() != 100 {
		t.Fatalf("next frame buffered %d", d.Buffered())
	}
	d2 := Decoder{Max: 999}
	d2.Push(f[:PreludeLen])
	if _, ok := d2.Next(); ok || !errors.Is(d2.Err(), ErrTooLarge) || d2.Buffered() != 0 {
		t.Fatalf("err %v buffered %d", d2.Err(), d2.Buffered())
	}
}

func TestEncoderErrors(t *testing.T) {
	bad := [][]Header{
		{{"", String("x")}},
		{{string(make([]byte, 256)), String("x")}},
		{{"x", String(string(make([]byte, 1<<16)))}},
		{{"x", Value{Type: 42}}},
		{{"x", Value{Type: TypeInt, raw: []byte{1}}}},
	}
	for i, h := range bad {
		out, err := AppendMessage([]byte("keep"), h, nil)
		if err == nil || string(out) != "keep" {
			t.Errorf("case %d: %v %q", i, err, out)
		}
	}
}

func TestTypeString(t *testing.T) {
	for ty, want := range map[Type]string{TypeTrue: "bool", TypeUUID: "uuid", TypeTimestamp: "timestamp", 77: "type(77)"} {
		if ty.String() != want {
			t.Errorf("%d: %s", ty, ty.String())
		}
	}
}

// FuzzDecoder: any input, cut anywhere, decodes without panic, the same
// whole or split, with the carry-over bounded by Max.
func FuzzDecoder(f *testing.F) {
	src, _ := stream(f)
	f.Add(src, uint16(17), uint16(60))
	f.Add(Event(nil, "metadata", []byte(`{"usage":{}}`)), uint16(3), uint16(1))
	f.Add(rehead(nil, []byte{1, 'x', 9, 1, 2}), uint16(5), uint16(0))
	f.Fuzz(func(t *testing.T, src []byte, cut uint16, max uint16) {
		limit := int(max)%4096 + Overhead
		run := func(chunks ...[]byte) ([]string, error) {
			d := Decoder{Max: limit}
			var out []string
			for _, c := range chunks {
				d.Push(c)
				for {
					m, ok := d.Next()
					if !ok {
						break
					}
					var hs []string
					m.Headers.Each(func(n []byte, v Value) bool {
						_ = v.Int()
						_ = v.Time()
						_ = v.UUID()
						hs = append(hs, string(n)+"="+string(v.Bytes()))
						return true
					})
					out = append(out, string(m.Payload)+"|"+string(m.EventType())+"|"+strings.Join(hs, ","))
				}
				if d.Buffered() > limit {
					t.Fatalf("buffered %d > %d", d.Buffered(), limit)
				}
			}
			return out, d.Err()
		}
		whole, err1 := run(src)
		i := int(cut) % (len(src) + 1)
		split, err2 := run(src[:i], src[i:])
		if (err1 == nil) != (err2 == nil) || len(whole) != len(split) {
			t.Fatalf("split at %d: %v/%v %d/%d", i, err1, err2, len(whole), len(split))
		}
		for k := range whole {
			if whole[k] != split[k] {
				t.Fatalf("message %d differs", k)
			}
		}
	})
}

// BenchmarkDecodeDelta decodes one contentBlockDelta frame.
func BenchmarkDecodeDelta(b *testing.B) {
	f := Event(nil, "contentBlockDelta", []byte(`{"contentBlockIndex":0,"delta":{"text":" Hello"},"p":"abcdefghijklmnopqrstu"}`))
	var d Decoder
	b.ReportAllocs()
	b.SetBytes(int64(len(f)))
	for b.Loop() {
		d.Push(f)
		m, ok := d.Next()
		if !ok || len(m.EventType()) == 0 {
			b.Fatal(d.Err())
		}
	}
}
