package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// taken listens on a loopback port until the test ends.
func taken(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestCheckPorts(t *testing.T) {
	if err := checkPorts([]port{{freeAddr(t), "free", "-x"}}); err != nil {
		t.Fatalf("free port reported: %v", err)
	}
	busy := taken(t)
	_, num, _ := net.SplitHostPort(busy)
	err := checkPorts([]port{{freeAddr(t), "free", "-x"}, {busy, "llmux admin", "-admin 127.0.0.1:PORT"}})
	if err == nil {
		t.Fatal("a taken port passed the check")
	}
	for _, want := range []string{busy + " (llmux admin) is not free", "ss -ltnp 'sport = :" + num + "'", "make run DEVSTACK_FLAGS='-admin 127.0.0.1:PORT'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "(free)") {
		t.Errorf("a free port is named:\n%v", err)
	}
}

// TestRunChecksPortsFirst: with a port taken, run fails before it builds
// or starts anything (the binary it would start does not exist).
func TestRunChecksPortsFirst(t *testing.T) {
	busy := taken(t)
	_, p, _ := net.SplitHostPort(busy)
	ingress, _ := strconv.Atoi(p)
	o := options{bin: "/nonexistent/llmux-extproc", cfg: "/nonexistent.yaml", bootstrap: "/nonexistent.yaml", grpcAddr: freeAddr(t), admin: freeAddr(t), port: ingress, build: true}
	err := run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), busy+" (Envoy ingress) is not free") {
		t.Fatalf("run: %v", err)
	}
}

// TestExitsNonZeroOnTakenPort runs devstack's main in a child process
// with its gRPC port taken: it exits 1 and names the port.
func TestExitsNonZeroOnTakenPort(t *testing.T) {
	if addr := os.Getenv("DEVSTACK_TEST_GRPC"); addr != "" {
		os.Args = []string{"devstack", "-grpc", addr, "-admin", os.Getenv("DEVSTACK_TEST_ADMIN"), "-port", os.Getenv("DEVSTACK_TEST_PORT"), "-llmux", "/nonexistent"}
		main()
		return
	}
	busy := taken(t)
	_, p, _ := net.SplitHostPort(freeAddr(t))
	cmd := exec.Command(os.Args[0], "-test.run=^TestExitsNonZeroOnTakenPort$")
	cmd.Env = append(os.Environ(), "DEVSTACK_TEST_GRPC="+busy, "DEVSTACK_TEST_ADMIN="+freeAddr(t), "DEVSTACK_TEST_PORT="+p)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "devstack: ports taken, nothing started") || !strings.Contains(string(out), busy+" (llmux gRPC (ext_proc)) is not free") {
		t.Fatalf("output:\n%s", out)
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
