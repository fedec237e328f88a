package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

// repairReply is the text every fake of the repair tests means to answer.
const repairReply = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill, unimpressed."

// repairConfig: one provider of the given kind behind one deployment, the
// egress listener at %[1]s and a short idle bound for the stall cases.
const repairConfig = `
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
- {name: dep, provider: p, model: "%[5]s"}
model_groups:
- {name: m, deployments: [dep]}
`

// repairProvider is one provider kind of the fault matrix.
type repairProvider struct {
	kind, cluster, extra, model string
	start                       func(t *testing.T) *fakeprovider.Server
}

var repairProviders = []repairProvider{
	{"openai", "openai", "credentials: {api_key_env: E2E_PROVIDER_KEY}", "gpt-4o-mini-2024-07-18", func(t *testing.T) *fakeprovider.Server {
		return fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey, Reply: repairReply, ToolCalls: 1})
	}},
	{"anthropic", "anthropic", "credentials: {api_key_env: E2E_PROVIDER_KEY}", "claude-sonnet-4-5", func(t *testing.T) *fakeprovider.Server {
		return fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{APIKey: providerKey, Reply: repairReply, ToolCalls: 1})
	}},
	{"bedrock", "bedrock_us_east_1", "region: us-east-1", bedrockModel, func(t *testing.T) *fakeprovider.Server {
		fakeAWSEnv(t)
		return fakeprovider.NewBedrock(t, fakeprovider.BedrockOptions{Reply: repairReply, ToolCalls: 1})
	}},
	{"gemini", "gemini", "credentials: {api_key_env: E2E_PROVIDER_KEY}", "gemini-2.5-flash", func(t *testing.T) *fakeprovider.Server {
		return fakeprovider.NewGemini(t, fakeprovider.GeminiOptions{APIKey: providerKey, Reply: repairReply})
	}},
}

// repairRig starts the stack for p with the egress listener on a known
// port; the client's raw response bodies are kept in tee.
func repairRig(t *testing.T, p repairProvider) (*rig, *fakeprovider.Server, *teeBodies) {
	t.Helper()
	return repairStack(t, p, repairConfig)
}

// repairStack starts the stack for p from the config template tmpl
// (egress address, kind, cluster, provider settings, model).
func repairStack(t *testing.T, p repairProvider, tmpl string) (*rig, *fakeprovider.Server, *teeBodies) {
	t.Helper()
	fake := p.start(t)
	egressAddr, ln := egressListener(t)
	cfg := fmt.Sprintf(tmpl, egressAddr, p.kind, p.cluster, p.extra, p.model)
	r := startRigOpts(t, cfg, map[string]string{p.cluster: fake.Addr()}, func(so *envoysim.Options) {
		so.Listeners = map[string]net.Listener{"egress": ln}
	})
	t.Cleanup(r.streams.Server.Close)
	tee := &teeBodies{}
	r.client = openai.NewClient(option.WithBaseURL(r.baseURL), option.WithAPIKey(clientKey), option.WithMaxRetries(0),
		option.WithHTTPClient(&http.Client{Transport: tee}))
	return r, fake, tee
}

// teeBodies keeps a copy of every response body the client reads.
type teeBodies struct {
	mu     sync.Mutex
	bodies []*bytes.Buffer
}

func (tb *teeBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b := &bytes.Buffer{}
	tb.mu.Lock()
	tb.bodies = append(tb.bodies, b)
	tb.mu.Unlock()
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, &syncWriter{mu: &tb.mu, w: b}), resp.Body}
	return resp, nil
}

func (tb *teeBodies) last() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.bodies[len(tb.bodies)-1].String()
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// rawStream checks a raw chat completion stream: every data event but
// [DONE] is a chunk the SDK parses; it returns the count of [DONE] events,
// usage chunks and role chunks, and the ids seen.
func rawStream(t *testing.T, raw string) (done, usage, roles int, ids map[string]bool) {
	t.Helper()
	ids = map[string]bool{}
	for _, ev := range strings.Split(raw, "\n\n") {
		data, ok := strings.CutPrefix(strings.TrimSpace(ev), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done++
			continue
		}
		var c openai.ChatCompletionChunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Errorf("the SDK cannot parse %s: %v", data, err)
			continue
		}
		ids[c.ID] = true
		if c.JSON.Usage.Valid() && c.Usage.TotalTokens > 0 {
			usage++
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta.Role != "" {
			roles++
		}
	}
	return done, usage, roles, ids
}

