package redact

import (
	"fmt"
	"strings"
)

// Kind names a kind of data, in upper case: the built-in kinds below, or a
// custom detector's name. It appears in masks ("[EMAIL]"), placeholders
// ("<EMAIL_1>"), block errors and counts.
type Kind string

// The built-in kinds.
const (
	KindEmail      Kind = "EMAIL"
	KindPhone      Kind = "PHONE"
	KindCard       Kind = "CARD"
	KindIBAN       Kind = "IBAN"
	KindSSN        Kind = "SSN"
	KindIP         Kind = "IP"
	KindAWSKey     Kind = "AWS_KEY"
	KindAPIKey     Kind = "API_KEY"
	KindGitHub     Kind = "GITHUB_TOKEN"
	KindSlack      Kind = "SLACK_TOKEN"
	KindJWT        Kind = "JWT"
	KindPrivateKey Kind = "PRIVATE_KEY"
)

// BuiltinKinds lists the built-in kinds, in priority order: when two
// matches of equal length overlap, the earlier kind wins.
var BuiltinKinds = []Kind{
	KindPrivateKey, KindJWT, KindAWSKey, KindAPIKey, KindGitHub, KindSlack,
	KindEmail, KindIBAN, KindCard, KindSSN, KindPhone, KindIP,
}

// SecretKinds are the kinds the config alias "secrets" stands for.
var SecretKinds = []Kind{KindAWSKey, KindAPIKey, KindGitHub, KindSlack, KindJWT, KindPrivateKey}

// Action is what a policy does with a match.
type Action uint8

// The actions.
const (
	// ActionNone leaves the kind undetected.
	ActionNone Action = iota
	// ActionCount detects and counts, changing nothing (a dry run).
	ActionCount
	// ActionMask replaces the value by the kind in brackets: "[EMAIL]".
	ActionMask
	// ActionHash replaces the value by a keyed hash, stable per tenant:
	// "[EMAIL:3f9a0c1b2d4e]".
	ActionHash
	// ActionDrop removes the value.
	ActionDrop
	// ActionBlock refuses the request (a 400 naming the kind).
	ActionBlock
	// ActionReversible replaces the value by a placeholder unique within
	// the request ("<EMAIL_1>") and restores it in the response.
	ActionReversible
)

var actionNames = [...]string{"none", "count", "mask", "hash", "drop", "block", "reversible"}

// String returns the action's configuration name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", a)
}

// ParseAction reads an action's configuration name.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (known: %s)", s, strings.Join(actionNames[:], ", "))
}

// ParseKind reads a kind's configuration name, case-insensitively:
// "email" is KindEmail. Names outside the built-in kinds are returned upper
// cased, for custom detectors; ok is false for a malformed name.
func ParseKind(s string) (k Kind, ok bool) {
	if s == "" || len(s) > 32 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return "", false
		}
	}
	return Kind(strings.ToUpper(s)), true
}

// IsBuiltin reports whether k is a built-in kind.
func (k Kind) IsBuiltin() bool {
	for _, b := range BuiltinKinds {
		if b == k {
			return true
		}
	}
	return false
}
