package config

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/llmux/llmux/pricing"
	"github.com/llmux/llmux/processor/route"
)

// Provider is a resolved provider: an upstream API reached through an
// Envoy cluster.
type Provider struct {
	// Name is unique among providers.
	Name string
	// Kind selects the translator (one of LoadOptions.Kinds).
	Kind string
	// Cluster is the Envoy cluster that reaches the provider.
	Cluster string
	// BasePath overrides the kind's default base path; "" when unset.
	BasePath string
	// APIVersion is the provider API version, "" when unset.
	APIVersion string
	// Headers are extra static headers for the provider (lowercase
	// names). Treat as read-only.
	Headers map[string]string
	// ForwardHeaders are the client headers passed through to the
	// provider (lowercase names, validated). Treat as read-only.
	ForwardHeaders []string
	// APIKey is the provider credential (unset when none is configured).
	APIKey Secret
	// Region, Project and Host locate cloud providers; "" when unset.
	Region, Project, Host string
	// Options are kind-specific settings. Treat as read-only.
	Options map[string]string
}

// Deployment is a resolved deployment: a model on a provider.
type Deployment struct {
	// Name is unique among deployments.
	Name string
	// Model is the upstream model id.
	Model string
	// Weight is the share among deployments of equal priority (0 takes the
	// deployment out of rotation).
	Weight int
	// Priority orders deployments; lower is preferred.
	Priority int
	// Provider serves the deployment.
	Provider *Provider

	// Pricing concern: Price is the deployment's price entry, nil when its
	// cost is unknown; PriceKey is the table key it resolved to, or
	// PriceKeyDeployment for the deployment's own price.
	Price    *pricing.Entry
	PriceKey string
}

// Group is a model group, the public model name clients send, with its
// deployments resolved in configuration order.
type Group struct {
	// Name is the public model name.
	Name string
	// Deployments serve the group; treat as read-only.
	Deployments []*Deployment
	// Routing is the group's routing policy, defaults applied
	// (model_groups[].routing, schema_routing.go).
	Routing route.Policy
	// Failover is the group's failover bounds and fallback groups
	// (model_groups[].failover, schema_failover.go).
	Failover Failover
}

type keyEntry struct{ tenant, name string }

// Runtime is a loaded, validated configuration. It is immutable and safe
// for concurrent use; a reload builds a new Runtime.
type Runtime struct {
	server    Server
	identity  string
	keys      map[[sha256.Size]byte]keyEntry
	groups    map[string]*Group
	sorted    []*Group
	providers []*Provider // in file order, nil where a provider was invalid
	file      *File
	loadedAt  time.Time
	version   string
	prices    *pricing.Table    // pricing concern
	redaction *redactionRuntime // redaction concern (schema_redaction.go)
	limits    *LimitSet         // limits concern (schema_limits.go)
	tracing   TracingSettings   // exporter settings (schema_tracing.go)
}

// Server returns the server settings with defaults applied.
func (r *Runtime) Server() Server { return r.server }

// IdentityHeader is the header carrying an identity Envoy established, or
// "".
func (r *Runtime) IdentityHeader() string { return r.identity }

// Authenticate looks a client key up by its SHA-256 digest and returns the
// tenant and the key's configured name.
func (r *Runtime) Authenticate(key string) (tenant, keyName string, ok bool) {
	if key == "" {
		return "", "", false
	}
	e, ok := r.keys[sha256.Sum256([]byte(key))]
	return e.tenant, e.name, ok
}

// Group returns the model group clients call name.
func (r *Runtime) Group(name string) (*Group, bool) {
	g, ok := r.groups[name]
	return g, ok
}

// Groups lists the model groups, sorted by name. The slice is shared:
// do not modify it.
func (r *Runtime) Groups() []*Group { return r.sorted }

// LoadedAt is when this configuration was loaded.
func (r *Runtime) LoadedAt() time.Time { return r.loadedAt }

// Version is a short hash of the file's content (12 hex digits).
func (r *Runtime) Version() string { return r.version }

// sensitiveHeader reports whether a static header probably carries a
// credential, so that Redacted hides its value.
func sensitiveHeader(name string) bool {
	for _, s := range []string{"auth", "key", "token", "secret", "cookie", "password", "signature"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

type redactedCredentials struct {
	Credentials
	// APIKey shows "[REDACTED]" when a key was resolved.
	APIKey *Secret `json:"api_key,omitempty"`
}

type redactedProvider struct {
	ProviderSpec
	Credentials redactedCredentials `json:"credentials"`
}

type redactedFile struct {
	Server      Server             `json:"server"`
	Auth        Auth               `json:"auth"`
	Providers   []redactedProvider `json:"providers"`
	Deployments []DeploymentSpec   `json:"deployments"`
	ModelGroups []ModelGroupSpec   `json:"model_groups"`
	Pricing     redactedPricing    `json:"pricing"`
	Redaction   *Redaction         `json:"redaction,omitempty"`
	Limits      Limits             `json:"limits,omitzero"`
	Tracing     Tracing            `json:"tracing,omitzero"`
}

// Redacted returns the effective configuration as indented JSON:
// {"version", "loaded_at", "config"}, defaults applied, provider keys and
// credential-looking static header values shown as "[REDACTED]", client
// key digests shortened to 8 hex digits.
func (r *Runtime) Redacted() ([]byte, error) {
	f := redactedFile{
		Server:      r.server,
		Auth:        Auth{IdentityHeader: r.identity, Keys: make([]KeySpec, len(r.file.Auth.Keys))},
		Providers:   make([]redactedProvider, len(r.file.Providers)),
		Deployments: make([]DeploymentSpec, len(r.file.Deployments)),
		ModelGroups: r.file.ModelGroups,
		Pricing:     r.redactedPricing(),
		Redaction:   r.redactedRedaction(),
		Limits:      r.limits.Spec,
		Tracing:     r.tracing.Tracing,
	}
	for i, k := range r.file.Auth.Keys {
		if len(k.SHA256) > 8 {
			k.SHA256 = strings.ToLower(k.SHA256[:8]) + "…"
		}
		f.Auth.Keys[i] = k
	}
	for i, p := range r.file.Providers {
		rp := redactedProvider{ProviderSpec: p, Credentials: redactedCredentials{Credentials: p.Credentials}}
		if len(p.Headers) > 0 {
			rp.Headers = maps.Clone(p.Headers)
			for k := range rp.Headers {
				if sensitiveHeader(k) {
					rp.Headers[k] = redacted
				}
			}
		}
		if i < len(r.providers) && r.providers[i] != nil && r.providers[i].APIKey.IsSet() {
			s := r.providers[i].APIKey
			rp.Credentials.APIKey = &s
		}
		f.Providers[i] = rp
	}
	for i, d := range r.file.Deployments {
		w := 1
		if d.Weight != nil {
			w = *d.Weight
		}
		d.Weight = &w
		f.Deployments[i] = d
	}
	out := struct {
		Version  string       `json:"version"`
		LoadedAt time.Time    `json:"loaded_at"`
		Config   redactedFile `json:"config"`
	}{r.version, r.loadedAt, f}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: marshal the redacted configuration: %w", err)
	}
	return append(b, '\n'), nil
}
