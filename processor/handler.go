package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/llmux/llmux/processor/telemetry"
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

// Client credential headers removed before a request goes upstream. The
// provider's own credential is set by the translator.
var clientCredentialHeaders = []string{"authorization", "x-api-key", "api-key", "x-goog-api-key"}

// sender is the part of the gRPC stream the handler writes to.
type sender interface {
	Send(*extprocv3.ProcessingResponse) error
}

// handler is the state of one ext_proc stream.
type handler struct {
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
	masked                          *translate.Error           // replaces a provider's auth error for the client
	outcomeSent                     bool                       // final metadata went out with the terminal event
	recorded                        bool

	buf   []byte // reused output buffer
	chunk *chunkResponse
}

// chunkResponse is a preallocated streamed_response message, reused for
// every response body chunk (Send marshals synchronously).
type chunkResponse struct {
	msg  *extprocv3.ProcessingResponse
	body *extprocv3.StreamedBodyResponse
}

func newChunkResponse() *chunkResponse {
	body := &extprocv3.StreamedBodyResponse{}
	return &chunkResponse{
		body: body,
		msg: &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{
			ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: body}},
			}},
		}},
	}
}

func newHandler(s *Server, ctx context.Context, out sender) *handler {
	return &handler{s: s, ctx: ctx, cfg: s.opts.Config(), out: out, start: s.opts.Now()}
}

// handle dispatches one message from Envoy. Directions may interleave, so
// it dispatches on the message type and checks it against the phase.
func (h *handler) handle(req *extprocv3.ProcessingRequest) error {
	switch m := req.Request.(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		if h.ph != phaseRequestHeaders {
			return h.protocolError("request_headers")
		}
		if err := checkModes(req.ProtocolConfig); err != nil {
			h.s.opts.Logger.Error("llmux: Envoy's ext_proc processing_mode does not match what llmux needs", "error", err)
			h.s.opts.Metrics.ProtocolError(h.ctx, "processing_mode")
			return h.immediate(&translate.Error{Code: translate.CodeInternal, Message: "The gateway is misconfigured (ext_proc processing mode); see the gateway logs."})
		}
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
		if h.ph != phaseResponseBody {
			return h.protocolError("response_body")
		}
		return h.onResponseBody(m.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return h.onResponseTrailers()
	case *extprocv3.ProcessingRequest_RequestTrailers:
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

func (h *handler) send(resp *extprocv3.ProcessingResponse) error {
	return h.out.Send(resp)
}

func (h *handler) onRequestHeaders(m *extprocv3.HttpHeaders) error {
	var authz, apiKey, identity string
	idh := h.cfg.IdentityHeader()
	for _, hv := range m.GetHeaders().GetHeaders() {
		switch k := hv.GetKey(); k {
		case ":method":
			h.method = headerValue(hv)
		case ":path":
			h.path = headerValue(hv)
		case "x-request-id":
			h.requestID = headerValue(hv)
		case "authorization":
			authz = headerValue(hv)
		case "x-api-key", "api-key":
			apiKey = headerValue(hv)
		default:
			if idh != "" && k == idh {
				identity = headerValue(hv)
			}
		}
	}
	if h.requestID == "" {
		h.requestID = newRequestID()
	}

	ep, modelID := classify(h.path)
	h.ep = ep
	if ep == epUnknown {
		return h.immediate(&translate.Error{Code: translate.CodeNotFound, OpenAICode: "unknown_url",
			Message: fmt.Sprintf("Unknown request URL: %s %s. Please check the URL for typos.", h.method, pathOnly(h.path))})
	}
	if h.method != ep.method() {
		return h.immediate(&translate.Error{Code: translate.CodeMethodNotAllowed, OpenAICode: "method_not_allowed",
			Message: fmt.Sprintf("Method %s is not allowed for %s; use %s.", h.method, pathOnly(h.path), ep.method())},
			header("allow", ep.method()))
	}
	if e := h.authenticate(authz, apiKey, identity); e != nil {
		return h.immediate(e)
	}
	switch ep {
	case epModels:
		return h.immediateOK(appendModels(nil, h.cfg))
	case epModel:
		g, ok := h.cfg.Group(modelID)
		if !ok {
			return h.immediate(modelNotFound(modelID))
		}
		return h.immediateOK(appendModel(nil, g.Name, h.cfg.LoadedAt().Unix()))
	}
	if m.GetEndOfStream() {
		return h.immediate(invalid("", "missing_body", "The request body is empty; a JSON object is required."))
	}
	h.ph = phaseRequestBody
	return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}})
}

