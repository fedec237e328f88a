package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/llmux/llmux/processor"
	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
	"github.com/llmux/llmux/translate"
	_ "github.com/llmux/llmux/translate/anthropic"
	_ "github.com/llmux/llmux/translate/azure"
	_ "github.com/llmux/llmux/translate/bedrock"
	_ "github.com/llmux/llmux/translate/gemini"
	_ "github.com/llmux/llmux/translate/openai"
)

// TestEveryListedModelIsServed runs what `make run` runs — the example
// configuration, envoy/standalone.yaml and the demo providers — with llmux
// in process and the Envoy stand-in, and asks every model GET /v1/models
// lists for an answer: each must be served (200), so the example and the
// standalone bootstrap cannot drift apart (a cluster missing, a provider
// without a demo fake).
func TestEveryListedModelIsServed(t *testing.T) {
	for _, k := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "AZURE_OPENAI_API_KEY"} {
		t.Setenv(k, "sk-demo-"+strings.ToLower(k))
	}
	t.Setenv("LLMUX_DEMO_KEY", demoKey)
	t.Setenv("AWS_ACCESS_KEY_ID", fakeprovider.BedrockAccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", fakeprovider.BedrockSecretAccessKey)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	clusters := map[string]string{}
	stop, err := startDemoProviders(clusters)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)

	store, err := config.NewStore("../../proto/config/example.yaml", config.LoadOptions{Kinds: translate.KnownKinds})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20))
	extprocv3.RegisterExternalProcessorServer(gs, processor.New(processor.Options{Config: store.Current,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	clusters["llmux"] = lis.Addr().String()

	sim, err := envoysim.Start(context.Background(), envoysim.Options{BootstrapPath: "../../envoy/standalone.yaml", Clusters: clusters})
	if err != nil {
		t.Fatalf("the stand-in refuses standalone.yaml with the demo clusters: %v", err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	base := "http://" + sim.Addr("ingress")
	client := &http.Client{Timeout: 30 * time.Second}
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+demoKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, body := do(http.MethodGet, "/v1/models", "")
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if st != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Data) == 0 {
		t.Fatalf("GET /v1/models: %d %s", st, body)
	}
	for _, m := range list.Data {
		t.Run(m.ID, func(t *testing.T) {
			path, req := "/v1/chat/completions", `{"model":"`+m.ID+`","messages":[{"role":"user","content":"Hello"}]}`
			if strings.Contains(m.ID, "embedding") {
				path, req = "/v1/embeddings", `{"model":"`+m.ID+`","input":"Hello"}`
			}
			if st, body := do(http.MethodPost, path, req); st != 200 {
				t.Errorf("%s for %q: %d %s", path, m.ID, st, body)
			}
		})
	}
}
