package xbench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/anthropic"
	"github.com/llmux/llmux/translate/bedrock"
	"github.com/llmux/llmux/translate/gemini"
	"github.com/llmux/llmux/translate/openai"
)

// chatBody is processor/bench's ~1 KB non-streamed chat request.
const chatBody = `{"model":"m","messages":[` +
	`{"role":"system","content":"You are a concise technical writer. Answer in one paragraph of plain prose, without lists or headings, and define any acronym you use."},` +
	`{"role":"user","content":"What does a reverse proxy do?"},` +
	`{"role":"assistant","content":"A reverse proxy receives requests on behalf of one or more servers, forwards each to a server that can answer it, and returns the answer as if it were its own. It can terminate TLS, balance load, cache responses and hide the servers' addresses."},` +
	`{"role":"user","content":"And how is an API gateway for language models different? Explain what it adds on top of a reverse proxy for teams that call several model providers, and keep it under two hundred words."}],` +
	`"temperature":0.2,"max_tokens":400,"user":"user-1234"}`

// replyText is processor/bench's assistant answer.
const replyText = "An API gateway for language models sits between applications and the providers they call. " +
	"It authenticates each caller with the gateway's own keys, picks a deployment of the requested model, " +
	"rewrites the request into the provider's format and signs it, then turns the provider's answer back " +
	"into the OpenAI format the client expects. Along the way it records usage, latency and errors per " +
	"tenant, so that operators can see who spends what, and it keeps provider credentials out of client " +
	"hands. Retries, fallbacks and limits build on the same place in the path."

type provider struct {
	name, fixture, textPath string
	tr                      translate.Translator
	target                  translate.Target
}

var providers = []provider{
	{"openai", "../../openai/testdata/chat.json", "choices.0.message.content", openai.Translator{},
		translate.Target{Model: "gpt-4o-mini-2024-07-18", APIKey: "k"}},
	{"anthropic", "../../anthropic/testdata/message.json", "content.0.text", anthropic.Translator{},
		translate.Target{Model: "claude-sonnet-4-5", APIKey: "k", APIVersion: "2023-06-01"}},
	{"bedrock", "../../bedrock/testdata/converse_text.json", "output.message.content.0.text", bedrock.Translator{
		Credentials: func(context.Context, *translate.Target) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, nil
		},
		Now: func() time.Time { return time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC) },
	}, translate.Target{Model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0", Region: "us-east-1", Provider: "bedrock"}},
	{"gemini", "../../gemini/testdata/generate_text.json", "candidates.0.content.parts.0.text", gemini.Translator{},
		translate.Target{Model: "gemini-2.5-flash", APIKey: "k"}},
}

// responseBody is p's fixture, compacted, with replyText as its text.
func responseBody(tb testing.TB, p provider) []byte {
	tb.Helper()
	raw, err := os.ReadFile(p.fixture)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := sjson.Set(gjson.Get(string(raw), "@ugly").Raw, p.textPath, replyText)
	if err != nil {
		tb.Fatal(err)
	}
	return []byte(out)
}

// exchange rewrites the request and decodes the response, appending the
// client's body to dst.
func exchange(p provider, resp, dst []byte) ([]byte, *translate.Result, error) {
	req := &translate.Request{Op: translate.OpChat, Body: []byte(chatBody)}
	if _, err := p.tr.Request(context.Background(), req, &p.target); err != nil {
		return dst, nil, err
	}
	d := p.tr.NewDecoder(req, 200, "application/json")
	out, err := d.Decode(dst, resp, true)
	return out, d.Result(), err
}

// TestExchange checks that the benchmarked exchange is the successful one.
func TestExchange(t *testing.T) {
	for _, p := range providers {
		out, res, err := exchange(p, responseBody(t, p), nil)
		if err != nil || res.Err != nil || !res.Completed || !res.HasUsage {
			t.Fatalf("%s: %v %+v", p.name, err, res)
		}
		if got := gjson.GetBytes(out, "choices.0.message.content").Str; !strings.HasPrefix(got, replyText) {
			t.Errorf("%s: content %q", p.name, got)
		}
	}
}

// BenchmarkExchange is one non-streamed chat exchange per provider: the
// request rewritten (and for Bedrock signed) and the whole response
// decoded.
func BenchmarkExchange(b *testing.B) {
	for _, p := range providers {
		resp := responseBody(b, p)
		b.Run(p.name, func(b *testing.B) {
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if out, _, err = exchange(p, resp, out[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRequest is BenchmarkExchange's request side alone.
func BenchmarkRequest(b *testing.B) {
	for _, p := range providers {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := &translate.Request{Op: translate.OpChat, Body: []byte(chatBody)}
				if _, err := p.tr.Request(context.Background(), req, &p.target); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode is BenchmarkExchange's response side alone.
func BenchmarkDecode(b *testing.B) {
	for _, p := range providers {
		resp := responseBody(b, p)
		req := &translate.Request{Op: translate.OpChat, Body: []byte(chatBody)}
		if _, err := p.tr.Request(context.Background(), req, &p.target); err != nil {
			b.Fatal(err)
		}
		b.Run(p.name, func(b *testing.B) {
			var out []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				d := p.tr.NewDecoder(req, 200, "application/json")
				if out, err = d.Decode(out[:0], resp, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
