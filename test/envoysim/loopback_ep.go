package envoysim

import (
	"fmt"
	"net"
	"strconv"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

type endpointv3LbEndpoint struct {
	host     string
	port     int
	pipe     string // unix socket path instead of host:port
	hostname string
}

func (e *endpointv3LbEndpoint) assignment(cluster string) *endpointv3.ClusterLoadAssignment {
	ep := &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: e.host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(e.port)}}}}}
	if e.pipe != "" {
		ep.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: e.pipe}}}
	}
	if e.hostname != "" && net.ParseIP(e.hostname) == nil {
		ep.Hostname = e.hostname
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: ep}}}}}}
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("address %q: bad port", addr)
	}
	return h, n, nil
}

func marshalWithAdmin(m interface{ ProtoReflect() protoreflect.Message }, admin int) ([]byte, error) {
	b, ok := m.(*bootstrapv3.Bootstrap)
	if !ok {
		return nil, fmt.Errorf("envoysim: not a bootstrap")
	}
	b.Admin = &bootstrapv3.Admin{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(admin)}}}}}
	out, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("envoysim: encoding bootstrap: %w", err)
	}
	return out, nil
}
