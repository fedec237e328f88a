package azure

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func headers(up *translate.Upstream) map[string]string {
	m := map[string]string{}
	for _, h := range up.Headers {
		m[h.Key] = h.Value
	}
	return m
}

func TestRegistered(t *testing.T) {
	if _, ok := translate.Lookup(Kind); !ok {
		t.Fatal("azure_openai not registered")
	}
}

func TestRequest(t *testing.T) {
	tests := []struct {
		name     string
		req      translate.Request
		target   translate.Target
		wantPath string
		wantKey  string
		usage    bool
	}{
		{"chat, defaults", translate.Request{Op: translate.OpChat, Body: []byte(`{"model":"gpt-4o","messages":[]}`)},
			translate.Target{Model: "prod-4o", APIKey: "k1"},
			"/openai/deployments/prod-4o/chat/completions?api-version=" + DefaultAPIVersion, "k1", false},
		{"stream, version and base path", translate.Request{Op: translate.OpChat, Stream: true, Body: []byte(`{"model":"gpt-4o","stream":true,"messages":[]}`)},
			translate.Target{Model: "my dep", APIVersion: "2025-04-01-preview", BasePath: "/custom/openai/"},
			"/custom/openai/deployments/my%20dep/chat/completions?api-version=2025-04-01-preview", "", true},
		{"embeddings", translate.Request{Op: translate.OpEmbeddings, Body: []byte(`{"model":"e","input":"x","encoding_format":"base64"}`)},
			translate.Target{Model: "embed", APIKey: "k2", Options: map[string]string{"auth": "api_key"}},
			"/openai/deployments/embed/embeddings?api-version=" + DefaultAPIVersion, "k2", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := string(tc.req.Body)
			up, err := New().Request(context.Background(), &tc.req, &tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if string(tc.req.Body) != orig {
				t.Fatal("client body modified")
			}
			if up.Path != tc.wantPath {
				t.Errorf("path %q", up.Path)
			}
			h := headers(up)
			if h["api-key"] != tc.wantKey || h["authorization"] != "" {
				t.Errorf("auth headers %v", h)
			}
			if gjson.GetBytes(up.Body, "model").String() != tc.target.Model {
				t.Errorf("model %s", up.Body)
			}
			if gjson.GetBytes(up.Body, "stream_options.include_usage").Bool() != tc.usage {
				t.Errorf("include_usage in %s", up.Body)
			}
			if tc.req.Op == translate.OpEmbeddings && gjson.GetBytes(up.Body, "encoding_format").String() != "base64" {
				t.Errorf("encoding_format lost: %s", up.Body)
			}
		})
	}
	if _, err := New().Request(context.Background(), &translate.Request{Op: translate.OpChat, Body: []byte(`{}`)}, &translate.Target{Model: "d", Options: map[string]string{"auth": "magic"}}); err == nil {
		t.Error("unknown auth accepted")
	}
}

// fakeCred is an azcore.TokenCredential that counts its calls.
type fakeCred struct {
	calls atomic.Int32
	ttl   time.Duration
	err   error
	block chan struct{}
}

func (c *fakeCred) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	n := c.calls.Add(1)
	if c.block != nil {
		select {
		case <-c.block:
		case <-ctx.Done():
			return azcore.AccessToken{}, ctx.Err()
		}
	}
	if c.err != nil {
		return azcore.AccessToken{}, c.err
	}
	if len(o.Scopes) != 1 {
		return azcore.AccessToken{}, errors.New("want one scope")
	}
	return azcore.AccessToken{Token: o.Scopes[0] + "#" + string(rune('0'+n)), ExpiresOn: time.Now().Add(c.ttl)}, nil
}

func TestEntraToken(t *testing.T) {
	cred := &fakeCred{ttl: time.Hour}
	var made atomic.Int32
	tr := NewWithCredentials(func(string) (azcore.TokenCredential, error) { made.Add(1); return cred, nil })
	target := &translate.Target{Model: "d", Provider: "az", APIKey: "unused", Options: map[string]string{"auth": "entra"}}
	req := &translate.Request{Op: translate.OpChat, Body: []byte(`{"messages":[]}`)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			up, err := tr.Request(context.Background(), req, target)
			if err != nil {
				t.Error(err)
				return
			}
			h := headers(up)
			if h["authorization"] != "Bearer "+EntraScope+"#1" || h["api-key"] != "" {
				t.Errorf("headers %v", h)
			}
		})
	}
	wg.Wait()
	if cred.calls.Load() != 1 || made.Load() != 1 {
		t.Errorf("token fetched %d times, credential made %d times", cred.calls.Load(), made.Load())
	}
	// A token close to expiry is refreshed.
	tr.tokens.now = func() time.Time { return time.Now().Add(58 * time.Minute) }
	up, err := tr.Request(context.Background(), req, target)
	if err != nil || headers(up)["authorization"] != "Bearer "+EntraScope+"#2" {
		t.Errorf("refresh: %v %v", err, up)
	}
	// Another scope is another token.
	target.Options = map[string]string{"auth": "entra", "entra_scope": "api://custom/.default"}
	up, _ = tr.Request(context.Background(), req, target)
	if !strings.HasPrefix(headers(up)["authorization"], "Bearer api://custom/.default#") {
		t.Errorf("scope: %v", headers(up))
	}
}

