package azure

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// CredentialFactory makes the Entra ID credential of one provider.
type CredentialFactory func(provider string) (azcore.TokenCredential, error)

// defaultCredential is azidentity's DefaultAzureCredential: environment
// (service principal), workload identity, managed identity, Azure CLI and
// Azure Developer CLI, in that order.
func defaultCredential(string) (azcore.TokenCredential, error) {
	return azidentity.NewDefaultAzureCredential(nil)
}

// refreshBefore is how long before expiry a token is replaced.
const refreshBefore = 5 * time.Minute

// tokenCache keeps one credential and its current token per provider and
// scope. A refresh happens on the request path, bounded by the request's
// context; concurrent requests for the same provider wait for one refresh
// (or their own context).
type tokenCache struct {
	newCred CredentialFactory
	now     func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]*tokenEntry
}

type cacheKey struct{ provider, scope string }

// forget drops every cached token of a provider.
func (c *tokenCache) forget(provider string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		if k.provider == provider {
			delete(c.entries, k)
		}
	}
}

type tokenEntry struct {
	sem   chan struct{} // one refresher at a time
	mu    sync.Mutex
	cred  azcore.TokenCredential
	token string
	exp   time.Time
}

func newTokenCache(f CredentialFactory) *tokenCache {
	return &tokenCache{newCred: f, now: time.Now, entries: map[cacheKey]*tokenEntry{}}
}

func (c *tokenCache) entry(provider, scope string) *tokenEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{provider, scope}
	e, ok := c.entries[k]
	if !ok {
		e = &tokenEntry{sem: make(chan struct{}, 1)}
		c.entries[k] = e
	}
	return e
}

// token returns a valid bearer token for provider and scope.
func (c *tokenCache) token(ctx context.Context, provider, scope string) (string, error) {
	e := c.entry(provider, scope)
	if tok, ok := e.valid(c.now()); ok {
		return tok, nil
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-e.sem }()
	if tok, ok := e.valid(c.now()); ok {
		return tok, nil // another request refreshed it meanwhile
	}
	e.mu.Lock()
	cred := e.cred
	e.mu.Unlock()
	if cred == nil {
		var err error
		if cred, err = c.newCred(provider); err != nil {
			slog.Default().Warn("llmux: azure_openai: no Entra ID credential", "provider", provider, "error", err)
			return "", err
		}
		e.mu.Lock()
		e.cred = cred
		e.mu.Unlock()
	}
	at, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
	if err != nil {
		slog.Default().Warn("llmux: azure_openai: Entra ID token refresh failed", "provider", provider, "scope", scope, "error", err)
		return "", err
	}
	e.mu.Lock()
	e.token, e.exp = at.Token, at.ExpiresOn
	e.mu.Unlock()
	return at.Token, nil
}

func (e *tokenEntry) valid(now time.Time) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.token != "" && now.Add(refreshBefore).Before(e.exp) {
		return e.token, true
	}
	return "", false
}
