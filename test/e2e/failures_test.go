package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
)

// failuresConfig serves one model group per provider kind, with a short
// idle bound so that stalls are detected within the test.
const failuresConfig = `
server:
  max_request_body_bytes: 65536
  stream_idle_timeout: 1s
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: openai, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: azure, kind: azure_openai, cluster: azure, api_version: "2024-10-21", credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: anthropic, kind: anthropic, cluster: anthropic, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: bedrock, kind: bedrock, cluster: bedrock_us_east_1, region: us-east-1}
- {name: gemini, kind: gemini, cluster: gemini, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: d-openai, provider: openai, model: gpt-4o-mini}
- {name: d-azure, provider: azure, model: prod-4o}
- {name: d-anthropic, provider: anthropic, model: claude-sonnet-4-5}
- {name: d-bedrock, provider: bedrock, model: "` + bedrockModel + `"}
- {name: d-gemini, provider: gemini, model: gemini-2.5-flash}
model_groups:
- {name: openai, deployments: [d-openai]}
- {name: azure, deployments: [d-azure]}
- {name: anthropic, deployments: [d-anthropic]}
- {name: bedrock, deployments: [d-bedrock]}
- {name: gemini, deployments: [d-gemini]}
`

// failureProviders are the model groups of failuresConfig.
var failureProviders = []string{"openai", "azure", "anthropic", "bedrock", "gemini"}

// failRig is a stack with a fake per provider kind.
type failRig struct {
	*rig
	fakes map[string]*fakeprovider.Server // by model group
}

func startFailRig(t *testing.T) *failRig {
	t.Helper()
	fakeAWSEnv(t)
	fakes := map[string]*fakeprovider.Server{
		"azure":     fakeprovider.NewAzure(t, fakeprovider.AzureOptions{APIKey: providerKey, Deployments: map[string]string{"prod-4o": "gpt-4o-2024-08-06"}}),
		"anthropic": fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{APIKey: providerKey}),
		"bedrock":   fakeprovider.NewBedrock(t, fakeprovider.BedrockOptions{}),
		"gemini":    fakeprovider.NewGemini(t, fakeprovider.GeminiOptions{APIKey: providerKey}),
	}
	r := startRigWith(t, failuresConfig, map[string]string{
		"azure": fakes["azure"].Addr(), "anthropic": fakes["anthropic"].Addr(),
		"bedrock_us_east_1": fakes["bedrock"].Addr(), "gemini": fakes["gemini"].Addr(),
	})
	fakes["openai"] = r.fake
	return &failRig{rig: r, fakes: fakes}
}

// drain reads a stream to its end and returns the content and the error.
func drain(stream interface {
	Next() bool
	Current() openai.ChatCompletionChunk
	Err() error
}) (string, error) {
	var content strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			content.WriteString(c.Delta.Content)
		}
	}
	return content.String(), stream.Err()
}

// lastLog returns the newest access log entry (nil against real Envoy).
func (r *failRig) lastLog(n int) map[string]any {
	logs := r.accessLogs(n)
	if logs == nil {
		return nil
	}
	return logs[n-1]
}

// checkLog asserts llmux's outcome in the n-th access log entry.
func (r *failRig) checkLog(t *testing.T, n int, code, status string) map[string]any {
	t.Helper()
	l := r.lastLog(n)
	if l == nil {
		return nil
	}
	if fmt.Sprint(l["error_code"]) != code || fmt.Sprint(l["llmux_status"]) != status {
		t.Errorf("access log error_code %v llmux_status %v, want %s %s (%v)", l["error_code"], l["llmux_status"], code, status, l)
	}
	return l
}

// streamErrorCode returns the OpenAI error code of an in-stream error the
// SDK raised.
func streamErrorCode(err error) string {
	var se interface{ Error() string }
	if !errors.As(err, &se) {
		return ""
	}
	// "received error while streaming: {json}"
	_, j, _ := strings.Cut(err.Error(), ": ")
	return gjson.Get(j, "code").String()
}

