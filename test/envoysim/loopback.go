package envoysim

import (
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// LoopbackBootstrap rewrites a bootstrap so that a REAL Envoy can run it
// against loopback fakes: each cluster named in clusters gets that single
// endpoint ("127.0.0.1:port", or "unix:/path" for a pipe), its TLS transport socket is dropped, DNS
// cluster types become STATIC and the original DNS name is kept as the
// endpoint hostname (so auto_host_rewrite behaves as in production);
// listeners named in listenerPorts bind 127.0.0.1 on that port. The result
// is JSON, which Envoy accepts for -c.
func LoopbackBootstrap(bootstrap []byte, clusters map[string]string, listenerPorts map[string]int) ([]byte, error) {
	b, err := decodeBootstrap(bootstrap)
	if err != nil {
		return nil, err
	}
	if err := rewriteLoopback(b, clusters, listenerPorts); err != nil {
		return nil, err
	}
	out, err := protojson.MarshalOptions{Indent: "  ", UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("envoysim: encoding bootstrap: %w", err)
	}
	return out, nil
}

func rewriteLoopback(b *bootstrapv3.Bootstrap, clusters map[string]string, listenerPorts map[string]int) error {
	seen := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		addr, ok := clusters[c.GetName()]
		if !ok {
			continue
		}
		seen[c.GetName()] = true
		var host string
		var port int
		pipe, isPipe := strings.CutPrefix(addr, "unix:")
		if !isPipe {
			pipe = ""
			var err error
			if host, port, err = splitHostPort(addr); err != nil {
				return fmt.Errorf("envoysim: cluster %s: %w", c.GetName(), err)
			}
		}
		orig := ""
		if eps := c.GetLoadAssignment().GetEndpoints(); len(eps) > 0 && len(eps[0].GetLbEndpoints()) > 0 {
			orig = eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
		}
		ep := &endpointv3LbEndpoint{host: host, port: port, pipe: pipe, hostname: orig}
		c.LoadAssignment = ep.assignment(c.GetName())
		c.TransportSocket = nil
		dropAutoConfig(c)
		c.ClusterDiscoveryType = nil
		c.DnsLookupFamily = 0
	}
	for name := range clusters {
		if !seen[name] {
			return fmt.Errorf("envoysim: unknown cluster %q", name)
		}
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		if p, ok := listenerPorts[l.GetName()]; ok {
			l.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}
		}
	}
	return nil
}

// dropAutoConfig removes an ALPN-based auto_config from a cluster that lost
// its TLS transport socket (Envoy refuses auto_config without ALPN); the
// loopback fake then gets HTTP/1.1, as the sim speaks to it.
func dropAutoConfig(c *clusterv3.Cluster) {
	const key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	a, ok := c.GetTypedExtensionProtocolOptions()[key]
	if !ok {
		return
	}
	var po httpv3.HttpProtocolOptions
	if a.UnmarshalTo(&po) != nil || po.GetAutoConfig() == nil {
		return
	}
	h1 := po.GetAutoConfig().GetHttpProtocolOptions()
	if h1 == nil {
		h1 = &corev3.Http1ProtocolOptions{}
	}
	// The oneof is required: state HTTP/1.1 explicitly.
	po.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: h1}}}
	if b, err := anypb.New(&po); err == nil {
		c.TypedExtensionProtocolOptions[key] = b
	}
}