func TestEntraFailureAndContext(t *testing.T) {
	req := &translate.Request{Op: translate.OpChat, Body: []byte(`{}`)}
	target := &translate.Target{Model: "d", Provider: "az", Options: map[string]string{"auth": "entra"}}
	tr := NewWithCredentials(func(string) (azcore.TokenCredential, error) { return &fakeCred{err: errors.New("no identity")}, nil })
	_, err := tr.Request(context.Background(), req, target)
	var te *translate.Error
	if !errors.As(err, &te) || te.Code != translate.CodeUpstreamUnavailable || strings.Contains(te.Message, "no identity") {
		t.Fatalf("error %v", err)
	}
	// The request's context bounds a refresh that hangs.
	cred := &fakeCred{ttl: time.Hour, block: make(chan struct{})}
	tr = NewWithCredentials(func(string) (azcore.TokenCredential, error) { return cred, nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tr.Request(ctx, req, target); err == nil {
		t.Fatal("canceled refresh succeeded")
	}
	close(cred.block)
}

func decodeAll(t testing.TB, d translate.Decoder, src string, step int) string {
	t.Helper()
	var out []byte
	for i := 0; i < len(src); i += step {
		j := min(i+step, len(src))
		var err error
		if out, err = d.Decode(out, []byte(src[i:j]), j == len(src)); err != nil {
			t.Fatal(err)
		}
	}
	return string(out)
}

func TestStreamEverySplit(t *testing.T) {
	src, err := os.ReadFile("testdata/chat_stream.sse")
	if err != nil {
		t.Fatal(err)
	}
	req := &translate.Request{Op: translate.OpChat, Stream: true}
	tr := New()
	whole := decodeAll(t, tr.NewDecoder(req, 200, "text/event-stream"), string(src), len(src))
	for step := 1; step < len(src); step += 7 {
		d := tr.NewDecoder(req, 200, "text/event-stream")
		if got := decodeAll(t, d, string(src), step); got != whole {
			t.Fatalf("step %d differs", step)
		}
		r := d.Result()
		if !r.Completed || !r.HasUsage || r.Usage.InputTokens != 12 || r.Usage.OutputTokens != 2 || r.FinishReason != "stop" || r.Model != "gpt-4o-2024-08-06" {
			t.Fatalf("step %d: %+v", step, r)
		}
	}
	events := strings.Split(strings.TrimSuffix(whole, "\n\n"), "\n\n")
	if strings.Contains(whole, "prompt_filter_results") || strings.Contains(whole, `"choices":[]`) {
		t.Errorf("prompt filter or usage chunk passed:\n%s", whole)
	}
	if !strings.Contains(events[0], `"role":"assistant"`) || events[len(events)-1] != "data: [DONE]" || len(events) != 5 {
		t.Errorf("events:\n%s", whole)
	}
	if strings.Count(whole, "content_filter_results") != 4 {
		t.Errorf("content_filter_results not kept:\n%s", whole)
	}
	// A client that asked for usage gets the usage chunk (and still no
	// prompt filter chunk).
	req.IncludeUsage = true
	got := decodeAll(t, tr.NewDecoder(req, 200, "text/event-stream"), string(src), 50)
	if !strings.Contains(got, `"choices":[],`) || strings.Contains(got, "prompt_filter_results") {
		t.Errorf("with usage:\n%s", got)
	}
}

func TestStreamContentFilterFinish(t *testing.T) {
	src := `data: {"choices":[{"content_filter_results":{},"delta":{"role":"assistant","content":""},"finish_reason":null,"index":0}],"id":"c","model":"m","object":"chat.completion.chunk"}` + "\n\n" +
		`data: {"choices":[{"content_filter_results":{"violence":{"filtered":true,"severity":"high"}},"delta":{},"finish_reason":"content_filter","index":0}],"id":"c","model":"m","object":"chat.completion.chunk"}` + "\n\n" +
		"data: [DONE]\n\n"
	d := New().NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
	out := decodeAll(t, d, src, 17)
	if out != src || d.Result().FinishReason != "content_filter" || d.Result().Err != nil {
		t.Errorf("%+v\n%s", d.Result(), out)
	}
}

func TestJSON(t *testing.T) {
	src, _ := os.ReadFile("testdata/chat.json")
	d := New().NewDecoder(&translate.Request{Op: translate.OpChat}, 200, "application/json")
	if out := decodeAll(t, d, string(src), 100); out != string(src) {
		t.Error("body altered")
	}
	r := d.Result()
	if !r.Completed || r.Usage.CachedTokens != 4 || r.FinishReason != "stop" {
		t.Errorf("%+v", r)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		file    string
		status  int
		code    translate.Code
		oaiCode string
		inner   bool
	}{
		{"error_content_filter.json", 400, translate.CodeContentFiltered, "content_filter", true},
		{"error_429.json", 429, translate.CodeRateLimited, "rate_limit_exceeded", false},
		{"error_deployment_not_found.json", 404, translate.CodeNotFound, "DeploymentNotFound", false},
		{"error_401.json", 401, translate.CodeAuthentication, "invalid_api_key", false},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			body, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			d := New().NewDecoder(&translate.Request{Op: translate.OpChat}, tc.status, "application/json")
			out := decodeAll(t, d, string(body), 33)
			e := d.Result().Err
			if e == nil || e.Code != tc.code || e.HTTPStatus() != tc.status {
				t.Fatalf("error %+v", e)
			}
			g := gjson.Parse(out)
			if g.Get("error.message").Type != gjson.String || g.Get("error.type").Type != gjson.String || g.Get("error.code").String() != tc.oaiCode {
				t.Errorf("not OpenAI-shaped: %s", out)
			}
			if g.Get("error.innererror.content_filter_result.violence.filtered").Bool() != tc.inner {
				t.Errorf("innererror: %s", out)
			}
			if pe := ParseError(tc.status, body); pe.Code != tc.code {
				t.Errorf("ParseError %s", pe.Code)
			}
		})
	}
	// Azure API Management's top-level shape.
	if e := ParseError(401, []byte(`{"statusCode":401,"message":"Unauthorized. Access token is missing, invalid, audience is incorrect, or have expired."}`)); e.Code != translate.CodeAuthentication || !strings.HasPrefix(e.Message, "Unauthorized.") {
		t.Errorf("APIM: %+v", e)
	}
	// An in-band stream error without "type" is wrapped.
	d := New().NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
	out := decodeAll(t, d, `data: {"error":{"code":"InternalServerError","message":"boom"}}`+"\n\n", 5)
	if !strings.HasPrefix(out, "data: ") || gjson.Get(strings.TrimPrefix(out, "data: "), "error.type").String() != "server_error" || d.Result().Err.Code != translate.CodeUpstreamError {
		t.Errorf("in-band: %s %+v", out, d.Result().Err)
	}
}

