package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

// LoadOptions tune loading.
type LoadOptions struct {
	// Kinds are the valid provider kinds.
	Kinds []string
	// Getenv reads the environment; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
	// ReadFile reads the files the configuration refers to (key files,
	// credential files); nil means os.ReadFile. Every such file must be
	// read through it: Store records what it reads to watch those files
	// and to see when they change.
	ReadFile func(string) ([]byte, error)
	// BaseDir resolves relative key_file and api_key_file paths; Load and
	// NewStore set it to the configuration file's directory when empty.
	BaseDir string
	// Now is the clock for Runtime.LoadedAt; nil means time.Now.
	Now func() time.Time
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.Getenv == nil {
		o.Getenv = os.LookupEnv
	}
	if o.ReadFile == nil {
		o.ReadFile = os.ReadFile
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Load reads and validates a configuration file. Relative key files
// resolve against the file's directory unless opts.BaseDir is set. A
// validation error wraps an Errors.
func Load(path string, opts LoadOptions) (*Runtime, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(path)
	}
	rt, err := Parse(data, opts)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return rt, nil
}

// Version is the short content hash Runtime.Version reports for data.
func Version(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}

var (
	headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_` + "`" + `|~-]+$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hex64      = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// reservedHeaders are managed by Envoy or llmux and cannot be set as a
// provider's static header or used as the identity header.
var reservedHeaders = []string{"host", "content-length", "content-type", "transfer-encoding", "connection", "te", "upgrade", "keep-alive", "proxy-connection"}

// validHeaderValue rejects control characters (CR/LF would split headers).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// checkName checks a required name or label: set, no control characters,
// no surrounding spaces.
func checkName(c *errs, path, name string) bool {
	switch {
	case name == "":
		c.add(path, "must be set")
	case strings.TrimSpace(name) != name:
		c.add(path, "%q has leading or trailing spaces", name)
	case strings.ContainsFunc(name, unicode.IsControl):
		c.add(path, "%q has control characters", name)
	default:
		return true
	}
	return false
}

// checkHeaderName checks a lowercase HTTP header name.
func checkHeaderName(c *errs, path, name string) bool {
	switch {
	case !headerName.MatchString(name):
		c.add(path, "%q is not a valid lowercase header name", name)
	case slices.Contains(reservedHeaders, name):
		c.add(path, "%q is managed by Envoy and llmux and cannot be set here", name)
	default:
		return true
	}
	return false
}

// Parse validates configuration bytes. The error, when not nil, is an
// Errors listing every problem with its field path, sorted by path.
func Parse(data []byte, opts LoadOptions) (*Runtime, error) {
	opts = opts.withDefaults()
	c := &errs{}
	f := decodeFile(data, c)
	if f == nil || c.big {
		return nil, c.result()
	}
	rt := &Runtime{
		file:     f,
		keys:     map[[sha256.Size]byte]keyEntry{},
		groups:   map[string]*Group{},
		loadedAt: opts.Now(),
		version:  Version(data),
	}
	validateServer(c, f, rt)
	validateAuth(c, f, rt, opts)
	providers := validateProviders(c, f, rt, opts)
	deployments := validateDeployments(c, f, providers)
	validatePricing(c, f, rt, opts, deployments)
	validateGroups(c, f, rt, deployments)
	validateRedaction(c, f, rt, opts)
	validateLimits(c, f, rt, opts, deployments)
	validateTracing(c, f, rt, opts)
	if err := c.result(); err != nil {
		return nil, err
	}
	slices.SortFunc(rt.sorted, func(a, b *Group) int { return strings.Compare(a.Name, b.Name) })
	return rt, nil
}

func validateServer(c *errs, f *File, rt *Runtime) {
	s := f.Server
	if s.ClusterHeader == "" {
		s.ClusterHeader = DefaultClusterHeader
	} else {
		checkHeaderName(c, "server.cluster_header", s.ClusterHeader)
	}
	switch {
	case s.MetadataNamespace == "":
		s.MetadataNamespace = DefaultMetadataNamespace
	case strings.ContainsFunc(s.MetadataNamespace, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		c.add("server.metadata_namespace", "%q must not contain spaces or control characters", s.MetadataNamespace)
	}
	checkLimit := func(path string, v *int64, def int64) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0 || *v > MaxBodyBytes:
			c.add(path, "must be between 1 and %d (256 MiB), got %d", int64(MaxBodyBytes), *v)
		}
	}
	checkLimit("server.max_request_body_bytes", &s.MaxRequestBodyBytes, DefaultMaxRequestBodyBytes)
	checkLimit("server.max_response_body_bytes", &s.MaxResponseBodyBytes, DefaultMaxResponseBodyBytes)
	switch d := s.StreamIdleTimeout; {
	case d == 0:
		s.StreamIdleTimeout = DefaultStreamIdleTimeout
	case d < MinStreamIdleTimeout || d > MaxStreamIdleTimeout:
		c.add("server.stream_idle_timeout", "must be between %s and %s, got %s", MinStreamIdleTimeout, MaxStreamIdleTimeout, d)
	}
	switch b := &s.MaxBufferedBytes; {
	case *b == 0:
		*b = max(DefaultMaxBufferedBytes, s.MaxRequestBodyBytes)
	case *b < 0 || *b > MaxBufferedBytesLimit:
		c.add("server.max_buffered_bytes", "must be between max_request_body_bytes and %d (64 GiB), got %d", int64(MaxBufferedBytesLimit), *b)
	case *b < s.MaxRequestBodyBytes:
		c.add("server.max_buffered_bytes", "%d is less than max_request_body_bytes (%d): a body of the largest allowed size could never be served", *b, s.MaxRequestBodyBytes)
	}
	validateEgress(c, &s)
	rt.server = s
}

func validateAuth(c *errs, f *File, rt *Runtime, opts LoadOptions) {
	if h := f.Auth.IdentityHeader; h != "" {
		switch {
		case !checkHeaderName(c, "auth.identity_header", h):
		case h == rt.server.ClusterHeader:
			c.add("auth.identity_header", "%q is also server.cluster_header", h)
		case h == "authorization" || h == "x-api-key" || h == "api-key":
			c.add("auth.identity_header", "%q carries client API keys; use a dedicated header", h)
		}
		rt.identity = h
	}
	keyNames := map[string]int{}
	for i, k := range f.Auth.Keys {
		p := fmt.Sprintf("auth.keys[%d]", i)
		if checkName(c, p+".name", k.Name) {
			if j, dup := keyNames[k.Name]; dup {
				c.add(p+".name", "duplicate name %q (also auth.keys[%d])", k.Name, j)
			}
			keyNames[k.Name] = i
		}
		checkName(c, p+".tenant", k.Tenant)
		switch n := count(k.SHA256 != "", k.KeyEnv != "", k.KeyFile != ""); {
		case n == 0:
			c.add(p, "set one of sha256, key_env, key_file")
			continue
		case n > 1:
			c.add(p, "set only one of sha256, key_env, key_file")
			continue
		}
		var digest [sha256.Size]byte
		switch {
		case k.SHA256 != "":
			if !hex64.MatchString(k.SHA256) {
				c.add(p+".sha256", "must be 64 hex characters (the SHA-256 digest of the key, not the key)")
				continue
			}
			_, _ = hex.Decode(digest[:], []byte(strings.ToLower(k.SHA256)))
		case k.KeyEnv != "":
			v, ok := readEnv(c, opts, p+".key_env", k.KeyEnv)
			if !ok {
				continue
			}
			digest = sha256.Sum256([]byte(v))
		default:
			v, ok := readFile(c, opts, p+".key_file", k.KeyFile)
			if !ok {
				continue
			}
			digest = sha256.Sum256([]byte(v))
		}
		if prev, dup := rt.keys[digest]; dup {
			c.add(p, "the same key is already configured as %q", prev.name)
			continue
		}
		rt.keys[digest] = keyEntry{tenant: k.Tenant, name: k.Name}
	}
}

func validateProviders(c *errs, f *File, rt *Runtime, opts LoadOptions) map[string]*Provider {
	providers := map[string]*Provider{}
	names := map[string]int{}
	rt.providers = make([]*Provider, len(f.Providers))
	for i, ps := range f.Providers {
		p := fmt.Sprintf("providers[%d]", i)
		ok := checkName(c, p+".name", ps.Name)
		if ok {
			if j, dup := names[ps.Name]; dup {
				c.add(p+".name", "duplicate name %q (also providers[%d])", ps.Name, j)
				ok = false
			} else {
				names[ps.Name] = i
			}
		}
		switch {
		case slices.Contains(opts.Kinds, ps.Kind):
		case len(opts.Kinds) == 0:
			c.add(p+".kind", "no provider kinds are available in this build")
		case ps.Kind == "":
			c.add(p+".kind", "must be set (one of: %s)", strings.Join(opts.Kinds, ", "))
		default:
			c.add(p+".kind", "unknown kind %q (want one of: %s)", ps.Kind, strings.Join(opts.Kinds, ", "))
		}
		switch {
		case ps.Cluster == "":
			c.add(p+".cluster", "must be set")
		case !validHeaderValue(ps.Cluster) || strings.TrimSpace(ps.Cluster) != ps.Cluster:
			c.add(p+".cluster", "%q is not a valid header value", ps.Cluster)
		}
		if b := ps.BasePath; b != "" {
			switch {
			case !strings.HasPrefix(b, "/"):
				c.add(p+".base_path", "%q must start with /", b)
			case strings.ContainsAny(b, "?# \t") || !validHeaderValue(b):
				c.add(p+".base_path", "%q must be a plain path (no query, fragment, spaces or control characters)", b)
			}
		}
		if !validHeaderValue(ps.APIVersion) || strings.TrimSpace(ps.APIVersion) != ps.APIVersion {
			c.add(p+".api_version", "%q is not a valid header value", ps.APIVersion)
		}
		for k, v := range ps.Headers {
			hp := p + ".headers." + k
			if checkHeaderName(c, hp, k) {
				switch {
				case k == rt.server.ClusterHeader:
					c.add(hp, "%q is server.cluster_header, which llmux sets", k)
				case !validHeaderValue(v):
					c.add(hp, "the value has control characters")
				}
			}
		}
		prov := &Provider{Name: ps.Name, Kind: ps.Kind, Cluster: ps.Cluster, BasePath: ps.BasePath, APIVersion: ps.APIVersion, Headers: ps.Headers,
			ForwardHeaders: checkForwardHeaders(c, p+".forward_headers", ps, rt), Region: ps.Region, Project: ps.Project, Host: ps.Host, Options: ps.Options}
		if ps.Host != "" && (strings.ContainsAny(ps.Host, "/ \t") || !validHeaderValue(ps.Host)) {
			c.add(p+".host", "%q is not a host name", ps.Host)
		}
		switch ps.Kind {
		case "bedrock":
			if ps.Region == "" {
				c.add(p+".region", "must be set for kind bedrock")
			}
		case "vertex", "vertex_anthropic":
			if ps.Region == "" {
				c.add(p+".region", "must be set for kind %s (the Vertex location)", ps.Kind)
			}
			if ps.Project == "" {
				c.add(p+".project", "must be set for kind %s", ps.Kind)
			}
		}
		for _, fv := range []struct{ field, v string }{{"region", ps.Region}, {"project", ps.Project}} {
			if strings.ContainsFunc(fv.v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
				c.add(p+"."+fv.field, "%q must not contain spaces or control characters", fv.v)
			}
		}
		for k, v := range ps.Options {
			switch op := p + ".options." + k; {
			case k == "" || strings.ContainsFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
				c.add(op, "%q is not an option name", k)
			case !validHeaderValue(v):
				c.add(op, "the value has control characters")
			}
		}
		if prov.Headers == nil {
			prov.Headers = map[string]string{}
		}
		if prov.Options == nil {
			prov.Options = map[string]string{}
		}
		cr := ps.Credentials
		switch {
		case cr.APIKeyEnv != "" && cr.APIKeyFile != "":
			c.add(p+".credentials", "set at most one of api_key_env, api_key_file")
		case cr.APIKeyEnv != "":
			if v, ok := readEnv(c, opts, p+".credentials.api_key_env", cr.APIKeyEnv); ok {
				prov.APIKey = NewSecret(v)
			}
		case cr.APIKeyFile != "":
			if v, ok := readFile(c, opts, p+".credentials.api_key_file", cr.APIKeyFile); ok {
				prov.APIKey = NewSecret(v)
			}
		}
		rt.providers[i] = prov
		if ok {
			providers[ps.Name] = prov
		}
	}
	return providers
}

// ClientCredentialHeaders are the request headers that carry a client's
// credential: llmux reads its own from the first three and never forwards
// any of them.
var ClientCredentialHeaders = []string{"authorization", "x-api-key", "api-key", "x-goog-api-key", "proxy-authorization", "cookie"}

// unforwardable are headers that a provider's forward_headers may not
// name, beyond the credentials and reservedHeaders: llmux sets
// x-request-id and needs uncompressed responses (accept-encoding).
var unforwardable = []string{"x-request-id", "accept-encoding"}

// checkForwardHeaders validates a provider's forward_headers and returns
// them.
func checkForwardHeaders(c *errs, path string, ps ProviderSpec, rt *Runtime) []string {
	seen := make(map[string]int, len(ps.ForwardHeaders))
	out := make([]string, 0, len(ps.ForwardHeaders))
	for i, h := range ps.ForwardHeaders {
		hp := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case strings.HasPrefix(h, ":"):
			c.add(hp, "%q is a pseudo-header; Envoy and llmux manage those", h)
		case !checkHeaderName(c, hp, h):
		case slices.Contains(ClientCredentialHeaders, h):
			c.add(hp, "%q carries client credentials, which never go upstream", h)
		case h == rt.server.ClusterHeader:
			c.add(hp, "%q is server.cluster_header, which llmux sets", h)
		case h == rt.identity:
			c.add(hp, "%q is auth.identity_header, which never goes upstream", h)
		case strings.HasPrefix(h, "x-envoy-"):
			c.add(hp, "%q is an Envoy header; Envoy's configuration decides what happens to x-envoy-* headers", h)
		case slices.Contains(unforwardable, h):
			c.add(hp, "%q is managed by llmux and cannot be forwarded", h)
		default:
			if j, dup := seen[h]; dup {
				c.add(hp, "%q is listed twice (also %s[%d])", h, path, j)
				continue
			}
			if _, static := ps.Headers[h]; static {
				c.add(hp, "%q is also a static header of this provider (headers.%s)", h, h)
				continue
			}
			seen[h] = i
			out = append(out, h)
		}
	}
	return out
}

