package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type reload struct {
	ok    bool
	err   error
	cause string
}

const watchCfg = "providers: [{name: p, kind: openai, cluster: c}]\ndeployments: [{name: d, provider: p, model: %s}]\nmodel_groups: [{name: g, deployments: [d]}]\n"

// replace writes content next to path and renames it over path, as editors
// and config management tools do.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// deadline bounds a wait that should end promptly; it is a failure
// guard, not synchronisation.
const deadline = 10 * time.Second

// watch runs s.Watch until the test ends and returns its reports. It
// returns once the watch is registered, so every later write is seen.
func watch(t *testing.T, s *Store) <-chan reload {
	t.Helper()
	ready := make(chan struct{})
	s.watching = func() { close(ready) }
	ch := make(chan reload, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, WatchHooks{Reloaded: func(ok bool, err error, cause string) { ch <- reload{ok, err, cause} }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Watch returned early: %v", err)
	case <-time.After(deadline):
		t.Fatal("watch not registered")
	}
	return ch
}

func next(t *testing.T, ch <-chan reload) reload {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(deadline):
		t.Fatal("no reload reported")
		return reload{}
	}
}

func model(s *Store) string {
	g, _ := s.Current().Group("g")
	return g.Deployments[0].Model
}

func newStore(t *testing.T, content string) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "llmux.yaml")
	replace(t, path, content)
	s, err := NewStore(path, LoadOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestWatch(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m1"))
	v1 := s.Current().Version()
	if st := s.Status(); !st.Healthy || st.Version != v1 || st.LastError != nil || st.LastAttempt.IsZero() {
		t.Fatalf("initial status %+v", st)
	}
	ch := watch(t, s)

	// A valid change is swapped in.
	replace(t, path, fmt.Sprintf(watchCfg, "m2"))
	if r := next(t, ch); !r.ok || r.err != nil {
		t.Fatalf("valid change: %+v", r)
	}
	v2 := s.Current().Version()
	if model(s) != "m2" || v2 == v1 || s.Status().Version != v2 || !s.Status().Healthy {
		t.Fatalf("valid change not applied: %s %+v", model(s), s.Status())
	}

	// An invalid one is reported with its field path; the old config stays.
	before := s.Current()
	replace(t, path, strings.Replace(fmt.Sprintf(watchCfg, "m3"), "[d]", "[x]", 1))
	r := next(t, ch)
	const want = `model_groups[0].deployments[0]: unknown deployment "x"`
	if r.ok || r.err == nil || !strings.Contains(r.err.Error(), want) {
		t.Fatalf("invalid change: %+v", r)
	}
	var es Errors
	if !errors.As(r.err, &es) || es[0].Path != "model_groups[0].deployments[0]" {
		t.Errorf("error %v does not carry the field errors", r.err)
	}
	st := s.Status()
	if st.Healthy || st.LastError == nil || !strings.Contains(st.LastError.Error(), want) || !strings.Contains(st.LastError.Error(), path) || st.Version != v2 {
		t.Fatalf("status after an invalid change: %+v", st)
	}
	if s.Current() != before {
		t.Fatal("an invalid file replaced the configuration")
	}

	// Fixing the file makes the store healthy again.
	replace(t, path, fmt.Sprintf(watchCfg, "m4"))
	if r := next(t, ch); !r.ok {
		t.Fatal(r.err)
	}
	if st := s.Status(); model(s) != "m4" || !st.Healthy || st.LastError != nil {
		t.Fatalf("fix not applied: %s %+v", model(s), st)
	}

	// A write in place (truncate, then write) may be seen half-done; the
	// store must settle on the final content.
	if err := os.WriteFile(path, []byte(fmt.Sprintf(watchCfg, "m5")), 0o600); err != nil {
		t.Fatal(err)
	}
	for r := next(t, ch); !r.ok || model(s) != "m5"; r = next(t, ch) {
	}
	if !s.Status().Healthy {
		t.Fatal("unhealthy after an in-place write")
	}
}

func TestWatchSkipsUnchangedContent(t *testing.T) {
	cfg := fmt.Sprintf(watchCfg, "m1")
	s, path := newStore(t, cfg)
	first := s.Current()
	replace(t, path, cfg)
	if changed, err := s.reload(false); changed || err != nil {
		t.Fatalf("unchanged content reloaded: %v %v", changed, err)
	}
	if s.Current() != first {
		t.Fatal("runtime replaced")
	}
	// The watcher checks the file when it starts: a change made before
	// Watch runs is not missed.
	replace(t, path, fmt.Sprintf(watchCfg, "m2"))
	ch := watch(t, s)
	if r := next(t, ch); !r.ok || model(s) != "m2" {
		t.Fatalf("change before Watch: %+v %s", r, model(s))
	}
}

// TestWatchConfigMapSwap mimics Kubernetes: the file is a symlink through
// a ..data symlink that is replaced atomically by a rename.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		replace(t, filepath.Join(dir, name, "llmux.yaml"), content)
	}
	swap := func(name string) {
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "..old")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", fmt.Sprintf(watchCfg, "a"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/llmux.yaml", filepath.Join(dir, "llmux.yaml")); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(filepath.Join(dir, "llmux.yaml"), LoadOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	ch := watch(t, s)

	version("..v2", fmt.Sprintf(watchCfg, "b"))
	swap("..v2")
	if r := next(t, ch); !r.ok || model(s) != "b" {
		t.Fatalf("after a ConfigMap swap: %+v, model %s", r, model(s))
	}
	version("..v3", "model_groups: []\n")
	swap("..v3")
	if r := next(t, ch); r.ok || !strings.Contains(r.err.Error(), "model_groups: at least one model group is required") || model(s) != "b" {
		t.Fatalf("invalid ConfigMap: %+v, model %s", r, model(s))
	}
	version("..v4", fmt.Sprintf(watchCfg, "c"))
	swap("..v4")
	if r := next(t, ch); !r.ok || model(s) != "c" || !s.Status().Healthy {
		t.Fatalf("fixed ConfigMap: %+v, model %s", r, model(s))
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "provider.key")
	if err := os.WriteFile(keyPath, []byte("sk-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "llmux.yaml")
	replace(t, path, "providers: [{name: p, kind: openai, cluster: c, credentials: {api_key_file: provider.key}}]\ndeployments: [{name: d, provider: p, model: m}]\nmodel_groups: [{name: g, deployments: [d]}]\n")
	s, err := NewStore(path, LoadOptions{Kinds: kinds})
	if err != nil {
		t.Fatal(err)
	}
	key := func() string { g, _ := s.Current().Group("g"); return g.Deployments[0].Provider.APIKey.Value() }
	if key() != "sk-one" {
		t.Fatal("key file not read")
	}
	// A manual reload rereads key files even when the config is unchanged.
	if err := os.WriteFile(keyPath, []byte("sk-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil || key() != "sk-two" {
		t.Fatalf("reload: %v", err)
	}
	// A missing key file is an error that keeps the old config.
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), "providers[0].credentials.api_key_file: cannot read") || key() != "sk-two" || s.Status().Healthy {
		t.Fatalf("reload with a missing key file: %v", err)
	}
	if strings.Contains(err.Error(), "sk-two") || strings.Contains(fmt.Sprintf("%+v", s.Status()), "sk-two") {
		t.Fatal("secret in the error")
	}
	// An unreadable config file too; restoring it makes the store healthy.
	if err := os.Rename(path, path+".bak"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); !errors.Is(err, os.ErrNotExist) || s.Status().Healthy {
		t.Fatalf("missing config: %v", err)
	}
	if err := os.WriteFile(keyPath, []byte("sk-three"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".bak", path); err != nil {
		t.Fatal(err)
	}
	if changed, err := s.reload(false); !changed || err != nil || key() != "sk-three" || !s.Status().Healthy {
		t.Fatalf("restored config: %v %v", changed, err)
	}
}

func TestNewStoreErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewStore(filepath.Join(dir, "none.yaml"), LoadOptions{Kinds: kinds}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "bad.yaml")
	replace(t, path, "server: {nope: 1}\n")
	_, err := NewStore(path, LoadOptions{Kinds: kinds})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "server.nope: unknown field") {
		t.Errorf("invalid file: %v", err)
	}
	s, _ := newStore(t, fmt.Sprintf(watchCfg, "m"))
	s.path = filepath.Join(dir, "no-such-dir", "llmux.yaml")
	// A directory that cannot be watched degrades to polling; Watch keeps
	// running until its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	degraded := make(chan error, 4)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, WatchHooks{Degraded: func(err error) { degraded <- err }})
	}()
	select {
	case err := <-degraded:
		if !strings.Contains(err.Error(), "no-such-dir") || !strings.Contains(err.Error(), "polling every") {
			t.Errorf("degraded: %v", err)
		}
	case err := <-done:
		t.Fatalf("Watch returned %v", err)
	case <-time.After(deadline):
		t.Fatal("no degradation reported")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch: %v", err)
	}
}

// TestConcurrentReaders runs readers against reloads (meaningful under
// -race).
func TestConcurrentReaders(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m0"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rt := s.Current()
				if g, ok := rt.Group("g"); !ok || g.Deployments[0].Model == "" {
					t.Error("torn snapshot")
					return
				}
				_ = s.Status()
				_, _, _ = rt.Authenticate("x")
			}
		})
	}
	for i := range 20 {
		replace(t, path, fmt.Sprintf(watchCfg, fmt.Sprintf("m%d", i+1)))
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if model(s) != "m20" {
		t.Errorf("model %s", model(s))
	}
}
