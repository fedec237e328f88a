package config

import (
	"crypto/rand"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/llmux/llmux/redact"
)

// Redaction configures PII redaction (docs/redaction.md): named policies,
// and which one applies to a request. The policy of a request is the first
// that names it in: the Envoy route's metadata (redaction_policy), keys,
// tenants, model_groups, then default. The name "none" is the built-in
// policy that redacts nothing.
type Redaction struct {
	// HashKeyEnv or HashKeyFile hold the key of the hash action. Without
	// one, a random key is drawn at each start: hashes are then stable per
	// tenant only until llmux restarts.
	HashKeyEnv  string `yaml:"hash_key_env" json:"hash_key_env,omitempty"`
	HashKeyFile string `yaml:"hash_key_file" json:"hash_key_file,omitempty"`
	// PhoneRegions are the regions (ISO 3166 codes) national phone numbers
	// are read in (default US, GB, DE, FR). Numbers written with a country
	// code are found whatever the regions.
	PhoneRegions []string `yaml:"phone_regions" json:"phone_regions,omitempty"`
	// Detectors are user-defined kinds: a regular expression or a word
	// list each.
	Detectors []DetectorSpec `yaml:"detectors" json:"detectors,omitempty"`
	// Policies are the named policies.
	Policies []RedactionPolicySpec `yaml:"policies" json:"policies,omitempty"`
	// Default is the policy of requests no other setting names (default
	// none).
	Default string `yaml:"default" json:"default,omitempty"`
	// Keys, Tenants and ModelGroups map an API key's name, a tenant, or a
	// model group to a policy.
	Keys        map[string]string `yaml:"keys" json:"keys,omitempty"`
	Tenants     map[string]string `yaml:"tenants" json:"tenants,omitempty"`
	ModelGroups map[string]string `yaml:"model_groups" json:"model_groups,omitempty"`
}

// DetectorSpec is a user-defined detector: exactly one of Pattern and
// Words.
type DetectorSpec struct {
	// Name is the kind (letters, digits, underscores), upper-cased in
	// masks and placeholders: "employee_id" masks as [EMPLOYEE_ID].
	Name string `yaml:"name" json:"name"`
	// Pattern is a regular expression (Go RE2 syntax).
	Pattern string `yaml:"pattern" json:"pattern,omitempty"`
	// Words are words or phrases matched whole and case-insensitively.
	Words []string `yaml:"words" json:"words,omitempty"`
}

// RedactionPolicySpec is a named policy.
type RedactionPolicySpec struct {
	// Name is unique among policies ("none" is taken).
	Name string `yaml:"name" json:"name"`
	// Actions maps a kind to an action: mask, hash, drop, block,
	// reversible or count. Kinds: email, phone, card, iban, ssn, ip,
	// aws_key, api_key, github_token, slack_token, jwt, private_key, the
	// alias secrets (the six secret kinds), and the detectors' names.
	// Kinds left out are not looked for.
	Actions map[string]string `yaml:"actions" json:"actions"`
	// Scope lists the parts of a request read: messages, system,
	// tool_arguments, tool_results, embeddings (default all).
	Scope []string `yaml:"scope" json:"scope,omitempty"`
	// Responses also masks the policy's kinds in responses.
	Responses bool `yaml:"responses" json:"responses,omitempty"`
}

// PolicyNone is the built-in policy that redacts nothing.
const PolicyNone = "none"

// redactionRuntime is the compiled redaction section.
type redactionRuntime struct {
	policies                   map[string]*redact.Policy
	def                        *redact.Policy
	keys, tenants, modelGroups map[string]*redact.Policy
}

// RedactionPolicy returns the named policy: nil for "none" (and ok true),
// ok false for an unknown name.
func (r *Runtime) RedactionPolicy(name string) (p *redact.Policy, ok bool) {
	if name == PolicyNone {
		return nil, true
	}
	if r.redaction == nil {
		return nil, false
	}
	p, ok = r.redaction.policies[name]
	return p, ok
}

