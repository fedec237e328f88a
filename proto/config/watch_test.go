package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// kubeletWrite updates a Kubernetes ConfigMap or Secret volume at dir the
// way the kubelet's AtomicWriter does: the files go into a new timestamped
// directory, a ..data_tmp symlink to it is created and renamed over ..data,
// the user-visible names are symlinks through ..data (created on the first
// write), and the old timestamped directory is removed.
func kubeletWrite(t *testing.T, dir string, n int, files map[string]string) {
	t.Helper()
	ts := fmt.Sprintf("..2026_12_03_22_00_%02d.%09d", n, n)
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWatchSecretRotation rotates a client key file and a provider
// credential file mounted from a Kubernetes Secret in another directory
// than the configuration: the new client key authenticates, the old one no
// longer does, and the provider key in force is the new one.
func TestWatchSecretRotation(t *testing.T) {
	secrets := t.TempDir()
	kubeletWrite(t, secrets, 1, map[string]string{"client.key": "sk-client-old\n", "provider.key": "sk-provider-old\n"})
	cfg := fmt.Sprintf(`auth:
  keys: [{name: k, tenant: t, key_file: %s}]
providers: [{name: p, kind: openai, cluster: c, credentials: {api_key_file: %s}}]
deployments: [{name: d, provider: p, model: m}]
model_groups: [{name: g, deployments: [d]}]
`, filepath.Join(secrets, "client.key"), filepath.Join(secrets, "provider.key"))
	s, _ := newStore(t, cfg)
	if st := s.Status(); len(st.Files) != 2 || !strings.HasPrefix(st.Files[0], secrets) {
		t.Fatalf("files %v", st.Files)
	}
	providerKey := func() string { g, _ := s.Current().Group("g"); return g.Deployments[0].Provider.APIKey.Value() }
	if _, _, ok := s.Current().Authenticate("sk-client-old"); !ok || providerKey() != "sk-provider-old" {
		t.Fatal("initial keys not loaded")
	}
	v1 := s.Current().Version()
	ch := watch(t, s)

	kubeletWrite(t, secrets, 2, map[string]string{"client.key": "sk-client-new\n", "provider.key": "sk-provider-new\n"})
	if r := next(t, ch); !r.ok || r.cause != CauseChange {
		t.Fatalf("rotation: %+v", r)
	}
	rt := s.Current()
	if _, _, ok := rt.Authenticate("sk-client-new"); !ok {
		t.Error("the new client key does not authenticate")
	}
	if _, _, ok := rt.Authenticate("sk-client-old"); ok {
		t.Error("the old client key still authenticates")
	}
	if providerKey() != "sk-provider-new" {
		t.Error("the provider key was not rotated")
	}
	// The configuration file did not change, so neither did its version.
	if rt.Version() != v1 {
		t.Errorf("version %s, want %s", rt.Version(), v1)
	}

	// A rotation to an empty key is rejected; the keys in force stay.
	kubeletWrite(t, secrets, 3, map[string]string{"client.key": "\n", "provider.key": "sk-provider-new\n"})
	r := next(t, ch)
	if r.ok || !strings.Contains(r.err.Error(), "auth.keys[0].key_file: ") {
		t.Fatalf("empty key: %+v", r)
	}
	if _, _, ok := s.Current().Authenticate("sk-client-new"); !ok || s.Status().Healthy {
		t.Fatal("a rejected rotation changed the keys in force or left the store healthy")
	}
}

// TestWatchNewReferencedDirectory: a reload that refers to a file in a
// directory not watched before watches it.
func TestWatchNewReferencedDirectory(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m1"))
	ch := watch(t, s)
	keys := t.TempDir()
	key := filepath.Join(keys, "provider.key")
	replace(t, key, "sk-1\n")
	replace(t, path, strings.Replace(fmt.Sprintf(watchCfg, "m1"), "cluster: c}", "cluster: c, credentials: {api_key_file: "+key+"}}", 1))
	if r := next(t, ch); !r.ok {
		t.Fatal(r.err)
	}
	replace(t, key, "sk-2\n")
	if r := next(t, ch); !r.ok {
		t.Fatal(r.err)
	}
	if g, _ := s.Current().Group("g"); g.Deployments[0].Provider.APIKey.Value() != "sk-2" {
		t.Fatal("the key in the newly referenced directory was not reloaded")
	}
}

// fakeClock is a manual clock for Watch's timers.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c     *fakeClock
	ch    chan time.Time
	due   time.Time
	armed bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) watchTimer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	return t
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.fireLocked()
	}
}

