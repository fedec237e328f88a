// Package config is llmux's configuration: the schema (these Go types are
// the schema, documented in README.md beside them), loading with strict
// decoding and validation that names the exact field path of every error,
// secrets that never print, a compiled runtime snapshot, and a watcher that
// swaps valid changes in atomically.
package config

import "time"

// File is the root of an llmux configuration file (YAML, snake_case keys).
type File struct {
	// Server holds process-wide settings.
	Server Server `yaml:"server" json:"server"`
	// Auth says how clients are identified.
	Auth Auth `yaml:"auth" json:"auth"`
	// Providers are the upstream APIs, each reached through an Envoy cluster.
	Providers []ProviderSpec `yaml:"providers" json:"providers"`
	// Deployments are models on providers.
	Deployments []DeploymentSpec `yaml:"deployments" json:"deployments"`
	// ModelGroups are the public model names clients send.
	ModelGroups []ModelGroupSpec `yaml:"model_groups" json:"model_groups"`

	// Pricing says where prices come from (pricing concern,
	// schema_pricing.go).
	Pricing Pricing `yaml:"pricing" json:"pricing"`

	// Redaction says what personal data is redacted (redaction concern,
	// schema_redaction.go).
	Redaction Redaction `yaml:"redaction" json:"redaction,omitzero"`
	// Limits are the limits and budgets (schema_limits.go).
	Limits Limits `yaml:"limits" json:"limits,omitzero"`
	// Tracing sends traces to an OpenTelemetry collector
	// (schema_tracing.go).
	Tracing Tracing `yaml:"tracing" json:"tracing,omitzero"`
}

// Server holds process-wide settings. Zero values take the defaults.
type Server struct {
	// ClusterHeader is the header the Envoy route's cluster_header reads
	// (default x-llmux-upstream).
	ClusterHeader string `yaml:"cluster_header" json:"cluster_header"`
	// MetadataNamespace is the Envoy dynamic metadata namespace (default
	// io.llmux).
	MetadataNamespace string `yaml:"metadata_namespace" json:"metadata_namespace"`
	// MaxRequestBodyBytes: larger request bodies get 413 (default 16 MiB,
	// at most 256 MiB).
	MaxRequestBodyBytes int64 `yaml:"max_request_body_bytes" json:"max_request_body_bytes"`
	// MaxResponseBodyBytes caps responses llmux must buffer (default
	// 32 MiB).
	MaxResponseBodyBytes int64 `yaml:"max_response_body_bytes" json:"max_response_body_bytes"`
	// StreamIdleTimeout is llmux's idle bound on a response body: when the
	// upstream sends nothing for this long after its response headers or
	// between body chunks, llmux ends the response with an error
	// (stream_stalled). A Go duration, 1s to 1h (default 240s); keep it
	// below Envoy's stream_idle_timeout, or Envoy resets the stream first.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout" json:"stream_idle_timeout"`
	// MaxBufferedBytes bounds the request bytes llmux holds across all
	// requests in the request-body phase (default 256 MiB; at least
	// max_request_body_bytes). A request past the bound gets 503 with
	// retry-after.
	MaxBufferedBytes int64 `yaml:"max_buffered_bytes" json:"max_buffered_bytes"`
	// EgressAddress is Envoy's egress listener for llmux's own provider calls (failover; schema_egress.go).
	EgressAddress EgressAddress `yaml:"egress_address" json:"egress_address,omitempty"`
}

// Defaults and limits of the server settings.
const (
	// DefaultClusterHeader is server.cluster_header's default.
	DefaultClusterHeader = "x-llmux-upstream"
	// DefaultMetadataNamespace is server.metadata_namespace's default.
	DefaultMetadataNamespace = "io.llmux"
	// DefaultMaxRequestBodyBytes is server.max_request_body_bytes's
	// default (16 MiB).
	DefaultMaxRequestBodyBytes = 16 << 20
	// DefaultMaxResponseBodyBytes is server.max_response_body_bytes's
	// default (32 MiB).
	DefaultMaxResponseBodyBytes = 32 << 20
	// MaxBodyBytes is the largest body limit accepted (256 MiB).
	MaxBodyBytes = 256 << 20
	// DefaultStreamIdleTimeout is server.stream_idle_timeout's default:
	// below the 600s stream_idle_timeout of the shipped Envoy configs.
	DefaultStreamIdleTimeout = 240 * time.Second
	// MinStreamIdleTimeout and MaxStreamIdleTimeout bound
	// server.stream_idle_timeout.
	MinStreamIdleTimeout, MaxStreamIdleTimeout = time.Second, time.Hour
	// DefaultMaxBufferedBytes is server.max_buffered_bytes's default
	// (256 MiB).
	DefaultMaxBufferedBytes = 256 << 20
	// MaxBufferedBytesLimit is the largest server.max_buffered_bytes
	// accepted (64 GiB).
	MaxBufferedBytesLimit = 64 << 30
)

// Auth says how clients are identified.
type Auth struct {
	// IdentityHeader, when set, names a header that Envoy (jwt_authn,
	// ext_authz) fills with the caller's identity; its value is the tenant
	// and no API key is needed. Envoy must strip it from client requests.
	IdentityHeader string `yaml:"identity_header" json:"identity_header,omitempty"`
	// Keys are the client API keys.
	Keys []KeySpec `yaml:"keys" json:"keys"`
}

