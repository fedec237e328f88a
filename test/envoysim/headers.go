package envoysim

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocsvc "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// hmap is an ordered header map with lowercase keys, pseudo-headers
// included, the way Envoy's HeaderMap looks to ext_proc.
type hmap []hkv

type hkv struct{ k, v string }

func (h hmap) get(k string) (string, bool) {
	for _, e := range h {
		if e.k == k {
			return e.v, true
		}
	}
	return "", false
}

func (h hmap) clone() hmap { return append(hmap(nil), h...) }

func (h *hmap) del(k string) {
	out := (*h)[:0]
	for _, e := range *h {
		if e.k != k {
			out = append(out, e)
		}
	}
	*h = out
}

func (h *hmap) set(k, v string) {
	for i, e := range *h {
		if e.k == k {
			(*h)[i].v = v
			// drop other values of the same key
			rest := (*h)[i+1:]
			keep := (*h)[:i+1]
			for _, r := range rest {
				if r.k != k {
					keep = append(keep, r)
				}
			}
			*h = keep
			return
		}
	}
	*h = append(*h, hkv{k, v})
}

func (h *hmap) add(k, v string) { *h = append(*h, hkv{k, v}) }

func (h hmap) proto() *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for _, e := range h {
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: e.k, RawValue: []byte(e.v)})
	}
	return m
}

// fromHTTP converts net/http headers to an hmap (keys lowercased, sorted
// for determinism since Go does not keep the order).
func fromHTTP(hdr http.Header, skip func(string) bool) hmap {
	keys := make([]string, 0, len(hdr))
	for k := range hdr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var h hmap
	for _, k := range keys {
		lk := strings.ToLower(k)
		if skip != nil && skip(lk) {
			continue
		}
		for _, v := range hdr[k] {
			h = append(h, hkv{lk, v})
		}
	}
	return h
}

// hop-by-hop headers a proxy never forwards.
func hopByHop(k string) bool {
	switch k {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer":
		return true
	}
	return false
}

// toHTTP writes the regular (non-pseudo) headers of h into dst.
func (h hmap) toHTTP(dst http.Header) {
	for _, e := range h {
		if strings.HasPrefix(e.k, ":") || hopByHop(e.k) {
			continue
		}
		dst[http.CanonicalHeaderKey(e.k)] = append(dst[http.CanonicalHeaderKey(e.k)], e.v)
	}
}

// errMutation marks mutation failures that always fail closed (§2.1 table:
// "Header mutation rejected with disallow_is_error, invalid header chars,
// both value and raw_value set ... content-length mismatch").
var errMutation = errors.New("header mutation failed")

// statusErr is an ext_proc processing error whose text is Envoy's
// absl::Status message, which becomes the local reply's
// RESPONSE_CODE_DETAILS (whitespace replaced by '_'); kind is errSpurious
// (FailedPrecondition) or errMutation (any other error).
type statusErr struct {
	msg  string
	kind error
}

func (e *statusErr) Error() string        { return e.msg }
func (e *statusErr) Is(target error) bool { return target == e.kind }

func mutationErr(format string, args ...any) error {
	return &statusErr{msg: fmt.Sprintf(format, args...), kind: errMutation}
}

func spuriousErr(msg string) error { return &statusErr{msg: msg, kind: errSpurious} }

// replaceAllEmptySpace is Envoy's StringUtil::replaceAllEmptySpace.
func replaceAllEmptySpace(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\f', '\v', '\n', '\r':
			return '_'
		}
		return r
	}, s)
}

type mutationTarget int

const (
	targetRequest mutationTarget = iota
	targetResponse
	targetTrailers
)

