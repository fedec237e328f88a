package config

import (
	"net"
	"strconv"
	"strings"
)

// EgressAddress is server.egress_address: "host:port" of Envoy's egress
// listener (envoy/standalone.yaml: 127.0.0.1:10001), through which llmux
// makes its own provider calls (failover, stream repair) so that Envoy keeps
// TLS, pooling, circuit breakers and telemetry for them. Empty (the
// default) turns those calls, and so failover, off. The listener routes by
// the cluster header and trusts whoever reaches it, so it listens on
// loopback only: the host must be a loopback address or "localhost".
type EgressAddress string

// Enabled reports whether llmux may make its own provider calls.
func (a EgressAddress) Enabled() bool { return a != "" }

// validateEgress checks server.egress_address (issue 8).
func validateEgress(c *errs, s *Server) {
	a := string(s.EgressAddress)
	if a == "" {
		return
	}
	const path = "server.egress_address"
	if strings.Contains(a, "://") {
		c.add(path, "%q: want host:port of Envoy's egress listener, without a scheme", a)
		return
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		c.add(path, "%q: want host:port of Envoy's egress listener: %v", a, err)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		c.add(path, "%q: port must be 1-65535", a)
		return
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		c.add(path, "%q: the egress listener must be on loopback (127.0.0.1, ::1 or localhost): it sends any request to any cluster", a)
	}
}