// authenticate resolves the caller's tenant from an identity Envoy
// established, or from an API key in the configuration.
func (h *handler) authenticate(authz, apiKey, identity string) *translate.Error {
	if identity != "" {
		h.tenant = identity
		return nil
	}
	key := apiKey
	if authz != "" {
		scheme, token, ok := strings.Cut(authz, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return &translate.Error{Code: translate.CodeAuthentication, OpenAICode: "invalid_api_key",
				Message: "The Authorization header must be of the form 'Bearer <API key>'."}
		}
		key = strings.TrimSpace(token)
	}
	if key == "" {
		return &translate.Error{Code: translate.CodeAuthentication, OpenAICode: "missing_api_key",
			Message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or in an x-api-key header."}
	}
	tenant, name, ok := h.cfg.Authenticate(key)
	if !ok {
		return &translate.Error{Code: translate.CodeAuthentication, OpenAICode: "invalid_api_key",
			Message: "Incorrect API key provided: " + maskKey(key) + "."}
	}
	h.tenant, h.keyName = tenant, name
	return nil
}

func (h *handler) onRequestBody(b *extprocv3.HttpBody) error {
	body := b.GetBody()
	if max := h.cfg.Server().MaxRequestBodyBytes; max > 0 && int64(len(body)) > max {
		return h.immediate(&translate.Error{Code: translate.CodeRequestTooLarge, OpenAICode: "request_too_large",
			Message: fmt.Sprintf("The request body is %d bytes; the limit is %d bytes.", len(body), max)})
	}
	p, e := validate(h.ep, body)
	if e != nil {
		return h.immediate(e)
	}
	g, ok := h.cfg.Group(p.model)
	if !ok {
		return h.immediate(modelNotFound(p.model))
	}
	h.group = g
	dep, tr := h.pick(g)
	if dep == nil {
		return h.immediate(&translate.Error{Code: translate.CodeUpstreamUnavailable, OpenAICode: "no_deployment_available",
			Message: fmt.Sprintf("No deployment of model %q is available right now. Please retry later.", g.Name)})
	}
	h.dep, h.tr = dep, tr
	h.treq = translate.Request{Op: h.ep.op(), Body: body, Stream: p.stream, IncludeUsage: p.includeUsage,
		MaxBuffered: h.cfg.Server().MaxResponseBodyBytes}
	target := translate.Target{
		Model:      dep.Model,
		BasePath:   dep.Provider.BasePath,
		APIVersion: dep.Provider.APIVersion,
		APIKey:     dep.Provider.APIKey.Value(),
		Headers:    dep.Provider.Headers,
		Provider:   dep.Provider.Name,
		Region:     dep.Provider.Region,
		Project:    dep.Provider.Project,
		Host:       dep.Provider.Host,
		Options:    dep.Provider.Options,
	}
	up, err := tr.Request(h.ctx, &h.treq, &target)
	if err != nil {
		var te *translate.Error
		if errors.As(err, &te) {
			return h.immediate(te)
		}
		h.s.opts.Logger.Error("llmux: request translation failed", "request_id", h.requestID, "deployment", dep.Name, "error", err)
		return h.immediate(&translate.Error{Code: translate.CodeInternal, Message: "The gateway could not translate the request for the provider."})
	}
	h.treq.Body = nil // do not hold the client's body past this phase

	mut := &extprocv3.HeaderMutation{RemoveHeaders: append(clientCredentialHeaders[:len(clientCredentialHeaders):len(clientCredentialHeaders)], "accept-encoding")}
	if idh := h.cfg.IdentityHeader(); idh != "" {
		mut.RemoveHeaders = append(mut.RemoveHeaders, idh)
	}
	mut.SetHeaders = make([]*corev3.HeaderValueOption, 0, 4+len(up.Headers))
	mut.SetHeaders = append(mut.SetHeaders,
		header(":path", up.Path),
		header(h.cfg.Server().ClusterHeader, dep.Provider.Cluster),
		header("content-length", strconv.Itoa(len(up.Body))),
		header("x-request-id", h.requestID),
	)
	for _, hd := range up.Headers {
		mut.SetHeaders = append(mut.SetHeaders, header(hd.Key, hd.Value))
	}
	h.forwardedAt = h.s.opts.Now()
	h.ph = phaseResponseHeaders
	return h.send(&extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
			HeaderMutation:  mut,
			BodyMutation:    &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: up.Body}},
			ClearRouteCache: true,
		}}},
		DynamicMetadata: h.metadata(false),
	})
}

