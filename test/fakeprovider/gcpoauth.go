package fakeprovider

// Fake Google OAuth 2.0 token endpoint for service accounts (the JWT bearer
// grant, RFC 7523), as described in Google's "Using OAuth 2.0 for Server to
// Server Applications" (developers.google.com/identity/protocols/oauth2/service-account):
// the client POSTs grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and
// an RS256-signed assertion whose claims are iss (the service account
// email), scope, aud (the token URI), iat and exp; the answer is
// {"access_token","expires_in","token_type":"Bearer"}.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// GCPOAuthOptions configures the fake Google OAuth token endpoint.
type GCPOAuthOptions struct {
	// ExpiresIn is the lifetime of issued tokens in seconds (default 3600).
	ExpiresIn int
	// ClientEmail is the service account email (default
	// "llmux-test@fake-project.iam.gserviceaccount.com").
	ClientEmail string
}

// GCPOAuth is a running fake Google OAuth token endpoint with its own
// service account key.
type GCPOAuth struct {
	*Server
	opts GCPOAuthOptions
	key  *rsa.PrivateKey

	mu     sync.Mutex
	issued map[string]time.Time // token → expiry
	seq    int
}

// gcpTokenPath is the path of the token endpoint.
const gcpTokenPath = "/token"

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
	testKeyErr  error
)

// serviceAccountKey returns the process-wide RSA key of fake service
// accounts (generated once: key generation is slow).
func serviceAccountKey() (*rsa.PrivateKey, error) {
	testKeyOnce.Do(func() { testKey, testKeyErr = rsa.GenerateKey(rand.Reader, 2048) })
	return testKey, testKeyErr
}

// NewGCPOAuth starts a fake Google OAuth token endpoint on 127.0.0.1:0 that
// is closed when t's test finishes.
func NewGCPOAuth(t testing.TB, opts GCPOAuthOptions) *GCPOAuth {
	t.Helper()
	o, err := ListenGCPOAuth("127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("fakeprovider: %v", err)
	}
	t.Cleanup(o.Close)
	return o
}

// ListenGCPOAuth starts a fake Google OAuth token endpoint on addr for use
// outside tests. The caller must Close it.
func ListenGCPOAuth(addr string, opts GCPOAuthOptions) (*GCPOAuth, error) {
	key, err := serviceAccountKey()
	if err != nil {
		return nil, err
	}
	if opts.ExpiresIn <= 0 {
		opts.ExpiresIn = 3600
	}
	if opts.ClientEmail == "" {
		opts.ClientEmail = "llmux-test@fake-project.iam.gserviceaccount.com"
	}
	o := &GCPOAuth{opts: opts, key: key, issued: make(map[string]time.Time)}
	s, err := newServer("gcpoauth", addr, func(*Server) http.Handler { return http.HandlerFunc(o.serve) })
	if err != nil {
		return nil, err
	}
	o.Server = s
	return o, nil
}

// TokenURL is the token endpoint, as written into the credentials file.
func (o *GCPOAuth) TokenURL() string { return o.URL() + gcpTokenPath }

// CredentialsJSON returns a service account key file (the JSON that
// GOOGLE_APPLICATION_CREDENTIALS names) whose token_uri is this fake.
func (o *GCPOAuth) CredentialsJSON() []byte {
	der := x509.MarshalPKCS1PrivateKey(o.key)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der})
	b, _ := json.MarshalIndent(map[string]string{
		"type":           "service_account",
		"project_id":     "fake-project",
		"private_key_id": "fakekey1",
		"private_key":    string(pemKey),
		"client_email":   o.opts.ClientEmail,
		"client_id":      "100000000000000000001",
		"auth_uri":       o.URL() + "/auth",
		"token_uri":      o.TokenURL(),
	}, "", "  ")
	return b
}

// WriteCredentials writes CredentialsJSON into dir and returns its path,
// ready for GOOGLE_APPLICATION_CREDENTIALS.
func (o *GCPOAuth) WriteCredentials(dir string) (string, error) {
	p := filepath.Join(dir, "gcp-service-account.json")
	return p, os.WriteFile(p, o.CredentialsJSON(), 0o600)
}

// Valid reports whether token was issued by this fake and has not expired.
func (o *GCPOAuth) Valid(token string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	exp, ok := o.issued[token]
	return ok && time.Now().Before(exp)
}

// Issued returns how many tokens the fake has issued.
func (o *GCPOAuth) Issued() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seq
}

// oauthError answers an OAuth error body ({"error","error_description"}).
func oauthError(w http.ResponseWriter, status int, code, desc string) {
	b, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (o *GCPOAuth) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != gcpTokenPath {
		oauthError(w, http.StatusNotFound, "not_found", "fakeprovider: unknown path "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "POST only")
		return
	}
	f, err := parseFaultOver(DefaultFault(), r.Header)
	if err == nil && f.Status != 0 {
		oauthError(w, f.Status, "temporarily_unavailable", "fakeprovider: x-fake-status")
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+g)
		return
	}
	if err := o.verifyAssertion(r.PostForm.Get("assertion")); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	}
	o.mu.Lock()
	o.seq++
	tok := "ya29.fake-" + strconv.Itoa(o.seq) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	o.issued[tok] = time.Now().Add(time.Duration(o.opts.ExpiresIn) * time.Second)
	o.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"access_token": tok, "expires_in": o.opts.ExpiresIn, "token_type": "Bearer"})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
}

// verifyAssertion checks the JWT's RS256 signature against the service
// account's public key and its claims.
func (o *GCPOAuth) verifyAssertion(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("assertion is not a JWT")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}
	if err := decodeJWTPart(parts[0], &hdr); err != nil {
		return fmt.Errorf("JWT header: %v", err)
	}
	if hdr.Alg != "RS256" {
		return fmt.Errorf("JWT alg %q, want RS256", hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return fmt.Errorf("JWT signature encoding: %v", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&o.key.PublicKey, crypto.SHA256, sum[:], sig); err != nil {
		return fmt.Errorf("Invalid JWT Signature.")
	}
	var c struct {
		Iss   string `json:"iss"`
		Scope string `json:"scope"`
		Aud   string `json:"aud"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}
	if err := decodeJWTPart(parts[1], &c); err != nil {
		return fmt.Errorf("JWT claims: %v", err)
	}
	now := time.Now().Unix()
	switch {
	case c.Iss != o.opts.ClientEmail:
		return fmt.Errorf("Invalid issuer %q", c.Iss)
	case c.Aud != o.TokenURL():
		return fmt.Errorf("Invalid audience %q", c.Aud)
	case c.Scope == "":
		return fmt.Errorf("Invalid OAuth scope or ID token audience provided.")
	case c.Exp <= now || c.Iat > now+60 || c.Exp-c.Iat > 3600:
		return fmt.Errorf("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
	}
	return nil
}

func decodeJWTPart(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
