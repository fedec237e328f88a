package translate

import (
	"fmt"

	"github.com/llmux/llmux/translate/sse"
)

// DecodeSSE is the stream loop every SSE-based decoder shares: it pushes
// src into sc and appends what event makes of each complete event to dst;
// with final it also decodes an unterminated last event (a stream that
// ended without its blank line). When an event grows past the scanner's
// bound it sets res.Err and returns an error.
func DecodeSSE(sc *sse.Scanner, res *Result, dst, src []byte, final bool, event func(dst, ev []byte) []byte) ([]byte, error) {
	if err := sc.Push(src); err != nil {
		res.Err = &Error{Code: CodeUpstreamProtocol, Message: "upstream stream event too large"}
		return dst, fmt.Errorf("decode stream: %w", err)
	}
	for {
		ev, ok := sc.Next()
		if !ok {
			break
		}
		dst = event(dst, ev)
	}
	if final {
		if rest := sc.Rest(); len(rest) > 0 {
			dst = event(dst, rest)
		}
	}
	return dst, nil
}
