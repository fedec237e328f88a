package processor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/processor/tracing"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// phase is where a stream handler is in the exchange.
type phase uint8

const (
	phaseRequestHeaders  phase = iota // waiting for request_headers
	phaseRequestBody                  // waiting for the buffered request_body
	phaseResponseHeaders              // request forwarded, waiting for response_headers
	phaseResponseBody                 // streaming the response body
	phaseDone                         // the last reply was sent
)

func (p phase) String() string {
	return [...]string{"request_headers", "request_body", "response_headers", "response_body", "done"}[p]
}

// sender is the part of the gRPC stream the handler writes to.
type sender interface {
	Send(*extprocv3.ProcessingResponse) error
}

// handler is the state of one ext_proc stream. Process and the response
// watchdog's timer both drive it, each holding mu.
type handler struct {
	mu  sync.Mutex
	s   *Server
	ctx context.Context
	cfg *config.Runtime
	out sender
	ph  phase

	start                           time.Time
	ep                              endpoint
	method, path                    string
	requestID, tenant, keyName      string
	group                           *config.Group
	dep                             *config.Deployment
	tr                              translate.Translator
	treq                            translate.Request
	status                          int
	errCode                         string
	dec                             translate.Decoder
	forwardedAt, headersAt, firstAt time.Time
	broken                          bool                       // the decoder failed; the rest of the body is dropped
	sawBody                         bool                       // Envoy sent at least one response_body message
	heldHeaders                     *extprocv3.HeadersResponse // response headers reply waiting for the body
	masked                          *translate.Error           // the error the client gets instead of the decoder's (a provider auth error, a truncated body)
	retry                           translate.RetryHint        // the provider's retry-after headers
	outcomeSent                     bool                       // final metadata went out with the terminal event
	recorded                        bool
	watchdog                        Timer     // the response body's idle timer, nil when not armed
	lastBodyAt                      time.Time // when the last response body chunk arrived
	clientHeaders                   []string  // client request header names to drop upstream unless forwarded
	upstreamID                      string    // the provider's own request id
	upstreamIDRank                  int       // index in upstreamIDHeaders of upstreamID's header
	held                            int64     // request body bytes taken from the server's budget

	buf   []byte // reused output buffer
	chunk *chunkResponse
	// mdBuilt lists the metadata Structs replyMetadata built, whose maps are
	// built only when a reply is not encoded by hand (send).
	mdBuilt    []*mdShell
	mdBuiltArr [3]*mdShell

	// Routing (routing.go, routemeta.go): the Envoy route's attributes and
	// the llmux policy its metadata holds, and the deployment choice.
	attrs     map[string]*structpb.Struct
	routeMeta *routePolicy
	rs        routeState

	cost requestCost // pricing concern (cost.go)

	fo failoverState // failover before the first byte (failover.go)

	pc  *extprocv3.ProtocolConfiguration // Envoy's processing modes, from the first message
	own ownedState                       // owned mode: llmux answers and calls the provider itself (owned.go)

	red redactState // redaction concern (redaction.go)
	rp  repairState // stream repair after content (repair.go)
	lim limitState  // limits and budgets (limits.go)

	trace      tracing.Request // the request's trace (tracing.go)
	tryPending bool            // the traced call in progress is llmux's own and has no answer yet
}

// chunkResponse is a preallocated streamed_response message, reused for
// every response body chunk (Send marshals synchronously). The message
// and every message on the path to its body are held in it, one
// allocation.
type chunkResponse struct {
	msg  *extprocv3.ProcessingResponse
	body *extprocv3.StreamedBodyResponse

	m  extprocv3.ProcessingResponse
	rb extprocv3.ProcessingResponse_ResponseBody
	br extprocv3.BodyResponse
	cr extprocv3.CommonResponse
	bm extprocv3.BodyMutation
	sr extprocv3.BodyMutation_StreamedResponse
	sb extprocv3.StreamedBodyResponse
}

