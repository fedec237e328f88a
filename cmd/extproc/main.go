// Command llmux-extproc is the llmux ext_proc server: Envoy streams every
// LLM request and response through it over gRPC.
//
// Usage:
//
//	llmux-extproc -config llmux.yaml [-grpc-listen 127.0.0.1:50051 | unix:///run/llmux.sock]
//	              [-admin-listen 127.0.0.1:9090] [-log-level info] [-log-format json]
//	              [-config-poll-interval 10s] [-memory-limit-ratio 0.8]
//
// The admin listener serves /healthz, /readyz, /status (the configuration
// in force and the newest reload attempt, as JSON), /metrics (Prometheus),
// /config (the effective configuration, secrets redacted) and /debug/pprof.
//
// /readyz answers 200 whenever llmux can serve: a configuration file
// rejected on reload keeps the previous configuration serving, and shows in
// /readyz's body, /status, one error log line with the field paths, and the
// llmux_config_reloads_total{result="invalid"},
// llmux_config_last_reload_success and llmux_config_*_timestamp_seconds
// metrics. It answers 503 only while the gRPC server is not serving or
// llmux is shutting down.
//
// The configuration file and the files it refers to (key_file,
// api_key_file) are watched, Kubernetes ConfigMap and Secret volume updates
// included; SIGHUP reloads them on demand (and rereads environment
// variables). SIGTERM or SIGINT drains in-flight streams for up to
// -shutdown-grace, then exits 0.
//
// Without GOMEMLIMIT, the Go runtime's soft memory limit is set to
// -memory-limit-ratio of the container's cgroup memory limit, so that the
// collector runs before large request bodies take the process past it.
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
