package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/param"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/envoy"
	"github.com/llmux/llmux/test/envoysim"
	"github.com/llmux/llmux/test/fakeprovider"
)

// ownedHost is envoy/standalone.yaml's virtual host in owned mode: llmux
// answers with a StreamedImmediateResponse and calls providers through the
// egress listener (docs/recovery.md).
const ownedHost = "owned.llmux.internal"

// withEgress adds server.egress_address to an llmux configuration whose
// server section, if any, is in block style, and returns the listener the
// gateway's egress listener serves on (open, so that nothing else takes
// its port meanwhile).
func withEgress(t *testing.T, cfg string) (string, net.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	line := "  egress_address: " + ln.Addr().String() + "\n"
	switch {
	case strings.Contains(cfg, "\nserver:\n"):
		return strings.Replace(cfg, "\nserver:\n", "\nserver:\n"+line, 1), ln
	case !strings.Contains(cfg, "server:"):
		return "server:\n" + line + cfg, ln
	}
	ln.Close()
	t.Fatalf("withEgress: the configuration's server section is not in block style")
	return "", nil
}

// ownedChat sends one chat request to the owned host and returns the
// answer's text; streamed, it checks the SDK's view of the stream: one role
// chunk, one finish reason, exactly one usage chunk.
func ownedChat(t *testing.T, r *rig, model string, stream bool) (string, error) {
	t.Helper()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: model, Messages: userMsg("one two three four")}
	if !stream {
		resp, err := r.client.Chat.Completions.New(ctx, params, withHost(ownedHost))
		if err != nil {
			return "", err
		}
		if resp.Usage.TotalTokens == 0 || resp.Choices[0].FinishReason == "" {
			t.Errorf("usage %+v, finish %q", resp.Usage, resp.Choices[0].FinishReason)
		}
		return resp.Choices[0].Message.Content, nil
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}
	s := r.client.Chat.Completions.NewStreaming(ctx, params, withHost(ownedHost))
	defer s.Close()
	acc := openai.ChatCompletionAccumulator{}
	usage, roles, finishes := 0, 0, 0
	for s.Next() {
		c := s.Current()
		acc.AddChunk(c)
		if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
			usage++
		}
		for _, ch := range c.Choices {
			if ch.Delta.Role != "" {
				roles++
			}
			if ch.FinishReason != "" {
				finishes++
			}
		}
	}
	content := ""
	if len(acc.Choices) > 0 {
		content = acc.Choices[0].Message.Content
	}
	if err := s.Err(); err != nil {
		return content, err
	}
	if usage != 1 || roles != 1 || finishes != 1 {
		t.Errorf("usage chunks %d, role chunks %d, finish reasons %d; want one each", usage, roles, finishes)
	}
	return content, nil
}

// logsOf splits access log lines into the ingress line and the egress ones.
func logsOf(t *testing.T, logs []map[string]any) (ingress map[string]any, egress []map[string]any) {
	t.Helper()
	for _, l := range logs {
		if l["listener"] == "egress" {
			egress = append(egress, l)
		} else {
			ingress = l
		}
	}
	if ingress == nil {
		t.Fatalf("no ingress access log in %v", logs)
	}
	return ingress, egress
}