func newChunkResponse() *chunkResponse {
	c := &chunkResponse{}
	c.sr.StreamedResponse = &c.sb
	c.bm.Mutation = &c.sr
	c.cr.BodyMutation = &c.bm
	c.br.Response = &c.cr
	c.rb.ResponseBody = &c.br
	c.m.Response = &c.rb
	c.msg, c.body = &c.m, &c.sb
	return c
}

func newHandler(s *Server, ctx context.Context, out sender) *handler {
	growStack(0)
	h := &handler{s: s, ctx: ctx, cfg: s.opts.Config(), out: out, start: s.opts.Now()}
	h.mdBuilt = h.mdBuiltArr[:0]
	return h
}

// handle dispatches one message from Envoy. Directions may interleave, so
// it dispatches on the message type and checks it against the phase.
func (h *handler) handle(req *extprocv3.ProcessingRequest) error {
	switch m := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if h.ph != phaseRequestHeaders {
			return h.protocolError("request_headers")
		}
		if err := checkModes(req.ProtocolConfig); err != nil && !h.ownedModes(req.ProtocolConfig) { // owned.go
			h.s.opts.Logger.Error("llmux: Envoy's ext_proc processing_mode does not match what llmux needs", "error", err)
			h.s.opts.Metrics.ProtocolError(h.ctx, "processing_mode")
			return h.immediate(&translate.Error{Code: translate.CodeInternal, Message: "The gateway is misconfigured (ext_proc processing mode); see the gateway logs."})
		}
		h.attrs = req.GetAttributes() // only in the first message (routemeta.go)
		h.pc = req.ProtocolConfig
		return h.onRequestHeaders(m.RequestHeaders)
	case *extprocv3.ProcessingRequest_RequestBody:
		if h.ph != phaseRequestBody {
			return h.protocolError("request_body")
		}
		return h.onRequestBody(m.RequestBody)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		switch h.ph {
		case phaseResponseHeaders:
		case phaseRequestHeaders, phaseRequestBody:
			// Envoy answered the client itself before llmux forwarded
			// anything (its own 413 over the buffer limit, a route or
			// cluster error): that local reply passes through the encoder
			// chain (reference §4.2). Decode it as an OpenAI error body.
			tr, ok := h.s.opts.Translator(translate.ClientSchema)
			if !ok {
				return h.protocolError("response_headers")
			}
			h.tr, h.treq = tr, translate.Request{Op: h.ep.op(), MaxBuffered: h.cfg.Server().MaxResponseBodyBytes}
		default:
			return h.protocolError("response_headers")
		}
		return h.onResponseHeaders(m.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		if h.ph == phaseDone || h.rp.active {
			// A late chunk after llmux's own end_of_stream, or the failed
			// upstream's while a continuation streams (repair.go): dropped.
			return nil
		}
		if h.ph != phaseResponseBody {
			return h.protocolError("response_body")
		}
		return h.onResponseBody(m.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		if h.rp.active {
			return nil // the continuation ends the response (repair.go)
		}
		return h.onResponseTrailers()
	case *extprocv3.ProcessingRequest_RequestTrailers:
		if h.own.active {
			return h.onOwnedTrailers() // the end of an owned request's body (owned.go)
		}
		// Not requested (request_trailer_mode SKIP); answer harmlessly if a
		// configuration sends them anyway.
		return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}})
	}
	return h.protocolError("unknown")
}

// checkModes verifies Envoy's processing modes when Envoy reports them
// (protocol_config, Envoy 1.34+).
func checkModes(pc *extprocv3.ProtocolConfiguration) error {
	if pc == nil {
		return nil
	}
	if pc.RequestBodyMode != extprocfilterv3.ProcessingMode_BUFFERED {
		return fmt.Errorf("request_body_mode is %s, want BUFFERED", pc.RequestBodyMode)
	}
	if pc.ResponseBodyMode != extprocfilterv3.ProcessingMode_FULL_DUPLEX_STREAMED {
		return fmt.Errorf("response_body_mode is %s, want FULL_DUPLEX_STREAMED", pc.ResponseBodyMode)
	}
	return nil
}