// TestTruncatedStreamIsAnError: for every provider, a stream whose
// upstream ends without its terminal event reaches the openai-go SDK as an
// error (no [DONE]), and the access log records upstream_truncated.
func TestTruncatedStreamIsAnError(t *testing.T) {
	r := startFailRig(t)
	for i, model := range failureProviders {
		t.Run(model, func(t *testing.T) {
			stream := r.client.Chat.Completions.NewStreaming(context.Background(),
				openai.ChatCompletionNewParams{Model: model, Messages: userMsg("one two three four")},
				withFault(fakeprovider.HeaderFault, fakeprovider.FaultTruncate), withFault(fakeprovider.HeaderFaultAfter, "2"))
			content, err := drain(stream)
			stream.Close()
			if err == nil || streamErrorCode(err) != "upstream_truncated" {
				t.Fatalf("truncated stream: err %v after %q", err, content)
			}
			r.checkLog(t, i+1, "upstream_truncated", "200")
		})
	}
	// What the SDK does not show: the error is the last event, no [DONE].
	datas := rawStreamData(t, r.rig, `{"model":"anthropic","stream":true,"messages":[{"role":"user","content":"a b c"}]}`,
		fakeprovider.HeaderFault, fakeprovider.FaultTruncate, fakeprovider.HeaderFaultAfter, "2")
	if len(datas) < 2 || gjson.Get(datas[len(datas)-1], "error.code").String() != "upstream_truncated" ||
		gjson.Get(datas[len(datas)-1], "error.type").String() != "server_error" || strings.Contains(strings.Join(datas, "\n"), "[DONE]") {
		t.Errorf("truncated stream events %q", datas)
	}
	r.waitNoStreams()
}

// TestTruncatedBodyIs502: a non-streamed response cut short reaches the
// client as a 502 OpenAI error, for every provider.
func TestTruncatedBodyIs502(t *testing.T) {
	r := startFailRig(t)
	for _, model := range failureProviders {
		t.Run(model, func(t *testing.T) {
			_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: model, Messages: userMsg("one two")},
				withFault(fakeprovider.HeaderFault, fakeprovider.FaultTruncate))
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 502 || apiErr.Type != "server_error" {
				t.Fatalf("cut body: %v", err)
			}
		})
	}
	r.waitNoStreams()
}

// waitReleased waits until no request is parked at the fake's gate: the
// gateway reset the stalled upstream.
func waitReleased(t *testing.T, fake *fakeprovider.Server, gate string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for fake.Held(gate) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the stalled upstream request is still open")
		}
		<-tick.C
	}
}

