package config

import (
	"os"
	"strings"
	"testing"
)

// TestEgressAddress: server.egress_address is off by default, takes a
// loopback host:port, and refuses anything else naming the field.
func TestEgressAddress(t *testing.T) {
	base, err := os.ReadFile("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rt := mustParseFile(t, "testdata/valid/minimal.yaml"); rt.Server().EgressAddress.Enabled() {
		t.Errorf("egress on by default: %q", rt.Server().EgressAddress)
	}
	for _, tc := range []struct{ addr, err string }{
		{"127.0.0.1:10001", ""},
		{"localhost:10001", ""},
		{"'[::1]:10001'", ""},
		{"0.0.0.0:10001", "server.egress_address: \"0.0.0.0:10001\": the egress listener must be on loopback"},
		{"10.0.0.5:10001", "must be on loopback"},
		{"envoy:10001", "must be on loopback"},
		{"http://127.0.0.1:10001", "without a scheme"},
		{"127.0.0.1", "want host:port"},
		{"127.0.0.1:0", "port must be 1-65535"},
		{"127.0.0.1:http", "port must be 1-65535"},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			doc := "server:\n  egress_address: " + tc.addr + "\n" + string(base)
			rt, err := Parse([]byte(doc), testOpts())
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := strings.Trim(tc.addr, "'"); string(rt.Server().EgressAddress) != want || !rt.Server().EgressAddress.Enabled() {
					t.Errorf("egress_address = %q, want %q", rt.Server().EgressAddress, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "server.egress_address") {
				t.Errorf("error %v, want one naming server.egress_address and containing %q", err, tc.err)
			}
		})
	}
}
