package config

import (
	"fmt"
	"log/slog"
)

// Secret holds a credential. It never prints its value: String, GoString,
// Format (every verb), MarshalJSON and MarshalText all give "[REDACTED]".
// The zero Secret is unset.
type Secret struct{ v string }

const redacted = "[REDACTED]"

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{v: v} }

// Value returns the secret itself, for use on the wire only.
func (s Secret) Value() string { return s.v }

// IsSet reports whether the secret has a value.
func (s Secret) IsSet() bool { return s.v != "" }

// String implements fmt.Stringer; it returns "[REDACTED]".
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer; it returns "[REDACTED]".
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter, so that no verb (%v, %+v, %#v, %s, %q,
// %x, ...) prints the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler; it gives "[REDACTED]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler; it gives [REDACTED].
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalYAML implements yaml.Marshaler; it gives [REDACTED].
func (s Secret) MarshalYAML() (any, error) { return redacted, nil }

// LogValue implements slog.LogValuer; it gives [REDACTED].
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
