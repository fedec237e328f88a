package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
)

// Control files that hold a container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{
	"sys/fs/cgroup/memory.max",
	"sys/fs/cgroup/memory/memory.limit_in_bytes",
}

// unlimitedMemory is the value from which a cgroup v1 limit means "none"
// (the kernel reports its page-rounded maximum, about 2^63).
const unlimitedMemory = 1 << 60

// cgroupMemoryLimit reads the container's memory limit under root ("/" in
// production). ok is false when there is none or it cannot be read.
func cgroupMemoryLimit(root string) (limit int64, ok bool) {
	for _, name := range cgroupMemoryFiles {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= unlimitedMemory {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// applyMemoryLimit sets the Go runtime's soft memory limit to ratio times
// the container's memory limit, unless GOMEMLIMIT is set or ratio is 0.
// With the default GOGC alone, the heap may grow to about twice the live
// bytes before a collection, so large request bodies (each briefly held
// more than once) can take a replica past its container limit; a soft
// limit below it makes the collector run first (docs/performance.md,
// "Large request bodies"). set is debug.SetMemoryLimit outside tests.
func applyMemoryLimit(log *slog.Logger, ratio float64, root string, set func(int64) int64) {
	if ratio <= 0 {
		return
	}
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		log.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return
	}
	limit, ok := cgroupMemoryLimit(root)
	if !ok {
		log.Info("no container memory limit found; the Go runtime has no soft memory limit (set GOMEMLIMIT to give it one)")
		return
	}
	soft := int64(float64(limit) * ratio)
	set(soft)
	log.Info("soft memory limit set from the container's limit", "container_limit_bytes", limit, "soft_limit_bytes", soft, "ratio", ratio)
}

// setMemoryLimit is debug.SetMemoryLimit.
func setMemoryLimit(n int64) int64 { return debug.SetMemoryLimit(n) }