// TestOwnedModeResetAfterHeaders: the first deployment's connection resets
// after its response headers (and, streamed, after its role chunk): a
// failure splice mode cannot see (docs/envoy-facts.md fact 7). In owned
// mode nothing reached the client yet, so it gets the second deployment's
// answer as its one answer, whole or streamed. After content, the stream
// is repaired: the second deployment continues it (TestOwnedModeRepair
// checks the spliced text).
func TestOwnedModeResetAfterHeaders(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stream   bool
		after    int // frames before the reset
		failover bool
	}{
		{"whole", false, 0, true},
		{"stream/before_any_event", true, 0, true},
		{"stream/after_role", true, 1, true},
		{"stream/after_content", true, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, second := startFailoverRig(t)
			f := fakeprovider.DefaultFault()
			f.Kind, f.After = fakeprovider.FaultReset, tc.after
			if !tc.failover {
				// The reset waits until the client has the content: a RST
				// may drop bytes not yet read, which would make this a
				// reset before content.
				f.Hold, f.HoldAfter = "owned-reset", tc.after
			}
			r.fake.Enqueue(f)
			if !tc.failover {
				ownedResetAfterContent(t, r, second)
				return
			}
			content, err := ownedChat(t, r, "gpt-4o-mini", tc.stream)
			if n := len(r.fake.Requests()); n != 1 {
				t.Errorf("the first deployment was asked %d times", n)
			}
			if err != nil {
				t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
			}
			if content != "answer from the second deployment" {
				t.Errorf("content %q", content)
			}
			if n := len(second.Requests()); n != 1 {
				t.Errorf("the second deployment was asked %d times", n)
			}
			ingress, egress := logsOf(t, r.accessLogs(3))
			if ingress["status"] != float64(200) || ingress["deployment"] != "dep-second" || ingress["attempts"] != float64(2) ||
				ingress["failover_cause"] != "upstream_unavailable" || ingress["output_tokens"] == nil {
				t.Errorf("ingress log: %v", ingress)
			}
			clusters := map[any]bool{}
			for _, e := range egress {
				clusters[e["upstream_cluster"]] = true
				if e["request_id"] != ingress["request_id"] {
					t.Errorf("egress log %v: another request id than %v", e, ingress["request_id"])
				}
			}
			if len(egress) != 2 || !clusters["openai"] || !clusters["anthropic"] {
				t.Errorf("egress logs %v: want both calls, each through the egress listener", egress)
			}
			r.waitNoStreams()
		})
	}
}

// ownedResetAfterContent reads a stream until its first content, then lets
// the first deployment reset: the second deployment continues the stream,
// which ends without an error.
func ownedResetAfterContent(t *testing.T, r *rig, second *fakeprovider.Server) {
	t.Helper()
	params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("one two three four")}
	s := r.client.Chat.Completions.NewStreaming(context.Background(), params, withHost(ownedHost))
	defer s.Close()
	content, first, released := "", "", false
	for s.Next() {
		for _, ch := range s.Current().Choices {
			content += ch.Delta.Content
		}
		if content != "" && !released {
			released, first = true, content
			r.fake.Release("owned-reset")
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("want a repaired stream, got %v (content %q)\nllmux log:\n%s", err, content, r.llmuxLog)
	}
	if !strings.HasPrefix(content, first) || !strings.HasSuffix(content, "answer from the second deployment") {
		t.Errorf("content %q: want the first deployment's %q, then the second's continuation", content, first)
	}
	if n, m := len(r.fake.Requests()), len(second.Requests()); n != 1 || m != 1 {
		t.Errorf("requests: first %d, second %d; want 1 and 1 (the continuation)", n, m)
	}
	r.waitNoStreams()
}

