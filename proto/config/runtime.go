package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Secret holds a credential. It never prints its value: String, GoString,
// Format, MarshalJSON and MarshalText all give "[REDACTED]".
type Secret struct{ v string }

const redacted = "[REDACTED]"

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{v: v} }

// Value returns the secret itself, for use on the wire.
func (s Secret) Value() string { return s.v }

// IsSet reports whether the secret has a value.
func (s Secret) IsSet() bool { return s.v != "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter, so no verb prints the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Provider is a resolved provider.
type Provider struct {
	Name, Kind, Cluster, BasePath, APIVersion string
	// Headers are extra static headers for the provider.
	Headers map[string]string
	// APIKey is the provider credential (unset when none is configured).
	APIKey Secret
}

// Deployment is a resolved deployment.
type Deployment struct {
	Name, Model      string
	Weight, Priority int
	Provider         *Provider
}

// Group is a model group with its deployments resolved.
type Group struct {
	Name        string
	Deployments []*Deployment
}

type keyEntry struct{ tenant, name string }

// Runtime is a loaded, validated configuration. It is immutable and safe
// for concurrent use.
type Runtime struct {
	server   Server
	identity string
	keys     map[[sha256.Size]byte]keyEntry
	groups   map[string]*Group
	sorted   []*Group
	file     *File
	loadedAt time.Time
	version  string
}

// Server returns the server settings with defaults applied.
func (r *Runtime) Server() Server { return r.server }

// IdentityHeader is the header carrying an identity Envoy established, or
// "".
func (r *Runtime) IdentityHeader() string { return r.identity }

// Authenticate looks a client key up by its SHA-256 digest.
func (r *Runtime) Authenticate(key string) (tenant, keyName string, ok bool) {
	e, ok := r.keys[sha256.Sum256([]byte(key))]
	return e.tenant, e.name, ok
}

// Group returns the model group clients call name.
func (r *Runtime) Group(name string) (*Group, bool) {
	g, ok := r.groups[name]
	return g, ok
}

// Groups lists the model groups, sorted by name.
func (r *Runtime) Groups() []*Group { return r.sorted }

// LoadedAt is when this configuration was loaded.
func (r *Runtime) LoadedAt() time.Time { return r.loadedAt }

// Version is a short hash of the file's content.
func (r *Runtime) Version() string { return r.version }

// Redacted returns the effective configuration as indented JSON, defaults
// applied, secrets replaced by "[REDACTED]" and key digests shortened.
func (r *Runtime) Redacted() ([]byte, error) {
	f := *r.file
	f.Server = r.server
	f.Auth.Keys = make([]KeySpec, len(r.file.Auth.Keys))
	for i, k := range r.file.Auth.Keys {
		if len(k.SHA256) >= 8 {
			k.SHA256 = k.SHA256[:8] + "…"
		}
		f.Auth.Keys[i] = k
	}
	f.Deployments = make([]DeploymentSpec, len(r.file.Deployments))
	for i, d := range r.file.Deployments {
		w := 1
		if d.Weight != nil {
			w = *d.Weight
		}
		d.Weight = &w
		f.Deployments[i] = d
	}
	out := struct {
		Version  string    `json:"version"`
		LoadedAt time.Time `json:"loaded_at"`
		Config   File      `json:"config"`
	}{r.version, r.loadedAt, f}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return append(b, '\n'), nil
}

// LoadOptions tune loading.
type LoadOptions struct {
	// Kinds are the valid provider kinds.
	Kinds []string
	// Getenv reads the environment; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
	// ReadFile reads key files; nil means os.ReadFile.
	ReadFile func(string) ([]byte, error)
	// BaseDir resolves relative key_file and api_key_file paths; Load sets
	// it to the configuration file's directory when empty.
	BaseDir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Load reads and validates a configuration file.
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

var (
	headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_` + "`" + `|~-]+$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	hex64      = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// validHeaderValue rejects control characters (CR/LF would split headers).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// Parse validates configuration bytes. The error, when not nil, is an
// Errors listing every problem with its field path.
func Parse(data []byte, opts LoadOptions) (*Runtime, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.LookupEnv
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &errs{}
	f := decodeFile(data, c)
	if f == nil {
		return nil, c.list
	}
	rt := &Runtime{
		file:     f,
		keys:     map[[sha256.Size]byte]keyEntry{},
		groups:   map[string]*Group{},
		loadedAt: opts.Now(),
	}
	sum := sha256.Sum256(data)
	rt.version = hex.EncodeToString(sum[:6])

	// server
	s := f.Server
	if s.ClusterHeader == "" {
		s.ClusterHeader = DefaultClusterHeader
	} else if !headerName.MatchString(s.ClusterHeader) {
		c.add("server.cluster_header", "%q is not a lowercase header name", s.ClusterHeader)
	}
	if s.MetadataNamespace == "" {
		s.MetadataNamespace = DefaultMetadataNamespace
	}
	checkLimit := func(path string, v *int64, def int64) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0 || *v > maxBodyLimit:
			c.add(path, "must be between 1 and %d", int64(maxBodyLimit))
		}
	}
	checkLimit("server.max_request_body_bytes", &s.MaxRequestBodyBytes, DefaultMaxRequestBodyBytes)
	checkLimit("server.max_response_body_bytes", &s.MaxResponseBodyBytes, DefaultMaxResponseBodyBytes)
	rt.server = s

	// auth
	if h := f.Auth.IdentityHeader; h != "" {
		if !headerName.MatchString(h) || strings.HasPrefix(h, ":") {
			c.add("auth.identity_header", "%q is not a lowercase header name", h)
		}
		rt.identity = h
	}
	keyNames := map[string]bool{}
	for i, k := range f.Auth.Keys {
		p := fmt.Sprintf("auth.keys[%d]", i)
		unique(c, keyNames, p+".name", k.Name)
		if k.Tenant == "" {
			c.add(p+".tenant", "must be set")
		}
		set := count(k.SHA256 != "", k.KeyEnv != "", k.KeyFile != "")
		if set != 1 {
			c.add(p, "set exactly one of sha256, key_env, key_file")
			continue
		}
		var digest [sha256.Size]byte
		switch {
		case k.SHA256 != "":
			if !hex64.MatchString(k.SHA256) {
				c.add(p+".sha256", "must be 64 hex characters")
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

	// providers
	providers := map[string]*Provider{}
	for i, ps := range f.Providers {
		p := fmt.Sprintf("providers[%d]", i)
		ok := unique(c, nil, p+".name", ps.Name)
		if ok && providers[ps.Name] != nil {
			c.add(p+".name", "duplicate name %q", ps.Name)
			ok = false
		}
		if !slices.Contains(opts.Kinds, ps.Kind) {
			if ps.Kind == "" {
				c.add(p+".kind", "must be set (one of: %s)", strings.Join(opts.Kinds, ", "))
			} else {
				c.add(p+".kind", "unknown kind %q (want one of: %s)", ps.Kind, strings.Join(opts.Kinds, ", "))
			}
		}
		if ps.Cluster == "" {
			c.add(p+".cluster", "must be set")
		} else if !validHeaderValue(ps.Cluster) || strings.TrimSpace(ps.Cluster) != ps.Cluster {
			c.add(p+".cluster", "%q is not a valid header value", ps.Cluster)
		}
		if ps.BasePath != "" && !strings.HasPrefix(ps.BasePath, "/") {
			c.add(p+".base_path", "must start with /")
		}
		for k, v := range ps.Headers {
			if !headerName.MatchString(k) {
				c.add(p+".headers."+k, "not a lowercase header name")
			} else if !validHeaderValue(v) {
				c.add(p+".headers."+k, "value has control characters")
			}
		}
		prov := &Provider{Name: ps.Name, Kind: ps.Kind, Cluster: ps.Cluster, BasePath: ps.BasePath, APIVersion: ps.APIVersion, Headers: ps.Headers}
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
		if prov.APIKey.IsSet() && !validHeaderValue(prov.APIKey.Value()) {
			c.add(p+".credentials", "the key has control characters")
		}
		if ok {
			providers[ps.Name] = prov
		}
	}

	// deployments
	deployments := map[string]*Deployment{}
	for i, ds := range f.Deployments {
		p := fmt.Sprintf("deployments[%d]", i)
		ok := unique(c, nil, p+".name", ds.Name)
		if ok && deployments[ds.Name] != nil {
			c.add(p+".name", "duplicate name %q", ds.Name)
			ok = false
		}
		prov := providers[ds.Provider]
		switch {
		case ds.Provider == "":
			c.add(p+".provider", "must be set")
		case prov == nil:
			c.add(p+".provider", "unknown provider %q", ds.Provider)
		}
		if ds.Model == "" {
			c.add(p+".model", "must be set")
		}
		w := 1
		if ds.Weight != nil {
			w = *ds.Weight
			if w < 0 {
				c.add(p+".weight", "must be >= 0")
			}
		}
		if ds.Priority < 0 {
			c.add(p+".priority", "must be >= 0")
		}
		if ok {
			deployments[ds.Name] = &Deployment{Name: ds.Name, Model: ds.Model, Weight: w, Priority: ds.Priority, Provider: prov}
		}
	}

	// model groups
	if len(f.ModelGroups) == 0 {
		c.add("model_groups", "at least one model group is required")
	}
	for i, gs := range f.ModelGroups {
		p := fmt.Sprintf("model_groups[%d]", i)
		ok := unique(c, nil, p+".name", gs.Name)
		if ok && rt.groups[gs.Name] != nil {
			c.add(p+".name", "duplicate name %q", gs.Name)
			ok = false
		}
		if len(gs.Deployments) == 0 {
			c.add(p+".deployments", "at least one deployment is required")
		}
		g := &Group{Name: gs.Name}
		seen := map[string]bool{}
		for j, dn := range gs.Deployments {
			dp := fmt.Sprintf("%s.deployments[%d]", p, j)
			switch d := deployments[dn]; {
			case seen[dn]:
				c.add(dp, "deployment %q listed twice", dn)
			case d == nil:
				c.add(dp, "unknown deployment %q", dn)
			default:
				g.Deployments = append(g.Deployments, d)
			}
			seen[dn] = true
		}
		if ok {
			rt.groups[gs.Name] = g
			rt.sorted = append(rt.sorted, g)
		}
	}
	if len(c.list) > 0 {
		return nil, c.list
	}
	slices.SortFunc(rt.sorted, func(a, b *Group) int { return strings.Compare(a.Name, b.Name) })
	return rt, nil
}

// unique checks a required name; with a set it also rejects duplicates.
func unique(c *errs, set map[string]bool, path, name string) bool {
	if name == "" {
		c.add(path, "must be set")
		return false
	}
	if set != nil {
		if set[name] {
			c.add(path, "duplicate name %q", name)
			return false
		}
		set[name] = true
	}
	return true
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

func readEnv(c *errs, opts LoadOptions, path, name string) (string, bool) {
	if !envName.MatchString(name) {
		c.add(path, "%q is not an environment variable name", name)
		return "", false
	}
	v, ok := opts.Getenv(name)
	if !ok || strings.TrimSpace(v) == "" {
		c.add(path, "environment variable %s is not set", name)
		return "", false
	}
	return strings.TrimSpace(v), true
}

func readFile(c *errs, opts LoadOptions, path, name string) (string, bool) {
	if !filepath.IsAbs(name) && opts.BaseDir != "" {
		name = filepath.Join(opts.BaseDir, name)
	}
	b, err := opts.ReadFile(name)
	if err != nil {
		// The error names the file, never its content.
		c.add(path, "cannot read %s: %v", name, errorsCause(err))
		return "", false
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		c.add(path, "%s is empty", name)
		return "", false
	}
	return v, true
}

// errorsCause shortens *PathError messages to their cause.
func errorsCause(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
