package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/param"

	"github.com/llmux/llmux/test/fakeprovider"
)

// The fault matrix of failover and stream repair (issue 8, "How it is
// proven"; docs/recovery.md): every provider kind × fault kind × when it
// happens × streamed or not, end to end through the stand-in with the
// official OpenAI SDK. Each cell states what the client must receive.

// matrixRepairConfig: two deployments of one provider (the same fake, so
// that the fake's script decides which try fails), the egress listener at
// %[1]s. Failover goes from dep-a to dep-b; a continuation may go to
// either.
const matrixRepairConfig = `
server:
  max_request_body_bytes: 1048576
  egress_address: %[1]s
  stream_idle_timeout: 1s
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: p, kind: %[2]s, cluster: %[3]s, %[4]s}
deployments:
- {name: dep-a, provider: p, model: "%[5]s", priority: 0}
- {name: dep-b, provider: p, model: "%[5]s", priority: 1}
model_groups:
- {name: m, deployments: [dep-a, dep-b]}
`

// matrixProviders: every provider kind, each with its fake answering
// repairReply.
var matrixProviders = append(repairProviders[:len(repairProviders):len(repairProviders)],
	repairProvider{"azure_openai", "azure", `api_version: "2024-10-21", credentials: {api_key_env: E2E_PROVIDER_KEY}`, "prod-4o", func(t *testing.T) *fakeprovider.Server {
		return fakeprovider.NewAzure(t, fakeprovider.AzureOptions{APIKey: providerKey, Reply: repairReply, ToolCalls: 1,
			Deployments: map[string]string{"prod-4o": "gpt-4o-2024-08-06"}})
	}},
	repairProvider{"openai_compatible", "openai", "base_path: /v1, credentials: {api_key_env: E2E_PROVIDER_KEY}", "meta-llama/Llama-3.1-8B-Instruct", func(t *testing.T) *fakeprovider.Server {
		return fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey, Reply: repairReply, ToolCalls: 1})
	}},
)

// jsonAfter: the Anthropic and Bedrock fakes answer JSON mode with "{}"
// in one delta, so nothing can fail inside it; their JSON cells fail
// before that delta (after the structured-output block's start) and must
// be retried whole, since no content went out.
var jsonAfter = map[string]int{"anthropic": 3, "bedrock": 2}

// toolAfter: frames before a fault inside the first tool call's arguments
// (Anthropic and Bedrock say "Let me use the tools." first).
var toolAfter = map[string]int{"openai": 3, "azure_openai": 3, "openai_compatible": 3, "anthropic": 12, "bedrock": 10}

// matrixRig starts the two-deployment stack for p.
func matrixRig(t *testing.T, p repairProvider) (*rig, *fakeprovider.Server, *teeBodies) {
	t.Helper()
	return repairStack(t, p, matrixRepairConfig)
}

// What a matrix cell's client must receive.
const (
	wantWhole = "whole" // one valid completion: the fake's whole text, finish "stop"; streams: one id, role chunk, usage chunk, [DONE]
	wantError = "error" // the SDK reports an error (an error event or a reset stream), never a success with partial text
)

// repairCell is one cell of the matrix.
type repairCell struct {
	name   string
	fault  fakeprovider.Fault
	stream bool
	json   bool   // response_format json_object
	tool   bool   // a function tool offered: the fake answers with a tool call
	want   string // wantWhole or wantError
	errHas string // for wantError: text the error must contain ("" for any)
	calls  int    // requests the fake must get
}

func matrixFault(kind string, status, after int) fakeprovider.Fault {
	f := fakeprovider.DefaultFault()
	f.Kind, f.Status, f.After = kind, status, after
	return f
}

// matrixCells are the cells every provider kind runs.
func matrixCells() []repairCell {
	return []repairCell{
		// Before the first byte: another deployment answers, as if first.
		{name: "status503/before/stream", fault: matrixFault("", http.StatusServiceUnavailable, 0), stream: true, want: wantWhole, calls: 2},
		{name: "status429/before/whole", fault: matrixFault("", http.StatusTooManyRequests, 0), want: wantWhole, calls: 2},
		{name: "inband/before/stream", fault: matrixFault(fakeprovider.FaultInbandError, 0, 0), stream: true, want: wantWhole, calls: 2},
		// A refused or reset connection: Envoy's own 503, which ext_proc
		// sees on Envoy 1.37+ (the stand-in's default version).
		{name: "reset/before/stream", fault: matrixFault(fakeprovider.FaultResetBeforeHeaders, 0, 0), stream: true, want: wantWhole, calls: 2},
		{name: "reset/before/whole", fault: matrixFault(fakeprovider.FaultResetBeforeHeaders, 0, 0), want: wantWhole, calls: 2},
		// After some chunks: the stream is continued and spliced.
		{name: "inband/after7/stream", fault: matrixFault(fakeprovider.FaultInbandError, 0, 7), stream: true, want: wantWhole, calls: 2},
		{name: "truncate/after7/stream", fault: matrixFault(fakeprovider.FaultTruncate, 0, 7), stream: true, want: wantWhole, calls: 2},
		{name: "stall/after7/stream", fault: matrixFault(fakeprovider.FaultStall, 0, 7), stream: true, want: wantWhole, calls: 2},
		// A reset after content is invisible to ext_proc in splice mode:
		// the client's stream must fail, never end as a success.
		{name: "reset/after7/stream", fault: matrixFault(fakeprovider.FaultReset, 0, 7), stream: true, want: wantError, calls: 1},
		// Inside JSON output: no continuation, a clear error event.
		{name: "inband/after7/stream/json", fault: matrixFault(fakeprovider.FaultInbandError, 0, 7), stream: true, json: true, want: wantError, errHas: "JSON", calls: 1},
		{name: "truncate/after7/stream/json", fault: matrixFault(fakeprovider.FaultTruncate, 0, 7), stream: true, json: true, want: wantError, errHas: "JSON", calls: 1},
		{name: "stall/after7/stream/json", fault: matrixFault(fakeprovider.FaultStall, 0, 7), stream: true, json: true, want: wantError, errHas: "JSON", calls: 1},
		// Inside a tool call: no continuation, a clear error event.
		{name: "inband/tool/stream", fault: matrixFault(fakeprovider.FaultInbandError, 0, 0), stream: true, tool: true, want: wantError, errHas: "tool call", calls: 1},
		// Whole (non-streamed) responses are retried whole.
		{name: "status500/whole", fault: matrixFault("", http.StatusInternalServerError, 0), want: wantWhole, calls: 2},
		{name: "inband/whole", fault: matrixFault(fakeprovider.FaultInbandError, 0, 0), want: wantWhole, calls: 2},
		{name: "truncate/whole", fault: matrixFault(fakeprovider.FaultTruncate, 0, 0), want: wantWhole, calls: 2},
		// A reset after the provider's headers is invisible to ext_proc in
		// splice mode (docs/envoy-facts.md, fact 7): Envoy answers 503 and
		// llmux cannot retry; owned mode does (owned_test.go).
		{name: "reset/whole", fault: matrixFault(fakeprovider.FaultReset, 0, 0), want: wantError, errHas: "503", calls: 1},
	}
}