// TestOwnedModeRepair: in owned mode, a stream that fails after content —
// a hard reset of the egress call (which splice mode cannot see), an
// in-band error, a truncation, a stall — is continued with splice mode's
// logic (prefill for Claude, a continue instruction otherwise): the
// client's reassembled text is the fake's intended text, with one id, one
// role chunk, one finish reason, one usage chunk and one [DONE]. The
// client's max_tokens is lowered in the continuation by what was spent.
// Every provider kind, each fault.
func TestOwnedModeRepair(t *testing.T) {
	for _, p := range matrixProviders {
		for _, fault := range []string{fakeprovider.FaultReset, fakeprovider.FaultInbandError, fakeprovider.FaultTruncate, fakeprovider.FaultStall} {
			t.Run(p.kind+"/"+fault, func(t *testing.T) {
				r, fake, tee := repairRig(t, p)
				f := fakeprovider.DefaultFault()
				f.Kind, f.After = fault, 7
				if fault == fakeprovider.FaultReset {
					// The reset waits until the client has content: a RST
					// may drop bytes not yet read.
					f.Hold, f.HoldAfter = "owned-reset", 7
				}
				fake.Enqueue(f)
				const maxTokens = 500
				s := r.client.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("tell me about the fox"),
					MaxTokens:     param.NewOpt[int64](maxTokens),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: param.NewOpt(true)}},
					option.WithHTTPClient(&http.Client{Transport: hostTee{ownedHost, tee}}))
				acc := openai.ChatCompletionAccumulator{}
				released := false
				for s.Next() {
					c := s.Current()
					acc.AddChunk(c)
					if !released && len(acc.Choices) > 0 && acc.Choices[0].Message.Content != "" && fault == fakeprovider.FaultReset {
						released = true
						fake.Release("owned-reset")
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
				if mt := gjson.GetBytes(reqs[1].Body, maxTokensPath[p.kind]); !mt.Exists() || mt.Int() >= maxTokens || mt.Int() < 1 {
					t.Errorf("the continuation's max_tokens %s, want below %d\n%s", mt.Raw, maxTokens, reqs[1].Body)
				}
				logs := r.accessLogs(3)
				ingress, _ := logsOf(t, logs)
				wantCause := map[string]string{fakeprovider.FaultReset: "reset", fakeprovider.FaultInbandError: "inband_error",
					fakeprovider.FaultTruncate: "truncated", fakeprovider.FaultStall: "stalled"}[fault]
				if ingress["repairs"] != float64(1) || ingress["repair_cause"] != wantCause || ingress["status"] != float64(200) {
					t.Errorf("access log %v", ingress)
				}
				r.waitNoStreams()
			})
		}
	}
}

// maxTokensPath is where each provider kind's request body carries the
// output token bound.
var maxTokensPath = map[string]string{"openai": "max_tokens", "azure_openai": "max_tokens", "openai_compatible": "max_tokens",
	"anthropic": "max_tokens", "bedrock": "inferenceConfig.maxTokens", "gemini": "generationConfig.maxOutputTokens"}

// TestOwnedModeResetInToolCall: in owned mode, a reset inside a tool call
// is not continued: the stream ends with an error event that says so, and
// the provider is asked once.
func TestOwnedModeResetInToolCall(t *testing.T) {
	for _, p := range matrixProviders {
		after, ok := toolAfter[p.kind]
		if !ok {
			continue // the Gemini fake sends a tool call whole, in one event
		}
		t.Run(p.kind, func(t *testing.T) {
			r, fake, tee := repairRig(t, p)
			f := fakeprovider.DefaultFault()
			f.Kind, f.After = fakeprovider.FaultReset, after
			f.Hold, f.HoldAfter = "owned-reset", after
			fake.Enqueue(f)
			params := openai.ChatCompletionNewParams{Model: "m", Messages: userMsg("look it up"),
				Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
					Name: "lookup", Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"q": map[string]any{"type": "string"}}}})}}
			s := r.client.Chat.Completions.NewStreaming(context.Background(), params, option.WithHTTPClient(&http.Client{Transport: hostTee{ownedHost, tee}}))
			released := false
			for s.Next() {
				if c := s.Current(); !released && len(c.Choices) > 0 && len(c.Choices[0].Delta.ToolCalls) > 0 {
					released = true
					fake.Release("owned-reset")
				}
			}
			err := s.Err()
			s.Close()
			if !released || err == nil || !strings.Contains(err.Error(), "tool call") {
				t.Errorf("released %v, err %v; want the tool call error\n%s\nllmux log:\n%s", released, err, tee.last(), r.llmuxLog)
			}
			if got := len(fake.Requests()); got != 1 {
				t.Errorf("the fake got %d requests, want 1", got)
			}
			r.waitNoStreams()
		})
	}
}

// hostTee is teeBodies with the request's Host set, as withHost sets it.
type hostTee struct {
	host string
	tee  *teeBodies
}

