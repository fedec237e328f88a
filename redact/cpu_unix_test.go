//go:build unix

package redact

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU reports the process's CPU time per operation (user and system,
// garbage collection included) beside the wall-clock ns/op, which a loaded
// machine inflates. Call it with the value start returned, after the loop.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
