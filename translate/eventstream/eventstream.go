// Package eventstream decodes and encodes the AWS event-stream binary
// framing (content type application/vnd.amazon.eventstream), which Amazon
// Bedrock uses for ConverseStream and InvokeModelWithResponseStream.
//
// The format is described in the AWS documentation
// (https://docs.aws.amazon.com/transcribe/latest/dg/event-stream.html and
// https://docs.aws.amazon.com/lexv2/latest/dg/event-stream-encoding.html).
// Every message is one self-delimiting frame, all integers big-endian:
//
//	total length    uint32  the whole frame, these 4 bytes and the CRCs included
//	headers length  uint32  the size of the headers section
//	prelude CRC     uint32  CRC32 (IEEE) of the 8 bytes above
//	headers         each: name length uint8, name, type uint8, typed value
//	payload         total length - headers length - 16 bytes
//	message CRC     uint32  CRC32 (IEEE) of every byte before it
//
// The Decoder is incremental: chunks may end at any byte, it keeps at most
// one unfinished frame (bounded by Decoder.Max) and checks both CRCs. The
// encoder (AppendMessage) exists for fakes and tests.
package eventstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Frame layout constants.
const (
	// PreludeLen is the size of the prelude with its CRC.
	PreludeLen = 12
	// Overhead is the size of a frame without headers and payload.
	Overhead = 16
	// DefaultMaxMessage bounds the size of one frame when Decoder.Max is
	// zero. AWS services send frames far below it.
	DefaultMaxMessage = 16 << 20
	// MaxHeadersLen is the largest headers section the format allows.
	MaxHeadersLen = 128 << 10
)

// Errors. A decoding error is final: the stream cannot be resynchronised.
var (
	// ErrPreludeCRC is returned when the prelude checksum does not match.
	ErrPreludeCRC = errors.New("eventstream: prelude checksum mismatch")
	// ErrMessageCRC is returned when the message checksum does not match.
	ErrMessageCRC = errors.New("eventstream: message checksum mismatch")
	// ErrTooLarge is returned for a frame larger than the maximum.
	ErrTooLarge = errors.New("eventstream: message exceeds the maximum size")
	// ErrMalformed is returned for inconsistent lengths or bad headers.
	ErrMalformed = errors.New("eventstream: malformed message")
)

// Type is a header value type.
type Type uint8

// The header value types of the format.
const (
	TypeTrue      Type = 0 // no value bytes
	TypeFalse     Type = 1 // no value bytes
	TypeByte      Type = 2 // 1 byte, signed
	TypeShort     Type = 3 // 2 bytes, signed
	TypeInt       Type = 4 // 4 bytes, signed
	TypeLong      Type = 5 // 8 bytes, signed
	TypeBytes     Type = 6 // uint16 length, then the bytes
	TypeString    Type = 7 // uint16 length, then UTF-8
	TypeTimestamp Type = 8 // 8 bytes, signed milliseconds since the epoch
	TypeUUID      Type = 9 // 16 bytes
)

