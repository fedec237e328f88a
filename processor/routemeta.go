package processor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// Per-route policy from Envoy's configuration. A route's metadata
//
//	metadata:
//	  filter_metadata:
//	    io.llmux:                # server.metadata_namespace
//	      route: research        # a label
//	      model_groups: [gpt-4o-mini, claude-sonnet]
//	      routing: {strategy: cost, max_ttft: 2s}
//
// reaches llmux through the ext_proc filter's request_attributes
// (xds.route_metadata): in the first message's attributes, as the
// envoy.config.core.v3.Metadata in protobuf text format. llmux parses it
// once per distinct text (routeMetaCache) into a routePolicy. Every key
// under the namespace must be known: an unknown key or a malformed value
// answers the request with a 500 naming the key (and logs it once per
// distinct metadata), never a silent default. docs/routing.md documents
// the keys.

// routeMetadataAttribute is the attribute carrying the route's metadata.
const routeMetadataAttribute = "xds.route_metadata"

// extProcAttributes is the attributes map's only key.
const extProcAttributes = "envoy.filters.http.ext_proc"

// routePolicy is what a route's metadata says to llmux. A nil
// *routePolicy (no metadata under the namespace) restricts nothing.
//
// Another concern adds its settings here: a field in its own block, and
// a parser registered in routeKeys from an init function in its own file
// (registerRouteKey), so that its key is known and its values checked
// once per distinct metadata.
type routePolicy struct {
	// Routing concern (routing.go).
	name    string                // "route": a label for logs
	groups  map[string]struct{}   // "model_groups": the groups the route may use; nil: all
	routing *config.RouteOverride // "routing": strategy and options over the group's

	mode routeMode // "mode": splice (default) or owned (owned.go)

	// Redaction concern (redaction.go).
	redaction string // "redaction_policy": the policy's name, "" for the configuration's choice
	// Limits concern (limits.go).
	limits []string // "limits": route-scope policy names
}

// allows reports whether the route may use model group name.
func (p *routePolicy) allows(name string) bool {
	if p == nil || p.groups == nil {
		return true
	}
	_, ok := p.groups[name]
	return ok
}

// routeKeyParser reads one key's value into p. Its error says what is
// wrong with the value; the caller names the key.
type routeKeyParser func(v *structpb.Value, p *routePolicy) error

// routeKeys are the known keys under llmux's namespace.
var routeKeys = map[string]routeKeyParser{
	"route":        parseRouteName,
	"model_groups": parseRouteGroups,
	"routing":      parseRouteRouting,
}

// registerRouteKey adds a key; call it from an init function. It panics
// on a duplicate, which is a programming error.
func registerRouteKey(key string, parse routeKeyParser) {
	if _, dup := routeKeys[key]; dup {
		panic("processor: route metadata key " + key + " registered twice")
	}
	routeKeys[key] = parse
}

// Bounds of route metadata values: a label goes into log lines, and an
// allow-list entry longer than maxRouteName is pasted text, not a model
// group's name.
const (
	maxRouteName   = 256
	maxRouteGroups = 1024
)

func parseRouteName(v *structpb.Value, p *routePolicy) error {
	s, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return errors.New("must be a string")
	}
	if len(s.StringValue) > maxRouteName {
		return fmt.Errorf("is %d bytes long; at most %d", len(s.StringValue), maxRouteName)
	}
	p.name = s.StringValue
	return nil
}

func parseRouteGroups(v *structpb.Value, p *routePolicy) error {
	l, ok := v.GetKind().(*structpb.Value_ListValue)
	if !ok {
		return errors.New("must be a list of model group names")
	}
	if len(l.ListValue.GetValues()) == 0 {
		return errors.New("is empty: the route could use no model group (leave the key out to allow every group)")
	}
	if n := len(l.ListValue.GetValues()); n > maxRouteGroups {
		return fmt.Errorf("lists %d groups; at most %d", n, maxRouteGroups)
	}
	p.groups = make(map[string]struct{}, len(l.ListValue.GetValues()))
	for i, e := range l.ListValue.GetValues() {
		s, ok := e.GetKind().(*structpb.Value_StringValue)
		if !ok || s.StringValue == "" || len(s.StringValue) > maxRouteName {
			return fmt.Errorf("[%d] must be a model group name", i)
		}
		p.groups[s.StringValue] = struct{}{}
	}
	return nil
}