func FuzzErrorParser(f *testing.F) {
	for _, name := range []string{"error_content_filter.json", "error_429.json", "error_deployment_not_found.json", "error_401.json"} {
		b, _ := os.ReadFile("testdata/" + name)
		f.Add(400, b)
	}
	f.Add(401, []byte(`{"statusCode":401,"message":"x"}`))
	f.Fuzz(func(t *testing.T, status int, b []byte) {
		e := ParseError(status, b)
		if !e.Code.Known() || len(e.Message) > 2048 {
			t.Fatalf("error %+v", e)
		}
		if !gjson.ValidBytes(e.AppendJSON(nil)) {
			t.Fatalf("invalid JSON for %q", b)
		}
	})
}

func FuzzStreamDecoder(f *testing.F) {
	src, _ := os.ReadFile("testdata/chat_stream.sse")
	f.Add(src, 7)
	f.Add([]byte("data: {\"choices\":[],\"prompt_filter_results\":[]}\n\ndata: {\"error\":{\"code\":\"429\"}}\n\n"), 3)
	f.Fuzz(func(t *testing.T, b []byte, step int) {
		if step <= 0 {
			step = 1
		}
		d := New().NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
		var out []byte
		for i := 0; i < len(b); i += step {
			j := min(i+step, len(b))
			out, _ = d.Decode(out, b[i:j], j == len(b))
		}
		if len(out) > len(b)+(strings.Count(string(b), "\n")+1)*3400 {
			t.Fatalf("output %d for input %d", len(out), len(b))
		}
	})
}

// BenchmarkStreamChunk is the per-chunk cost of Azure's content chunk (with
// content_filter_results), next to translate/openai's identity baseline.
func BenchmarkStreamChunk(b *testing.B) {
	chunk := []byte(`data: {"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}},"delta":{"content":" there"},"finish_reason":null,"index":0,"logprobs":null}],"created":1733784000,"id":"chatcmpl-AcZr0example","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_04751d0b65","usage":null}` + "\n\n")
	d := New().NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
	var out []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}

// BenchmarkPromptFilterChunk is the cost of recognising and dropping
// Azure's prompt_filter_results chunk (once per stream).
func BenchmarkPromptFilterChunk(b *testing.B) {
	chunk := []byte(`data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]}` + "\n\n")
	d := New().NewDecoder(&translate.Request{Op: translate.OpChat, Stream: true}, 200, "text/event-stream")
	var out []byte
	b.ReportAllocs()
	for b.Loop() {
		out, _ = d.Decode(out[:0], chunk, false)
	}
}