// TestStreamRepair: for every provider kind, a stream that fails after
// some content — an in-band error, a truncation, a stall past the idle
// bound — is continued through the egress listener, and the client sees
// one stream: the fake's whole text, one id, one role chunk, one finish
// reason, one usage chunk counting both attempts, one [DONE].
func TestStreamRepair(t *testing.T) {
	for _, p := range repairProviders {
		for _, fault := range []string{fakeprovider.FaultInbandError, fakeprovider.FaultTruncate, fakeprovider.FaultStall} {
			t.Run(p.kind+"/"+fault, func(t *testing.T) {
				r, fake, tee := repairRig(t, p)
				f := fakeprovider.DefaultFault()
				f.Kind, f.After = fault, 7
				fake.Enqueue(f)
				ctx := context.Background()
				s := r.client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox"),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}})
				acc := openai.ChatCompletionAccumulator{}
				var usage openai.CompletionUsage
				for s.Next() {
					c := s.Current()
					acc.AddChunk(c)
					if c.Usage.TotalTokens > 0 {
						usage = c.Usage
					}
				}
				if err := s.Err(); err != nil {
					t.Fatalf("stream: %v\nllmux log:\n%s", err, r.llmuxLog)
				}
				s.Close()
				checkRepaired(t, r, tee, &acc)
				reqs := fake.Requests()
				if len(reqs) != 2 {
					t.Fatalf("the fake got %d requests, want 2", len(reqs))
				}
				// The continuation's usage is the second request's; the
				// first attempt's adds to it, so the total is above it.
				if usage.PromptTokens <= 0 || usage.CompletionTokens < int64(len(strings.Fields(repairReply))) {
					t.Errorf("usage %+v", usage)
				}
				if logs := r.accessLogs(2); logs != nil {
					var ingress map[string]any
					for _, l := range logs {
						if l["listener"] != "egress" {
							ingress = l
						}
					}
					wantCause := map[string]string{fakeprovider.FaultInbandError: "inband_error", fakeprovider.FaultTruncate: "truncated", fakeprovider.FaultStall: "stalled"}[fault]
					if ingress["repairs"] != float64(1) || ingress["repair_cause"] != wantCause || ingress["status"] != float64(200) {
						t.Errorf("access log %v", ingress)
					}
				}
				r.waitNoStreams()
			})
		}
	}
}

// TestStreamRepairNotInToolCall: a stream that fails inside a tool call is
// not continued: it ends with an error event that says so, and the
// provider is asked once.
func TestStreamRepairNotInToolCall(t *testing.T) {
	// Frames before the fault: inside the first tool call's arguments
	// (Anthropic and Bedrock say "Let me use the tools." first).
	after := map[string]int{"openai": 3, "anthropic": 12, "bedrock": 10}
	for _, p := range repairProviders[:3] {
		t.Run(p.kind, func(t *testing.T) {
			r, fake, tee := repairRig(t, p)
			f := fakeprovider.DefaultFault()
			f.Kind, f.After = fakeprovider.FaultInbandError, after[p.kind]
			fake.Enqueue(f)
			params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("look it up"),
				Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
					Name: "lookup", Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}}})}}
			s := r.client.Chat.Completions.NewStreaming(context.Background(), params)
			n := 0
			for s.Next() {
				n++
			}
			err := s.Err()
			s.Close()
			if err == nil || !strings.Contains(err.Error(), "tool call") {
				t.Errorf("after %d chunks: err %v; want the tool call error\n%s", n, err, tee.last())
			}
			if got := len(fake.Requests()); got != 1 {
				t.Errorf("the fake got %d requests, want 1", got)
			}
			r.waitNoStreams()
		})
	}
}

// checkRepaired checks a repaired stream as the client saw it: the fake's
// whole text, finish reason stop, one [DONE], usage chunk, role chunk and
// id; and logs the time from the detected failure to the first repaired
// byte, for docs/performance.md (no assertion on it).
func checkRepaired(t *testing.T, r *rig, tee *teeBodies, acc *openai.ChatCompletionAccumulator) {
	t.Helper()
	if got := acc.Choices[0].Message.Content; got != repairReply {
		t.Errorf("text\n%q, want\n%q\n%s", got, repairReply, tee.last())
	}
	if acc.Choices[0].FinishReason != "stop" {
		t.Errorf("finish %q", acc.Choices[0].FinishReason)
	}
	done, nusage, roles, ids := rawStream(t, tee.last())
	if done != 1 || nusage != 1 || roles != 1 || len(ids) != 1 {
		t.Errorf("[DONE] %d, usage chunks %d, role chunks %d, ids %v; want one each\n%s", done, nusage, roles, ids, tee.last())
	}
	for _, l := range strings.Split(r.llmuxLog.String(), "\n") {
		if i := strings.Index(l, "first_byte_after="); i >= 0 {
			t.Logf("repair latency: %s", l[i:])
		}
	}
}

