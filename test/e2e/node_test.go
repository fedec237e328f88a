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
// the stack. It needs Node.js and npm (.ci/run installs them on Debian);
// without them it fails, saying what to install. When the package is not
// installed yet, it runs `npm ci` in test/e2e/node (the versions are pinned
// by package-lock.json) and fails with npm's output if that fails.
func TestNodeSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the npm SDK test needs Node.js and npm: apt-get install nodejs npm (.ci/run does this)")
	}
	ensureNodeModules(t)
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

// ensureNodeModules installs test/e2e/node's packages with npm ci unless
// they are there already.
func ensureNodeModules(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("node/node_modules/openai/package.json"); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatal("test/e2e/node/node_modules is missing and npm is not installed: apt-get install npm, then npm ci --prefix test/e2e/node (.ci/run does this)")
	}
	t.Log("test/e2e/node/node_modules is missing: running npm ci in test/e2e/node")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = "node"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in test/e2e/node failed (%v); the npm SDK test needs the openai package: run npm ci --prefix test/e2e/node by hand to see why\n%s", err, out)
	}
	if _, err := os.Stat("node/node_modules/openai/package.json"); err != nil {
		t.Fatalf("npm ci did not install the openai package: %v", err)
	}
}