func (t *fakeTimer) fireLocked() {
	if t.armed && !t.due.After(t.c.now) {
		t.armed = false
		select {
		case t.ch <- t.c.now:
		default:
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Reset(d time.Duration) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drainLocked()
	t.due, t.armed = t.c.now.Add(d), true
	t.fireLocked()
}

func (t *fakeTimer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drainLocked()
	t.armed = false
}

func (t *fakeTimer) drainLocked() {
	select {
	case <-t.ch:
	default:
	}
}

// runLoop runs s.loop on injected events with a fake clock until the test
// ends; handled receives one value per event handled.
func runLoop(t *testing.T, s *Store, clk *fakeClock, events chan fsnotify.Event) (reloads <-chan reload, handled <-chan struct{}) {
	t.Helper()
	ch := make(chan reload, 64)
	h := make(chan struct{})
	ready := make(chan struct{})
	s.clk, s.watching, s.afterEvent = clk, func() { close(ready) }, func() { h <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.loop(ctx, events, nil, func() {}, WatchHooks{
			PollInterval: time.Hour,
			Reloaded:     func(ok bool, err error, cause string) { ch <- reload{ok, err, cause} },
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	<-ready
	return ch, h
}

// TestWatchNoisyNeighbour: a file beside the configuration rewritten
// without pause cannot hold a reload back for more than MaxDelay. The
// clock advances by half the debounce per event, so a debounce without a
// bound would never fire.
func TestWatchNoisyNeighbour(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m1"))
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	events := make(chan fsnotify.Event)
	reloads, handled := runLoop(t, s, clk, events)

	replace(t, path, fmt.Sprintf(watchCfg, "m2"))
	start := clk.Now()
	neighbour := fsnotify.Event{Name: filepath.Join(filepath.Dir(path), "noisy.log"), Op: fsnotify.Write}
	const bound = 1000 // events; MaxDelay/(Debounce/2) = 40 are enough
	for i := 0; ; i++ {
		if i == bound {
			t.Fatalf("no reload after %d neighbour events (%s of fake time)", bound, clk.Now().Sub(start))
		}
		select {
		case r := <-reloads:
			if !r.ok || r.cause != CauseChange || model(s) != "m2" {
				t.Fatalf("reload %+v, model %s", r, model(s))
			}
			// The due reload and one more event can be ready together
			// (the loop had not parked yet when the clock moved); the loop
			// then takes at most that one event first, which moved the
			// fake clock by one event interval.
			if held := clk.Now().Sub(start); held > MaxDelay+Debounce/2 {
				t.Fatalf("reload held back %s, more than MaxDelay %s and one event", held, MaxDelay)
			}
			return
		case events <- neighbour:
			<-handled
			clk.Advance(Debounce / 2)
		}
	}
}

// TestWatchDebounce: a burst reloads once, after a quiet spell of
// Debounce.
func TestWatchDebounce(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m1"))
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	events := make(chan fsnotify.Event)
	reloads, handled := runLoop(t, s, clk, events)
	ev := fsnotify.Event{Name: path, Op: fsnotify.Create}

	replace(t, path, fmt.Sprintf(watchCfg, "m2"))
	for range 3 {
		events <- ev
		<-handled
		clk.Advance(Debounce - 1)
	}
	select {
	case r := <-reloads:
		t.Fatalf("reloaded before a quiet spell: %+v", r)
	default:
	}
	clk.Advance(1)
	if r := next(t, reloads); !r.ok || model(s) != "m2" {
		t.Fatalf("%+v %s", r, model(s))
	}
}

// TestWatchPolls: with no events at all (a mount that gives none), the
// poll finds the change.
func TestWatchPolls(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m1"))
	clk := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	ch := make(chan reload, 8)
	ready := make(chan struct{})
	s.clk, s.watching = clk, func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.loop(ctx, nil, nil, func() {}, WatchHooks{
			PollInterval: time.Minute,
			Reloaded:     func(ok bool, err error, cause string) { ch <- reload{ok, err, cause} },
		})
	}()
	defer func() { cancel(); <-done }()
	<-ready
	replace(t, path, fmt.Sprintf(watchCfg, "m2"))
	clk.Advance(time.Minute)
	if r := next(t, ch); !r.ok || r.cause != CausePoll || model(s) != "m2" {
		t.Fatalf("%+v %s", r, model(s))
	}
}

// TestWatchRequest: Request reloads and reports even when nothing
// changed (environment variables may have).
func TestWatchRequest(t *testing.T) {
	t.Setenv("LLMUX_WATCH_TEST_KEY", "sk-a")
	s, _ := newStore(t, strings.Replace(fmt.Sprintf(watchCfg, "m1"), "cluster: c}", "cluster: c, credentials: {api_key_env: LLMUX_WATCH_TEST_KEY}}", 1))
	ch := watch(t, s)
	t.Setenv("LLMUX_WATCH_TEST_KEY", "sk-b")
	s.Request()
	if r := next(t, ch); !r.ok || r.cause != CauseRequest {
		t.Fatalf("%+v", r)
	}
	if g, _ := s.Current().Group("g"); g.Deployments[0].Provider.APIKey.Value() != "sk-b" {
		t.Fatal("the requested reload did not reread the environment")
	}
}

// TestStatusKeepsLoadedAt: a rejected file keeps the version in force and
// when it was loaded, and records the failed attempt.
func TestStatusKeepsLoadedAt(t *testing.T) {
	s, path := newStore(t, fmt.Sprintf(watchCfg, "m1"))
	good := s.Status()
	if good.LoadedAt.IsZero() || !good.Healthy {
		t.Fatalf("%+v", good)
	}
	replace(t, path, "model_groups: []\n")
	if err := s.Reload(); err == nil {
		t.Fatal("accepted")
	}
	st := s.Status()
	if st.Healthy || st.Version != good.Version || !st.LoadedAt.Equal(good.LoadedAt) || st.LastAttempt.Before(good.LastAttempt) || st.LastError == nil {
		t.Fatalf("after a rejected file: %+v (before %+v)", st, good)
	}
}

// fileFields lists the yaml paths of every schema field whose name ends in
// _file, walking the File type.
func fileFields(t reflect.Type, prefix string, out *[]string) {
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		fileFields(t.Elem(), prefix+"[]", out)
	case reflect.Struct:
		for f := range t.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := strings.TrimPrefix(prefix+"."+name, ".")
			if strings.HasSuffix(name, "_file") {
				*out = append(*out, p)
			}
			fileFields(f.Type, p, out)
		}
	}
}

// TestEveryFileFieldIsWatched: each *_file field of the schema is read
// through LoadOptions.ReadFile, so the store watches the file. A new
// *_file field fails this test until it has a case here.
func TestEveryFileFieldIsWatched(t *testing.T) {
	cases := map[string]string{
		"auth.keys[].key_file":                 "auth: {keys: [{name: k, tenant: t, key_file: %s}]}\n" + fmt.Sprintf(watchCfg, "m"),
		"providers[].credentials.api_key_file": strings.Replace(fmt.Sprintf(watchCfg, "m"), "cluster: c}", "cluster: c, credentials: {api_key_file: %s}}", 1),
		"redaction.hash_key_file":              "redaction: {hash_key_file: %s, policies: [{name: p, actions: {email: hash}}], default: p}\n" + fmt.Sprintf(watchCfg, "m"),
	}
	var fields []string
	fileFields(reflect.TypeFor[File](), "", &fields)
	for _, field := range fields {
		cfg, ok := cases[field]
		if !ok {
			t.Errorf("%s: no case here; read the file through LoadOptions.ReadFile (so Store watches it) and add one", field)
			continue
		}
		delete(cases, field)
		dir := t.TempDir()
		key := filepath.Join(dir, "secret")
		replace(t, key, "sk-x\n")
		s, _ := newStore(t, fmt.Sprintf(cfg, key))
		if files := s.Status().Files; len(files) != 1 || files[0] != key {
			t.Errorf("%s: watched files %v, want [%s]", field, files, key)
		}
	}
	for field := range cases {
		t.Errorf("case %s matches no schema field", field)
	}
}