// TestStalledStreamIsAnError: for every provider, a stream whose upstream
// goes silent past server.stream_idle_timeout ends with an error event the
// SDK raises; the gateway resets the stalled upstream, and the access log
// records stream_stalled. A non-streamed response that stalls before its
// body is a 504.
func TestStalledStreamIsAnError(t *testing.T) {
	r := startFailRig(t)
	n := 0
	for _, model := range failureProviders {
		t.Run(model, func(t *testing.T) {
			gate := "stall-" + model
			stream := r.client.Chat.Completions.NewStreaming(context.Background(),
				openai.ChatCompletionNewParams{Model: model, Messages: userMsg("one two three four")},
				withFault(fakeprovider.HeaderFault, fakeprovider.FaultStall), withFault(fakeprovider.HeaderFaultAfter, "2"),
				withFault(fakeprovider.HeaderHold, gate))
			content, err := drain(stream)
			stream.Close()
			n++
			if err == nil || streamErrorCode(err) != "stream_stalled" {
				t.Fatalf("stalled stream: err %v after %q", err, content)
			}
			r.checkLog(t, n, "stream_stalled", "200")
			waitReleased(t, r.fakes[model], gate)
		})
		t.Run(model+" non-streamed", func(t *testing.T) {
			gate := "stall-body-" + model
			_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: model, Messages: userMsg("one two")},
				withFault(fakeprovider.HeaderFault, fakeprovider.FaultStall), withFault(fakeprovider.HeaderHold, gate))
			n++
			apiError(t, err, 504, "stream_stalled")
			r.checkLog(t, n, "stream_stalled", "504")
			waitReleased(t, r.fakes[model], gate)
		})
	}
	t.Run("stream stalled before its first chunk", func(t *testing.T) {
		// The 200 has gone out and Envoy has no body chunk to splice
		// into: llmux makes Envoy reset the client stream, which the SDK
		// raises, instead of leaving the client hanging.
		gate, id := "stall-first", newFaultID()
		stream := r.client.Chat.Completions.NewStreaming(context.Background(),
			openai.ChatCompletionNewParams{Model: "openai", Messages: userMsg("one two")}, option.WithHeader("x-request-id", id),
			withFault(fakeprovider.HeaderFault, fakeprovider.FaultStall), withFault(fakeprovider.HeaderFaultAfter, "0"),
			withFault(fakeprovider.HeaderHold, gate))
		content, err := drain(stream)
		stream.Close()
		n++
		if err == nil || content != "" {
			t.Fatalf("stalled stream: err %v after %q", err, content)
		}
		if got := r.llmuxRecord(t, id); got != "200 stream_stalled" {
			t.Errorf("llmux recorded %q", got)
		}
		waitReleased(t, r.fake, gate)
	})
	r.waitNoStreams()
}

// llmuxRecord waits until llmux has ended every stream and returns the
// status and error code of its log line for request id.
func (r *failRig) llmuxRecord(t *testing.T, id string) string {
	t.Helper()
	r.waitNoStreams()
	for _, l := range strings.Split(r.llmuxLog.String(), "\n") {
		if strings.Contains(l, "msg=request ") && strings.Contains(l, "request_id="+id+" ") {
			_, st, _ := strings.Cut(l, " status=")
			st, _, _ = strings.Cut(st, " ")
			_, code, _ := strings.Cut(l, " error_code=")
			code, _, _ = strings.Cut(code, " ")
			return st + " " + code
		}
	}
	t.Fatalf("no llmux log line for %s:\n%s", id, r.llmuxLog.String())
	return ""
}