func parseRouteRouting(v *structpb.Value, p *routePolicy) error {
	js, err := protojson.Marshal(v)
	if err != nil {
		return fmt.Errorf("cannot read the value: %w", err)
	}
	o, err := config.ParseRouteOverride(js)
	if err != nil {
		// The config errors name "routing.<field>"; say them on one line.
		return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	p.routing = o
	return nil
}

// routeMetaError is a malformed route metadata value.
type routeMetaError struct {
	key string // the key under the namespace, or "" for the whole text
	err error
}

func (e *routeMetaError) Error() string {
	if e.key == "" {
		return e.err.Error()
	}
	return e.key + ": " + e.err.Error()
}

// parseRouteMetadata reads the attribute's text under namespace ns; a nil
// policy means the route has no llmux metadata.
func parseRouteMetadata(text, ns string) (*routePolicy, error) {
	var md corev3.Metadata
	if err := prototext.Unmarshal([]byte(text), &md); err != nil {
		return nil, &routeMetaError{err: fmt.Errorf("%s is not an envoy.config.core.v3.Metadata in text format: %w", routeMetadataAttribute, err)}
	}
	return routePolicyOf(&md, ns)
}

// CheckRouteMetadata checks an Envoy route's metadata as llmux reads it
// per request: the keys under filter_metadata[namespace] must be known and
// their values well formed. The envoy package's checks run it over the
// shipped configurations.
func CheckRouteMetadata(md *corev3.Metadata, namespace string) error {
	_, err := routePolicyOf(md, namespace)
	return err
}

// routePolicyOf reads the llmux policy under ns; nil when there is none.
func routePolicyOf(md *corev3.Metadata, ns string) (*routePolicy, error) {
	fields := md.GetFilterMetadata()[ns].GetFields()
	if len(fields) == 0 {
		return nil, nil
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first bad key is reported, in a stable order
	p := &routePolicy{}
	for _, k := range keys {
		parse, ok := routeKeys[k]
		if !ok {
			return nil, &routeMetaError{key: k, err: fmt.Errorf("unknown key (known: %s)", strings.Join(knownRouteKeys(), ", "))}
		}
		if err := parse(fields[k], p); err != nil {
			return nil, &routeMetaError{key: k, err: err}
		}
	}
	return p, nil
}

func knownRouteKeys() []string {
	out := make([]string, 0, len(routeKeys))
	for k := range routeKeys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// routeMetaCacheSize bounds the parsed metadata kept: one entry per
// distinct route metadata text, which is one per route in practice.
const routeMetaCacheSize = 256

// routeMetaCache holds parsed route metadata by its text.
type routeMetaCache struct {
	mu sync.RWMutex
	m  map[string]*routeMetaEntry
}

type routeMetaEntry struct {
	ns     string // the namespace it was parsed under
	policy *routePolicy
	err    error
}

// get returns the policy of text under ns, parsing it on a miss; parsed
// reports a miss (so that an error is logged once per distinct text).
func (c *routeMetaCache) get(text, ns string) (p *routePolicy, err error, parsed bool) {
	c.mu.RLock()
	e, ok := c.m[text]
	c.mu.RUnlock()
	if ok && e.ns == ns {
		return e.policy, e.err, false
	}
	e = &routeMetaEntry{ns: ns}
	e.policy, e.err = parseRouteMetadata(text, ns)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= routeMetaCacheSize {
		c.m = make(map[string]*routeMetaEntry) // more routes than that: start over
	}
	c.m[text] = e
	return e.policy, e.err, true
}

// readRouteMetadata reads the route's llmux policy from the first
// message's attributes into h.routeMeta. A malformed one is a 500 naming
// the key.
func (h *handler) readRouteMetadata() *translate.Error {
	a := h.attrs[extProcAttributes].GetFields()[routeMetadataAttribute]
	h.attrs = nil
	text := a.GetStringValue()
	if text == "" {
		return nil
	}
	p, err, parsed := h.s.routeMD.get(text, h.cfg.Server().MetadataNamespace)
	if err == nil {
		h.routeMeta = p
		return nil
	}
	key := h.cfg.Server().MetadataNamespace
	if me, ok := err.(*routeMetaError); ok && me.key != "" {
		key += "." + me.key
	}
	if parsed {
		h.s.opts.Logger.Error("llmux: invalid llmux policy in the Envoy route's metadata", "key", "filter_metadata."+key,
			"error", err, "request_id", h.requestID)
	}
	return &translate.Error{Code: translate.CodeInternal, OpenAICode: "invalid_route_metadata",
		Message: fmt.Sprintf("The gateway's route configuration is invalid: route metadata key filter_metadata.%s. See the gateway logs.", key)}
}
