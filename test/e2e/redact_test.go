package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/llmux/llmux/test/fakeprovider"
)

const redactConfig = `
auth:
  keys:
  - {name: e2e, tenant: team-e2e, key_env: E2E_CLIENT_KEY}
providers:
- {name: openai, kind: openai, cluster: openai, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: anthropic, kind: anthropic, cluster: anthropic, credentials: {api_key_env: E2E_PROVIDER_KEY}}
- {name: bedrock, kind: bedrock, cluster: bedrock_us_east_1, region: us-east-1}
- {name: gemini, kind: gemini, cluster: gemini, credentials: {api_key_env: E2E_PROVIDER_KEY}}
deployments:
- {name: gpt, provider: openai, model: gpt-4o-mini-2024-07-18}
- {name: claude, provider: anthropic, model: claude-sonnet-4-5}
- {name: claude-bedrock, provider: bedrock, model: us.anthropic.claude-sonnet-4-5-20250929-v1:0}
- {name: gemini-flash, provider: gemini, model: gemini-2.5-flash}
model_groups:
- {name: gpt, deployments: [gpt]}
- {name: claude, deployments: [claude]}
- {name: claude-bedrock, deployments: [claude-bedrock]}
- {name: gemini-flash, deployments: [gemini-flash]}
redaction:
  policies:
  - name: pii
    actions: {email: reversible, phone: reversible, card: block, secrets: mask}
  default: pii
`

// The personal data of the prompt, and what must never reach a provider.
const (
	redactMail  = "jane.doe@example.com"
	redactPhone = "+1 415 555 2671"
	redactKey   = "sk-e2eabcdefghijklmnop0123456789"
	redactCard  = "4111 1111 1111 1111"
)

// TestRedaction: through the stand-in and every provider kind, streamed and
// not, the provider receives placeholders and a masked key, never the
// values; the OpenAI SDK reads the originals back in the echoed reply; a
// card number is refused with a 400 that names its kind, and the request
// never leaves the gateway.
func TestRedaction(t *testing.T) {
	fakeAWSEnv(t)
	oai := fakeprovider.NewOpenAI(t, fakeprovider.OpenAIOptions{APIKey: providerKey})
	ant := fakeprovider.NewAnthropic(t, fakeprovider.AnthropicOptions{APIKey: providerKey})
	br := fakeprovider.NewBedrock(t, fakeprovider.BedrockOptions{})
	gem := fakeprovider.NewGemini(t, fakeprovider.GeminiOptions{APIKey: providerKey})
	r := startRigWith(t, redactConfig, map[string]string{"openai": oai.Addr(), "anthropic": ant.Addr(), "bedrock_us_east_1": br.Addr(), "gemini": gem.Addr()})
	fakes := []*fakeprovider.Server{oai, ant, br, gem}

	prompt := "Reach me at " + redactMail + " or " + redactPhone + " (key " + redactKey + ")"
	want := "Reach me at " + redactMail + " or " + redactPhone + " (key [API_KEY])"
	ctx := context.Background()
	for _, group := range []string{"gpt", "claude", "claude-bedrock", "gemini-flash"} {
		params := openai.ChatCompletionNewParams{Model: group, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
		t.Run(group, func(t *testing.T) {
			resp, err := r.client.Chat.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Choices[0].Message.Content; !strings.HasSuffix(got, ": "+want) {
				t.Errorf("reply %q, want it to end with %q", got, want)
			}
		})
		t.Run(group+"/stream", func(t *testing.T) {
			if got := streamedContent(t, r, params); !strings.HasSuffix(got, ": "+want) {
				t.Errorf("streamed reply %q, want it to end with %q", got, want)
			}
		})
	}
	received := 0
	for _, f := range fakes {
		for _, rec := range f.Requests() {
			received++
			b := string(rec.Body)
			if strings.Contains(b, redactMail) || strings.Contains(b, "415 555 2671") || strings.Contains(b, redactKey) {
				t.Errorf("%s received an original value: %s", rec.Path, b)
			}
			if !strings.Contains(b, "<EMAIL_1>") || !strings.Contains(b, "<PHONE_1>") {
				t.Errorf("%s received no placeholders: %s", rec.Path, b)
			}
		}
	}
	if received != 8 {
		t.Errorf("the fakes received %d requests, want 8", received)
	}

	_, err := r.client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("charge " + redactCard + " please")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "sensitive_data_blocked" || !strings.Contains(apiErr.Message, "CARD") || strings.Contains(apiErr.Message, "4111") {
		t.Fatalf("err = %v, want a 400 sensitive_data_blocked naming CARD and not the number", err)
	}
	if n := len(oai.Requests()); n != 2 {
		t.Errorf("the blocked request reached the provider (%d requests)", n)
	}
	if log := r.llmuxLog.String(); strings.Contains(log, redactMail) || strings.Contains(log, "4111") {
		t.Errorf("llmux's log carries a value:\n%s", log)
	}
	if r.sim != nil {
		logs := r.accessLogs(9)
		if l := logs[0]; l["redaction_policy"] != "pii" || l["redacted_kinds"] != "EMAIL:1,PHONE:1,API_KEY:1" {
			t.Errorf("access log %v", l)
		}
	}
}

// TestRedactionFailover: when the first deployment fails before the first
// byte, llmux's own call to the fallback (through the egress listener)
// carries the redacted body too.
func TestRedactionFailover(t *testing.T) {
	r, second := startFailoverRigOpts(t, failoverOpts{edit: func(cfg string) string {
		return cfg + "redaction:\n  policies:\n  - {name: pii, actions: {email: reversible}}\n  default: pii\n"
	}})
	r.fake.Enqueue(failedPlan(503))
	resp, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("write to " + redactMail)}})
	if err != nil {
		t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
	}
	if got := resp.Choices[0].Message.Content; !strings.Contains(got, "answer from the second deployment") {
		t.Errorf("content %q", got)
	}
	for name, f := range map[string]*fakeprovider.Server{"first": r.fake, "second": second} {
		reqs := f.Requests()
		if len(reqs) != 1 {
			t.Fatalf("%s deployment: %d requests, want 1", name, len(reqs))
		}
		if b := string(reqs[0].Body); strings.Contains(b, redactMail) || !strings.Contains(b, "write to <EMAIL_1>") {
			t.Errorf("%s deployment received %s", name, b)
		}
	}
}

