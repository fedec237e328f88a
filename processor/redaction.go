package processor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/redact"
	"github.com/llmux/llmux/translate"
)

// Redaction (issue 9, docs/redaction.md). The request's policy — the Envoy
// route's redaction_policy metadata, else the configuration's per key,
// tenant, model group or default — is applied to the client's body right
// after validation, before routing, translation and everything that reads
// or keeps the body (the fallbacks of failover.go re-send the redacted
// body). A blocked kind answers 400. The response, as the OpenAI-shaped
// output of the decoder (so one restorer serves every provider), goes
// through the session's restorer, which puts the originals of reversible
// placeholders back and, when the policy asks, masks the response. Counts,
// never values, go to metadata and metrics; nothing here logs content.

func init() { registerRouteKey("redaction_policy", parseRouteRedaction) }

func parseRouteRedaction(v *structpb.Value, p *routePolicy) error {
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok || s.StringValue == "" || strings.TrimSpace(s.StringValue) != s.StringValue {
		return errors.New("must be the name of a policy in llmux's redaction.policies, or none")
	}
	p.redaction = s.StringValue
	return nil
}

// redactState is a handler's redaction concern.
type redactState struct {
	sess      *redact.Session
	ct        string // the content type the restorer was started for
	started   bool
	buf       []byte             // restored output
	reqCounts []redact.KindCount // found in the request
}

// redactRequest applies the request's policy to the client's body and
// returns the body to forward.
func (h *handler) redactRequest(body []byte) ([]byte, *translate.Error) {
	pol, e := h.redactionPolicy()
	if e != nil || !pol.Active() {
		return body, e
	}
	s := pol.NewSession(h.tenant)
	h.red.sess = s
	in := redact.InputChat
	if h.ep == epEmbeddings {
		in = redact.InputEmbeddings
	}
	out, err := s.Request(body, in)
	h.red.reqCounts = append(h.red.reqCounts[:0], s.Counts()...)
	for _, c := range h.red.reqCounts {
		h.s.opts.Metrics.RedactionFound(h.ctx, pol.Name(), string(c.Kind), "request", c.N)
	}
	if be, ok := errors.AsType[*redact.BlockedError](err); ok {
		h.s.opts.Metrics.RedactionBlocked(h.ctx, pol.Name(), string(be.Kind))
		return nil, &translate.Error{Code: translate.CodeInvalidRequest, OpenAICode: "sensitive_data_blocked", Param: be.Field,
			Message: fmt.Sprintf("The request contains data of kind %s (in %s), which this gateway's policy does not allow to be sent to a model. Remove it and retry.", be.Kind, be.Field)}
	}
	if err != nil {
		// validate accepted the body as a JSON object: not reached. The
		// error carries no content.
		h.s.opts.Logger.Error("llmux: redaction failed", "request_id", h.requestID, "policy", pol.Name(), "error", err)
		return nil, &translate.Error{Code: translate.CodeInternal, Message: "The gateway could not apply its redaction policy to the request."}
	}
	return out, nil
}

// redactionPolicy is the request's policy; nil redacts nothing.
func (h *handler) redactionPolicy() (*redact.Policy, *translate.Error) {
	if rm := h.routeMeta; rm != nil && rm.redaction != "" {
		p, ok := h.cfg.RedactionPolicy(rm.redaction)
		if !ok {
			key := h.cfg.Server().MetadataNamespace + ".redaction_policy"
			h.s.opts.Logger.Error("llmux: the Envoy route names a redaction policy the configuration does not define",
				"key", "filter_metadata."+key, "policy", rm.redaction, "request_id", h.requestID)
			return nil, &translate.Error{Code: translate.CodeInternal, OpenAICode: "invalid_route_metadata",
				Message: fmt.Sprintf("The gateway's route configuration is invalid: route metadata key filter_metadata.%s. See the gateway logs.", key)}
		}
		return p, nil
	}
	group := ""
	if h.group != nil {
		group = h.group.Name
	}
	return h.cfg.RedactionFor(h.keyName, h.tenant, group), nil
}

// restoreOutput is decode's last step: the client's bytes with
// placeholders restored (and the response masked when the policy says).
// It returns out itself when nothing changes.
func (h *handler) restoreOutput(out []byte, final bool) []byte {
	s := h.red.sess
	if !s.Restoring() {
		return out
	}
	// A fallback deployment brings its own decoder (failover.go).
	if ct := h.dec.ContentType(); !h.red.started || ct != h.red.ct {
		h.red.started, h.red.ct = true, ct
		s.StartResponse(ct)
	}
	r := s.Restore(h.red.buf[:0], out, final)
	if len(r) > 0 && (len(out) == 0 || &r[0] != &out[0]) {
		h.red.buf = r
	}
	return r
}

// redactionMetadata adds the policy and the counts of what was found.
func (h *handler) redactionMetadata(v *mdValues) {
	s := h.red.sess
	if s == nil {
		return
	}
	v.str("redaction_policy", s.Policy().Name())
	v.num("redacted", float64(s.Total()))
	if s.Total() > 0 {
		var b []byte
		for i, c := range s.Counts() {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, c.Kind...)
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(c.N), 10)
		}
		v.str("redacted_kinds", string(b))
	}
}

// recordRedaction reports what the response's masking found (the
// request's counts were reported when it was redacted).
func (h *handler) recordRedaction() {
	s := h.red.sess
	if s == nil {
		return
	}
	for _, c := range s.Counts() {
		n := c.N
		for _, r := range h.red.reqCounts {
			if r.Kind == c.Kind {
				n -= r.N
			}
		}
		h.s.opts.Metrics.RedactionFound(h.ctx, s.Policy().Name(), string(c.Kind), "response", n)
	}
}
