package envoy_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/llmux/llmux/envoy"

	// Every type an "@type" in these files names must be linked in, or
	// decoding fails with "unable to resolve".
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// doc is one YAML document of one file under envoy/.
type doc struct {
	file  string // relative to envoy/
	index int    // 1-based position in a multi-document file
	multi bool
	raw   []byte
	obj   map[string]any
}

func (d *doc) String() string {
	if !d.multi {
		return d.file
	}
	return fmt.Sprintf("%s (document %d)", d.file, d.index)
}

// k8sName is "Kind namespace/name" for messages.
func (d *doc) k8sName() string {
	return fmt.Sprintf("%s %s/%s", str(d.obj, "kind"), str(d.obj, "metadata", "namespace"), str(d.obj, "metadata", "name"))
}

// yamlFiles lists every *.yaml under envoy/ (the test's working directory).
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under envoy/")
	}
	return files
}

func readDocs(t *testing.T, file string) []*doc {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return parseDocs(t, file, data)
}

func parseDocs(t *testing.T, file string, data []byte) []*doc {
	t.Helper()
	raws := envoy.SplitYAML(data)
	var docs []*doc
	for i, raw := range raws {
		d := &doc{file: file, index: i + 1, multi: len(raws) > 1, raw: raw}
		if err := yaml.Unmarshal(raw, &d.obj); err != nil {
			t.Errorf("%s: not YAML: %v", d, err)
			continue
		}
		docs = append(docs, d)
	}
	return docs
}

var protoHeader = regexp.MustCompile(`(?m)^#\s*proto:\s*(\S+)\s*$`)

// checkDoc decodes and checks one document by what it is: a "# proto:"
// snippet, an Envoy bootstrap, or a Kubernetes object (whose cross-checks
// run later, over all of them). Every error names the document.
func checkDoc(d *doc) []error {
	var errs []error
	wrap := func(es []error) {
		for _, e := range es {
			errs = append(errs, fmt.Errorf("%s: %w", d, e))
		}
	}
	switch {
	case protoHeader.Match(d.raw):
		_, es := checkSnippet(d)
		wrap(es)
	case d.obj["apiVersion"] != nil || d.obj["kind"] != nil:
		wrap(checkK8sObject(d))
	case d.obj["static_resources"] != nil || d.obj["admin"] != nil || d.obj["node"] != nil:
		_, es := checkBootstrap(d.raw)
		wrap(es)
	default:
		wrap([]error{fmt.Errorf("not an Envoy bootstrap (static_resources), a \"# proto: <type>\" snippet, or a Kubernetes object")})
	}
	return errs
}

func checkBootstrap(raw []byte) (*bootstrapv3.Bootstrap, []error) {
	var b bootstrapv3.Bootstrap
	if err := envoy.DecodeYAML(raw, &b); err != nil {
		return nil, []error{fmt.Errorf("decoding Bootstrap: %w", err)}
	}
	return &b, envoy.CheckBootstrap(&b)
}

// checkSnippet decodes a document of the type its "# proto:" line names and
// checks it as one piece of an llmux setup.
func checkSnippet(d *doc) (proto.Message, []error) {
	name := string(protoHeader.FindSubmatch(d.raw)[1])
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, []error{fmt.Errorf("# proto: %s: %w", name, err)}
	}
	m := mt.New().Interface()
	if err := envoy.DecodeYAML(d.raw, m); err != nil {
		return nil, []error{fmt.Errorf("decoding %s: %w", name, err)}
	}
	errs := envoy.Validate(m)
	errs = append(errs, checkPiece("", m, true)...)
	return m, errs
}

