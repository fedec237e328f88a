//go:build !linux

package envoysim

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
