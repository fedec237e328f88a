// Command llmux-extproc is the llmux ext_proc server: Envoy streams every
// LLM request and response through it over gRPC.
//
// Usage:
//
//	llmux-extproc -config llmux.yaml [-grpc-listen 127.0.0.1:50051 | unix:///run/llmux.sock]
//	              [-admin-listen 127.0.0.1:9090] [-log-level info] [-log-format json]
//
// The admin listener serves /healthz, /readyz, /metrics (Prometheus),
// /config (the effective configuration, secrets redacted) and /debug/pprof.
// SIGTERM or SIGINT drains in-flight streams for up to -shutdown-grace,
// then exits 0.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "llmux-extproc:", err)
		os.Exit(1)
	}
}
