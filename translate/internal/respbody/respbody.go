// Package respbody holds what the provider decoders share about reading an
// upstream response body: which way to read it (Mode) and a zero-copy view
// of its bytes.
package respbody

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

// Mode is how a decoder reads an upstream response body.
type Mode uint8

const (
	// JSON is one JSON body, buffered whole.
	JSON Mode = iota
	// Stream is a stream, decoded as it arrives.
	Stream
	// Error is the body of an error status: the provider's error.
	Error
)

// ModeOf picks the mode for a response: Error for a status of 400 or more,
// Stream when the client asked for a stream (stream) and the body is one
// (contentType starts with streamType), JSON otherwise.
func ModeOf(status int, stream bool, contentType, streamType string) Mode {
	switch {
	case status >= 400:
		return Error
	case stream && strings.HasPrefix(contentType, streamType):
		return Stream
	default:
		return JSON
	}
}

// ContentType returns the content type of what a decoder in mode m writes:
// text/event-stream for Stream, application/json otherwise.
func (m Mode) ContentType() string {
	if m == Stream {
		return "text/event-stream"
	}
	return "application/json"
}

// Whole holds a non-streamed body until its end, within a bound.
type Whole struct {
	Buf    []byte // the body so far
	Max    int    // the bound on len(Buf)
	Name   string // the provider, in the error Add returns
	failed bool
}

// Add appends src and reports whether the whole body is there (final).
// Over the bound it fails once, dropping the body, recording the error in
// res and returning an error naming the provider; after that it ignores
// what comes.
func (w *Whole) Add(src []byte, final bool, res *translate.Result) (bool, error) {
	if w.failed {
		return false, nil
	}
	if len(w.Buf)+len(src) > w.Max {
		w.failed, w.Buf = true, nil
		res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream response body too large"}
		return false, fmt.Errorf("%s: response body over %d bytes", w.Name, w.Max)
	}
	w.Buf = append(w.Buf, src...)
	return final, nil
}

// View returns b as a string without copying. The string, and every gjson
// result read from it, must not outlive b or be used after b changes:
// strings kept in a Result are cloned.
func View(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Members reads several members of a JSON object in one pass, where a
// gjson.Get per member would scan the object once each: out[i] is the
// first member named names[i], as gjson.Get(obj.Raw, names[i]) finds it,
// or the zero Result. names are plain member names, not gjson paths; out
// must be as long as names. A value that is not an object has no members.
func Members(obj gjson.Result, names []string, out []gjson.Result) {
	clear(out)
	if !obj.IsObject() {
		return
	}
	left := len(names)
	obj.ForEach(func(k, v gjson.Result) bool {
		for i, n := range names {
			if k.Str == n && !out[i].Exists() {
				out[i] = v
				left--
			}
		}
		return left > 0
	})
}
