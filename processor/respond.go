package processor

import (
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate/jsonenc"
)

// immediateResponse builds a local reply with a JSON body.
func immediateResponse(status int, body []byte, details string, md *structpb.Struct, extra ...*corev3.HeaderValueOption) *extprocv3.ProcessingResponse {
	hdrs := append([]*corev3.HeaderValueOption{header("content-type", "application/json")}, extra...)
	return &extprocv3.ProcessingResponse{
		Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: &extprocv3.HeaderMutation{SetHeaders: hdrs},
			Body:    body,
			Details: details,
		}},
		DynamicMetadata: md,
	}
}

// metadata returns the dynamic metadata that Envoy's access logs and stats
// read, under the configured namespace, as a Struct. final adds the
// outcome: status, error code, tokens and timings.
func (h *handler) metadata(final bool) *structpb.Struct { return h.buildMetadata(final).Struct() }

// replyMetadata is metadata for a reply given to h.send: the Struct's maps
// are not built (send encodes its fields from their list, or builds them
// when the reply goes out the ordinary way). Anything else must use
// metadata.
func (h *handler) replyMetadata(final bool) *structpb.Struct {
	sh := h.buildMetadata(final)
	h.mdBuilt = append(h.mdBuilt, sh)
	return &sh.outer
}

// buildMetadata sets the metadata's fields.
func (h *handler) buildMetadata(final bool) *mdShell {
	v := mdValues{size: mdRequestFields}
	if final {
		v.size = mdFields
	}
	str := v.str
	str("request_id", h.requestID)
	str("upstream_request_id", h.upstreamID)
	str("tenant", h.tenant)
	str("endpoint", h.ep.String())
	if h.group != nil {
		str("model_group", h.group.Name)
	}
	if h.dep != nil {
		str("deployment", h.dep.Name)
		str("provider", h.dep.Provider.Name)
		str("provider_kind", h.dep.Provider.Kind)
		str("model", h.dep.Model)
		if final { // with the outcome only: the request phase's map stays small
			str("routing_strategy", h.routingStrategy())
			str("routing_reason", h.routingReason())
		}
	}
	if final {
		if h.status != 0 {
			v.num("status", float64(h.status))
		}
		str("error_code", h.errCode)
		str("trace_id", h.trace.TraceID()) // tracing.go
		if h.dec != nil {
			if res := h.dec.Result(); res.HasUsage {
				v.num("input_tokens", float64(res.Usage.InputTokens))
				v.num("output_tokens", float64(res.Usage.OutputTokens))
				v.num("cached_tokens", float64(res.Usage.CachedTokens))
				if res.Usage.CacheCreationTokens > 0 {
					v.num("cache_creation_tokens", float64(res.Usage.CacheCreationTokens))
				}
				if res.Usage.ReasoningTokens > 0 {
					v.num("reasoning_tokens", float64(res.Usage.ReasoningTokens))
				}
			}
		}
		if !h.headersAt.IsZero() {
			v.num("upstream_latency_ms", float64(h.headersAt.Sub(h.forwardedAt).Milliseconds()))
		}
		if !h.firstAt.IsZero() {
			v.num("ttft_ms", float64(h.firstAt.Sub(h.forwardedAt).Milliseconds()))
		}
		h.costMetadata(&v)
		h.failoverMetadata(&v)  // failover.go
		h.redactionMetadata(&v) // redaction.go
		h.repairMetadata(&v)    // repair.go
		h.limitsMetadata(&v)    // limits.go
	}
	return v.build(h.cfg.Server().MetadataNamespace)
}

// builtMetadata returns the shell of md when replyMetadata built it (its maps
// are then built only if it is read as a Struct), else nil.
func (h *handler) builtMetadata(md *structpb.Struct) *mdShell {
	for _, sh := range h.mdBuilt {
		if &sh.outer == md {
			return sh
		}
	}
	return nil
}

// mdRequestFields and mdFields are how many fields metadata() sets at
// most, before and with the outcome; more still work, with an allocation
// each.
const (
	mdRequestFields = 8
	mdFields        = 30
)

// mdValues builds a metadata Struct with a few allocations: its values,
// their kinds, the list of its fields and the Structs that wrap them come
// from one block (mdSmall or mdLarge, after the fields expected) rather
// than one allocation per value and per kind. The fields are kept in a list
// in the order they are set; the maps a Struct holds are built only when
// something reads it as a Struct (mdShell.Struct): a reply sent with its
// metadata encoded by hand (wire.go) is written from the list.
type mdValues struct {
	size   int // fields expected
	fields []mdField
	vals   []structpb.Value
	strs   []structpb.Value_StringValue
	nums   []structpb.Value_NumberValue
	shell  *mdShell
}