func (h hostTee) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Host = h.host
	return h.tee.RoundTrip(req)
}

// TestOwnedModeErrorStatus: an error status fails over as in splice mode;
// when every deployment fails the client gets the most informative error
// with its status (the headers were held: nothing went out before).
func TestOwnedModeErrorStatus(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			r, second := startFailoverRig(t)
			r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
			content, err := ownedChat(t, r, "gpt-4o-mini", stream)
			if err != nil || content != "answer from the second deployment" {
				t.Fatalf("content %q, err %v", content, err)
			}
			r.fake.Enqueue(failedPlan(http.StatusServiceUnavailable))
			second.Enqueue(failedPlan(http.StatusTooManyRequests))
			_, err = ownedChat(t, r, "gpt-4o-mini", stream)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Response.Header.Get("retry-after") == "" {
				t.Fatalf("want the 429 with retry-after, got %v", err)
			}
			r.waitNoStreams()
		})
	}
}

// TestOwnedModeEveryProvider: each provider kind answers through the owned
// host, whole and streamed, with its usage in the access log and its call
// on the egress listener.
func TestOwnedModeEveryProvider(t *testing.T) {
	rigEgress = true
	t.Cleanup(func() { rigEgress = false })
	for _, col := range matrixColumns {
		t.Run(col.name, func(t *testing.T) {
			r := col.start(t)
			for _, stream := range []bool{false, true} {
				content, err := ownedChat(t, r, col.model, stream)
				if err != nil {
					t.Fatalf("stream=%v: %v\nllmux log:\n%s", stream, err, r.llmuxLog)
				}
				if content == "" {
					t.Errorf("stream=%v: empty answer", stream)
				}
			}
			// Two requests: two ingress lines with the outcome, two calls
			// on the egress listener (in whatever order they were logged).
			var ingress, egress int
			for _, l := range r.accessLogs(4) {
				switch {
				case l["listener"] == "egress" && l["status"] == float64(200):
					egress++
				case l["listener"] == nil && l["status"] == float64(200) && l["output_tokens"] != nil && l["deployment"] != nil:
					ingress++
				default:
					t.Errorf("access log %v", l)
				}
			}
			if ingress != 2 || egress != 2 {
				t.Errorf("access logs: %d ingress, %d egress; want 2 each", ingress, egress)
			}
			r.waitNoStreams()
		})
	}
}

// TestOwnedModeNeedsEnvoy137: Envoy before 1.37 has no
// StreamedImmediateResponse. The configuration check refuses the shipped
// bootstrap's owned route for such a version; a stand-in emulating 1.36
// answers an owned request with 500 (the reply is a spurious message to
// it), while splice mode works there as ever.
func TestOwnedModeNeedsEnvoy137(t *testing.T) {
	raw, err := os.ReadFile("../../envoy/standalone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := envoy.DecodeYAML(raw, &b); err != nil {
		t.Fatal(err)
	}
	if errs := envoy.CheckBootstrapForEnvoy(&b, envoysim.Envoy136); len(errs) != 1 || !strings.Contains(errs[0].Error(), "llm-owned") {
		t.Errorf("Envoy 1.36: want the owned route refused, got %v", errs)
	}
	if errs := envoy.CheckBootstrapForEnvoy(&b, envoysim.Envoy137); len(errs) != 0 {
		t.Errorf("Envoy 1.37: %v", errs)
	}

	r, _ := startFailoverRigOpts(t, failoverOpts{version: envoysim.Envoy136})
	_, err = ownedChat(t, r, "gpt-4o-mini", false)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusInternalServerError {
		t.Fatalf("owned request on Envoy 1.36: want 500, got %v", err)
	}
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: userMsg("hello")})
	if err != nil || resp.Choices[0].Message.Content == "" {
		t.Fatalf("splice request on Envoy 1.36: %v", err)
	}
	r.waitNoStreams()
}
