package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// Scope says which parts of a request a policy reads. Zero means all.
type Scope uint8

// The scopes.
const (
	// ScopeMessages: the content of user and assistant messages (text and
	// text parts).
	ScopeMessages Scope = 1 << iota
	// ScopeSystem: system and developer messages.
	ScopeSystem
	// ScopeToolArguments: the arguments of the assistant's tool calls.
	ScopeToolArguments
	// ScopeToolResults: the content of tool messages.
	ScopeToolResults
	// ScopeEmbeddings: the input of embeddings requests.
	ScopeEmbeddings

	// ScopeAll is every part.
	ScopeAll = ScopeMessages | ScopeSystem | ScopeToolArguments | ScopeToolResults | ScopeEmbeddings
)

var scopeNames = []struct {
	name string
	s    Scope
}{{"messages", ScopeMessages}, {"system", ScopeSystem}, {"tool_arguments", ScopeToolArguments}, {"tool_results", ScopeToolResults}, {"embeddings", ScopeEmbeddings}}

// ParseScope reads a scope's configuration name.
func ParseScope(s string) (Scope, error) {
	for _, n := range scopeNames {
		if n.name == s {
			return n.s, nil
		}
	}
	return 0, fmt.Errorf("unknown scope %q (known: messages, system, tool_arguments, tool_results, embeddings)", s)
}

// PolicyOptions configure a Policy.
type PolicyOptions struct {
	// Name identifies the policy in metadata and metrics.
	Name string
	// Actions maps each kind to what is done with it; kinds left out are
	// not detected.
	Actions map[Kind]Action
	// Custom are detectors of kinds outside the built-in ones, by kind.
	Custom map[Kind]Detector
	// PhoneRegions are the regions national phone numbers are read in
	// (default DefaultPhoneRegions).
	PhoneRegions []string
	// Scope is the parts of the request read (zero: all).
	Scope Scope
	// Responses also masks the policy's kinds in responses (mask for
	// every kind not set to count).
	Responses bool
	// HashKey keys ActionHash; required when a kind uses it.
	HashKey []byte
}

// Policy is a compiled redaction policy; it is immutable and safe for
// concurrent use.
type Policy struct {
	name      string
	set       *Set
	actions   map[Kind]Action
	scope     Scope
	responses bool
	hashKey   []byte
	reversing bool // some kind is reversible
}

// NewPolicy compiles a policy.
func NewPolicy(o PolicyOptions) (*Policy, error) {
	p := &Policy{name: o.Name, actions: make(map[Kind]Action, len(o.Actions)), scope: o.Scope, responses: o.Responses, hashKey: o.HashKey}
	if p.scope == 0 {
		p.scope = ScopeAll
	}
	var dets []Detector
	order := slices.Clone(BuiltinKinds)
	for k := range o.Actions {
		if !k.IsBuiltin() {
			order = append(order, k)
		}
	}
	slices.SortStableFunc(order[len(BuiltinKinds):], func(a, b Kind) int {
		if a < b {
			return -1
		}
		if a > b {
			return 1
		}
		return 0
	})
	for _, k := range order {
		a, ok := o.Actions[k]
		if !ok || a == ActionNone {
			continue
		}
		d, ok := Builtin(k, o.PhoneRegions)
		if !ok {
			if d, ok = o.Custom[k]; !ok {
				return nil, fmt.Errorf("redact: policy %s: no detector for kind %s", o.Name, k)
			}
		}
		if a == ActionHash && len(o.HashKey) == 0 {
			return nil, fmt.Errorf("redact: policy %s: kind %s is hashed but no hash key is set", o.Name, k)
		}
		p.reversing = p.reversing || a == ActionReversible
		p.actions[k] = a
		dets = append(dets, d)
	}
	p.set = NewSet(dets...)
	return p, nil
}

// Name returns the policy's name.
func (p *Policy) Name() string { return p.name }

// Action returns what the policy does with kind k.
func (p *Policy) Action(k Kind) Action { return p.actions[k] }

// Detectors returns the policy's detector set.
func (p *Policy) Detectors() *Set { return p.set }

// Active reports whether the policy detects anything.
func (p *Policy) Active() bool { return p != nil && len(p.actions) > 0 }

// NewSession starts redaction for one request of tenant.
func (p *Policy) NewSession(tenant string) *Session {
	return &Session{p: p, tenant: tenant}
}

// tenantKey derives the per-tenant hash key: hashes are stable within a
// tenant and unrelated across tenants.
func (p *Policy) tenantKey(tenant string) []byte {
	m := hmac.New(sha256.New, p.hashKey)
	m.Write([]byte("llmux-redact-tenant\x00"))
	m.Write([]byte(tenant))
	return m.Sum(nil)
}

// BlockedError refuses a request that holds a kind of data the policy
// blocks. It names the kind and where it was found, never the data.
type BlockedError struct {
	Kind  Kind
	Field string // the request field, e.g. "messages[2].content"
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("redact: the request holds data of kind %s in %s, which the policy blocks", e.Kind, e.Field)
}

// ErrNotJSON is returned for a request body that is not a JSON object.
var ErrNotJSON = errors.New("redact: the request body is not a JSON object")