func validateDeployments(c *errs, f *File, providers map[string]*Provider) map[string]*Deployment {
	deployments := map[string]*Deployment{}
	names := map[string]int{}
	for i, ds := range f.Deployments {
		p := fmt.Sprintf("deployments[%d]", i)
		ok := checkName(c, p+".name", ds.Name)
		if ok {
			if j, dup := names[ds.Name]; dup {
				c.add(p+".name", "duplicate name %q (also deployments[%d])", ds.Name, j)
				ok = false
			} else {
				names[ds.Name] = i
			}
		}
		prov := providers[ds.Provider]
		switch {
		case ds.Provider == "":
			c.add(p+".provider", "must be set")
		case prov == nil:
			c.add(p+".provider", "unknown provider %q", ds.Provider)
		}
		checkName(c, p+".model", ds.Model)
		w := 1
		if ds.Weight != nil {
			w = *ds.Weight
			if w < 0 {
				c.add(p+".weight", "must be >= 0, got %d", w)
			}
		}
		if ds.Priority < 0 {
			c.add(p+".priority", "must be >= 0, got %d", ds.Priority)
		}
		if ok {
			deployments[ds.Name] = &Deployment{Name: ds.Name, Model: ds.Model, Weight: w, Priority: ds.Priority, Provider: prov}
		}
	}
	return deployments
}