// pick chooses a deployment of the group: the lowest priority among those
// this build can serve, then weighted random.
func (h *handler) pick(g *config.Group) (*config.Deployment, translate.Translator) {
	var (
		best    []*config.Deployment
		bestPri = -1
		total   int
	)
	for _, d := range g.Deployments {
		if _, ok := h.s.opts.Translator(d.Provider.Kind); !ok || d.Weight <= 0 && len(g.Deployments) > 1 {
			continue
		}
		switch {
		case bestPri < 0 || d.Priority < bestPri:
			best, bestPri, total = append(best[:0], d), d.Priority, max(d.Weight, 0)
		case d.Priority == bestPri:
			best, total = append(best, d), total+max(d.Weight, 0)
		}
	}
	if len(best) == 0 {
		return nil, nil
	}
	d := best[0]
	if len(best) > 1 && total > 0 {
		n := rand.IntN(total)
		for _, c := range best {
			if n -= c.Weight; n < 0 {
				d = c
				break
			}
		}
	}
	tr, _ := h.s.opts.Translator(d.Provider.Kind)
	return d, tr
}

func (h *handler) onResponseHeaders(m *extprocv3.HttpHeaders) error {
	h.headersAt = h.s.opts.Now()
	var ct string
	for _, hv := range m.GetHeaders().GetHeaders() {
		switch hv.GetKey() {
		case ":status":
			h.status, _ = strconv.Atoi(headerValue(hv))
		case "content-type":
			ct = headerValue(hv)
		}
	}
	if h.status == 401 && h.dep != nil {
		// A revoked or expired cloud credential: fetch a fresh one next
		// time rather than reuse it until it would have expired.
		if f, ok := h.tr.(translate.CredentialForgetter); ok {
			f.ForgetCredentials(h.dep.Provider.Name)
		}
	}
	h.dec = h.tr.NewDecoder(&h.treq, h.status, ct)
	mut := &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}}
	if st := h.dec.Status(); st >= 200 && st != h.status {
		h.status = st
		mut.SetHeaders = append(mut.SetHeaders, header(":status", strconv.Itoa(st)))
	}
	if want := h.dec.ContentType(); want != "" && !strings.HasPrefix(ct, want) {
		mut.SetHeaders = append(mut.SetHeaders, header("content-type", want))
	}
	resp := &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{HeaderMutation: mut}}
	if m.GetEndOfStream() {
		// No body follows: the exchange ends here.
		if h.status >= 400 {
			h.errCode = string(translate.CodeForStatus(h.status))
		}
		h.ph = phaseDone
		h.complete()
		return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}, DynamicMetadata: h.metadata(true)})
	}
	h.ph = phaseResponseBody
	h.chunk = newChunkResponse()
	if h.status >= 400 || !h.treq.Stream {
		// The body decides the client's status (a provider's 400 that is
		// really an authentication error; a 200 whose body is an error),
		// and this body is held whole anyway: answer the headers once the
		// body is in. FULL_DUPLEX allows it — Envoy keeps sending body
		// chunks while the headers reply is outstanding (reference §3, §6
		// #20) — and no message timer runs in that mode.
		h.heldHeaders = resp
		return nil
	}
	return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}})
}

// releaseHeaders sends a held response-headers reply, with the status the
// decoded body calls for.
func (h *handler) releaseHeaders() error {
	resp := h.heldHeaders
	if resp == nil {
		return nil
	}
	h.heldHeaders = nil
	e := h.dec.Result().Err
	if h.masked != nil {
		e = h.masked
	}
	if e != nil {
		if st := e.HTTPStatus(); st >= 200 && st != h.status {
			h.status = st
			mut := resp.Response.HeaderMutation
			kept := mut.SetHeaders[:0]
			for _, hv := range mut.SetHeaders {
				if hv.GetHeader().GetKey() != ":status" {
					kept = append(kept, hv)
				}
			}
			mut.SetHeaders = append(kept, header(":status", strconv.Itoa(st)))
		}
	}
	return h.send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}})
}