// checkMutation is Envoy's mutation rule checker (§2.3). It reports whether
// the operation on key is allowed.
func (r mutationRules) allowed(key string, remove, appendOp, replaceMode bool, value string) bool {
	if remove && (key == "host" || strings.HasPrefix(key, ":")) {
		return false
	}
	if r.disallowAll {
		return false
	}
	switch key {
	case ":method":
		if !r.allowAllRouting && !replaceMode {
			return false
		}
	case "host", ":authority", ":scheme":
		if !r.allowAllRouting {
			return false
		}
	}
	if strings.HasPrefix(key, ":") {
		if appendOp || r.disallowSystem {
			return false
		}
		if key != ":path" && key != ":status" && key != ":method" && key != ":authority" && key != ":scheme" {
			return false
		}
	}
	if strings.HasPrefix(key, "x-envoy-") && !r.allowEnvoy {
		return false
	}
	// value checks
	switch key {
	case ":status":
		n, err := strconv.Atoi(value)
		if err != nil || n < 200 || n > 999 {
			return false
		}
	case ":scheme":
		if value != "http" && value != "https" {
			return false
		}
	case "host", ":authority":
		if value == "" || strings.ContainsAny(value, " /?#@") {
			return false
		}
	}
	return true
}

// applyMutation applies an ext_proc HeaderMutation to h under rules. It
// returns an error wrapping errMutation when Envoy would fail the request.
// skipCL makes content-length entries in set_headers be skipped (§2.5).
func (s *Sim) applyMutation(m *extprocsvc.HeaderMutation, h *hmap, rules mutationRules, replaceMode, skipCL bool, target mutationTarget) error {
	if m == nil {
		return nil
	}
	// MutationUtils::responseHeaderSizeCheck: more remove or set entries
	// than the HCM's max_headers_count (default 100; the sim accepts no
	// HCM that changes it) fails the whole mutation, before any entry is
	// applied.
	if n, k := len(m.GetRemoveHeaders()), len(m.GetSetHeaders()); n > maxHeadersCount || k > maxHeadersCount {
		s.count("rejected_header_mutations")
		return mutationErr("Header mutation remove header count %d or set header count %d exceed the HCM header countlimit %d", n, k, maxHeadersCount)
	}
	for _, k := range m.GetRemoveHeaders() {
		lk := strings.ToLower(k)
		if !validHeaderName(strings.TrimPrefix(lk, ":")) {
			return mutationErr("Invalid character in remove_headers mutation.")
		}
		if !rules.allowed(lk, true, false, replaceMode, "") || (target != targetRequest && lk == ":status") {
			s.count("rejected_header_mutations")
			if rules.disallowIsError {
				return mutationErr("Invalid attempt to remove %s", lk)
			}
			continue
		}
		h.del(lk)
	}
	for _, o := range m.GetSetHeaders() {
		hv := o.GetHeader()
		if hv == nil {
			continue
		}
		lk := strings.ToLower(hv.GetKey())
		if hv.GetValue() != "" && len(hv.GetRawValue()) > 0 {
			return mutationErr("Only one of value or raw_value in the HeaderValue message should be set.")
		}
		// raw_value only: a value put in "value" is ignored (§2.3).
		val := string(hv.GetRawValue())
		if lk == "" || !validHeaderName(strings.TrimPrefix(lk, ":")) || !validHeaderValue(val) {
			return mutationErr("Invalid character in set_headers mutation.")
		}
		if lk == "content-length" && skipCL {
			continue
		}
		appendOp := o.GetAppend().GetValue()
		// Envoy checks an APPEND only if the header exists; otherwise a SET.
		_, exists := h.get(lk)
		ok := rules.allowed(lk, false, appendOp && exists, replaceMode, val)
		if lk == ":status" && target != targetResponse {
			ok = false
		}
		if !ok {
			s.count("rejected_header_mutations")
			if rules.disallowIsError {
				return mutationErr("Invalid attempt to modify %s", lk)
			}
			continue
		}
		if appendOp {
			h.add(lk, val)
		} else {
			h.set(lk, val)
		}
	}
	return nil
}

// maxHeadersCount is the HCM's default max_headers_count.
const maxHeadersCount = 100

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}
