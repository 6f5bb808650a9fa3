// Package secret holds the one type grantwatch uses for refresh tokens, client
// secrets and signing keys in memory. A Secret redacts itself wherever it could
// be printed (fmt, slog, JSON), so that a token can only leave the process
// through an explicit call to Reveal.
package secret

import "log/slog"

// Secret is a sensitive string. Its zero value is the empty secret.
type Secret string

const redacted = "<secret>"

// Reveal returns the plaintext. Call it only where the value is sent to the
// party that issued it (a token endpoint) or sealed for storage.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// String redacts the secret for fmt's %s and %v.
func (s Secret) String() string { return redacted }

// GoString redacts the secret for fmt's %#v.
func (s Secret) GoString() string { return redacted }

// LogValue redacts the secret for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText redacts the secret for encoding/json and encoding/text users,
// so that a struct holding a Secret can be printed as JSON without leaking it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