// TestNodeSDKRepair: a stream repaired after an in-band error, for each
// provider kind, read by the official `openai` npm package: the SDK parses
// every chunk and sees one id, one role chunk, one finish reason, one usage
// chunk and the fake's whole reply.
func TestNodeSDKRepair(t *testing.T) {
	node := nodeOrFail(t)
	for _, p := range matrixProviders {
		t.Run(p.kind, func(t *testing.T) {
			r, fake, _ := repairRig(t, p)
			f := fakeprovider.DefaultFault()
			f.Kind, f.After = fakeprovider.FaultInbandError, 7
			fake.Enqueue(f)
			out := runNode(t, node, "repair.mjs", r.baseURL, "LLMUX_MODEL=m")
			if gjson.Get(out, "raised").Bool() || gjson.Get(out, "text").String() != repairReply || gjson.Get(out, "ids.#").Int() != 1 ||
				gjson.Get(out, "roles").Int() != 1 || gjson.Get(out, "finishes.#").Int() != 1 || gjson.Get(out, "usageChunks").Int() != 1 {
				t.Errorf("node: %s\nwant the text %q, one id, role, finish and usage chunk", out, repairReply)
			}
			if n := len(fake.Requests()); n != 2 {
				t.Errorf("the fake got %d requests, want 2 (the continuation)", n)
			}
			r.waitNoStreams()
		})
	}
}

// TestRepairAfterFailoverAcrossKinds: the first deployment refuses with a
// 503 (failover before the first byte), the fallback, of another provider
// kind, streams content and then fails (truncation or in-band error), and a
// third kind continues it. The fallback's first read, which releases the
// held headers, may already carry content: the client's text must still
// be the reply exactly once (found by TestSoakMixedKinds: that first
// output went unrecorded, and the continuation repeated it).
func TestRepairAfterFailoverAcrossKinds(t *testing.T) {
	kinds := map[string]repairProvider{}
	for _, p := range repairProviders {
		kinds[p.kind] = p
	}
	for _, chain := range [][3]string{
		{"anthropic", "gemini", "openai"},
		{"openai", "bedrock", "anthropic"},
		{"gemini", "anthropic", "bedrock"},
		{"bedrock", "openai", "gemini"},
	} {
		for _, fault := range []string{fakeprovider.FaultTruncate, fakeprovider.FaultInbandError} {
			t.Run(strings.Join(chain[:], "-")+"/"+fault, func(t *testing.T) {
				egressAddr, ln := egressListener(t)
				var cfg strings.Builder
				fmt.Fprintf(&cfg, "server:\n  max_request_body_bytes: 1048576\n  egress_address: %s\n  stream_idle_timeout: 1s\n", egressAddr)
				cfg.WriteString("auth:\n  keys:\n  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}\nproviders:\n")
				clusters := map[string]string{}
				fakes := map[string]*fakeprovider.Server{}
				var deps strings.Builder
				for i, k := range chain {
					p := kinds[k]
					fmt.Fprintf(&cfg, "- {name: p%d, kind: %s, cluster: %s, %s}\n", i, p.kind, p.cluster, p.extra)
					fakes[k] = p.start(t)
					clusters[p.cluster] = fakes[k].Addr()
					fmt.Fprintf(&deps, "- {name: d%d-%s, provider: p%d, model: %q, priority: %d}\n", i, k, i, p.model, i)
				}
				fmt.Fprintf(&cfg, "deployments:\n%smodel_groups:\n- {name: m, deployments: [d0-%s, d1-%s, d2-%s]}\n", deps.String(), chain[0], chain[1], chain[2])
				r := startRigOpts(t, cfg.String(), clusters, func(so *envoysim.Options) { so.Listeners = map[string]net.Listener{"egress": ln} })
				t.Cleanup(r.streams.Server.Close)
				fakes[chain[0]].Enqueue(failedPlan(http.StatusServiceUnavailable))
				f := fakeprovider.DefaultFault()
				f.Kind, f.After = fault, 7
				fakes[chain[1]].Enqueue(f)
				params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox"),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}}
				res := readStream(r.client.Chat.Completions.NewStreaming(context.Background(), params))
				if res.err != nil || res.content != repairReply || res.usage != 1 || res.finish != "stop" {
					t.Errorf("content %q (err %v, usage chunks %d, finish %q), want the reply once\nllmux log:\n%s", res.content, res.err, res.usage, res.finish, r.llmuxLog)
				}
				for i, k := range chain {
					if n := len(fakes[k].Requests()); n != 1 {
						t.Errorf("deployment %d (%s) was asked %d times, want once", i, k, n)
					}
				}
				r.waitNoStreams()
			})
		}
	}
}