// checkPiece applies the llmux checks that make sense for one piece of
// configuration out of context. headerSet says whether an ext_proc filter
// sets the cluster header ahead of a route.
func checkPiece(path string, m proto.Message, headerSet bool) []error {
	var errs []error
	switch m := m.(type) {
	case *hcmv3.HttpFilter:
		var ep extprocv3.ExternalProcessor
		if m.GetTypedConfig().MessageIs(&ep) {
			if err := m.GetTypedConfig().UnmarshalTo(&ep); err != nil {
				return []error{err}
			}
			p := join(path, "typed_config")
			errs = append(errs, envoy.CheckExtProc(p, &ep)...)
			errs = append(errs, envoy.CheckLLMuxExtProc(p, &ep)...)
		}
	case *clusterv3.Cluster:
		errs = append(errs, envoy.CheckCluster(path, m)...)
	case *routev3.Route:
		errs = append(errs, envoy.CheckRoute(join(path, "route"), m.GetRoute(), headerSet, nil)...)
	case *routev3.VirtualHost:
		errs = append(errs, envoy.CheckRoutes(path, &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{m}}, headerSet, nil)...)
	case *routev3.RouteConfiguration:
		errs = append(errs, envoy.CheckRoutes(path, m, headerSet, nil)...)
	}
	walkStrings(m, func(p, s string) { errs = append(errs, envoy.CheckMetadataRefs(join(path, p), s)...) })
	return errs
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// walkStrings calls f for each string field directly in m's tree (Anys are
// not opened; the Bootstrap check opens them).
func walkStrings(m proto.Message, f func(path, s string)) {
	var rec func(path string, m protoreflect.Message)
	rec = func(path string, m protoreflect.Message) {
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			p := join(path, string(fd.Name()))
			visit := func(p string, v protoreflect.Value, kind protoreflect.Kind) {
				switch kind {
				case protoreflect.MessageKind:
					rec(p, v.Message())
				case protoreflect.StringKind:
					f(p, v.String())
				}
			}
			switch {
			case fd.IsList():
				for i := 0; i < v.List().Len(); i++ {
					visit(fmt.Sprintf("%s[%d]", p, i), v.List().Get(i), fd.Kind())
				}
			case fd.IsMap():
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					visit(p+"["+k.String()+"]", mv, fd.MapValue().Kind())
					return true
				})
			default:
				visit(p, v, fd.Kind())
			}
			return true
		})
	}
	rec("", m.ProtoReflect())
}

// TestConfigs decodes and checks every YAML document under envoy/, then
// cross-checks the Kubernetes/Istio objects against each other.
func TestConfigs(t *testing.T) {
	var k8s []*doc
	for _, file := range yamlFiles(t) {
		docs := readDocs(t, file)
		t.Run(file, func(t *testing.T) {
			if len(docs) == 0 {
				t.Errorf("%s: no YAML documents", file)
			}
			for _, d := range docs {
				for _, err := range checkDoc(d) {
					t.Error(err)
				}
			}
		})
		for _, d := range docs {
			if d.obj["apiVersion"] != nil && strings.HasPrefix(file, "istio/") {
				k8s = append(k8s, d)
			}
		}
	}
	t.Run("istio cross-references", func(t *testing.T) {
		for _, err := range checkIstio(k8s) {
			t.Error(err)
		}
	})
}

// TestStandaloneNames pins the names the Envoy stand-in (test/envoysim) and
// the docs rely on.
func TestStandaloneNames(t *testing.T) {
	b := loadStandalone(t)
	var listeners, clusters []string
	for _, l := range b.GetStaticResources().GetListeners() {
		listeners = append(listeners, l.GetName())
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters = append(clusters, c.GetName())
	}
	for _, want := range []string{"ingress", "egress"} {
		if !slices.Contains(listeners, want) {
			t.Errorf("standalone.yaml: static_resources.listeners: no listener %q", want)
		}
	}
	for _, want := range []string{"llmux", "openai", "anthropic", "bedrock_us_east_1", "gemini", "vertex_us_central1", "azure"} {
		if !slices.Contains(clusters, want) {
			t.Errorf("standalone.yaml: static_resources.clusters: no cluster %q", want)
		}
	}
}

func loadStandalone(t *testing.T) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile("standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, errs := checkBootstrap(raw)
	if b == nil {
		t.Fatalf("standalone.yaml: %v", errs)
	}
	return b
}