// TestEndsTheClientSees: when Envoy ends the exchange (a client
// disconnect, an upstream reset), llmux gets no message and can send no
// metadata; it records, in its metric and log line, how far the exchange
// had got. A disconnect and a reset after the response started are one
// class to llmux; Envoy's own response_flags (DC, UR) tell them apart in
// the access log (docs/architecture.md, "Failures").
func TestEndsTheClientSees(t *testing.T) {
	r := startFailRig(t)
	n := 0
	// envoySaw checks the n-th access log entry: Envoy's flag, and no
	// llmux outcome (llmux had no reply to carry it).
	envoySaw := func(t *testing.T, flag string) {
		t.Helper()
		n++
		if l := r.lastLog(n); l != nil && (!strings.Contains(fmt.Sprint(l["response_flags"]), flag) || l["error_code"] != nil) {
			t.Errorf("access log %v, want flag %s and no llmux error_code", l, flag)
		}
	}
	t.Run("client gone before the response", func(t *testing.T) {
		gate, id := "before-headers", newFaultID()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "openai", Messages: userMsg("x")},
				option.WithHeader("x-request-id", id), withFault(fakeprovider.HeaderHold, gate), withFault(fakeprovider.HeaderHoldAfter, "0"))
			done <- err
		}()
		if err := r.fake.WaitHeld(context.Background(), gate); err != nil {
			t.Fatal(err)
		}
		cancel()
		<-done
		envoySaw(t, "DC")
		if got := r.llmuxRecord(t, id); got != "499 canceled" {
			t.Errorf("llmux recorded %q", got)
		}
		r.fake.Release(gate)
	})
	t.Run("client gone mid-stream", func(t *testing.T) {
		gate, id := "mid-stream", newFaultID()
		ctx, cancel := context.WithCancel(context.Background())
		stream := r.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "openai", Messages: userMsg("a b c d")},
			option.WithHeader("x-request-id", id), withFault(fakeprovider.HeaderHold, gate))
		if !stream.Next() {
			t.Fatalf("no first chunk: %v", stream.Err())
		}
		cancel()
		stream.Close()
		envoySaw(t, "DC")
		if got := r.llmuxRecord(t, id); got != "200 stream_interrupted" {
			t.Errorf("llmux recorded %q", got)
		}
		r.fake.Release(gate)
	})
	t.Run("upstream reset mid-stream", func(t *testing.T) {
		gate, id := "before-reset", newFaultID()
		stream := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "openai", Messages: userMsg("a b c d")},
			option.WithHeader("x-request-id", id), withFault(fakeprovider.HeaderFault, fakeprovider.FaultReset), withFault(fakeprovider.HeaderFaultAfter, "2"),
			withFault(fakeprovider.HeaderHold, gate))
		// The first chunk proves the client has the 200; then the
		// upstream resets.
		if !stream.Next() {
			t.Fatalf("no first chunk: %v", stream.Err())
		}
		r.fake.Release(gate)
		content, err := drain(stream)
		stream.Close()
		if err == nil {
			t.Fatalf("a reset stream ended cleanly after %q", content)
		}
		envoySaw(t, "UR")
		if got := r.llmuxRecord(t, id); got != "200 stream_interrupted" {
			t.Errorf("llmux recorded %q", got)
		}
	})
	t.Run("upstream reset before the response", func(t *testing.T) {
		_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "openai", Messages: userMsg("x")},
			withFault(fakeprovider.HeaderFault, fakeprovider.FaultResetBeforeHeaders))
		apiError(t, err, 503, "upstream_unavailable")
		n++
		r.checkLog(t, n, "upstream_unavailable", "503")
	})
	r.waitNoStreams()
}

// TestNodeSDKFailures: the official npm package raises the truncated and
// the stalled stream as errors too.
func TestNodeSDKFailures(t *testing.T) {
	node := nodeOrFail(t)
	r := startFailRig(t)
	for _, tc := range []struct {
		fault string
		code  string
	}{
		{fakeprovider.FaultTruncate, "upstream_truncated"},
		{fakeprovider.FaultStall, "stream_stalled"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			id := newFaultID()
			fakeprovider.PlanFor(id, fakeprovider.HeaderFault, tc.fault)
			fakeprovider.PlanFor(id, fakeprovider.HeaderFaultAfter, "2")
			t.Cleanup(func() { fakeprovider.ForgetPlan(id) })
			out := runNode(t, node, "failures.mjs", r.baseURL, "LLMUX_REQUEST_ID="+id, "LLMUX_MODEL=anthropic")
			if gjson.Get(out, "raised").Bool() != true || gjson.Get(out, "code").String() != tc.code || gjson.Get(out, "chunks").Int() == 0 {
				t.Fatalf("node: %s", out)
			}
		})
	}
	r.waitNoStreams()
}

// nodeOrFail finds node and the npm openai package, as TestNodeSDK does:
// without them the test fails, saying what to install.
func nodeOrFail(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed; the npm SDK tests need Node.js and npm: apt-get install nodejs npm (.ci/run does this)")
	}
	ensureNodeModules(t)
	return node
}

// runNode runs a script of test/e2e/node against baseURL and returns what
// it printed.
func runNode(t *testing.T, node, script, baseURL string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = "node"
	cmd.Env = append(append(os.Environ(), "LLMUX_BASE_URL="+strings.TrimSuffix(baseURL, "/"), "LLMUX_API_KEY="+clientKey), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node %s: %v\n%s", script, err, stderr)
	}
	return string(out)
}
