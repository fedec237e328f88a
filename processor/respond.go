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

// metadata builds the dynamic metadata that Envoy's access logs and stats
// read, under the configured namespace. final adds the outcome: status,
// error code, tokens and timings.
func (h *handler) metadata(final bool) *structpb.Struct {
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
	}
	return v.wrap(h.cfg.Server().MetadataNamespace)
}

// mdRequestFields and mdFields are how many fields metadata() sets at
// most, before and with the outcome; more still work, with an allocation
// each.
const (
	mdRequestFields = 8
	mdFields        = 23
)

// mdValues builds a metadata Struct with a few allocations: its values
// come from arrays rather than one allocation per value and per kind.
type mdValues struct {
	size int // fields expected
	f    map[string]*structpb.Value
	vals []structpb.Value
	strs []structpb.Value_StringValue
	nums []structpb.Value_NumberValue
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

// next returns the Value of field k.
func (v *mdValues) next(k string) *structpb.Value {
	if v.f == nil {
		v.f = make(map[string]*structpb.Value, v.size)
		v.vals = make([]structpb.Value, 0, v.size+1) // one more wraps the namespace
	}
	p := slot(&v.vals)
	v.f[k] = p
	return p
}

// str adds a string field; empty strings are left out.
func (v *mdValues) str(k, s string) {
	if s == "" {
		return
	}
	if v.strs == nil {
		v.strs = make([]structpb.Value_StringValue, 0, 12)
	}
	p := slot(&v.strs)
	p.StringValue = s
	v.next(k).Kind = p
}

// num adds a number field.
func (v *mdValues) num(k string, n float64) {
	if v.nums == nil {
		v.nums = make([]structpb.Value_NumberValue, 0, 9)
	}
	p := slot(&v.nums)
	p.NumberValue = n
	v.next(k).Kind = p
}

// wrap returns the fields as a Struct under namespace ns.
func (v *mdValues) wrap(ns string) *structpb.Struct {
	if v.f == nil {
		v.f = map[string]*structpb.Value{}
	}
	out := slot(&v.vals)
	out.Kind = &structpb.Value_StructValue{StructValue: &structpb.Struct{Fields: v.f}}
	return &structpb.Struct{Fields: map[string]*structpb.Value{ns: out}}
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
