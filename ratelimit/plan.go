package ratelimit

import (
	"strconv"
	"time"
)

// check is one limit of one claim, as a backend evaluates it.
type check struct {
	key    string
	claim  int // index into plan.claims
	limit  Limit
	max    int64 // the bound in force (Limit.Max, or its local share)
	amount int64
}

// plan is a request's checks in groups: group 0 must admit; then the
// alternatives, of which the first that admits is chosen.
type plan struct {
	claims []Claim
	checks []check
	groups []int // checks per group
}

// outcome is what a backend answers for a plan.
type outcome struct {
	ok     bool
	chosen int   // the alternative group admitted (1-based; 0 when there are none)
	fail   int   // on denial: the check that denied
	retry  int64 // on denial: ms until it could admit
	nowMs  int64 // the backend's clock at the reservation
	rem    []int64
	reset  []int64 // ms until remaining next grows; -1 for checks not applied
}

// claimName is the name of the policy c belongs to.
func (c *check) claimName(p *plan) string { return p.claims[c.claim].Policy.Name }

// keyFor is a limit's counter key: prefix:{tag}:policy:subject:kind[:window].
// Every key carries the same hash tag, so that a request's keys live in
// one Redis Cluster slot.
func keyFor(dst []byte, prefix, tag string, c Claim, l Limit) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, ":{"...)
	dst = append(dst, tag...)
	dst = append(dst, "}:"...)
	dst = append(dst, c.Policy.Name...)
	dst = append(dst, ':')
	dst = append(dst, c.Subject...)
	dst = append(dst, ':')
	dst = append(dst, l.Kind.String()...)
	if l.Kind.Windowed() {
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(l.Window/time.Second), 10)
	}
	return dst
}

// build fills p from r; share < 1 scales every bound (the local limiter
// under fail_open), never below 1.
func (p *plan) build(prefix, tag string, r *Request, local bool) {
	p.claims = append(p.claims[:0], r.Claims...)
	p.checks, p.groups = p.checks[:0], p.groups[:0]
	p.addGroup(prefix, tag, r.Claims, 0, r.Estimate, local)
	for _, alt := range r.Alternatives {
		base := len(p.claims)
		p.claims = append(p.claims, alt...)
		p.addGroup(prefix, tag, alt, base, r.Estimate, local)
	}
}

func (p *plan) addGroup(prefix, tag string, claims []Claim, base int, est Usage, local bool) {
	n := 0
	var buf [256]byte
	for i, c := range claims {
		for _, l := range c.Policy.Limits {
			m := l.Max
			if local {
				m = int64(float64(m) * c.Policy.LocalShare)
				if m < 1 {
					m = 1
				}
			}
			p.checks = append(p.checks, check{key: string(keyFor(buf[:0], prefix, tag, c, l)), claim: base + i, limit: l, max: m, amount: est.amount(l.Kind)})
			n++
		}
	}
	p.groups = append(p.groups, n)
}