// TestRedactionOwnedMode: on a route in owned mode llmux calls the provider
// itself; the provider still receives placeholders only, and the client
// the originals, streamed and not.
func TestRedactionOwnedMode(t *testing.T) {
	rigEgress = true
	t.Cleanup(func() { rigEgress = false })
	r := startRigWith(t, configTemplate+"redaction:\n  policies:\n  - {name: pii, actions: {email: reversible}}\n  default: pii\n", nil)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "gpt-4o-mini", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("write to " + redactMail)}}
	resp, err := r.client.Chat.Completions.New(ctx, params, withHost(ownedHost))
	if err != nil {
		t.Fatalf("%v\nllmux log:\n%s", err, r.llmuxLog)
	}
	if got := resp.Choices[0].Message.Content; !strings.HasSuffix(got, "write to "+redactMail) {
		t.Errorf("reply %q", got)
	}
	if got := streamedContent(t, r, params, withHost(ownedHost)); !strings.HasSuffix(got, "write to "+redactMail) {
		t.Errorf("streamed reply %q", got)
	}
	reqs := r.fake.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d provider requests, want 2", len(reqs))
	}
	for _, rec := range reqs {
		if b := string(rec.Body); strings.Contains(b, redactMail) || !strings.Contains(b, "<EMAIL_1>") {
			t.Errorf("the provider received %s", b)
		}
	}
	r.waitNoStreams()
}

// streamedContent streams one chat completion and returns its text.
func streamedContent(t *testing.T, r *rig, params openai.ChatCompletionNewParams, opts ...option.RequestOption) string {
	t.Helper()
	st := r.client.Chat.Completions.NewStreaming(context.Background(), params, opts...)
	defer st.Close()
	var content strings.Builder
	for st.Next() {
		for _, c := range st.Current().Choices {
			content.WriteString(c.Delta.Content)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatalf("stream: %v\nllmux log:\n%s", err, r.llmuxLog)
	}
	return content.String()
}
