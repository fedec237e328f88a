package envoysim

import (
	"fmt"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// SkipExtProcOnLocalReply is the runtime guard of the CVE-2025-30157 fix
// (Envoy commit 8eda1b8e, 1.33.1/1.34.0; backport PR #38819): while true, Envoy's own local
// replies (the router's 503 and 504, the 413 of a full buffer, idle
// timeouts, an unknown cluster) skip the ext_proc filter: the processor sees
// no response message, only its gRPC stream ending. It defaults to true and
// was removed in 1.37.0 (commit 37efb748, PR #41769 "ext_proc: re-enable
// sending local replies to the ext_proc server"), from which on local replies run
// through the encoder chain, ext_proc included.
const SkipExtProcOnLocalReply = "envoy.reloadable_features.skip_ext_proc_on_local_reply"

// Envoy versions the sim can behave as (Options.EnvoyVersion).
const (
	// Envoy136 is Envoy 1.34–1.36 (Istio 1.26–1.28): the guard exists and
	// defaults to true.
	Envoy136 = "1.36"
	// Envoy137 is Envoy 1.37 and later: no guard; local replies pass through
	// ext_proc. It is the default.
	Envoy137 = "1.37"
)

// minorStreamedImmediate is the first Envoy minor version that knows
// ProcessingResponse.streamed_immediate_response (PR #42424, merged
// 2025-12, released in 1.37.0). Older versions parse it as an unknown field,
// so the response case is unset and Filter::onReceiveMessage's default
// branch treats the message as spurious ("unhandled message").
const minorStreamedImmediate = 37

// envoyMinor parses "1.N" (or "1.N.P"); "" is the newest behaviour.
func envoyMinor(v string) (int, error) {
	if v == "" {
		return 99, nil
	}
	parts := strings.Split(v, ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("envoysim: Options.EnvoyVersion %q: want \"1.N\"", v)
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, fmt.Errorf("envoysim: Options.EnvoyVersion %q: %w", v, err)
	}
	if n < 34 {
		return 0, fmt.Errorf("envoysim: Options.EnvoyVersion %q: llmux needs Envoy 1.34 or later", v)
	}
	return n, nil
}

// buildRuntime merges the static layers of a layered_runtime. Only keys the
// sim models are accepted; an admin layer (empty at start) is allowed.
func buildRuntime(path string, lr *bootstrapv3.LayeredRuntime) (map[string]*structpb.Value, error) {
	out := map[string]*structpb.Value{}
	for i, l := range lr.GetLayers() {
		p := fmt.Sprintf("%s.layers[%d]", path, i)
		switch x := l.GetLayerSpecifier().(type) {
		case *bootstrapv3.RuntimeLayer_StaticLayer:
			for k, v := range flattenRuntime("", x.StaticLayer) {
				if k != SkipExtProcOnLocalReply {
					return nil, unsupported(p+".static_layer."+k, "runtime key not modelled (only %s)", SkipExtProcOnLocalReply)
				}
				if _, ok := v.GetKind().(*structpb.Value_BoolValue); !ok {
					return nil, unsupported(p+".static_layer."+k, "a reloadable feature takes a boolean")
				}
				out[k] = v
			}
		case *bootstrapv3.RuntimeLayer_AdminLayer_:
		default:
			return nil, unsupported(p, "only static_layer and admin_layer runtime layers are modelled")
		}
	}
	return out, nil
}

// flattenRuntime turns nested static-layer objects into dotted keys, as
// Envoy's runtime loader does.
func flattenRuntime(prefix string, s *structpb.Struct) map[string]*structpb.Value {
	out := map[string]*structpb.Value{}
	for k, v := range s.GetFields() {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if st := v.GetStructValue(); st != nil {
			for kk, vv := range flattenRuntime(key, st) {
				out[kk] = vv
			}
			continue
		}
		out[key] = v
	}
	return out
}

// skipExtProcOnLocalReply decides the guard for a version and runtime.
func skipExtProcOnLocalReply(minor int, rt map[string]*structpb.Value) bool {
	if minor >= 37 {
		return false // guard removed: a leftover runtime key has no effect
	}
	if v, ok := rt[SkipExtProcOnLocalReply]; ok {
		return v.GetBoolValue()
	}
	return true
}
