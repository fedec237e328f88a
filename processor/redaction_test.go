package processor

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/llmux/llmux/proto/config"
	"github.com/llmux/llmux/translate"
)

// redactionSection is added to testdata/llmux.yaml for these tests.
const redactionSection = `
redaction:
  policies:
  - name: reversible
    actions: {email: reversible, card: block, secrets: mask}
  - name: masking
    actions: {email: mask}
  default: reversible
  model_groups: {llama: masking}
`

func redactionExchange(t *testing.T, attrs map[string]*structpb.Struct) (*exchange, *bytes.Buffer) {
	t.Helper()
	base, err := os.ReadFile("testdata/llmux.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"LLMUX_TEST_KEY": testKey, "OPENAI_API_KEY": providerKey}
	cfg, err := config.Parse(append(base, redactionSection...), config.LoadOptions{Kinds: translate.KnownKinds,
		Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s := New(Options{Config: func() *config.Runtime { return cfg }, Now: fakeClock(), Translator: openaiKinds, Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	rec := &recorder{}
	x := &exchange{t: t, h: newHandler(s, context.Background(), rec), rec: rec}
	hd := post("/v1/chat/completions", bearer()...)
	hd.Attributes = attrs
	x.must(hd)
	return x, &log
}

const secretMail = "jane.doe@example.com"

// TestRedactionThroughHandler: the upstream body holds a placeholder, the
// client's stream gets the original back even cut inside the placeholder,
// and metadata carries counts only.
func TestRedactionThroughHandler(t *testing.T) {
	x, log := redactionExchange(t, nil)
	defer x.h.end()
	r := x.must(reqBody(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"mail ` + secretMail + ` with key sk-abcdefghijklmnop0123456789"}]}`))
	up := string(r.GetRequestBody().GetResponse().GetBodyMutation().GetBody())
	if got := gjson.Get(up, "messages.0.content").Str; got != "mail <EMAIL_1> with key [API_KEY]" {
		t.Fatalf("upstream content %q", got)
	}
	x.must(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	chunk := func(c string) string {
		return `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"` + c + `"},"finish_reason":null}]}` + "\n\n"
	}
	var client []byte
	for _, part := range []struct {
		body string
		eos  bool
	}{
		{chunk("Sent to <EMA"), false},
		{chunk("IL_1>."), false},
		{`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n", true},
	} {
		out, err := x.send(respBody(part.body, part.eos))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range out {
			client = append(client, bodyOf(o).GetBody()...)
		}
	}
	var content strings.Builder
	for _, ev := range strings.Split(string(client), "\n\n") {
		if p, ok := strings.CutPrefix(ev, "data: "); ok && p != "[DONE]" {
			content.WriteString(gjson.Get(p, "choices.0.delta.content").Str)
		}
	}
	if content.String() != "Sent to "+secretMail+"." {
		t.Errorf("client content %q", content.String())
	}
	md := x.rec.sent[len(x.rec.sent)-1].GetDynamicMetadata().GetFields()["io.llmux"].GetStructValue().GetFields()
	if md["redaction_policy"].GetStringValue() != "reversible" || md["redacted"].GetNumberValue() != 2 || md["redacted_kinds"].GetStringValue() != "EMAIL:1,API_KEY:1" {
		t.Errorf("metadata %v", md)
	}
	x.h.end()
	if strings.Contains(log.String(), secretMail) || strings.Contains(log.String(), "sk-abcdefghijklmnop") {
		t.Errorf("a log line carries content:\n%s", log)
	}
}

func TestRedactionBlockAndPolicies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attrs   map[string]*structpb.Struct
		model   string
		status  int
		code    string
		content string // upstream content when forwarded
	}{
		{"block", nil, "gpt-4o-mini", 400, "sensitive_data_blocked", ""},
		{"model group policy", nil, "llama", 0, "", "card 4111 1111 1111 1111 to [EMAIL]"},
		{"route metadata beats the config", routeAttrs(t, map[string]any{"io.llmux": map[string]any{"redaction_policy": "none"}}), "gpt-4o-mini", 0, "", "card 4111 1111 1111 1111 to " + secretMail},
		{"route names an unknown policy", routeAttrs(t, map[string]any{"io.llmux": map[string]any{"redaction_policy": "nope"}}), "gpt-4o-mini", 500, "invalid_route_metadata", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, log := redactionExchange(t, tc.attrs)
			defer x.h.end()
			r := x.must(reqBody(`{"model":"` + tc.model + `","messages":[{"role":"user","content":"card 4111 1111 1111 1111 to ` + secretMail + `"}]}`))
			if tc.status == 0 {
				if got := gjson.GetBytes(r.GetRequestBody().GetResponse().GetBodyMutation().GetBody(), "messages.0.content").Str; got != tc.content {
					t.Errorf("upstream content %q, want %q", got, tc.content)
				}
				return
			}
			st, code := immediate(t, r)
			body := string(r.GetImmediateResponse().GetBody())
			if st != tc.status || code != tc.code {
				t.Errorf("%d %s: %s", st, code, body)
			}
			if strings.Contains(body, "4111") || strings.Contains(body, secretMail) || strings.Contains(log.String(), secretMail) {
				t.Errorf("the error or a log line carries the value: %s\n%s", body, log)
			}
			if tc.code == "sensitive_data_blocked" && (!strings.Contains(body, "CARD") || gjson.Get(body, "error.param").Str != "messages[0].content") {
				t.Errorf("the error does not name the kind and field: %s", body)
			}
		})
	}
}