// KeySpec is one client API key. Exactly one of SHA256, KeyEnv and KeyFile
// is set; the key itself is kept only as its SHA-256 digest.
type KeySpec struct {
	// Name identifies the key in logs and metrics.
	Name string `yaml:"name" json:"name"`
	// Tenant is who the key belongs to.
	Tenant string `yaml:"tenant" json:"tenant"`
	// SHA256 is the hex SHA-256 digest of the key.
	SHA256 string `yaml:"sha256" json:"sha256,omitempty"`
	// KeyEnv names an environment variable holding the key.
	KeyEnv string `yaml:"key_env" json:"key_env,omitempty"`
	// KeyFile names a file holding the key (trailing whitespace trimmed).
	KeyFile string `yaml:"key_file" json:"key_file,omitempty"`
}

// ProviderSpec is an upstream API.
type ProviderSpec struct {
	// Name is unique among providers.
	Name string `yaml:"name" json:"name"`
	// Kind selects the translator (openai, openai_compatible,
	// azure_openai, anthropic, bedrock, gemini, vertex).
	Kind string `yaml:"kind" json:"kind"`
	// Cluster is the Envoy cluster that reaches the provider.
	Cluster string `yaml:"cluster" json:"cluster"`
	// BasePath overrides the kind's default base path.
	BasePath string `yaml:"base_path" json:"base_path,omitempty"`
	// APIVersion is the provider API version (Azure api-version,
	// anthropic-version).
	APIVersion string `yaml:"api_version" json:"api_version,omitempty"`
	// Headers are extra static headers sent to the provider.
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	// ForwardHeaders are client request headers passed through to this
	// provider (lowercase names, e.g. anthropic-beta). Every other client
	// header outside llmux's fixed allow-list is removed before the
	// request goes upstream. Client credentials, the identity and cluster
	// headers, and headers Envoy or llmux manage cannot be listed.
	ForwardHeaders []string `yaml:"forward_headers" json:"forward_headers,omitempty"`
	// Region is the cloud region (bedrock: e.g. us-east-1; vertex and
	// vertex_anthropic: the location, e.g. us-central1).
	Region string `yaml:"region" json:"region,omitempty"`
	// Project is the Google Cloud project (vertex, vertex_anthropic).
	Project string `yaml:"project" json:"project,omitempty"`
	// Host is the provider's host name when it is not the kind's default
	// for the region (AWS SigV4 signs it; it must equal the Host Envoy
	// sends, which auto_host_rewrite takes from the cluster's address).
	Host string `yaml:"host" json:"host,omitempty"`
	// Options are kind-specific settings, documented per provider in
	// docs/providers/ (e.g. azure_openai auth: entra; anthropic
	// default_max_tokens).
	Options map[string]string `yaml:"options" json:"options,omitempty"`
	// Credentials say where the provider's key comes from. Kinds that sign
	// requests with cloud credentials (bedrock: the AWS default chain;
	// vertex, vertex_anthropic: Google Application Default Credentials)
	// need none here.
	Credentials Credentials `yaml:"credentials" json:"credentials"`
}

// Credentials say where a provider key comes from: at most one field is
// set; none means no credential (a local server).
type Credentials struct {
	// APIKeyEnv names an environment variable holding the key.
	APIKeyEnv string `yaml:"api_key_env" json:"api_key_env,omitempty"`
	// APIKeyFile names a file holding the key.
	APIKeyFile string `yaml:"api_key_file" json:"api_key_file,omitempty"`
}

// DeploymentSpec is a model on a provider.
type DeploymentSpec struct {
	// Name is unique among deployments.
	Name string `yaml:"name" json:"name"`
	// Provider names a provider.
	Provider string `yaml:"provider" json:"provider"`
	// Model is the upstream model id.
	Model string `yaml:"model" json:"model"`
	// Weight is the share of traffic among deployments of equal priority
	// (default 1; 0 takes the deployment out of rotation).
	Weight *int `yaml:"weight" json:"weight"`
	// Priority orders deployments: lower is preferred (default 0).
	Priority int `yaml:"priority" json:"priority"`

	// Pricing concern (schema_pricing.go): PriceKey names the price table
	// entry when it differs from what the model resolves to; Price gives
	// the deployment's own price, which beats every table.
	PriceKey string     `yaml:"price_key" json:"price_key,omitempty"`
	Price    *PriceSpec `yaml:"price" json:"price,omitempty"`
}

// ModelGroupSpec is a public model name and the deployments serving it.
type ModelGroupSpec struct {
	// Name is what clients send as "model".
	Name string `yaml:"name" json:"name"`
	// Deployments serving this group.
	Deployments []string `yaml:"deployments" json:"deployments"`
	// Routing chooses among the deployments (schema_routing.go).
	Routing RoutingSpec `yaml:"routing" json:"routing,omitzero"`
	// Failover bounds failover and names fallback groups
	// (schema_failover.go).
	Failover FailoverSpec `yaml:"failover" json:"failover,omitzero"`
}
