package config

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Status describes the store's newest reload attempt, for /readyz.
type Status struct {
	// Version is the version of the configuration in force.
	Version string
	// LastError is why the newest file on disk was rejected, or nil.
	LastError error
	// LastAttempt is when a reload was last tried.
	LastAttempt time.Time
	// Healthy is false while the newest file on disk is invalid (or
	// unreadable); the configuration in force is then an older one.
	Healthy bool
}

// Store holds the configuration in force and reloads it from its file.
// Current is lock-free; reloads are serialised.
type Store struct {
	path string
	opts LoadOptions
	cur  atomic.Pointer[Runtime]

	mu       sync.Mutex // serialises reloads; guards status and lastHash
	status   Status
	lastHash [sha256.Size]byte // content of the newest file read; zero after a read failure

	// watching, when set (by tests), is called once Watch has registered
	// its watch and checked the file.
	watching func()
}

// debounce coalesces the bursts of events an editor or a Kubernetes
// ConfigMap update produces into one reload.
const debounce = 50 * time.Millisecond

// NewStore loads path; the first load must succeed. Relative key files
// resolve against path's directory unless opts.BaseDir is set.
func NewStore(path string, opts LoadOptions) (*Store, error) {
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(path)
	}
	s := &Store{path: path, opts: opts}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the configuration in force. Callers should use one
// snapshot for a whole request.
func (s *Store) Current() *Runtime { return s.cur.Load() }

// Status reports the newest reload attempt.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Reload reads and validates the file again, even if its content did not
// change (key files and environment variables may have). A valid file is
// swapped in atomically; an invalid one leaves the configuration in force,
// is returned and is reported by Status until a valid file is loaded.
func (s *Store) Reload() error {
	_, err := s.reload(true)
	return err
}

// reload loads the file unless force is false and its content is the one
// last read; changed says whether it did.
func (s *Store) reload(force bool) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.status.LastAttempt = now
	raw, err := os.ReadFile(s.path)
	if err != nil {
		s.lastHash = [sha256.Size]byte{}
		s.status.LastError, s.status.Healthy = fmt.Errorf("config: %w", err), false
		return true, s.status.LastError
	}
	h := sha256.Sum256(raw)
	if !force && h == s.lastHash {
		return false, s.status.LastError
	}
	s.lastHash = h
	opts := s.opts
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	rt, err := Parse(raw, opts)
	if err != nil {
		s.status.LastError, s.status.Healthy = fmt.Errorf("config %s:\n%w", s.path, err), false
		return true, s.status.LastError
	}
	s.cur.Store(rt)
	s.status = Status{Version: rt.Version(), LastAttempt: now, Healthy: true}
	return true, nil
}

// Watch reloads the file whenever its directory changes, until ctx is
// done; it returns nil then, or an error if the watch cannot be set up.
// It watches the directory, not the file, because editors replace files
// by renaming and Kubernetes updates a ConfigMap by swapping a ..data
// symlink. Bursts of events are coalesced (50 ms), and a file whose
// content did not change is not reloaded. onReload, when not nil, is
// called after each reload attempt of changed content: ok with a nil error
// when the new configuration is in force, !ok with the reason (every field
// error) when the file was rejected and the previous configuration kept.
// Watch errors are reported as !ok too. onReload runs on Watch's
// goroutine.
func (s *Store) Watch(ctx context.Context, onReload func(ok bool, err error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch: %w", err)
	}
	defer w.Close()
	dir := filepath.Dir(s.path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("config: watch %s: %w", dir, err)
	}
	report := func(ok bool, err error) {
		if onReload != nil {
			onReload(ok, err)
		}
	}
	// The file may have changed between the last load and the watch.
	if changed, err := s.reload(false); changed {
		report(err == nil, err)
	}
	if s.watching != nil {
		s.watching()
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			report(false, fmt.Errorf("config: watch %s: %w", dir, err))
		case <-timer.C:
			if changed, err := s.reload(false); changed {
				report(err == nil, err)
			}
		}
	}
}