// TestSnippetsMatchStandalone keeps the snippets identical to the pieces of
// standalone.yaml they were cut from.
func TestSnippetsMatchStandalone(t *testing.T) {
	b := loadStandalone(t)
	ingress := hcmOf(t, b, "ingress")
	var extProc *hcmv3.HttpFilter
	for _, f := range ingress.GetHttpFilters() {
		if f.GetName() == "envoy.filters.http.ext_proc" {
			extProc = f
		}
	}
	cluster := func(name string) proto.Message {
		for _, c := range b.GetStaticResources().GetClusters() {
			if c.GetName() == name {
				return c
			}
		}
		t.Fatalf("standalone.yaml: no cluster %q", name)
		return nil
	}
	want := map[string]proto.Message{
		"snippets/ext_proc_filter.yaml":    extProc,
		"snippets/llmux_cluster.yaml":      cluster("llmux"),
		"snippets/provider_cluster.yaml":   cluster("openai"),
		"snippets/route.yaml":              ingress.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0],
		"snippets/local_reply_config.yaml": ingress.GetLocalReplyConfig(),
		"snippets/owned_vhost.yaml":        vhostOf(t, ingress, "llm-owned"),
	}
	for file, w := range want {
		docs := readDocs(t, file)
		if len(docs) != 1 {
			t.Fatalf("%s: want one document, have %d", file, len(docs))
		}
		got, errs := checkSnippet(docs[0])
		if len(errs) > 0 {
			t.Fatalf("%s: %v", file, errs)
		}
		if !proto.Equal(got, w) {
			t.Errorf("%s differs from its counterpart in standalone.yaml", file)
		}
	}
}

func vhostOf(t *testing.T, hcm *hcmv3.HttpConnectionManager, name string) proto.Message {
	t.Helper()
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		if vh.GetName() == name {
			return vh
		}
	}
	t.Fatalf("standalone.yaml: no virtual host %q", name)
	return nil
}

// TestIstioMatchesStandalone keeps the Istio gateway's connection manager
// settings identical to standalone.yaml's ingress: the local_reply_config
// and the stream_idle_timeout.
func TestIstioMatchesStandalone(t *testing.T) {
	ingress := hcmOf(t, loadStandalone(t), "ingress")
	patches, errs := decodePatches(readDocs(t, "istio/envoyfilter.yaml")[0])
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	found := false
	for _, p := range patches {
		f, ok := p.value.(*listenerv3.Filter)
		var hcm hcmv3.HttpConnectionManager
		if !ok || f.GetTypedConfig().UnmarshalTo(&hcm) != nil {
			continue
		}
		found = true
		if !proto.Equal(hcm.GetLocalReplyConfig(), ingress.GetLocalReplyConfig()) {
			t.Errorf("istio/envoyfilter.yaml %s: local_reply_config differs from standalone.yaml's ingress", p.field)
		}
		if !proto.Equal(hcm.GetStreamIdleTimeout(), ingress.GetStreamIdleTimeout()) {
			t.Errorf("istio/envoyfilter.yaml %s: stream_idle_timeout %v, standalone.yaml's ingress %v", p.field,
				hcm.GetStreamIdleTimeout().AsDuration(), ingress.GetStreamIdleTimeout().AsDuration())
		}
	}
	if !found {
		t.Fatal("istio/envoyfilter.yaml: no http_connection_manager patch")
	}
}

func hcmOf(t *testing.T, b *bootstrapv3.Bootstrap, listener string) *hcmv3.HttpConnectionManager {
	t.Helper()
	for _, l := range b.GetStaticResources().GetListeners() {
		if l.GetName() != listener {
			continue
		}
		var hcm hcmv3.HttpConnectionManager
		if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
			t.Fatal(err)
		}
		return &hcm
	}
	t.Fatalf("standalone.yaml: no listener %q", listener)
	return nil
}

// ---- Kubernetes and Istio ------------------------------------------------

// checkK8sObject checks what one Kubernetes object must have on its own.
func checkK8sObject(d *doc) []error {
	var errs []error
	for _, f := range [][]string{{"apiVersion"}, {"kind"}, {"metadata", "name"}} {
		if str(d.obj, f...) == "" {
			errs = append(errs, fmt.Errorf("%s: must be set", strings.Join(f, ".")))
		}
	}
	if str(d.obj, "kind") == "EnvoyFilter" {
		_, es := decodePatches(d)
		errs = append(errs, es...)
	}
	return errs
}

// patch is one decoded EnvoyFilter configPatch.
type patch struct {
	field    string // spec.configPatches[i]
	applyTo  string
	context  string
	op       string
	match    map[string]any
	value    proto.Message // after MERGE into a minimal base, as Envoy would see it
	envoyErr []error
}

