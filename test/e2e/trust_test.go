package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"
)

// TestBodyReadOneWay: a body the gateway and the provider could read two
// ways is refused at the gateway with an OpenAI 400 naming the member,
// and never reaches the provider. The duplicate "model" is the attack the
// rule exists for: routed and authorised on the first, served (by
// OpenAI-style parsers) as the last, on the gateway's provider key.
func TestBodyReadOneWay(t *testing.T) {
	r := startRig(t)

	// Through the official SDK, as a client would send a raw body.
	dup := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"model":"gpt-4o"}`
	_, err := r.client.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{},
		option.WithRequestBody("application/json", bytes.NewReader([]byte(dup))))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error, got %v", err)
	}
	if apiErr.StatusCode != 400 || apiErr.Type != "invalid_request_error" || apiErr.Code != "duplicate_parameter" || apiErr.Param != "model" {
		t.Fatalf("got %d type %q code %q param %q: %s", apiErr.StatusCode, apiErr.Type, apiErr.Code, apiErr.Param, apiErr.Message)
	}

	// Raw HTTP, every kind of violation, both endpoints.
	tests := []struct {
		name, path, body string
		code, param      string
	}{
		{"escaped duplicate model", "chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"mod\u0065l":"gpt-4o"}`, "duplicate_parameter", "model"},
		{"hidden stream_options", "chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":false}}`, "duplicate_parameter", "stream_options"},
		{"nested duplicate", "chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","role":"system"}]}`, "duplicate_parameter", "messages[0].role"},
		{"invalid utf-8", "chat/completions", "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", "invalid_utf8", "messages[0].content"},
		{"lone surrogate", "chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\ud800"}]}`, "invalid_unicode_escape", "messages[0].content"},
		{"embeddings duplicate", "embeddings", `{"model":"text-embedding-3-small","input":"a","model":"text-embedding-3-large"}`, "duplicate_parameter", "model"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, r.baseURL+tc.path, bytes.NewReader([]byte(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+clientKey)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 400 || resp.Header.Get("content-type") != "application/json" {
				t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("content-type"), body)
			}
			if code, param := gjson.GetBytes(body, "error.code").String(), gjson.GetBytes(body, "error.param").String(); code != tc.code || param != tc.param {
				t.Fatalf("code %q param %q, want %q %q: %s", code, param, tc.code, tc.param, body)
			}
		})
	}
	if n := len(r.fake.Requests()); n != 0 {
		t.Fatalf("the provider received %d refused requests", n)
	}
	r.waitNoStreams()
}