func validateGroups(c *errs, f *File, rt *Runtime, deployments map[string]*Deployment) {
	if len(f.ModelGroups) == 0 {
		c.add("model_groups", "at least one model group is required")
	}
	names := map[string]int{}
	for i, gs := range f.ModelGroups {
		p := fmt.Sprintf("model_groups[%d]", i)
		ok := checkName(c, p+".name", gs.Name)
		if ok {
			if j, dup := names[gs.Name]; dup {
				c.add(p+".name", "duplicate name %q (also model_groups[%d])", gs.Name, j)
				ok = false
			} else {
				names[gs.Name] = i
			}
		}
		if len(gs.Deployments) == 0 {
			c.add(p+".deployments", "at least one deployment is required")
		}
		g := &Group{Name: gs.Name, Routing: compileRouting(c, p+".routing", gs.Routing),
			Failover: compileFailover(c, p+".failover", gs.Failover)}
		seen := map[string]bool{}
		inRotation := false
		for j, dn := range gs.Deployments {
			dp := fmt.Sprintf("%s.deployments[%d]", p, j)
			switch d := deployments[dn]; {
			case seen[dn]:
				c.add(dp, "deployment %q is listed twice", dn)
			case dn == "":
				c.add(dp, "must be set")
			case d == nil:
				c.add(dp, "unknown deployment %q", dn)
			default:
				g.Deployments = append(g.Deployments, d)
				inRotation = inRotation || d.Weight > 0
			}
			seen[dn] = true
		}
		if len(g.Deployments) > 0 && len(g.Deployments) == len(gs.Deployments) && !inRotation {
			c.add(p+".deployments", "every deployment has weight 0, so none can serve the group")
		}
		if ok {
			rt.groups[gs.Name] = g
			rt.sorted = append(rt.sorted, g)
		}
	}
	resolveFallbacks(c, f, rt) // schema_failover.go
}