// decode runs the decoder over one body chunk.
func (h *handler) decode(src []byte, final bool) []byte {
	out := h.buf[:0]
	if h.broken {
		return out
	}
	out, err := h.dec.Decode(out, src, final)
	if final && err == nil && h.heldHeaders != nil && h.dep != nil {
		if e := h.dec.Result().Err; e != nil && e.Code == translate.CodeAuthentication {
			// The provider rejected the gateway's own credential: the
			// client's key is fine, and the provider's message may quote
			// part of the gateway's key. The client gets a 502 that says
			// so; operators get the log line and error_code
			// "authentication" in metadata and metrics.
			h.masked = &translate.Error{Code: translate.CodeUpstreamError, Status: 502, OpenAICode: "upstream_authentication_failed",
				Message: "The provider rejected the gateway's credentials for this model; this is a gateway configuration problem, not your API key."}
			h.s.opts.Logger.Error("llmux: the provider rejected the gateway's credentials", "request_id", h.requestID,
				"deployment", h.dep.Name, "provider", h.dep.Provider.Name, "upstream_status", h.status)
			out = h.masked.AppendJSON(out[:0])
		}
	}
	if err != nil {
		h.broken = true
		h.s.opts.Logger.Warn("llmux: response decoding failed", "request_id", h.requestID, "deployment", h.depName(), "error", err)
		e := h.dec.Result().Err
		if e == nil {
			e = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "The provider's response could not be decoded."}
		}
		// The error goes out in the framing of the body the client is
		// getting: an SSE event in a stream, the JSON body otherwise (a
		// buffered decoder has produced nothing before it fails).
		if h.dec.ContentType() == "text/event-stream" {
			out = append(out, "data: "...)
			out = e.AppendJSON(out)
			out = append(out, "\n\n"...)
		} else {
			out = e.AppendJSON(out)
		}
	}
	if h.firstAt.IsZero() && h.dec.Result().FirstContent {
		h.firstAt = h.s.opts.Now()
	}
	h.buf = out
	return out
}

func (h *handler) onResponseBody(b *extprocv3.HttpBody) error {
	h.sawBody = true
	eos := b.GetEndOfStream()
	out := h.decode(b.GetBody(), eos)
	if len(out) == 0 && !eos {
		return nil
	}
	if err := h.releaseHeaders(); err != nil {
		return err
	}
	h.chunk.body.Body = out
	h.chunk.body.EndOfStream = eos
	h.chunk.msg.DynamicMetadata = nil
	switch {
	case eos:
		h.ph = phaseDone
		h.complete()
		h.chunk.msg.DynamicMetadata = h.metadata(true)
	case !h.outcomeSent && (h.dec.Result().Completed || h.dec.Result().Err != nil):
		// The terminal event (with usage) or an in-band error is in this
		// reply: a client may close as soon as it reads it, before the
		// upstream's end of stream reaches llmux. Send the outcome now so
		// the access log has it either way.
		h.outcomeSent = true
		if e := h.dec.Result().Err; e != nil && h.errCode == "" {
			h.errCode = string(e.Code)
		}
		h.chunk.msg.DynamicMetadata = h.metadata(true)
	}
	return h.send(h.chunk.msg)
}

// onResponseTrailers ends the body (the last body chunk had no
// end_of_stream because trailers followed) and answers the trailers.
func (h *handler) onResponseTrailers() error {
	trailers := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	if h.ph != phaseResponseBody {
		return h.send(trailers)
	}
	// A body reply is only valid while Envoy is processing a body chunk:
	// when the response was headers and trailers with no body, there is
	// nothing to flush into (Envoy would treat it as spurious and reset).
	out := h.decode(nil, true)
	if err := h.releaseHeaders(); err != nil {
		return err
	}
	if len(out) > 0 && h.sawBody {
		h.chunk.body.Body = out
		h.chunk.body.EndOfStream = false
		h.chunk.msg.DynamicMetadata = nil
		if err := h.send(h.chunk.msg); err != nil {
			return err
		}
	}
	h.ph = phaseDone
	h.complete()
	trailers.DynamicMetadata = h.metadata(true)
	return h.send(trailers)
}

// immediate answers the request itself with an OpenAI-shaped error.
func (h *handler) immediate(e *translate.Error, extra ...*corev3.HeaderValueOption) error {
	h.status, h.errCode = e.HTTPStatus(), string(e.Code)
	h.ph = phaseDone
	h.complete()
	return h.send(immediateResponse(h.status, e.AppendJSON(nil), "llmux_"+string(e.Code), h.metadata(true), extra...))
}

