package processor

import (
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// What reaches the provider from a client's request headers.
//
// llmux forwards an allow-list: the headers the translator sets (the
// provider's credential, content-type, version headers, the configured
// static headers), the client headers in upstreamAllowed, and the client
// headers the provider's forward_headers names. Every other client header
// is removed in the request-body reply: cookies, client credentials,
// openai-organization/openai-project (which would pick the account the
// gateway's key bills), anthropic-beta, x-stainless-*, the fakes' x-fake-*
// and any header llmux does not know.
//
// Some headers llmux never names in remove_headers, because Envoy owns
// them: pseudo-headers and host (Envoy refuses their removal, §2.3 of the
// ext_proc reference), x-envoy-* (refused unless the filter's
// mutation_rules set allow_envoy; with disallow_is_error the whole request
// would fail), the hop-by-hop headers, content-length (llmux sets it) and
// x-forwarded-proto (set by Envoy's connection manager). Client x-envoy-*
// headers and the cluster header are stripped by the shipped Envoy
// configuration, not by llmux.

// upstreamAllowed are client headers forwarded to every provider:
// content negotiation, the client's user-agent (providers log it and it
// helps their support trace a client library; it identifies software, not
// a person), W3C trace context and B3 propagation, and x-request-id, which
// llmux overwrites with its own request id anyway.
var upstreamAllowed = []string{
	"content-type", "accept", "user-agent",
	"traceparent", "tracestate",
	"b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
	"x-request-id",
}

// envoyOwned reports whether llmux leaves header name (lowercase) to
// Envoy: it never removes it.
func envoyOwned(name string) bool {
	if strings.HasPrefix(name, ":") || strings.HasPrefix(name, "x-envoy-") {
		return true
	}
	switch name {
	case "host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection",
		"upgrade", "te", "x-forwarded-proto":
		return true
	}
	return false
}

// lower returns s in lower case, without allocating when it already is.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// noteClientHeader records a request header name seen in request_headers
// that may have to be removed before the request goes upstream: once per
// name (however many values it has), lower-cased.
func (h *handler) noteClientHeader(key string) {
	k := lower(key)
	if envoyOwned(k) || slices.Contains(upstreamAllowed, k) || slices.Contains(h.clientHeaders, k) {
		return
	}
	h.clientHeaders = append(h.clientHeaders, k)
}

// upstreamRemovals lists the client headers to remove for a provider that
// passes forward through: every recorded name it does not forward. Each
// name appears once, so the list is never longer than the request's header
// count (Envoy fails a mutation with more entries than max_headers_count).
func upstreamRemovals(client, forward []string) []string {
	out := make([]string, 0, len(client))
	for _, k := range client {
		if !slices.Contains(forward, k) {
			out = append(out, k)
		}
	}
	return out
}

// Provider request id headers, in the order they are looked for: OpenAI
// and Azure (x-request-id), Anthropic (request-id), Bedrock and other AWS
// services (x-amzn-requestid), Azure API Management (apim-request-id).
var upstreamIDHeaders = []string{"x-request-id", "request-id", "x-amzn-requestid", "apim-request-id"}

// upstreamIDHeader is the response header that carries the provider's own
// request id to the client; x-request-id is always llmux's.
const upstreamIDHeader = "x-upstream-request-id"

// noteUpstreamID records the provider's request id from a response header,
// the first found in upstreamIDHeaders order.
func (h *handler) noteUpstreamID(hv *corev3.HeaderValue) {
	i := slices.Index(upstreamIDHeaders, hv.GetKey())
	if i < 0 || (h.upstreamID != "" && i >= h.upstreamIDRank) {
		return
	}
	if v := headerValue(hv); validUpstreamID(v) {
		h.upstreamID, h.upstreamIDRank = v, i
	}
}

// appendIDHeaders adds the request id headers of a response sent to the
// client: llmux's request id as x-request-id, replacing the provider's,
// which goes in x-upstream-request-id. The entries come from hb when it is
// not nil.
func (h *handler) appendIDHeaders(dst []*corev3.HeaderValueOption, hb *headerBlock) []*corev3.HeaderValueOption {
	if hb == nil {
		hb = &headerBlock{}
	}
	if h.requestID != "" {
		dst = append(dst, hb.add("x-request-id", h.requestID))
	}
	if h.upstreamID != "" {
		dst = append(dst, hb.add(upstreamIDHeader, h.upstreamID))
	}
	return h.appendLimitHeaders(dst) // limits.go
}

// validUpstreamID accepts a provider's request id: at most 128 bytes of
// visible ASCII.
func validUpstreamID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