// protocolError ends the stream with a gRPC error: Envoy then answers the
// client with its status_on_error (500), or continues if configured to
// fail open.
func (h *handler) protocolError(msg string) error {
	h.s.opts.Metrics.ProtocolError(h.ctx, msg)
	h.s.opts.Logger.Error("llmux: unexpected ext_proc message", "message", msg, "phase", h.ph.String(), "request_id", h.requestID)
	h.status, h.errCode = 500, "protocol_error"
	return status.Errorf(codes.FailedPrecondition, "llmux: unexpected %s message in phase %s", msg, h.ph)
}

// send sends one reply. A reply with dynamic metadata goes out with the
// metadata encoded by hand when the stream can send raw messages (wire.go).
func (h *handler) send(resp *extprocv3.ProcessingResponse) error {
	if md := resp.DynamicMetadata; md != nil {
		sh := h.builtMetadata(md)
		if ms, ok := h.out.(msgSender); ok {
			if sent, err := sendEncoded(ms, resp, sh); sent || err != nil {
				return err
			}
		}
		if sh != nil {
			sh.Struct()
		}
	}
	return h.out.Send(resp)
}

// headerValue reads a header value: raw_value, as Envoy sends it, or the
// legacy value field. A raw_value is returned without a copy: protobuf
// unmarshals each header value into its own allocation, which nothing
// writes to afterwards, so the string keeps only that value alive.
func headerValue(hv *corev3.HeaderValue) string {
	if len(hv.RawValue) > 0 {
		return view(hv.RawValue)
	}
	return hv.Value
}

// header builds a header mutation entry; values go in raw_value only.
func header(key, value string) *corev3.HeaderValueOption {
	// One allocation for the option and its header.
	e := &headerEntry{}
	e.set(key, value)
	return &e.opt
}

// headerEntry is a header mutation entry and the header it sets.
type headerEntry struct {
	opt corev3.HeaderValueOption
	hv  corev3.HeaderValue
}

// set makes e the entry setting key to value. The raw value aliases the
// string's bytes instead of copying them: protobuf only reads it while
// marshalling, and nothing else writes to it.
func (e *headerEntry) set(key, value string) {
	e.hv.Key, e.hv.RawValue = key, unsafe.Slice(unsafe.StringData(value), len(value))
	e.opt.Header = &e.hv
}

// headerBlock allocates the header mutation entries of one reply at once:
// add takes the next entry of its capacity (a new one past it).
type headerBlock []headerEntry

// add returns an entry setting key to value.
func (b *headerBlock) add(key, value string) *corev3.HeaderValueOption {
	if len(*b) == cap(*b) {
		return header(key, value)
	}
	*b = (*b)[:len(*b)+1]
	e := &(*b)[len(*b)-1]
	e.set(key, value)
	return &e.opt
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func modelNotFound(model string) *translate.Error {
	return &translate.Error{Code: translate.CodeNotFound, OpenAICode: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", echo(model))}
}

// maskKey shows only the ends of a key, as OpenAI does.
func maskKey(k string) string {
	if len(k) < 12 {
		return "****"
	}
	return echo(k[:3]) + "****" + echo(k[len(k)-4:])
}

// view returns b as a string without copying; the string must not outlive
// b.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// stackReserve is the stack a stream's goroutine needs for the deepest
// call chains of an exchange (protobuf marshalling, JSON parsing, request
// signing).
const stackReserve = 8 << 10

// growStack grows the calling goroutine's stack to hold stackReserve more
// bytes, in one step and while the stack is still shallow. A gRPC stream
// starts on a new goroutine with a small stack; left alone, it grows by
// doubling deep inside the exchange, and each doubling copies and
// rewrites every frame on it, which costs more than the rest of the
// handler's work for a request.
//
//go:noinline
func growStack(i int) byte {
	var b [stackReserve]byte
	b[i%len(b)] = 1
	return b[(i+1)%len(b)]
}