// patchTypes maps EnvoyFilter applyTo to the Envoy type of patch.value.
var patchTypes = map[string]func() proto.Message{
	"LISTENER":            func() proto.Message { return &listenerv3.Listener{} },
	"FILTER_CHAIN":        func() proto.Message { return &listenerv3.FilterChain{} },
	"NETWORK_FILTER":      func() proto.Message { return &listenerv3.Filter{} },
	"HTTP_FILTER":         func() proto.Message { return &hcmv3.HttpFilter{} },
	"CLUSTER":             func() proto.Message { return &clusterv3.Cluster{} },
	"ROUTE_CONFIGURATION": func() proto.Message { return &routev3.RouteConfiguration{} },
	"VIRTUAL_HOST":        func() proto.Message { return &routev3.VirtualHost{} },
	"HTTP_ROUTE":          func() proto.Message { return &routev3.Route{} },
	"EXTENSION_CONFIG":    func() proto.Message { return &corev3.TypedExtensionConfig{} },
}

// mergeLikeIstio merges patch into base as Istio's MERGE does: a
// typed_config of the same type is merged message into message (not byte
// for byte, as proto.Merge would treat the Any).
func mergeLikeIstio(base, patch proto.Message) error {
	bf, ok1 := base.(*listenerv3.Filter)
	pf, ok2 := patch.(*listenerv3.Filter)
	if !ok1 || !ok2 || bf.GetTypedConfig() == nil || pf.GetTypedConfig() == nil ||
		bf.GetTypedConfig().GetTypeUrl() != pf.GetTypedConfig().GetTypeUrl() {
		proto.Merge(base, patch)
		return nil
	}
	into, err := bf.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return err
	}
	from, err := pf.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return err
	}
	proto.Merge(into, from)
	a, err := anypb.New(into)
	if err != nil {
		return err
	}
	if pf.GetName() != "" {
		bf.Name = pf.GetName()
	}
	bf.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
	return nil
}

// mergeBase is what a MERGE patch lands on: the smallest valid object of its
// type, so that the merged result can be validated the way Envoy will see it.
func mergeBase(applyTo string, match map[string]any) proto.Message {
	switch applyTo {
	case "LISTENER":
		return &listenerv3.Listener{Name: "base", Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}
	case "NETWORK_FILTER":
		hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: "base",
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "base"}}})
		return &listenerv3.Filter{Name: "base", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}
	case "HTTP_FILTER":
		name := str(match, "listener", "filterChain", "filter", "subFilter", "name")
		if name == "" {
			name = "base"
		}
		return &hcmv3.HttpFilter{Name: name}
	case "CLUSTER":
		return &clusterv3.Cluster{Name: "base"}
	case "VIRTUAL_HOST":
		return &routev3.VirtualHost{Name: "base", Domains: []string{"*"}}
	case "HTTP_ROUTE":
		return &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "base"}}},
		}
	}
	return patchTypes[applyTo]()
}