// mdField is one metadata field.
type mdField struct {
	key string
	v   *structpb.Value
}

// mdShell is a metadata Struct being built: the fields under the
// namespace ns, and the Structs and Value that wrap them. outer is what a
// reply carries; its maps are nil until Struct builds them.
type mdShell struct {
	outer, inner structpb.Struct
	sv           structpb.Value_StructValue
	ns           string
	nsv          *structpb.Value // the namespace's value, holding sv
	fields       []mdField
}

// mdSmall holds the request phase's metadata; mdLarge the final one.
type (
	mdSmall struct {
		fields [mdRequestFields]mdField
		vals   [mdRequestFields + 1]structpb.Value // one more wraps the namespace
		strs   [mdRequestFields]structpb.Value_StringValue
		shell  mdShell
	}
	mdLarge struct {
		fields [mdFields]mdField
		vals   [mdFields + 1]structpb.Value
		strs   [12]structpb.Value_StringValue
		nums   [10]structpb.Value_NumberValue
		shell  mdShell
	}
)

// init allocates the block.
func (v *mdValues) init() {
	if v.size <= mdRequestFields {
		b := new(mdSmall)
		v.fields, v.vals, v.strs, v.shell = b.fields[:0], b.vals[:0], b.strs[:0], &b.shell
	} else {
		b := new(mdLarge)
		v.fields, v.vals, v.strs, v.nums, v.shell = b.fields[:0], b.vals[:0], b.strs[:0], b.nums[:0], &b.shell
	}
}

// slot returns the next zero element of s's spare capacity, or a new one
// when there is none.
func slot[T any](s *[]T) *T {
	if len(*s) == cap(*s) {
		return new(T)
	}
	*s = (*s)[:len(*s)+1]
	return &(*s)[len(*s)-1]
}

// next returns the Value of field k; setting a field again replaces its
// value, as in a map.
func (v *mdValues) next(k string) *structpb.Value {
	if v.shell == nil {
		v.init()
	}
	p := slot(&v.vals)
	for i := range v.fields {
		if v.fields[i].key == k {
			v.fields[i].v = p
			return p
		}
	}
	v.fields = append(v.fields, mdField{k, p})
	return p
}

// str adds a string field; empty strings are left out.
func (v *mdValues) str(k, s string) {
	if s == "" {
		return
	}
	p := v.next(k)
	sv := slot(&v.strs)
	sv.StringValue = s
	p.Kind = sv
}

// num adds a number field.
func (v *mdValues) num(k string, n float64) {
	p := v.next(k)
	nv := slot(&v.nums)
	nv.NumberValue = n
	p.Kind = nv
}

// build returns the fields under namespace ns, their maps not built.
func (v *mdValues) build(ns string) *mdShell {
	if v.shell == nil {
		v.init()
	}
	sh := v.shell
	sh.ns, sh.fields = ns, v.fields
	sh.nsv = slot(&v.vals)
	sh.sv.StructValue = &sh.inner
	sh.nsv.Kind = &sh.sv
	return sh
}

// wrap returns the fields as a Struct under namespace ns.
func (v *mdValues) wrap(ns string) *structpb.Struct { return v.build(ns).Struct() }

// Struct builds the maps of sh's Structs, if not yet built, and returns
// the outer Struct.
func (sh *mdShell) Struct() *structpb.Struct {
	if sh.outer.Fields == nil {
		f := make(map[string]*structpb.Value, len(sh.fields))
		for _, e := range sh.fields {
			f[e.key] = e.v
		}
		sh.inner.Fields = f
		sh.outer.Fields = map[string]*structpb.Value{sh.ns: sh.nsv}
	}
	return &sh.outer
}

// appendModels appends the OpenAI model list for every model group that
// allow accepts.
func appendModels(dst []byte, cfg *config.Runtime, allow func(string) bool) []byte {
	groups := cfg.Groups()
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		if allow(g.Name) {
			names = append(names, g.Name)
		}
	}
	sort.Strings(names)
	created := cfg.LoadedAt().Unix()
	dst = append(dst, `{"object":"list","data":[`...)
	for i, n := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendModel(dst, n, created)
	}
	return append(dst, "]}"...)
}

// appendModel appends one OpenAI model object.
func appendModel(dst []byte, id string, created int64) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsonenc.AppendString(dst, id)
	dst = append(dst, `,"object":"model","created":`...)
	dst = jsonenc.AppendInt(dst, created)
	return append(dst, `,"owned_by":"llmux"}`...)
}