// TestRepairMatrix runs every cell for every provider kind.
func TestRepairMatrix(t *testing.T) {
	for _, p := range matrixProviders {
		for _, c := range matrixCells() {
			// Cells a fake cannot stage are left out, not skipped: these
			// fakes' JSON answer is one delta (nothing to cut inside it),
			// and some fakes answer no tool call.
			if _, ok := jsonAfter[p.kind]; ok && c.json && c.fault.Kind != fakeprovider.FaultInbandError {
				continue
			}
			if _, ok := toolAfter[p.kind]; c.tool && !ok {
				continue
			}
			t.Run(p.kind+"/"+c.name, func(t *testing.T) {
				r, fake, tee := matrixRig(t, p)
				f := c.fault
				if n, ok := jsonAfter[p.kind]; ok && c.json {
					// No point inside these fakes' JSON: the cell
					// becomes "before the JSON content", retried whole.
					f.After, c.want, c.calls = n, wantWhole, 2
				}
				params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox")}
				if c.json {
					params.ResponseFormat = openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}
				}
				if c.tool {
					f.After = toolAfter[p.kind]
					params.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
						Name: "lookup", Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}}})}
				}
				fake.Enqueue(f)
				if c.stream {
					runStreamCell(t, r, tee, params, c)
				} else {
					runWholeCell(t, r, params, c)
				}
				if got := len(fake.Requests()); got != c.calls {
					t.Errorf("the fake got %d requests, want %d", got, c.calls)
				}
				r.waitNoStreams()
			})
		}
	}
}

func runStreamCell(t *testing.T, r *rig, tee *teeBodies, params openai.ChatCompletionNewParams, c repairCell) {
	t.Helper()
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
	s := r.client.Chat.Completions.NewStreaming(context.Background(), params)
	acc := openai.ChatCompletionAccumulator{}
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	err := s.Err()
	s.Close()
	if c.want == wantError {
		if err == nil {
			t.Fatalf("the stream ended as a success; want an error\n%s\nllmux log:\n%s", tee.last(), r.llmuxLog)
		}
		if !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("error %v; want one mentioning %q\n%s", err, c.errHas, tee.last())
		}
		if len(acc.Choices) > 0 && acc.Choices[0].FinishReason == "stop" {
			t.Errorf("a failed stream carries finish_reason stop\n%s\nllmux log:\n%s", tee.last(), r.llmuxLog)
		}
		return
	}
	if err != nil {
		t.Fatalf("stream: %v\n%s\nllmux log:\n%s", err, tee.last(), r.llmuxLog)
	}
	if len(acc.Choices) == 0 {
		t.Fatalf("no choices\n%s", tee.last())
	}
	if got := acc.Choices[0].Message.Content; c.json && !json.Valid([]byte(got)) || !c.json && got != repairReply {
		t.Errorf("text\n%q, want\n%q\n%s", got, repairReply, tee.last())
	}
	if acc.Choices[0].FinishReason != "stop" {
		t.Errorf("finish %q", acc.Choices[0].FinishReason)
	}
	done, usage, roles, ids := rawStream(t, tee.last())
	if done != 1 || usage != 1 || roles != 1 || len(ids) != 1 {
		t.Errorf("[DONE] %d, usage chunks %d, role chunks %d, ids %v; want one each\n%s", done, usage, roles, ids, tee.last())
	}
}

func runWholeCell(t *testing.T, r *rig, params openai.ChatCompletionNewParams, c repairCell) {
	t.Helper()
	resp, err := r.client.Chat.Completions.New(context.Background(), params)
	if c.want == wantError {
		if err == nil {
			t.Fatalf("success %+v; want an error", resp)
		}
		if !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("error %v; want one mentioning %q", err, c.errHas)
		}
		return
	}
	if err != nil {
		t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != repairReply || resp.Choices[0].FinishReason != "stop" {
		t.Errorf("completion %+v; want the whole reply", resp.Choices)
	}
	if resp.Usage.TotalTokens <= 0 {
		t.Errorf("usage %+v", resp.Usage)
	}
}