var (
	patchContexts   = []string{"ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"}
	patchOperations = []string{"MERGE", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"}
)

// decodePatches decodes every spec.configPatches[].patch.value of an
// EnvoyFilter into its Envoy type (unknown fields and types fail) and
// validates it.
func decodePatches(d *doc) ([]*patch, []error) {
	var patches []*patch
	var errs []error
	list, _ := get(d.obj, "spec", "configPatches").([]any)
	if len(list) == 0 {
		errs = append(errs, fmt.Errorf("spec.configPatches: no patches"))
	}
	for i, item := range list {
		cp, _ := item.(map[string]any)
		p := &patch{
			field:   fmt.Sprintf("spec.configPatches[%d]", i),
			applyTo: str(cp, "applyTo"),
			context: str(cp, "match", "context"),
			op:      str(cp, "patch", "operation"),
		}
		p.match, _ = get(cp, "match").(map[string]any)
		fail := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", p.field, field, fmt.Sprintf(format, args...)))
		}
		if p.context != "" && !slices.Contains(patchContexts, p.context) {
			fail("match.context", "unknown context %q", p.context)
		}
		if !slices.Contains(patchOperations, p.op) {
			fail("patch.operation", "unknown operation %q", p.op)
			continue
		}
		newValue, ok := patchTypes[p.applyTo]
		if !ok {
			fail("applyTo", "unknown or unsupported applyTo %q", p.applyTo)
			continue
		}
		value := get(cp, "patch", "value")
		if p.op == "REMOVE" {
			patches = append(patches, p)
			continue
		}
		if value == nil {
			fail("patch.value", "must be set for %s", p.op)
			continue
		}
		js, err := json.Marshal(value)
		if err != nil {
			fail("patch.value", "%v", err)
			continue
		}
		m := newValue()
		if err := envoy.DecodeJSON(js, m); err != nil {
			fail("patch.value", "decoding %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
			continue
		}
		if p.op == "MERGE" {
			base := mergeBase(p.applyTo, p.match)
			if err := mergeLikeIstio(base, m); err != nil {
				fail("patch.value", "%v", err)
				continue
			}
			m = base
		}
		p.value = m
		for _, e := range envoy.Validate(m) {
			fail("patch.value", "%v", e)
		}
		patches = append(patches, p)
	}
	return patches, errs
}

// checkIstio cross-checks the Istio install: the EnvoyFilter's ext_proc
// cluster is the llmux Service's gRPC port, the Deployment listens where the
// Service points, llmux's provider clusters are Istio clusters of the
// ServiceEntries, TLS is originated for them, and the cluster_header route
// exists and is fed by the ext_proc filter.
func checkIstio(docs []*doc) []error {
	var errs []error
	fail := func(d *doc, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", d, d.k8sName(), fmt.Sprintf(format, args...)))
	}
	byKind := map[string][]*doc{}
	for _, d := range docs {
		byKind[str(d.obj, "kind")] = append(byKind[str(d.obj, "kind")], d)
	}
	one := func(kind string) *doc {
		if len(byKind[kind]) != 1 {
			errs = append(errs, fmt.Errorf("istio/: want exactly one %s, have %d", kind, len(byKind[kind])))
			return nil
		}
		return byKind[kind][0]
	}
	egress := splitEgressFilters(byKind) // llmux's sidecar egress listener (egress_test.go)
	dep, svc, ef, cm := one("Deployment"), one("Service"), one("EnvoyFilter"), one("ConfigMap")
	if dep == nil || svc == nil || ef == nil || cm == nil {
		return errs
	}
	errs = append(errs, checkIstioEgress(egress, dep, cm)...)

	// Deployment: arguments, ports, probes, config mount, hardening.
	var ctr map[string]any
	for _, c := range list(dep.obj, "spec", "template", "spec", "containers") {
		if str(c, "name") == "llmux" {
			ctr = c
		}
	}
	if ctr == nil {
		fail(dep, "spec.template.spec.containers: no container named llmux")
		return errs
	}
	args := flags(ctr)
	wantArgs := map[string]string{"-config": "/etc/llmux/llmux.yaml", "-log-format": "json"}
	for f, v := range wantArgs {
		if args[f] != v {
			fail(dep, "containers[llmux].args: %s must be %q, have %q", f, v, args[f])
		}
	}
	ports := map[string]int{}
	for _, p := range list(ctr, "ports") {
		ports[str(p, "name")] = num(p, "containerPort")
	}
	for flag, port := range map[string]string{"-grpc-listen": "grpc", "-admin-listen": "admin"} {
		_, p, ok := strings.Cut(args[flag], ":")
		n, err := strconv.Atoi(p)
		switch {
		case !ok || err != nil:
			fail(dep, "containers[llmux].args: %s must be host:port, have %q", flag, args[flag])
		case ports[port] != n:
			fail(dep, "containers[llmux].ports[%s]: containerPort %d, but %s listens on %d", port, ports[port], flag, n)
		case !strings.HasPrefix(args[flag], "0.0.0.0:") && !strings.HasPrefix(args[flag], ":") && !strings.HasPrefix(args[flag], "[::]:"):
			fail(dep, "containers[llmux].args: %s %q must listen on all addresses to be reachable in a pod", flag, args[flag])
		}
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if got := str(ctr, probe, "httpGet", "path"); got != path {
			fail(dep, "containers[llmux].%s.httpGet.path: want %s, have %q", probe, path, got)
		}
		if got := fmt.Sprint(get(ctr, probe, "httpGet", "port")); got != "admin" && got != strconv.Itoa(ports["admin"]) {
			fail(dep, "containers[llmux].%s.httpGet.port: want the admin port, have %s", probe, got)
		}
	}
	if get(ctr, "securityContext", "readOnlyRootFilesystem") != true {
		fail(dep, "containers[llmux].securityContext.readOnlyRootFilesystem: must be true")
	}
	if get(dep.obj, "spec", "template", "spec", "securityContext", "runAsNonRoot") != true &&
		get(ctr, "securityContext", "runAsNonRoot") != true {
		fail(dep, "securityContext.runAsNonRoot: must be true")
	}
	if get(ctr, "resources", "requests") == nil || get(ctr, "resources", "limits", "memory") == nil {
		fail(dep, "containers[llmux].resources: requests and a memory limit must be set")
	}
	configVolume := ""
	for _, m := range list(ctr, "volumeMounts") {
		if str(m, "mountPath") == "/etc/llmux" {
			configVolume = str(m, "name")
		}
	}
	configMapName := ""
	for _, v := range list(dep.obj, "spec", "template", "spec", "volumes") {
		if str(v, "name") == configVolume {
			configMapName = str(v, "configMap", "name")
		}
	}
	if configVolume == "" || configMapName != str(cm.obj, "metadata", "name") {
		fail(dep, "the llmux container must mount ConfigMap %s at /etc/llmux", str(cm.obj, "metadata", "name"))
	}
	podLabels, _ := get(dep.obj, "spec", "template", "metadata", "labels").(map[string]any)
	matches := func(sel any) bool {
		s, _ := sel.(map[string]any)
		if len(s) == 0 {
			return false
		}
		for k, v := range s {
			if podLabels[k] != v {
				return false
			}
		}
		return true
	}
	if !matches(get(dep.obj, "spec", "selector", "matchLabels")) {
		fail(dep, "spec.selector.matchLabels: does not match the pod labels")
	}
	for _, pdb := range byKind["PodDisruptionBudget"] {
		if !matches(get(pdb.obj, "spec", "selector", "matchLabels")) {
			fail(pdb, "spec.selector.matchLabels: does not select the llmux pods")
		}
	}

	// Service: selects the pods; port "grpc" is gRPC and lands on the grpc
	// container port.
	if !matches(get(svc.obj, "spec", "selector")) {
		fail(svc, "spec.selector: does not select the llmux pods")
	}
	var grpcPort map[string]any
	for _, p := range list(svc.obj, "spec", "ports") {
		if str(p, "name") == "grpc" {
			grpcPort = p
		}
	}
	if grpcPort == nil {
		fail(svc, "spec.ports: no port named grpc")
		return errs
	}
	if str(grpcPort, "appProtocol") != "grpc" {
		fail(svc, "spec.ports[grpc].appProtocol: must be grpc, so that Istio speaks HTTP/2 (ext_proc needs it)")
	}
	if tp := fmt.Sprint(grpcPort["targetPort"]); tp != "grpc" && tp != strconv.Itoa(ports["grpc"]) {
		fail(svc, "spec.ports[grpc].targetPort: %s is not the container's grpc port (%d)", tp, ports["grpc"])
	}
	wantCluster := fmt.Sprintf("outbound|%d||%s.%s.svc.cluster.local", num(grpcPort, "port"), str(svc.obj, "metadata", "name"), str(svc.obj, "metadata", "namespace"))

	// EnvoyFilter: ext_proc on the gateway, pointing at the Service; the
	// cluster_header route patch matches a VirtualService route.
	patches, perrs := decodePatches(ef)
	for _, e := range perrs {
		fail(ef, "%v", e)
	}
	var extProcPatch *patch
	for _, p := range patches {
		f, ok := p.value.(*hcmv3.HttpFilter)
		if !ok || f.GetName() != "envoy.filters.http.ext_proc" {
			continue
		}
		extProcPatch = p
		var ep extprocv3.ExternalProcessor
		if err := f.GetTypedConfig().UnmarshalTo(&ep); err != nil {
			fail(ef, "%s.patch.value.typed_config: %v", p.field, err)
			continue
		}
		field := p.field + ".patch.value.typed_config"
		for _, e := range append(envoy.CheckExtProc(field, &ep), envoy.CheckLLMuxExtProc(field, &ep)...) {
			fail(ef, "%v", e)
		}
		if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != wantCluster {
			fail(ef, "%s.grpc_service.envoy_grpc.cluster_name: want %q (Service %s port grpc), have %q", field, wantCluster, svc.k8sName(), got)
		}
		if p.context != "GATEWAY" || p.op != "INSERT_BEFORE" ||
			str(p.match, "listener", "filterChain", "filter", "subFilter", "name") != "envoy.filters.http.router" {
			fail(ef, "%s: the ext_proc filter must go INSERT_BEFORE envoy.filters.http.router in the GATEWAY context", p.field)
		}
	}
	if extProcPatch == nil {
		fail(ef, "spec.configPatches: no HTTP_FILTER patch adding envoy.filters.http.ext_proc")
	}
	routeNames := map[string]bool{}
	for _, vs := range byKind["VirtualService"] {
		for i, r := range list(vs.obj, "spec", "http") {
			routeNames[str(r, "name")] = true
			// Without a retry policy Istio retries twice on
			// connect-failure,refused-stream,unavailable,cancelled,503,
			// inside the gateway, where llmux cannot count the attempts.
			if get(r, "retries", "attempts") == nil {
				fail(vs, "spec.http[%d].retries.attempts: must be stated (Istio's implicit default retries 503s and resets twice)", i)
			}
		}
	}
	for _, dr := range byKind["DestinationRule"] {
		if get(dr.obj, "spec", "trafficPolicy", "connectionPool", "http", "http2MaxRequests") == nil {
			fail(dr, "spec.trafficPolicy.connectionPool.http.http2MaxRequests: must be sized for long LLM calls")
		}
	}
	// The gateway's connection manager and route configuration get what
	// envoy.CheckClientFacing asks of standalone.yaml's ingress. Istio sets
	// use_remote_address on gateways, so internal ranges must be named.
	var hcmPatched, internalOnly bool
	for _, p := range patches {
		switch v := p.value.(type) {
		case *listenerv3.Filter:
			var hcm hcmv3.HttpConnectionManager
			if v.GetTypedConfig().UnmarshalTo(&hcm) != nil {
				continue
			}
			hcmPatched = true
			field := p.field + ".patch.value.typed_config"
			hcm.UseRemoteAddress = wrapperspb.Bool(true)
			for _, e := range append(envoy.CheckRemoteAddress(field, &hcm), envoy.CheckLocalReply(field+".local_reply_config", hcm.GetLocalReplyConfig())...) {
				fail(ef, "%v", e)
			}
		case *routev3.RouteConfiguration:
			internalOnly = internalOnly || slices.Contains(v.GetInternalOnlyHeaders(), envoy.ClusterHeader)
		}
	}
	if !hcmPatched {
		fail(ef, "spec.configPatches: no NETWORK_FILTER patch merging local_reply_config and internal_address_config into the gateway's http_connection_manager")
	}
	if !internalOnly {
		fail(ef, "spec.configPatches: no ROUTE_CONFIGURATION patch listing %s in internal_only_headers", envoy.ClusterHeader)
	}
	for _, p := range patches {
		r, ok := p.value.(*routev3.Route)
		if !ok {
			continue
		}
		headerSet := extProcPatch != nil && (extProcPatch.context == p.context || extProcPatch.context == "ANY")
		for _, e := range envoy.CheckRoute(p.field+".patch.value.route", r.GetRoute(), headerSet, nil) {
			fail(ef, "%v", e)
		}
		for _, e := range envoy.CheckRouteHeaders(p.field+".patch.value", r) {
			fail(ef, "%v", e)
		}
		for _, e := range envoy.CheckRouteMetadata(p.field+".patch.value", r) {
			fail(ef, "%v", e)
		}
		if name := str(p.match, "routeConfiguration", "vhost", "route", "name"); !routeNames[name] {
			fail(ef, "%s.match.routeConfiguration.vhost.route.name: no VirtualService http route named %q", p.field, name)
		}
	}
	efLabels := get(ef.obj, "spec", "workloadSelector", "labels")
	for _, gw := range byKind["Gateway"] {
		if fmt.Sprint(get(gw.obj, "spec", "selector")) != fmt.Sprint(efLabels) {
			fail(gw, "spec.selector: must select the gateway the EnvoyFilter patches (%v)", efLabels)
		}
		if str(gw.obj, "metadata", "namespace") != str(ef.obj, "metadata", "namespace") {
			fail(gw, "metadata.namespace: an EnvoyFilter's workloadSelector only reaches its own namespace (%s)", str(ef.obj, "metadata", "namespace"))
		}
	}

	// Providers: every llmux provider cluster is outbound|<port>||<host> of a
	// ServiceEntry port, with TLS originated on that port by a
	// DestinationRule with the host's SNI.
	type hostPort struct {
		host string
		port int
	}
	sePorts := map[hostPort]string{} // → protocol
	for _, se := range byKind["ServiceEntry"] {
		hosts, _ := get(se.obj, "spec", "hosts").([]any)
		for _, h := range hosts {
			for _, p := range list(se.obj, "spec", "ports") {
				sePorts[hostPort{fmt.Sprint(h), num(p, "number")}] = str(p, "protocol")
			}
		}
	}
	tlsPorts := map[hostPort]string{} // → sni
	for _, dr := range byKind["DestinationRule"] {
		for _, pl := range list(dr.obj, "spec", "trafficPolicy", "portLevelSettings") {
			if str(pl, "tls", "mode") == "SIMPLE" {
				tlsPorts[hostPort{str(dr.obj, "spec", "host"), num(pl, "port", "number")}] = str(pl, "tls", "sni")
			}
		}
	}
	for _, host := range []string{"api.openai.com", "api.anthropic.com", "bedrock-runtime.us-east-1.amazonaws.com", "generativelanguage.googleapis.com"} {
		found := false
		for hp := range sePorts {
			found = found || hp.host == host
		}
		if !found {
			errs = append(errs, fmt.Errorf("istio/: no ServiceEntry for %s", host))
		}
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(str(cm.obj, "data", "llmux.yaml")), &cfg); err != nil || cfg == nil {
		fail(cm, "data[llmux.yaml]: not a YAML mapping (%v)", err)
		return errs
	}
	istioCluster := regexp.MustCompile(`^outbound\|(\d+)\|\|([^|]+)$`)
	for i, prov := range list(cfg, "providers") {
		field := fmt.Sprintf("data[llmux.yaml].providers[%d].cluster", i)
		c := str(prov, "cluster")
		m := istioCluster.FindStringSubmatch(c)
		if m == nil {
			fail(cm, "%s: %q is not an Istio cluster name outbound|<port>||<host>", field, c)
			continue
		}
		port, _ := strconv.Atoi(m[1])
		hp := hostPort{m[2], port}
		protocol, ok := sePorts[hp]
		switch {
		case !ok:
			fail(cm, "%s: no ServiceEntry declares %s port %d", field, hp.host, hp.port)
		case protocol != "HTTP":
			fail(cm, "%s: ServiceEntry port %d of %s must be protocol HTTP (Envoy originates TLS), is %s", field, hp.port, hp.host, protocol)
		}
		if sni, ok := tlsPorts[hp]; !ok {
			fail(cm, "%s: no DestinationRule originates TLS (mode SIMPLE) for %s port %d", field, hp.host, hp.port)
		} else if sni != hp.host {
			fail(cm, "%s: DestinationRule for %s port %d must set sni %q, has %q", field, hp.host, hp.port, hp.host, sni)
		}
	}
	return errs
}

// flags reads "-name value" pairs from a container's args.
func flags(ctr map[string]any) map[string]string {
	out := map[string]string{}
	args, _ := ctr["args"].([]any)
	for i := 0; i+1 < len(args); i += 2 {
		out[fmt.Sprint(args[i])] = fmt.Sprint(args[i+1])
	}
	return out
}

// get walks nested YAML mappings.
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := get(v, path...).(string)
	return s
}

func num(v any, path ...string) int {
	f, _ := get(v, path...).(float64)
	return int(f)
}

// list returns the mappings in the YAML sequence at path.
func list(v any, path ...string) []map[string]any {
	items, _ := get(v, path...).([]any)
	var out []map[string]any
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