func count(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// readEnv reads a key from the environment. Errors name the variable but
// never echo an invalid "name", which may be a pasted key.
func readEnv(c *errs, opts LoadOptions, path, name string) (string, bool) {
	if !envName.MatchString(name) {
		c.add(path, "not a valid environment variable name (give the variable's name, not the key)")
		return "", false
	}
	v, ok := opts.Getenv(name)
	if !ok || strings.TrimSpace(v) == "" {
		c.add(path, "environment variable %s is not set", name)
		return "", false
	}
	v = strings.TrimSpace(v)
	if !validHeaderValue(v) {
		c.add(path, "environment variable %s holds control characters", name)
		return "", false
	}
	return v, true
}

// readFile reads a key from a file. Errors name the file, never its
// content.
func readFile(c *errs, opts LoadOptions, path, name string) (string, bool) {
	if strings.ContainsFunc(name, unicode.IsControl) {
		c.add(path, "not a valid file name")
		return "", false
	}
	if !filepath.IsAbs(name) && opts.BaseDir != "" {
		name = filepath.Join(opts.BaseDir, name)
	}
	b, err := opts.ReadFile(name)
	if err != nil {
		c.add(path, "cannot read %s: %v", name, errorsCause(err))
		return "", false
	}
	v := strings.TrimRight(string(b), "\r\n")
	switch {
	case strings.TrimSpace(v) == "":
		c.add(path, "%s is empty", name)
	case !validHeaderValue(v) || strings.TrimSpace(v) != v:
		c.add(path, "%s holds more than one line or surrounding spaces", name)
	default:
		return v, true
	}
	return "", false
}

// errorsCause shortens *fs.PathError messages to their cause (the path is
// already in the message).
func errorsCause(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
