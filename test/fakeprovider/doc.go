// Package fakeprovider implements fake LLM provider HTTP servers for tests.
//
// Each fake speaks its provider's real wire format (request validation,
// response bodies, streaming framing and error bodies) closely enough that
// the providers' official SDKs accept it, and adds deterministic fault
// injection selected per request by x-fake-* headers, so that a test can
// set the headers on the client side (for example with openai-go's
// option.WithHeader) and have them travel through the gateway under test.
//
// The package is split into shared machinery and provider dialects:
//
//   - server.go: lifecycle (listen on 127.0.0.1:0, HTTP/1.1 and h2c),
//     request recording and goroutine-tight shutdown.
//   - gates.go: named hold/release gates (Server.WaitHeld, Server.Release).
//   - faults.go: the x-fake-* header contract and the connection-level
//     faults (resets).
//   - sse.go: the flushing frame/SSE writer and the generic streaming
//     driver that applies holds and faults between frames.
//   - openai.go, openai_validate.go: the OpenAI dialect.
//
// # Headers understood by every fake
//
//	x-fake-status: <code>        reply with that HTTP status and the
//	                             provider's real error body
//	x-fake-error-code: <code>    which provider error to use with
//	                             x-fake-status (e.g. insufficient_quota)
//	x-fake-retry-after: <secs>   retry-after value on 429/503 (default 1)
//	x-fake-fault: <kind>         inband-error | truncate | stall | reset |
//	                             reset-before-headers
//	x-fake-fault-after: <K>      frames sent before the fault (default 1)
//	x-fake-hold: <name>          pause after x-fake-hold-after frames until
//	                             Server.Release(name)
//	x-fake-hold-after: <N>       frames sent before the hold (default 1)
//
// A stalled response also waits at a gate: the one named by x-fake-hold,
// or "stall" when that header is absent.
package fakeprovider
