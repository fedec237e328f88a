package config

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Status describes the configuration in force and the store's newest
// reload attempt, for /readyz and /status. A failed reload never takes the
// configuration in force away: readiness does not depend on Status.
type Status struct {
	// Version is the version of the configuration in force.
	Version string
	// LoadedAt is when the configuration in force was loaded.
	LoadedAt time.Time
	// LastError is why the newest attempt was rejected, or nil.
	LastError error
	// LastAttempt is when a reload was last tried.
	LastAttempt time.Time
	// Healthy is false while the newest file on disk, or a file it refers
	// to, is invalid or unreadable; the configuration in force is then an
	// older one.
	Healthy bool
	// Files are the files the newest attempt read besides the
	// configuration file itself (key files, credential files), resolved
	// against the configuration's directory. Watch watches them too.
	Files []string
}

// Store holds the configuration in force and reloads it from its file.
// Current is lock-free; reloads are serialised.
type Store struct {
	path string
	opts LoadOptions
	cur  atomic.Pointer[Runtime]

	mu     sync.Mutex // serialises reloads; guards status, lastHash and files
	status Status
	// lastHash fingerprints what the newest attempt read: the configuration
	// file and every file it referred to, as read. Zero after a failure to
	// read the configuration file.
	lastHash [sha256.Size]byte
	// files are the referred-to files of the newest attempt, in the order
	// Parse read them (repeats kept, so fingerprints compare).
	files []string

	// requests carries Request's reload requests to Watch.
	requests chan struct{}

	// Test hooks, set before Watch runs.
	watching   func()     // Watch has registered its watches and checked the files
	afterEvent func()     // Watch has handled one file event
	clk        watchClock // nil means the real clock
}

// NewStore loads path; the first load must succeed. Relative key files
// resolve against path's directory unless opts.BaseDir is set.
func NewStore(path string, opts LoadOptions) (*Store, error) {
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(path)
	}
	s := &Store{path: path, opts: opts, requests: make(chan struct{}, 1)}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the configuration in force. Callers should use one
// snapshot for a whole request.
func (s *Store) Current() *Runtime { return s.cur.Load() }

// Status reports the configuration in force and the newest reload attempt.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Files = slices.Clone(st.Files)
	return st
}

// Reload reads and validates the file again, even if neither it nor the
// files it refers to changed (environment variables may have). A valid
// file is swapped in atomically; an invalid one leaves the configuration in
// force, is returned and is reported by Status until a valid file is
// loaded.
func (s *Store) Reload() error {
	_, err := s.reload(true)
	return err
}

// Request asks a running Watch to reload now, as Reload does, and to
// report the attempt through its hooks (SIGHUP does this). It does not
// block; requests made while one is pending are merged.
func (s *Store) Request() {
	select {
	case s.requests <- struct{}{}:
	default:
	}
}

// read is one file Parse read, for the fingerprint.
type read struct {
	name string
	data []byte
	err  error
}

// fingerprint hashes the configuration bytes and the referred-to files as
// read (content or error), so that a change to any of them is seen.
func fingerprint(raw []byte, files []read) [sha256.Size]byte {
	h := sha256.New()
	fmt.Fprintf(h, "%d\n", len(raw))
	h.Write(raw)
	for _, f := range files {
		fmt.Fprintf(h, "\n%q %d %v\n", f.name, len(f.data), f.err)
		h.Write(f.data)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// readAll rereads files with opts' reader, for the fingerprint.
func (s *Store) readAll(files []string) []read {
	rf := s.opts.ReadFile
	if rf == nil {
		rf = os.ReadFile
	}
	out := make([]read, len(files))
	for i, name := range files {
		b, err := rf(name)
		out[i] = read{name: name, data: b, err: err}
	}
	return out
}

// reload loads the file unless force is false and neither it nor any file
// it refers to changed since the newest attempt; changed says whether it
// loaded.
func (s *Store) reload(force bool) (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	raw, err := os.ReadFile(s.path)
	if err != nil {
		if !force && s.lastHash == ([sha256.Size]byte{}) && s.status.LastError != nil {
			return false, s.status.LastError // still unreadable: reported already
		}
		s.status.LastAttempt = now
		s.lastHash = [sha256.Size]byte{}
		s.status.LastError, s.status.Healthy = fmt.Errorf("config: %w", err), false
		return true, s.status.LastError
	}
	if !force && fingerprint(raw, s.readAll(s.files)) == s.lastHash {
		return false, s.status.LastError
	}
	s.status.LastAttempt = now
	opts := s.opts
	if opts.Now == nil {
		opts.Now = func() time.Time { return now }
	}
	// Record what Parse reads, so that the fingerprint covers exactly the
	// bytes the new runtime was built from.
	var reads []read
	rf := opts.ReadFile
	if rf == nil {
		rf = os.ReadFile
	}
	opts.ReadFile = func(name string) ([]byte, error) {
		b, err := rf(name)
		reads = append(reads, read{name: name, data: b, err: err})
		return b, err
	}
	rt, err := Parse(raw, opts)
	s.lastHash = fingerprint(raw, reads)
	s.files = s.files[:0]
	for _, r := range reads {
		s.files = append(s.files, r.name)
	}
	s.status.Files = uniq(s.files)
	if err != nil {
		s.status.LastError, s.status.Healthy = fmt.Errorf("config %s:\n%w", s.path, err), false
		return true, s.status.LastError
	}
	s.cur.Store(rt)
	s.status = Status{Version: rt.Version(), LoadedAt: rt.LoadedAt(), LastAttempt: now, Healthy: true, Files: s.status.Files}
	return true, nil
}

// uniq returns names sorted without repeats.
func uniq(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
