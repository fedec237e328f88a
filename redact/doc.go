// Package redact finds personal data and secrets in the text a client sends
// to a model, and replaces, refuses or restores it per policy.
//
// Detectors are validators, not bare patterns: a card number must pass the
// Luhn check and carry a known issuer prefix, an IBAN its mod-97 check, a
// phone number the phone-number library's validity rules, a JWT a header
// that decodes to JSON. Each detector scans text once and reports matches
// (Match); a Set runs the enabled detectors and resolves overlaps.
//
// A Policy maps each kind of data to an Action (mask, hash, drop, block,
// reversible, count). Per request, a Session applies the policy to the
// OpenAI-shaped request body (Session.Request) and, for reversible
// placeholders, restores the originals in the OpenAI-shaped response, whole
// or streamed, chunk by chunk (Session.Restore). A Session's state belongs
// to one request only.
//
// Nothing in this package logs, and no error it returns carries the text
// it was given: errors name the kind of data, never the data.
package redact
