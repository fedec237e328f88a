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
	f := make(map[string]*structpb.Value, 12)
	str := func(k, v string) {
		if v != "" {
			f[k] = structpb.NewStringValue(v)
		}
	}
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
	}
	if final {
		if h.status != 0 {
			f["status"] = structpb.NewNumberValue(float64(h.status))
		}
		str("error_code", h.errCode)
		if h.dec != nil {
			if res := h.dec.Result(); res.HasUsage {
				f["input_tokens"] = structpb.NewNumberValue(float64(res.Usage.InputTokens))
				f["output_tokens"] = structpb.NewNumberValue(float64(res.Usage.OutputTokens))
				f["cached_tokens"] = structpb.NewNumberValue(float64(res.Usage.CachedTokens))
				if res.Usage.CacheCreationTokens > 0 {
					f["cache_creation_tokens"] = structpb.NewNumberValue(float64(res.Usage.CacheCreationTokens))
				}
				if res.Usage.ReasoningTokens > 0 {
					f["reasoning_tokens"] = structpb.NewNumberValue(float64(res.Usage.ReasoningTokens))
				}
			}
		}
		if !h.headersAt.IsZero() {
			f["upstream_latency_ms"] = structpb.NewNumberValue(float64(h.headersAt.Sub(h.forwardedAt).Milliseconds()))
		}
		if !h.firstAt.IsZero() {
			f["ttft_ms"] = structpb.NewNumberValue(float64(h.firstAt.Sub(h.forwardedAt).Milliseconds()))
		}
	}
	ns := h.cfg.Server().MetadataNamespace
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		ns: structpb.NewStructValue(&structpb.Struct{Fields: f}),
	}}
}

// appendModels appends the OpenAI model list for every model group.
func appendModels(dst []byte, cfg *config.Runtime) []byte {
	groups := cfg.Groups()
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		names = append(names, g.Name)
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
