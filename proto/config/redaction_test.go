package config

import (
	"strings"
	"testing"

	"github.com/llmux/llmux/redact"
)

const redactionCfg = `
auth:
  keys:
  - {name: ci, tenant: acme, key_env: CLIENT_KEY}
redaction:
  hash_key_env: OPENAI_API_KEY
  phone_regions: [US, GB]
  detectors:
  - {name: employee_id, pattern: 'EMP-[0-9]{6}'}
  - {name: project, words: [Nightingale, "Project Falcon"]}
  policies:
  - name: standard
    actions: {email: reversible, phone: reversible, card: block, secrets: mask, employee_id: hash, project: mask}
  - name: strict
    actions: {secrets: block, api_key: mask}
    scope: [messages, system]
    responses: true
  default: standard
  tenants: {globex: strict}
  keys: {ci: none}
  model_groups: {g: strict}
providers:
- {name: p, kind: openai, cluster: c}
deployments:
- {name: d, provider: p, model: m}
model_groups:
- {name: g, deployments: [d]}
- {name: h, deployments: [d]}
`

func TestRedactionPolicies(t *testing.T) {
	rt, err := Parse([]byte(redactionCfg), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	std, _ := rt.RedactionPolicy("standard")
	strict, _ := rt.RedactionPolicy("strict")
	if std == nil || strict == nil {
		t.Fatal("policies not compiled")
	}
	for _, tc := range []struct {
		key, tenant, group string
		want               *redact.Policy
	}{
		{"ci", "acme", "g", nil},    // the key's policy beats the rest
		{"", "globex", "h", strict}, // then the tenant's
		{"", "acme", "g", strict},   // then the model group's
		{"other", "acme", "h", std}, // then the default
		{"", "", "", std},           // identity-only callers too
	} {
		if got := rt.RedactionFor(tc.key, tc.tenant, tc.group); got != tc.want {
			t.Errorf("RedactionFor(%q, %q, %q) = %v, want %v", tc.key, tc.tenant, tc.group, got, tc.want)
		}
	}
	if p, ok := rt.RedactionPolicy("none"); p != nil || !ok {
		t.Error(`"none" is not the empty policy`)
	}
	if _, ok := rt.RedactionPolicy("nope"); ok {
		t.Error("an unknown policy was found")
	}
	// secrets expands to every secret kind; api_key named alone beats it.
	if strict.Action(redact.KindJWT) != redact.ActionBlock || strict.Action(redact.KindAPIKey) != redact.ActionMask {
		t.Errorf("strict: jwt %v, api_key %v", strict.Action(redact.KindJWT), strict.Action(redact.KindAPIKey))
	}
	if std.Action("EMPLOYEE_ID") != redact.ActionHash {
		t.Errorf("standard: employee_id %v", std.Action("EMPLOYEE_ID"))
	}
	out, err := rt.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, "Nightingale") || !strings.Contains(s, "[2 words]") || strings.Contains(s, providerKey) {
		t.Errorf("/config shows a word list or the hash key:\n%s", s)
	}
}

func TestRedactionAbsent(t *testing.T) {
	rt, err := Parse([]byte(strings.Split(redactionCfg, "redaction:")[0]+"providers:"+strings.Split(redactionCfg, "providers:")[1]), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if p := rt.RedactionFor("ci", "acme", "g"); p != nil {
		t.Errorf("no redaction section, policy %v", p)
	}
}
