package processor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/llmux/llmux/translate"
)

func (h *handler) onRequestHeaders(m *extprocv3.HttpHeaders) error {
	var authz, apiKey, identity string
	idh := h.cfg.IdentityHeader()
	hs := m.GetHeaders().GetHeaders()
	h.clientHeaders = make([]string, 0, len(hs))
	for _, hv := range hs {
		switch k := hv.GetKey(); k {
		case ":method":
			h.method = headerValue(hv)
		case ":path":
			h.path = headerValue(hv)
		case "x-request-id":
			if v := headerValue(hv); h.requestID == "" && validRequestID(v) {
				h.requestID = v
			}
		case "authorization":
			authz = headerValue(hv)
		case "x-api-key", "api-key":
			apiKey = headerValue(hv)
		default:
			if idh != "" && k == idh {
				identity = headerValue(hv)
			}
		}
		h.noteClientHeader(hv.GetKey())
	}
	if h.requestID == "" {
		h.requestID = newRequestID()
	}

	ep, modelID := classify(h.path)
	h.ep = ep
	h.startTrace(hs) // tracing.go
	if ep == epUnknown {
		return h.immediate(&translate.Error{Code: translate.CodeNotFound, OpenAICode: "unknown_url",
			Message: fmt.Sprintf("Unknown request URL: %s %s. Please check the URL for typos.", echo(h.method), echo(pathOnly(h.path)))})
	}
	if h.method != ep.method() {
		return h.immediate(&translate.Error{Code: translate.CodeMethodNotAllowed, OpenAICode: "method_not_allowed",
			Message: fmt.Sprintf("Method %s is not allowed for %s; use %s.", echo(h.method), echo(pathOnly(h.path)), ep.method())},
			header("allow", ep.method()))
	}
	if e := h.authenticate(authz, apiKey, identity); e != nil {
		return h.immediate(e)
	}
	if e := h.readRouteMetadata(); e != nil {
		return h.immediate(e)
	}
	if e := h.startOwned(h.pc); e != nil { // owned mode (owned.go)
		return h.immediate(e)
	}
	switch ep {
	case epModels:
		return h.immediateOK(appendModels(nil, h.cfg, h.routeMeta.allows))
	case epModel:
		g, ok := h.cfg.Group(modelID)
		if !ok || !h.routeMeta.allows(g.Name) {
			return h.immediate(modelNotFound(modelID))
		}
		return h.immediateOK(appendModel(nil, g.Name, h.cfg.LoadedAt().Unix()))
	}
	if m.GetEndOfStream() {
		return h.immediate(invalid("", "missing_body", "The request body is empty; a JSON object is required."))
	}
	h.ph = phaseRequestBody
	if h.own.active {
		return nil // owned mode answers the headers once the body is in (owned.go)
	}
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
	if h.own.active { // owned mode: the body comes in chunks (owned.go)
		if done, err := h.collectOwned(b); done {
			return err
		}
	}
	body := b.GetBody()
	if max := h.cfg.Server().MaxRequestBodyBytes; max > 0 && int64(len(body)) > max {
		return h.immediate(&translate.Error{Code: translate.CodeRequestTooLarge, OpenAICode: "request_too_large",
			Message: fmt.Sprintf("The request body is %d bytes; the limit is %d bytes.", len(body), max)})
	}
	// The body's bytes count against the server-wide budget until the
	// reply carrying the translated body is sent (or the phase ends any
	// other way).
	if !h.holdBody(int64(len(body))) {
		h.s.opts.Metrics.BufferRejected(h.ctx)
		h.s.opts.Logger.Warn("llmux: request refused, the buffered request bytes are at server.max_buffered_bytes",
			"request_id", h.requestID, "body_bytes", len(body), "limit", h.cfg.Server().MaxBufferedBytes)
		return h.immediate(&translate.Error{Code: translate.CodeOverloaded, OpenAICode: "gateway_overloaded",
			Message: "The gateway is handling too many large requests right now. Please retry shortly."},
			header("retry-after", "1"))
	}
	defer h.releaseUnlessKept()
	p, e := validate(h.ep, body)
	if e != nil {
		return h.immediate(e)
	}
	g, ok := h.cfg.Group(p.model)
	if !ok || !h.routeMeta.allows(g.Name) {
		return h.immediate(modelNotFound(p.model))
	}
	h.group = g
	// Redaction (redaction.go): everything after this reads the redacted
	// body.
	if body, e = h.redactRequest(body); e != nil {
		return h.immediate(e)
	}
	dep, tr := h.route(g, p.stream, body)
	if dep == nil {
		return h.immediate(&translate.Error{Code: translate.CodeUpstreamUnavailable, OpenAICode: "no_deployment_available",
			Message: fmt.Sprintf("No deployment of model %q is available right now. Please retry later.", g.Name)})
	}
	if d, e := h.reserveLimits(g, body, dep); e != nil { // limits.go
		return h.immediate(e, h.retryAfterHeader(e)...)
	} else if d != dep {
		dep = d
		if tr, ok = h.s.opts.Translator(dep.Provider.Kind); !ok {
			h.settleLimits()
			return h.immediate(&translate.Error{Code: translate.CodeUpstreamUnavailable, OpenAICode: "no_deployment_available",
				Message: fmt.Sprintf("No deployment of model %q is available right now. Please retry later.", g.Name)})
		}
	}
	h.dep, h.tr = dep, tr
	h.treq = translate.Request{Op: h.ep.op(), Body: body, Stream: p.stream, IncludeUsage: p.includeUsage,
		MaxBuffered: h.cfg.Server().MaxResponseBodyBytes}
	rr := new(bodyReply)
	rr.target = targetFor(dep)
	up, err := tr.Request(h.ctx, &h.treq, &rr.target)
	if err != nil {
		var te *translate.Error
		if errors.As(err, &te) {
			return h.immediate(te)
		}
		h.s.opts.Logger.Error("llmux: request translation failed", "request_id", h.requestID, "deployment", dep.Name, "error", err)
		return h.immediate(&translate.Error{Code: translate.CodeInternal, Message: "The gateway could not translate the request for the provider."})
	}
	// Do not hold the client's body past translation: neither here nor in
	// the received message, so that it can be collected while the reply
	// is marshalled.
	h.keepForFailover(body) // failover.go
	h.keepForRepair(body)   // repair.go
	if h.own.active {
		return h.forwardOwned(body, up) // owned.go
	}
	h.treq.Body, b.Body = nil, nil

	// Only intended headers go upstream (headers.go).
	mut := &rr.mut
	mut.RemoveHeaders = upstreamRemovals(h.clientHeaders, dep.Provider.ForwardHeaders)
	n := 4 + len(up.Headers)
	mut.SetHeaders = rr.set[:0:min(n, len(rr.set))]
	hb := headerBlock(rr.hdrs[:0:min(n, len(rr.hdrs))])
	mut.SetHeaders = append(mut.SetHeaders,
		hb.add(":path", up.Path),
		hb.add(h.cfg.Server().ClusterHeader, dep.Provider.Cluster),
		hb.add("content-length", strconv.Itoa(len(up.Body))),
		hb.add("x-request-id", h.requestID),
	)
	for _, hd := range up.Headers {
		mut.SetHeaders = append(mut.SetHeaders, hb.add(hd.Key, hd.Value))
	}
	h.forwardedAt = h.s.opts.Now()
	h.traceTry(dep, "first")
	// The provider's side of a traced call is the call span's child. When
	// Envoy traces, its router replaces this with its own span (fact 10).
	if h.trace.Recording() {
		h.trace.Inject(func(k, v string) { mut.SetHeaders = append(mut.SetHeaders, header(k, v)) })
	}
	h.ph = phaseResponseHeaders
	rr.body.Body = up.Body
	rr.bm.Mutation = &rr.body
	rr.cr = extprocv3.CommonResponse{HeaderMutation: mut, BodyMutation: &rr.bm, ClearRouteCache: true}
	rr.br.Response = &rr.cr
	rr.rb.RequestBody = &rr.br
	rr.resp.Response = &rr.rb
	rr.resp.DynamicMetadata = h.replyMetadata(false)
	return h.send(&rr.resp)
}

// bodyReply is the reply to the request body and every message in it,
// with room for its header mutations, and the translation's target: one
// allocation instead of one per message and per header.
type bodyReply struct {
	resp   extprocv3.ProcessingResponse
	rb     extprocv3.ProcessingResponse_RequestBody
	br     extprocv3.BodyResponse
	cr     extprocv3.CommonResponse
	bm     extprocv3.BodyMutation
	body   extprocv3.BodyMutation_Body
	mut    extprocv3.HeaderMutation
	set    [maxReplyHeaders]*corev3.HeaderValueOption
	hdrs   [maxReplyHeaders]headerEntry
	target translate.Target
}

// maxReplyHeaders is how many header mutations bodyReply holds: llmux's
// four and a translator's (Bedrock's five, content-type and its SigV4
// headers, or fewer) fit; more are allocated.
const maxReplyHeaders = 10
