package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNodeSDK runs the official `openai` npm package (test/e2e/node) against
// the stack. .ci/run installs it; without node or the package the test
// reports why it cannot run.
func TestNodeSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the npm SDK test needs it (.ci/run installs it)")
	}
	if _, err := os.Stat("node/node_modules/openai"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must install the npm openai package: npm ci --prefix test/e2e/node")
		}
		t.Skip("run `npm ci --prefix test/e2e/node` to enable the npm SDK test")
	}
	r := startRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "client.mjs")
	cmd.Dir = "node"
	cmd.Env = append(os.Environ(), "LLMUX_BASE_URL="+strings.TrimSuffix(r.baseURL, "/"), "LLMUX_API_KEY="+clientKey)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node client: %v\n%s", err, stderr)
	}
	var got struct {
		Chat struct {
			Content      string
			PromptTokens int
		}
		Stream struct {
			Text        string
			UsageChunks int
			Finish      string
		}
		Models []string
		Error  struct {
			Status     int
			Code       string
			Type       string
			IsNotFound bool
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(got.Chat.Content, "hello from node") || got.Chat.PromptTokens == 0 {
		t.Errorf("chat %+v", got.Chat)
	}
	if !strings.Contains(got.Stream.Text, "stream from node") || got.Stream.UsageChunks != 1 || got.Stream.Finish != "stop" {
		t.Errorf("stream %+v", got.Stream)
	}
	if strings.Join(got.Models, ",") != "claude-sonnet,gpt-4o-mini,text-embedding-3-small" {
		t.Errorf("models %v", got.Models)
	}
	if got.Error.Status != 404 || got.Error.Code != "model_not_found" || !got.Error.IsNotFound {
		t.Errorf("error %+v", got.Error)
	}
}
