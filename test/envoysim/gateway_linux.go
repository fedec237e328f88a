package envoysim

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill envoy when the process that
// started it (the test binary) exits without calling Close. (Linux ties
// this to the starting OS thread; the Go runtime does not retire threads
// unless a goroutine exits while locked to one.)
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