// String names the type.
func (t Type) String() string {
	switch t {
	case TypeTrue, TypeFalse:
		return "bool"
	case TypeByte:
		return "byte"
	case TypeShort:
		return "short"
	case TypeInt:
		return "int"
	case TypeLong:
		return "long"
	case TypeBytes:
		return "bytes"
	case TypeString:
		return "string"
	case TypeTimestamp:
		return "timestamp"
	case TypeUUID:
		return "uuid"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// fixedLen is the value size of fixed-size types, -1 for length-prefixed
// ones and -2 for unknown types.
func fixedLen(t Type) int {
	switch t {
	case TypeTrue, TypeFalse:
		return 0
	case TypeByte:
		return 1
	case TypeShort:
		return 2
	case TypeInt:
		return 4
	case TypeLong, TypeTimestamp:
		return 8
	case TypeUUID:
		return 16
	case TypeBytes, TypeString:
		return -1
	}
	return -2
}

// Value is a typed header value. Values returned by a decoder alias its
// buffers and are valid until the next Push or Next.
type Value struct {
	// Type is the value type.
	Type Type
	// raw holds the value bytes, without a length prefix.
	raw []byte
}

// Raw returns the value's bytes as they are on the wire (without the length
// prefix of bytes and string values).
func (v Value) Raw() []byte { return v.raw }

// Bool returns a boolean value (false for other types).
func (v Value) Bool() bool { return v.Type == TypeTrue }

// Int returns a byte, short, int, long or timestamp value as an int64 (0
// for other types).
func (v Value) Int() int64 {
	switch v.Type {
	case TypeByte:
		return int64(int8(v.raw[0]))
	case TypeShort:
		return int64(int16(binary.BigEndian.Uint16(v.raw)))
	case TypeInt:
		return int64(int32(binary.BigEndian.Uint32(v.raw)))
	case TypeLong, TypeTimestamp:
		return int64(binary.BigEndian.Uint64(v.raw))
	}
	return 0
}

// Time returns a timestamp value (the zero time for other types).
func (v Value) Time() time.Time {
	if v.Type != TypeTimestamp {
		return time.Time{}
	}
	return time.UnixMilli(v.Int()).UTC()
}

// UUID returns a UUID value (zero for other types).
func (v Value) UUID() (u [16]byte) {
	if v.Type == TypeUUID {
		copy(u[:], v.raw)
	}
	return u
}

// Bytes returns the bytes of a bytes or string value (nil for other types).
// The slice aliases the decoder's buffers.
func (v Value) Bytes() []byte {
	if v.Type == TypeBytes || v.Type == TypeString {
		return v.raw
	}
	return nil
}

// Str returns a string value as a new string ("" for other types).
func (v Value) Str() string {
	if v.Type != TypeString {
		return ""
	}
	return string(v.raw)
}

// Value constructors, for the encoder.

// Bool returns a boolean header value.
func Bool(b bool) Value {
	if b {
		return Value{Type: TypeTrue}
	}
	return Value{Type: TypeFalse}
}

// Byte returns a byte header value.
func Byte(n int8) Value { return Value{Type: TypeByte, raw: []byte{byte(n)}} }

// Short returns a short header value.
func Short(n int16) Value {
	return Value{Type: TypeShort, raw: binary.BigEndian.AppendUint16(nil, uint16(n))}
}

// Int returns an int header value.
func Int(n int32) Value {
	return Value{Type: TypeInt, raw: binary.BigEndian.AppendUint32(nil, uint32(n))}
}

// Long returns a long header value.
func Long(n int64) Value {
	return Value{Type: TypeLong, raw: binary.BigEndian.AppendUint64(nil, uint64(n))}
}

// Bytes returns a bytes header value (at most 65535 bytes).
func Bytes(b []byte) Value { return Value{Type: TypeBytes, raw: b} }

// String returns a string header value (at most 65535 bytes).
func String(s string) Value { return Value{Type: TypeString, raw: []byte(s)} }

// Timestamp returns a timestamp header value (millisecond precision).
func Timestamp(t time.Time) Value {
	return Value{Type: TypeTimestamp, raw: binary.BigEndian.AppendUint64(nil, uint64(t.UnixMilli()))}
}

// UUID returns a UUID header value.
func UUID(u [16]byte) Value { return Value{Type: TypeUUID, raw: u[:]} }

// Header is one named header value.
type Header struct {
	Name  string
	Value Value
}

// Well-known header names.
const (
	HeaderMessageType   = ":message-type"
	HeaderEventType     = ":event-type"
	HeaderExceptionType = ":exception-type"
	HeaderErrorCode     = ":error-code"
	HeaderErrorMessage  = ":error-message"
	HeaderContentType   = ":content-type"
)

// Values of :message-type.
const (
	MessageEvent     = "event"
	MessageException = "exception"
	MessageError     = "error"
)

// Headers is a validated headers section.
type Headers []byte

// Each calls fn for every header in order until fn returns false. The
// section was validated by the decoder; Each on unvalidated bytes stops
// at the first malformed header.
func (h Headers) Each(fn func(name []byte, v Value) bool) {
	for len(h) > 0 {
		name, v, rest, ok := nextHeader(h)
		if !ok || !fn(name, v) {
			return
		}
		h = rest
	}
}

// Get returns the first header named name.
func (h Headers) Get(name string) (Value, bool) {
	for len(h) > 0 {
		n, v, rest, ok := nextHeader(h)
		if !ok {
			break
		}
		if string(n) == name {
			return v, true
		}
		h = rest
	}
	return Value{}, false
}

// String returns the bytes of the string (or bytes) header named name, or
// nil. The slice aliases the decoder's buffers.
func (h Headers) String(name string) []byte {
	v, _ := h.Get(name)
	return v.Bytes()
}

// nextHeader parses the first header of h.
func nextHeader(h []byte) (name []byte, v Value, rest []byte, ok bool) {
	if len(h) < 2 {
		return nil, v, nil, false
	}
	nl := int(h[0])
	if nl == 0 || len(h) < 1+nl+1 {
		return nil, v, nil, false
	}
	name = h[1 : 1+nl]
	t := Type(h[1+nl])
	h = h[2+nl:]
	switch n := fixedLen(t); {
	case n >= 0:
		if len(h) < n {
			return nil, v, nil, false
		}
		return name, Value{Type: t, raw: h[:n:n]}, h[n:], true
	case n == -1:
		if len(h) < 2 {
			return nil, v, nil, false
		}
		l := int(binary.BigEndian.Uint16(h))
		if len(h) < 2+l {
			return nil, v, nil, false
		}
		return name, Value{Type: t, raw: h[2 : 2+l : 2+l]}, h[2+l:], true
	}
	return nil, v, nil, false
}

// validHeaders reports whether h is a well-formed headers section.
func validHeaders(h []byte) bool {
	for len(h) > 0 {
		_, _, rest, ok := nextHeader(h)
		if !ok {
			return false
		}
		h = rest
	}
	return true
}

// Message is one decoded frame. Its fields alias the decoder's buffers and
// are valid until the next Push or Next.
type Message struct {
	// Headers is the headers section.
	Headers Headers
	// Payload is the payload.
	Payload []byte
}

// MessageType returns the :message-type header ("event", "exception" or
// "error"; nil when absent).
func (m *Message) MessageType() []byte { return m.Headers.String(HeaderMessageType) }

// EventType returns the :event-type header.
func (m *Message) EventType() []byte { return m.Headers.String(HeaderEventType) }

// ExceptionType returns the :exception-type header.
func (m *Message) ExceptionType() []byte { return m.Headers.String(HeaderExceptionType) }

// ErrorCode returns the :error-code header.
func (m *Message) ErrorCode() []byte { return m.Headers.String(HeaderErrorCode) }

// ErrorMessage returns the :error-message header.
func (m *Message) ErrorMessage() []byte { return m.Headers.String(HeaderErrorMessage) }

// ContentType returns the :content-type header.
func (m *Message) ContentType() []byte { return m.Headers.String(HeaderContentType) }

// Decoder yields messages from pushed chunks.
//
// Use: Push a chunk, then call Next until it reports false. Messages alias
// the pushed chunk or the decoder's carry-over buffer and are valid only
// until the next Push or Next. The carry-over never exceeds one frame, and
// a frame's length is checked (against Max, and by the prelude CRC) before
// any of its body is buffered.
type Decoder struct {
	// Max is the maximum frame size; zero means DefaultMaxMessage.
	Max int

	carry     []byte // an unfinished frame (or a finished one being returned)
	carryDone bool   // carry holds the frame returned last; drop it on Next
	cur       []byte
	off       int
	err       error
}

// Push makes the next chunk available to Next. The decoder does not retain
// chunk after Next reports false.
func (d *Decoder) Push(chunk []byte) {
	d.dropReturned()
	d.cur, d.off = chunk, 0
}

// Err returns the decoding error, if any. It is final.
func (d *Decoder) Err() error { return d.err }

// Buffered reports how many bytes of an unfinished frame are held.
func (d *Decoder) Buffered() int {
	if d.carryDone {
		return 0
	}
	return len(d.carry)
}

func (d *Decoder) dropReturned() {
	if d.carryDone {
		d.carry = d.carry[:0]
		d.carryDone = false
	}
}

func (d *Decoder) max() int {
	if d.Max > 0 {
		return d.Max
	}
	return DefaultMaxMessage
}

// Next returns the next complete message. It reports false when no whole
// frame is left (the rest is kept for the next Push) or after an error
// (see Err).
func (d *Decoder) Next() (Message, bool) {
	d.dropReturned()
	if d.err != nil {
		return Message{}, false
	}
	if len(d.carry) > 0 {
		// Complete the prelude, then the frame, from the current chunk.
		if len(d.carry) < PreludeLen {
			n := min(PreludeLen-len(d.carry), len(d.cur)-d.off)
			d.carry = append(d.carry, d.cur[d.off:d.off+n]...)
			d.off += n
			if len(d.carry) < PreludeLen {
				return Message{}, false
			}
		}
		total, err := d.prelude(d.carry)
		if err != nil {
			d.fail(err)
			return Message{}, false
		}
		n := min(total-len(d.carry), len(d.cur)-d.off)
		d.carry = append(d.carry, d.cur[d.off:d.off+n]...)
		d.off += n
		if len(d.carry) < total {
			return Message{}, false
		}
		m, err := parse(d.carry)
		if err != nil {
			d.fail(err)
			return Message{}, false
		}
		d.carryDone = true
		return m, true
	}
	rest := d.cur[d.off:]
	if len(rest) == 0 {
		return Message{}, false
	}
	if len(rest) < PreludeLen {
		d.keep(rest)
		return Message{}, false
	}
	total, err := d.prelude(rest)
	if err != nil {
		d.fail(err)
		return Message{}, false
	}
	if len(rest) < total {
		d.keep(rest)
		return Message{}, false
	}
	m, err := parse(rest[:total])
	if err != nil {
		d.fail(err)
		return Message{}, false
	}
	d.off += total
	return m, true
}

// keep copies the unfinished frame in rest into the carry-over.
func (d *Decoder) keep(rest []byte) {
	d.carry = append(d.carry[:0], rest...)
	d.off = len(d.cur)
}

func (d *Decoder) fail(err error) {
	d.err = err
	d.carry, d.cur, d.off, d.carryDone = nil, nil, 0, false
}

// prelude validates the prelude at the start of b (at least PreludeLen
// bytes) and returns the frame's total length.
func (d *Decoder) prelude(b []byte) (int, error) {
	total := binary.BigEndian.Uint32(b[0:4])
	hlen := binary.BigEndian.Uint32(b[4:8])
	if crc32.ChecksumIEEE(b[:8]) != binary.BigEndian.Uint32(b[8:12]) {
		return 0, ErrPreludeCRC
	}
	if uint64(total) > uint64(d.max()) {
		return 0, fmt.Errorf("%w (%d bytes)", ErrTooLarge, total)
	}
	if total < Overhead || uint64(hlen) > uint64(total)-Overhead || hlen > MaxHeadersLen {
		return 0, fmt.Errorf("%w: total length %d, headers length %d", ErrMalformed, total, hlen)
	}
	return int(total), nil
}

// parse checks the message CRC and headers of a whole frame.
func parse(f []byte) (Message, error) {
	n := len(f)
	if crc32.ChecksumIEEE(f[:n-4]) != binary.BigEndian.Uint32(f[n-4:]) {
		return Message{}, ErrMessageCRC
	}
	hlen := int(binary.BigEndian.Uint32(f[4:8]))
	h := f[PreludeLen : PreludeLen+hlen]
	if !validHeaders(h) {
		return Message{}, fmt.Errorf("%w: bad headers section", ErrMalformed)
	}
	return Message{Headers: Headers(h), Payload: f[PreludeLen+hlen : n-4]}, nil
}

// AppendMessage appends one encoded frame to dst. It returns an error when
// a header name is empty or longer than 255 bytes, a value is longer than
// 65535 bytes or does not fit its type, or the frame is too large.
func AppendMessage(dst []byte, headers []Header, payload []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, PreludeLen)...)
	for _, h := range headers {
		if len(h.Name) == 0 || len(h.Name) > 255 {
			return dst[:start], fmt.Errorf("eventstream: header name %q: length must be 1 to 255", h.Name)
		}
		dst = append(dst, byte(len(h.Name)))
		dst = append(dst, h.Name...)
		dst = append(dst, byte(h.Value.Type))
		switch n := fixedLen(h.Value.Type); {
		case n >= 0:
			if len(h.Value.raw) != n {
				return dst[:start], fmt.Errorf("eventstream: header %q: %s value needs %d bytes", h.Name, h.Value.Type, n)
			}
		case n == -1:
			if len(h.Value.raw) > 0xffff {
				return dst[:start], fmt.Errorf("eventstream: header %q: value longer than 65535 bytes", h.Name)
			}
			dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Value.raw)))
		default:
			return dst[:start], fmt.Errorf("eventstream: header %q: unknown type %d", h.Name, h.Value.Type)
		}
		dst = append(dst, h.Value.raw...)
	}
	hlen := len(dst) - start - PreludeLen
	if hlen > MaxHeadersLen {
		return dst[:start], fmt.Errorf("eventstream: headers section of %d bytes is too large", hlen)
	}
	dst = append(dst, payload...)
	total := len(dst) - start + 4
	if total > 1<<31 {
		return dst[:start], ErrTooLarge
	}
	f := dst[start:]
	binary.BigEndian.PutUint32(f[0:4], uint32(total))
	binary.BigEndian.PutUint32(f[4:8], uint32(hlen))
	binary.BigEndian.PutUint32(f[8:12], crc32.ChecksumIEEE(f[:8]))
	return binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:])), nil
}

// Event appends an event frame with the headers AWS sends on every
// event (:event-type, :content-type application/json, :message-type
// event).
func Event(dst []byte, eventType string, payload []byte) []byte {
	out, _ := AppendMessage(dst, []Header{
		{HeaderEventType, String(eventType)},
		{HeaderContentType, String("application/json")},
		{HeaderMessageType, String(MessageEvent)},
	}, payload)
	return out
}

// Exception appends an exception frame (:exception-type, :content-type,
// :message-type exception) whose payload is the exception's JSON.
func Exception(dst []byte, exceptionType string, payload []byte) []byte {
	out, _ := AppendMessage(dst, []Header{
		{HeaderExceptionType, String(exceptionType)},
		{HeaderContentType, String("application/json")},
		{HeaderMessageType, String(MessageException)},
	}, payload)
	return out
}