// RedactionFor returns the policy of a request by its key's name, tenant
// and model group (the route's metadata, which beats these, is read by the
// processor); nil when none applies.
func (r *Runtime) RedactionFor(keyName, tenant, group string) *redact.Policy {
	rr := r.redaction
	if rr == nil {
		return nil
	}
	if p, ok := rr.keys[keyName]; ok && keyName != "" {
		return p
	}
	if p, ok := rr.tenants[tenant]; ok && tenant != "" {
		return p
	}
	if p, ok := rr.modelGroups[group]; ok && group != "" {
		return p
	}
	return rr.def
}

// redactionKinds are the configuration's kind names.
var redactionKinds = map[string][]redact.Kind{
	"email": {redact.KindEmail}, "phone": {redact.KindPhone}, "card": {redact.KindCard}, "iban": {redact.KindIBAN},
	"ssn": {redact.KindSSN}, "ip": {redact.KindIP}, "aws_key": {redact.KindAWSKey}, "api_key": {redact.KindAPIKey},
	"github_token": {redact.KindGitHub}, "slack_token": {redact.KindSlack}, "jwt": {redact.KindJWT},
	"private_key": {redact.KindPrivateKey}, "secrets": redact.SecretKinds,
}

// validateRedaction compiles the redaction section.
func validateRedaction(c *errs, f *File, rt *Runtime, opts LoadOptions) {
	rs := f.Redaction
	if len(rs.Policies) == 0 && len(rs.Detectors) == 0 && rs.Default == "" && len(rs.Keys)+len(rs.Tenants)+len(rs.ModelGroups) == 0 {
		return
	}
	rr := &redactionRuntime{policies: map[string]*redact.Policy{}}
	var key []byte
	switch {
	case rs.HashKeyEnv != "" && rs.HashKeyFile != "":
		c.add("redaction.hash_key_env", "set hash_key_env or hash_key_file, not both")
	case rs.HashKeyEnv != "":
		if v, ok := readEnv(c, opts, "redaction.hash_key_env", rs.HashKeyEnv); ok {
			key = []byte(v)
		}
	case rs.HashKeyFile != "":
		if v, ok := readFile(c, opts, "redaction.hash_key_file", rs.HashKeyFile); ok {
			key = []byte(v)
		}
	}
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails
	}
	for i, r := range rs.PhoneRegions {
		if !redact.KnownPhoneRegion(r) {
			c.add(fmt.Sprintf("redaction.phone_regions[%d]", i), "%q is not a region of the phone number metadata (ISO 3166 codes such as US, GB)", r)
		}
	}
	custom := map[redact.Kind]redact.Detector{}
	for i, d := range rs.Detectors {
		p := fmt.Sprintf("redaction.detectors[%d]", i)
		k, ok := redact.ParseKind(d.Name)
		switch {
		case !ok:
			c.add(p+".name", "%q must be letters, digits and underscores (at most 32), starting with a letter", d.Name)
			continue
		case k.IsBuiltin() || d.Name == "secrets":
			c.add(p+".name", "%q is a built-in kind", d.Name)
			continue
		case custom[k] != nil:
			c.add(p+".name", "%q is defined twice", d.Name)
			continue
		case (d.Pattern == "") == (len(d.Words) == 0):
			c.add(p, "set exactly one of pattern and words")
			continue
		}
		var det redact.Detector
		var err error
		if d.Pattern != "" {
			det, err = redact.NewPattern(k, d.Pattern)
		} else {
			det, err = redact.NewWords(k, d.Words)
		}
		if err != nil {
			c.add(p, "%s", strings.TrimPrefix(err.Error(), "redact: "))
			continue
		}
		custom[k] = det
	}
	for i, ps := range rs.Policies {
		p := fmt.Sprintf("redaction.policies[%d]", i)
		if !checkName(c, p+".name", ps.Name) {
			continue
		}
		if ps.Name == PolicyNone || rr.policies[ps.Name] != nil {
			c.add(p+".name", "%q is taken", ps.Name)
			continue
		}
		o := redact.PolicyOptions{Name: ps.Name, Actions: map[redact.Kind]redact.Action{}, Custom: custom,
			PhoneRegions: rs.PhoneRegions, Responses: ps.Responses, HashKey: key}
		ok := true
		names := make([]string, 0, len(ps.Actions))
		for n := range ps.Actions {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			c.add(p+".actions", "must name at least one kind")
			ok = false
		}
		for _, n := range names {
			a, err := redact.ParseAction(ps.Actions[n])
			if err != nil {
				c.add(p+".actions."+n, "%s", err)
				ok = false
				continue
			}
			kinds := redactionKinds[n]
			if kinds == nil {
				if k, valid := redact.ParseKind(n); valid && custom[k] != nil {
					kinds = []redact.Kind{k}
				}
			}
			if kinds == nil {
				c.add(p+".actions."+n, "unknown kind (built in: %s; or a name from redaction.detectors)", strings.Join(sortedKeys(redactionKinds), ", "))
				ok = false
				continue
			}
			for _, k := range kinds {
				if _, dup := o.Actions[k]; dup && n == "secrets" {
					continue // a kind named on its own beats the alias
				}
				o.Actions[k] = a
			}
		}
		for j, s := range ps.Scope {
			sc, err := redact.ParseScope(s)
			if err != nil {
				c.add(fmt.Sprintf("%s.scope[%d]", p, j), "%s", err)
				ok = false
			}
			o.Scope |= sc
		}
		if !ok {
			rr.policies[ps.Name] = nil
			continue
		}
		pol, err := redact.NewPolicy(o)
		if err != nil {
			c.add(p, "%s", strings.TrimPrefix(err.Error(), "redact: "))
			continue
		}
		rr.policies[ps.Name] = pol
	}
	ref := func(path, name string) *redact.Policy {
		if name == PolicyNone {
			return nil
		}
		pol, ok := rr.policies[name]
		if !ok {
			c.add(path, "policy %q is not defined in redaction.policies", name)
		}
		return pol
	}
	if rs.Default != "" {
		rr.def = ref("redaction.default", rs.Default)
	}
	mapRefs := func(field string, m map[string]string) map[string]*redact.Policy {
		out := make(map[string]*redact.Policy, len(m))
		for _, k := range sortedKeys(m) {
			out[k] = ref("redaction."+field+"."+k, m[k])
		}
		return out
	}
	rr.keys, rr.tenants, rr.modelGroups = mapRefs("keys", rs.Keys), mapRefs("tenants", rs.Tenants), mapRefs("model_groups", rs.ModelGroups)
	for name := range rs.Keys {
		if !slices.ContainsFunc(f.Auth.Keys, func(k KeySpec) bool { return k.Name == name }) {
			c.add("redaction.keys."+name, "no key of auth.keys has this name")
		}
	}
	for name := range rs.ModelGroups {
		if !slices.ContainsFunc(f.ModelGroups, func(g ModelGroupSpec) bool { return g.Name == name }) {
			c.add("redaction.model_groups."+name, "no model group has this name")
		}
	}
	rt.redaction = rr
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// redactedRedaction is the redaction section as /config shows it: word
// lists (which may name confidential things) by their length only, the hash
// key by where it comes from.
func (r *Runtime) redactedRedaction() *Redaction {
	rs := r.file.Redaction
	if r.redaction == nil {
		return nil
	}
	out := rs
	out.Detectors = make([]DetectorSpec, len(rs.Detectors))
	for i, d := range rs.Detectors {
		if len(d.Words) > 0 {
			d.Words = []string{fmt.Sprintf("[%d words]", len(d.Words))}
		}
		out.Detectors[i] = d
	}
	return &out
}