// immediateOK answers the request itself with a JSON body.
func (h *handler) immediateOK(body []byte) error {
	h.status = 200
	h.ph = phaseDone
	h.complete()
	return h.send(immediateResponse(200, body, "llmux_local", h.metadata(true)))
}

// complete records the finished request once.
func (h *handler) complete() {
	if h.recorded {
		return
	}
	h.recorded = true
	now := h.s.opts.Now()
	r := telemetry.Request{
		Endpoint:               h.ep.String(),
		Tenant:                 h.tenant,
		Status:                 h.status,
		ErrorCode:              h.errCode,
		DurationSeconds:        now.Sub(h.start).Seconds(),
		UpstreamLatencySeconds: -1,
		TTFTSeconds:            -1,
	}
	if h.group != nil {
		r.ModelGroup = h.group.Name
	}
	if h.dep != nil {
		r.Deployment, r.Provider = h.dep.Name, h.dep.Provider.Name
	}
	if !h.headersAt.IsZero() {
		r.UpstreamLatencySeconds = h.headersAt.Sub(h.forwardedAt).Seconds()
	}
	if !h.firstAt.IsZero() {
		r.TTFTSeconds = h.firstAt.Sub(h.forwardedAt).Seconds()
	}
	if h.dec != nil {
		res := h.dec.Result()
		if res.Err != nil && h.errCode == "" {
			h.errCode = string(res.Err.Code)
			r.ErrorCode = h.errCode
		}
		if res.HasUsage {
			u := res.Usage
			r.Tokens = map[string]int64{"input": u.InputTokens, "output": u.OutputTokens, "cached": u.CachedTokens,
				"cache_creation": u.CacheCreationTokens, "reasoning": u.ReasoningTokens}
		}
	}
	h.s.opts.Metrics.RecordRequest(h.ctx, r)
	level := slog.LevelDebug
	if h.status >= 500 {
		level = slog.LevelWarn
	}
	h.s.opts.Logger.Log(h.ctx, level, "request",
		"request_id", h.requestID, "tenant", h.tenant, "endpoint", r.Endpoint, "model_group", r.ModelGroup,
		"deployment", r.Deployment, "status", h.status, "error_code", h.errCode, "duration", now.Sub(h.start))
}

// depName is the chosen deployment's name, or "" before one is chosen.
func (h *handler) depName() string {
	if h.dep == nil {
		return ""
	}
	return h.dep.Name
}

// finish runs when the stream ends, however it ends.
func (h *handler) finish() {
	if h.recorded {
		return
	}
	// Envoy ended the stream before llmux sent its last reply: the client
	// went away, or (once the response had started) the upstream reset and
	// Envoy reset the client stream (reference §4.2). ext_proc cannot tell
	// these apart; both are recorded as canceled.
	if h.outcomeSent {
		// The client had the whole response (its terminal event, or the
		// in-band error) and closed before the upstream's end of stream:
		// the outcome stands.
		h.complete()
		return
	}
	if h.errCode == "" {
		h.errCode = string(translate.CodeCanceled)
	}
	if h.status == 0 {
		h.status = translate.CodeCanceled.Status()
	}
	h.complete()
}

// headerValue reads a header value: raw_value, as Envoy sends it, or the
// legacy value field.
func headerValue(hv *corev3.HeaderValue) string {
	if len(hv.RawValue) > 0 {
		return string(hv.RawValue)
	}
	return hv.Value
}

// header builds a header mutation entry; values go in raw_value only.
func header(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, RawValue: []byte(value)}}
}

func pathOnly(p string) string {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		return p[:i]
	}
	return p
}

func modelNotFound(model string) *translate.Error {
	return &translate.Error{Code: translate.CodeNotFound, OpenAICode: "model_not_found", Param: "model",
		Message: fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)}
}

// maskKey shows only the ends of a key, as OpenAI does.
func maskKey(k string) string {
	if len(k) < 12 {
		return "****"
	}
	return k[:3] + "****" + k[len(k)-4:]
}

func newRequestID() string {
	const hexd = "0123456789abcdef"
	var b [16]byte
	for i := range b {
		b[i] = hexd[rand.IntN(16)]
	}
	return string(b[:])
}

// view returns b as a string without copying; the string must not outlive
// b.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
