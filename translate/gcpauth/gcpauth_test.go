package gcpauth

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/llmux/llmux/test/fakeprovider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// adc starts the fake token endpoint and points ADC at a service account
// key whose token_uri is the fake.
func adc(t *testing.T) *fakeprovider.GCPOAuth {
	t.Helper()
	o := fakeprovider.NewGCPOAuth(t, fakeprovider.GCPOAuthOptions{})
	p, err := o.WriteCredentials(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", p)
	return o
}

func newSource(t *testing.T) *Source {
	s := New()
	t.Cleanup(s.CloseIdleConnections)
	return s
}

func TestServiceAccountToken(t *testing.T) {
	o := adc(t)
	s := newSource(t)
	ctx := context.Background()
	tok, err := s.Token(ctx, "vertex")
	if err != nil {
		t.Fatal(err)
	}
	if !o.Valid(tok) {
		t.Fatalf("token %q not issued by the fake", tok)
	}
	again, err := s.Token(ctx, "vertex")
	if err != nil || again != tok {
		t.Fatalf("second call: %q, %v; want the cached %q", again, err, tok)
	}
	if n := o.Issued(); n != 1 {
		t.Fatalf("issued %d tokens, want 1 (cached)", n)
	}
	other, err := s.Token(ctx, "vertex-eu")
	if err != nil || other == tok || !o.Valid(other) {
		t.Fatalf("other key: %q, %v", other, err)
	}
	// The request the fake saw: a JWT bearer grant.
	rec, _ := o.Last()
	if !strings.Contains(string(rec.Body), "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer") {
		t.Errorf("token request body %q", rec.Body)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	o := adc(t)
	s := newSource(t)
	now := time.Now()
	s.Now = func() time.Time { return now }
	ctx := context.Background()
	first, err := s.Token(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(50 * time.Minute) // 10 minutes left: still outside the 5 minute window
	if tok, _ := s.Token(ctx, "k"); tok != first {
		t.Fatal("refreshed too early")
	}
	now = now.Add(6 * time.Minute) // 4 minutes left: inside the window
	second, err := s.Token(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if second == first || !o.Valid(second) || o.Issued() != 2 {
		t.Fatalf("no refresh inside the window: %q (issued %d)", second, o.Issued())
	}
}

func TestForget(t *testing.T) {
	o := adc(t)
	s := newSource(t)
	first, err := s.Token(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	s.Forget("k")
	s.Forget("never-used")
	second, err := s.Token(context.Background(), "k")
	if err != nil || second == first || o.Issued() != 2 {
		t.Fatalf("after Forget: %q %v issued %d", second, err, o.Issued())
	}
}

func TestMissingCredentials(t *testing.T) {
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "absent.json"))
	_, err := newSource(t).Token(context.Background(), "k")
	if err == nil || !strings.Contains(err.Error(), "application default credentials") {
		t.Fatalf("err %v", err)
	}
}

func TestTokenEndpointError(t *testing.T) {
	o := adc(t)
	o.Close() // connection refused
	_, err := newSource(t).Token(context.Background(), "k")
	if err == nil || !strings.Contains(err.Error(), "fetch token") {
		t.Fatalf("err %v", err)
	}
}

// stubTS is a token source driven by the test.
type stubTS struct {
	gate chan struct{} // when non-nil, Token waits for it (or ctx)
	ctx  context.Context
	tok  *oauth2.Token
	err  error
}

func (s stubTS) Token() (*oauth2.Token, error) {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-s.ctx.Done():
			return nil, s.ctx.Err()
		}
	}
	return s.tok, s.err
}

// stubSource returns a Source whose credentials come from next.
func stubSource(next func(ctx context.Context) stubTS) *Source {
	return &Source{Find: func(ctx context.Context, _ ...string) (*google.Credentials, error) {
		ts := next(ctx)
		ts.ctx = ctx
		return &google.Credentials{TokenSource: ts}, nil
	}}
}

func TestContextBoundsFetch(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	s := stubSource(func(context.Context) stubTS { return stubTS{gate: gate, tok: &oauth2.Token{AccessToken: "x"}} })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Token(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestConcurrentCallersDuringRefresh(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	calls := 0
	gate := make(chan struct{})
	entered := make(chan struct{})
	s := stubSource(func(context.Context) stubTS {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return stubTS{tok: &oauth2.Token{AccessToken: "old", Expiry: now.Add(3 * time.Minute)}}
		}
		close(entered)
		return stubTS{gate: gate, tok: &oauth2.Token{AccessToken: "new", Expiry: now.Add(time.Hour)}}
	})
	ctx := context.Background()
	if tok, err := s.Token(ctx, "k"); err != nil || tok != "old" {
		t.Fatalf("first: %q %v", tok, err)
	}
	// "old" is inside the refresh window: the next caller refreshes and
	// blocks; callers meanwhile still get "old" without waiting.
	done := make(chan string)
	go func() {
		tok, _ := s.Token(ctx, "k")
		done <- tok
	}()
	<-entered
	for range 3 {
		if tok, err := s.Token(ctx, "k"); err != nil || tok != "old" {
			t.Fatalf("during refresh: %q %v", tok, err)
		}
	}
	close(gate)
	if tok := <-done; tok != "new" {
		t.Fatalf("refresher got %q", tok)
	}
	if tok, _ := s.Token(ctx, "k"); tok != "new" {
		t.Fatalf("after refresh: %q", tok)
	}
}

func TestFailedRefreshKeepsValidToken(t *testing.T) {
	now := time.Now()
	n := 0
	s := stubSource(func(context.Context) stubTS {
		n++
		if n == 1 {
			return stubTS{tok: &oauth2.Token{AccessToken: "old", Expiry: now.Add(time.Minute)}}
		}
		return stubTS{err: errors.New("boom")}
	})
	if tok, err := s.Token(context.Background(), "k"); err != nil || tok != "old" {
		t.Fatalf("%q %v", tok, err)
	}
	if tok, err := s.Token(context.Background(), "k"); err != nil || tok != "old" {
		t.Fatalf("failed refresh: %q %v, want the still valid token", tok, err)
	}
	s.Now = func() time.Time { return now.Add(2 * time.Minute) }
	if _, err := s.Token(context.Background(), "k"); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("expired and refresh failing: err %v", err)
	}
}

func TestEmptyToken(t *testing.T) {
	s := stubSource(func(context.Context) stubTS { return stubTS{tok: &oauth2.Token{}} })
	if _, err := s.Token(context.Background(), "k"); !errors.Is(err, errNoToken) {
		t.Fatalf("err %v", err)
	}
}
