package config

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Status describes the store's last reload attempt, for /readyz.
type Status struct {
	// Version is the version in force.
	Version string
	// LastError is why the newest file on disk was rejected, or nil.
	LastError error
	// LastAttempt is when a reload was last tried.
	LastAttempt time.Time
	// Healthy is false while the newest file on disk is invalid.
	Healthy bool
}

// Store holds the configuration in force and reloads it from its file.
type Store struct {
	path string
	opts LoadOptions
	cur  atomic.Pointer[Runtime]

	mu      sync.Mutex
	status  Status
	lastRaw []byte
}

// debounce coalesces the bursts of events an editor or a Kubernetes
// ConfigMap update produces.
const debounce = 50 * time.Millisecond

// NewStore loads path; the first load must succeed.
func NewStore(path string, opts LoadOptions) (*Store, error) {
	s := &Store{path: path, opts: opts}
	raw, rt, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(rt)
	s.lastRaw = raw
	s.status = Status{Version: rt.Version(), LastAttempt: time.Now(), Healthy: true}
	return s, nil
}

func (s *Store) load() ([]byte, *Runtime, error) {
	raw, err := os.ReadFile(s.path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	opts := s.opts
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(s.path)
	}
	rt, err := Parse(raw, opts)
	if err != nil {
		return raw, nil, fmt.Errorf("config %s:\n%w", s.path, err)
	}
	return raw, rt, nil
}

// Current returns the configuration in force.
func (s *Store) Current() *Runtime { return s.cur.Load() }

// Status reports the last reload attempt.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Reload reads the file again. A valid file is swapped in atomically; an
// invalid one leaves the configuration in force and is reported by Status.
// changed is false when the content did not change.
func (s *Store) Reload() (changed bool, err error) {
	raw, rt, err := s.load()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastAttempt = time.Now()
	if raw != nil && bytes.Equal(raw, s.lastRaw) {
		return false, s.status.LastError
	}
	if raw != nil {
		s.lastRaw = raw
	}
	if err != nil {
		s.status.LastError, s.status.Healthy = err, false
		return true, err
	}
	s.cur.Store(rt)
	s.status = Status{Version: rt.Version(), LastAttempt: s.status.LastAttempt, Healthy: true}
	return true, nil
}

// Watch reloads the file whenever its directory changes (editors rename
// files; Kubernetes swaps a ..data symlink), until ctx is done. onReload,
// when not nil, is called after each reload whose content changed.
func (s *Store) Watch(ctx context.Context, onReload func(ok bool, err error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("config: watch %s: %w", filepath.Dir(s.path), err)
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
			if onReload != nil {
				onReload(false, fmt.Errorf("config: watch: %w", err))
			}
		case <-timer.C:
			changed, err := s.Reload()
			if changed && onReload != nil {
				onReload(err == nil, err)
			}
		}
	}
}
