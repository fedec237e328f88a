package config

import (
	"fmt"
	"time"
)

// FailoverSpec bounds failover for a model group and names the groups a
// request moves to when a deployment refuses it for a reason another model
// may not have (model_groups[].failover). Every field is optional.
// docs/recovery.md explains failover.
type FailoverSpec struct {
	// MaxAttempts bounds the deployments tried for one request, the first
	// included and across fallback groups (default 3, 1 to 10; 1 turns
	// failover off).
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts,omitempty"`
	// Budget bounds the time from the first forward to the last fallback
	// call's response headers (default 2m, 1s to 1h).
	Budget time.Duration `yaml:"budget" json:"budget,omitempty"`
	// ContextWindowFallbacks are the groups, in order, that take a request
	// whose input is too long for this group's deployment
	// (context_length_exceeded).
	ContextWindowFallbacks []string `yaml:"context_window_fallbacks" json:"context_window_fallbacks,omitempty"`
	// ContentPolicyFallbacks are the groups, in order, that take a request
	// this group's deployment refused by its content policy
	// (content_filtered).
	ContentPolicyFallbacks []string `yaml:"content_policy_fallbacks" json:"content_policy_fallbacks,omitempty"`
}

// Failover is a group's compiled failover settings (defaults applied).
type Failover struct {
	// MaxAttempts bounds the deployments tried for one request, the first
	// included.
	MaxAttempts int
	// Budget bounds the time from the first forward to the last fallback
	// call's response headers.
	Budget time.Duration
	// ContextWindow and ContentPolicy are the fallback groups for a too
	// long input and a content-policy refusal, in order; nil when none.
	ContextWindow []*Group
	ContentPolicy []*Group
}

// Bounds and defaults of the failover settings.
const (
	// DefaultFailoverAttempts is max_attempts when unset.
	DefaultFailoverAttempts = 3
	// MaxFailoverAttempts is the largest max_attempts.
	MaxFailoverAttempts = 10
	// DefaultFailoverBudget is budget when unset.
	DefaultFailoverBudget = 2 * time.Minute

	minFailoverBudget = time.Second
	maxFailoverBudget = time.Hour
	maxFallbackGroups = MaxFailoverAttempts
)

// compileFailover validates the bounds of a group's failover at path; the
// fallback groups are resolved by resolveFallbacks once every group is
// known.
func compileFailover(c *errs, path string, fs FailoverSpec) Failover {
	f := Failover{MaxAttempts: DefaultFailoverAttempts, Budget: DefaultFailoverBudget}
	switch n := fs.MaxAttempts; {
	case n == 0:
	case n < 1 || n > MaxFailoverAttempts:
		c.add(path+".max_attempts", "must be between 1 and %d, got %d", MaxFailoverAttempts, n)
	default:
		f.MaxAttempts = n
	}
	setDuration(c, path+".budget", fs.Budget, minFailoverBudget, maxFailoverBudget, &f.Budget)
	return f
}

// resolveFallbacks resolves every group's fallback group names. A fallback
// chain may form a cycle (a → b → a): that is harmless, since a request
// never tries more than max_attempts deployments nor a group twice; a
// group naming itself is a mistake and reported.
func resolveFallbacks(c *errs, f *File, rt *Runtime) {
	for i, gs := range f.ModelGroups {
		g := rt.groups[gs.Name]
		if g == nil {
			continue
		}
		if j, ok := indexOfGroup(f, gs.Name); !ok || j != i {
			continue // a duplicate name, reported already
		}
		p := fmt.Sprintf("model_groups[%d].failover", i)
		g.Failover.ContextWindow = fallbackGroups(c, p+".context_window_fallbacks", gs.Name, gs.Failover.ContextWindowFallbacks, rt)
		g.Failover.ContentPolicy = fallbackGroups(c, p+".content_policy_fallbacks", gs.Name, gs.Failover.ContentPolicyFallbacks, rt)
	}
}

func indexOfGroup(f *File, name string) (int, bool) {
	for i, gs := range f.ModelGroups {
		if gs.Name == name {
			return i, true
		}
	}
	return 0, false
}

// fallbackGroups resolves one list of fallback group names at path.
func fallbackGroups(c *errs, path, self string, names []string, rt *Runtime) []*Group {
	if len(names) == 0 {
		return nil
	}
	if len(names) > maxFallbackGroups {
		c.add(path, "at most %d groups, got %d", maxFallbackGroups, len(names))
		return nil
	}
	out := make([]*Group, 0, len(names))
	seen := make(map[string]bool, len(names))
	for j, n := range names {
		p := fmt.Sprintf("%s[%d]", path, j)
		g := rt.groups[n]
		switch {
		case n == "":
			c.add(p, "must be set")
		case n == self:
			c.add(p, "group %q cannot fall back to itself", n)
		case seen[n]:
			c.add(p, "group %q is listed twice", n)
		case g == nil:
			c.add(p, "unknown model group %q", n)
		default:
			out = append(out, g)
		}
		seen[n] = true
	}
	return out
}
