// Command envoysim runs the Envoy stand-in (package test/envoysim) on an
// Envoy bootstrap. It is a TEST INSTRUMENT, not Envoy: use it where Envoy
// cannot be installed (make run, local experiments).
//
//	envoysim -c envoy/standalone.yaml -cluster llmux=127.0.0.1:50051 \
//	    -cluster openai=127.0.0.1:9000 -listen-port ingress=10000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/llmux/llmux/test/envoysim"
)

type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pairs) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" || val == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	p[k] = val
	return nil
}

func main() {
	clusters, ports := pairs{}, pairs{}
	cfg := flag.String("c", "", "Envoy bootstrap YAML")
	verbose := flag.Bool("v", false, "log what the stand-in does")
	flag.Var(clusters, "cluster", "cluster endpoint override name=host:port (repeatable)")
	flag.Var(ports, "listen-port", "pin a listener port name=port (repeatable)")
	flag.Parse()
	fmt.Fprintln(os.Stderr, "************************************************************************")
	fmt.Fprintln(os.Stderr, "* envoysim is a TEST INSTRUMENT that imitates Envoy's ext_proc filter. *")
	fmt.Fprintln(os.Stderr, "* It is NOT Envoy: do not put it in front of real traffic.             *")
	fmt.Fprintln(os.Stderr, "************************************************************************")
	if *cfg == "" {
		log.Fatal("envoysim: -c bootstrap.yaml is required")
	}
	lp := map[string]int{}
	for k, v := range ports {
		n, err := strconv.Atoi(v)
		if err != nil {
			log.Fatalf("envoysim: -listen-port %s=%s: %v", k, v, err)
		}
		lp[k] = n
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := envoysim.Options{BootstrapPath: *cfg, Clusters: clusters, ListenerPorts: lp, AccessLog: os.Stdout}
	if *verbose {
		opts.Logf = log.Printf
	}
	sim, err := envoysim.Start(ctx, opts)
	if err != nil {
		log.Fatal(err)
	}
	for name := range ports {
		log.Printf("envoysim: listener %s on %s", name, sim.Addr(name))
	}
	<-ctx.Done()
	if err := sim.Close(); err != nil {
		log.Fatal(err)
	}
}
