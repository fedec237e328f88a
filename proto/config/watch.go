package config

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Timing of Watch.
const (
	// Debounce is the quiet spell Watch waits for after a file event, so
	// that the bursts an editor or a Kubernetes volume update produce give
	// one reload.
	Debounce = 50 * time.Millisecond
	// MaxDelay bounds how long events can hold a reload back: a reload
	// happens at most MaxDelay after the first event of a burst, however
	// noisy the watched directories are (a log file rewritten
	// continuously beside the configuration, say).
	MaxDelay = time.Second
	// DefaultPollInterval is how often Watch rereads the files when no
	// event says they changed: the fallback for file systems and mounts
	// that give no events, for lost events and for watches that could not
	// be set up.
	DefaultPollInterval = 10 * time.Second
)

// Reload causes, passed to WatchHooks.Reloaded.
const (
	// CauseChange is a reload after file events.
	CauseChange = "change"
	// CausePoll is a reload found necessary by the periodic poll.
	CausePoll = "poll"
	// CauseRequest is a reload asked for with Request (SIGHUP).
	CauseRequest = "request"
)

// WatchHooks receive what Watch sees. Nil functions are skipped; they run
// on Watch's goroutine.
type WatchHooks struct {
	// Reloaded is called after each reload attempt: of changed content
	// (the configuration file or a file it refers to), or any requested
	// one. ok with a nil error means the new configuration is in force;
	// !ok carries the reason (every field error; never a secret) and the
	// previous configuration stays in force. cause is one of the Cause
	// constants.
	Reloaded func(ok bool, err error, cause string)
	// Degraded is called when file events cannot be relied on (a watch
	// could not be set up, or events were lost); Watch keeps polling.
	Degraded func(err error)
	// PollInterval is how often the files are reread regardless of
	// events (DefaultPollInterval when zero).
	PollInterval time.Duration
}

// Watch reloads the configuration whenever it or a file it refers to (key
// files, credential files) changes, until ctx is done; it then returns nil.
//
// It watches directories, not files: editors replace files by renaming,
// and Kubernetes updates ConfigMap and Secret volumes by swapping a
// ..data symlink, so the watched name keeps pointing at a new target and
// no event names the file itself. Any event in a watched directory starts
// a check; a check compares what the files hold now with what the newest
// attempt read, and reloads only on a difference. Events are debounced
// (Debounce of quiet, never more than MaxDelay after the first event).
// Every PollInterval the files are checked anyway. Request forces a
// reload. The set of watched directories follows the configuration: a
// reload that refers to new files watches their directories.
func (s *Store) Watch(ctx context.Context, h WatchHooks) error {
	if h.PollInterval <= 0 {
		h.PollInterval = DefaultPollInterval
	}
	degraded := func(err error) {
		if h.Degraded != nil {
			h.Degraded(err)
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	resync := func() {}
	if w, err := fsnotify.NewWatcher(); err != nil {
		degraded(fmt.Errorf("config: watch: %w; polling every %s", err, h.PollInterval))
	} else {
		defer w.Close()
		events, errs = w.Events, w.Errors
		watched := map[string]bool{}
		resync = func() {
			want := s.watchDirs()
			for dir := range watched {
				if !slices.Contains(want, dir) {
					_ = w.Remove(dir)
					delete(watched, dir)
				}
			}
			for _, dir := range want {
				if watched[dir] {
					continue
				}
				if err := w.Add(dir); err != nil {
					degraded(fmt.Errorf("config: watch %s: %w; polling every %s", dir, err, h.PollInterval))
					continue
				}
				watched[dir] = true
			}
		}
		resync()
	}
	s.loop(ctx, events, errs, resync, h)
	return nil
}

// watchDirs are the directories holding the configuration file and the
// files it refers to, and, for symlinks, their targets' directories
// (except Kubernetes' timestamped ..YYYY_MM_DD directories, which are
// replaced, not changed).
func (s *Store) watchDirs() []string {
	s.mu.Lock()
	files := append([]string{s.path}, s.files...)
	s.mu.Unlock()
	var dirs []string
	for _, f := range files {
		dirs = append(dirs, filepath.Dir(f))
		if r, err := filepath.EvalSymlinks(f); err == nil {
			if d := filepath.Dir(r); !strings.HasPrefix(filepath.Base(d), "..") {
				dirs = append(dirs, d)
			}
		}
	}
	return uniq(dirs)
}

// loop is Watch's event loop; events and errs may be nil (polling only).
func (s *Store) loop(ctx context.Context, events <-chan fsnotify.Event, errs <-chan error, resync func(), h WatchHooks) {
	clk := s.clk
	if clk == nil {
		clk = realClock{}
	}
	check := func(force bool, cause string) {
		changed, err := s.reload(force)
		if changed || force {
			if h.Reloaded != nil {
				h.Reloaded(err == nil, err, cause)
			}
			resync()
		}
	}
	// The files may have changed between the last load and the watch.
	check(false, CauseChange)
	deb := clk.NewTimer(time.Hour)
	deb.Stop()
	defer deb.Stop()
	poll := clk.NewTimer(h.PollInterval)
	defer poll.Stop()
	// Tests learn here that the timers exist, so that advancing their
	// clock cannot come before the poll timer is armed.
	if s.watching != nil {
		s.watching()
	}
	var first time.Time // the first event of the pending burst; zero when none
	event := func() {
		now := clk.Now()
		if first.IsZero() {
			first = now
		}
		deb.Reset(max(0, min(Debounce, first.Add(MaxDelay).Sub(now))))
	}
	for {
		// A due reload goes before further events, so that a flood of
		// events cannot starve it.
		select {
		case <-deb.C():
			first = time.Time{}
			check(false, CauseChange)
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			event()
			if s.afterEvent != nil {
				s.afterEvent()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Events may have been lost (queue overflow): check soon.
			if h.Degraded != nil {
				h.Degraded(fmt.Errorf("config: watch: %w", err))
			}
			event()
		case <-deb.C():
			first = time.Time{}
			check(false, CauseChange)
		case <-poll.C():
			check(false, CausePoll)
			poll.Reset(h.PollInterval)
		case <-s.requests:
			check(true, CauseRequest)
		}
	}
}

// watchClock is Watch's time source; tests replace it.
type watchClock interface {
	Now() time.Time
	NewTimer(d time.Duration) watchTimer
}

// watchTimer is the part of *time.Timer Watch uses.
type watchTimer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) watchTimer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time   { return t.t.C }
func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }
