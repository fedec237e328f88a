// Package gcpauth provides cached Google OAuth access tokens from
// Application Default Credentials (ADC), for translators that call Google
// Cloud APIs (Gemini on Vertex AI, Claude on Vertex AI).
//
// ADC is looked up the way Google's libraries do it (golang.org/x/oauth2/google
// FindDefaultCredentials): the JSON file named by GOOGLE_APPLICATION_CREDENTIALS
// (service account key, authorized user, external account / workload identity
// federation), then gcloud's well-known file, then the GCE/GKE metadata server.
//
// Tokens are cached per key (the provider's configured name), so providers
// never share a cache entry, and replaced ahead of their expiry: the first
// caller inside the refresh window fetches a new token while concurrent
// callers keep using the current one. A fetch is bounded by the caller's
// context; callers that wait for another caller's fetch can give up on their
// own context. The credentials are looked up again on each refresh, so a
// rotated key file is picked up without a restart.
package gcpauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// Scope is the OAuth scope requested: the one Vertex AI requires.
const Scope = "https://www.googleapis.com/auth/cloud-platform"

// Defaults of a Source.
const (
	// DefaultEarly is how long before its expiry a token is replaced.
	DefaultEarly = 5 * time.Minute
	// DefaultFetchTimeout bounds one token fetch when the caller's context
	// has no earlier deadline.
	DefaultFetchTimeout = 30 * time.Second
	// minValidity is the margin under which a token is never handed out:
	// it could expire on its way to the provider.
	minValidity = 10 * time.Second
)

// Source hands out cached access tokens, one cache entry per key. The zero
// value is not usable; use New. Its methods are safe for concurrent use.
type Source struct {
	// Early is how long before expiry a token is replaced (DefaultEarly
	// when zero).
	Early time.Duration
	// FetchTimeout bounds one fetch (DefaultFetchTimeout when zero).
	FetchTimeout time.Duration
	// HTTPClient sends the token requests.
	HTTPClient *http.Client
	// Find looks the credentials up; nil means google.FindDefaultCredentials.
	// Tests may replace it.
	Find func(ctx context.Context, scopes ...string) (*google.Credentials, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
}

// entry is the cache of one key.
type entry struct {
	// sem holds one token while a fetch is in progress.
	sem chan struct{}
	mu  sync.Mutex
	tok *oauth2.Token
}

// New returns a Source with its own HTTP client.
func New() *Source {
	return &Source{HTTPClient: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
}

// Default is the process-wide Source used by Token.
var Default = New()

// Token returns an access token for key from the process-wide Source.
func Token(ctx context.Context, key string) (string, error) {
	return Default.Token(ctx, key)
}

// Token returns a valid access token for key (for use as
// "Authorization: Bearer <token>"), fetching one when the cached token is
// missing or inside its refresh window. A failed refresh of a token that is
// still valid returns the old token; the next call tries again.
func (s *Source) Token(ctx context.Context, key string) (string, error) {
	e := s.entry(key)
	now := s.now()
	tok := e.current()
	if fresh(tok, now, s.early()) {
		return tok.AccessToken, nil
	}
	valid := fresh(tok, now, minValidity)
	select {
	case e.sem <- struct{}{}:
	default:
		if valid {
			return tok.AccessToken, nil // another caller is refreshing
		}
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			return "", fmt.Errorf("gcpauth: waiting for a token: %w", ctx.Err())
		}
	}
	defer func() { <-e.sem }()
	// Another caller may have refreshed while this one waited.
	if tok = e.current(); fresh(tok, s.now(), s.early()) {
		return tok.AccessToken, nil
	}
	nt, err := s.fetch(ctx)
	if err != nil {
		if tok = e.current(); fresh(tok, s.now(), minValidity) {
			return tok.AccessToken, nil
		}
		return "", err
	}
	e.mu.Lock()
	e.tok = nt
	e.mu.Unlock()
	return nt.AccessToken, nil
}

// Forget drops the cached token of key, e.g. after the provider rejected
// it; the next Token call fetches a new one.
func (s *Source) Forget(key string) {
	s.mu.Lock()
	e := s.entries[key]
	s.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.tok = nil
		e.mu.Unlock()
	}
}

// CloseIdleConnections closes the idle connections of the Source's HTTP
// client.
func (s *Source) CloseIdleConnections() {
	if s.HTTPClient != nil {
		s.HTTPClient.CloseIdleConnections()
	}
}

// errNoToken is returned when the credentials produce an empty token.
var errNoToken = errors.New("gcpauth: the credentials returned an empty access token")

// fetch looks the credentials up and obtains a new token, bounded by ctx and
// the fetch timeout.
func (s *Source) fetch(ctx context.Context) (*oauth2.Token, error) {
	timeout := s.FetchTimeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if s.HTTPClient != nil {
		// The oauth2 packages take their HTTP client from the context.
		ctx = context.WithValue(ctx, oauth2.HTTPClient, s.HTTPClient)
	}
	find := s.Find
	if find == nil {
		find = google.FindDefaultCredentials
	}
	creds, err := find(ctx, Scope)
	if err != nil {
		return nil, fmt.Errorf("gcpauth: application default credentials: %w", err)
	}
	if creds == nil || creds.TokenSource == nil {
		return nil, errors.New("gcpauth: application default credentials have no token source")
	}
	// The token source is new, so Token always fetches.
	tok, err := creds.TokenSource.Token()
	if err != nil {
		return nil, fmt.Errorf("gcpauth: fetch token: %w", err)
	}
	if tok.AccessToken == "" {
		return nil, errNoToken
	}
	return tok, nil
}

func (s *Source) entry(key string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = make(map[string]*entry)
	}
	e, ok := s.entries[key]
	if !ok {
		e = &entry{sem: make(chan struct{}, 1)}
		s.entries[key] = e
	}
	return e
}

func (e *entry) current() *oauth2.Token {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tok
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) early() time.Duration {
	if s.Early > 0 {
		return s.Early
	}
	return DefaultEarly
}

// fresh reports whether tok is usable for at least margin more. A token
// without an expiry never expires.
func fresh(tok *oauth2.Token, now time.Time, margin time.Duration) bool {
	if tok == nil || tok.AccessToken == "" {
		return false
	}
	return tok.Expiry.IsZero() || tok.Expiry.Sub(now) > margin
}
