package fakeprovider

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/llmux/llmux/translate"
	anthropictr "github.com/llmux/llmux/translate/anthropic"
)

const vtxModelPath = "/v1/projects/p/locations/us-central1/publishers/anthropic/models/claude-sonnet-4-5@20250929"

const vtxHello = `{"anthropic_version":"vertex-2023-10-16","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}`

// vtxPost sends body to the fake's path with a JSON content type and hdr
// ("" deletes a header), and returns the status, headers and body.
func vtxPost(t *testing.T, s *Server, path string, hdr map[string]string, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL()+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer static")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestAnthropicVertexRawPredict(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{BearerToken: "static", APIKey: "sk-ant-unused"})
	st, _, b := vtxPost(t, s, vtxModelPath+":rawPredict", nil, vtxHello)
	m := gjson.Parse(b)
	if st != 200 || m.Get("type").Str != "message" || m.Get("content.0.text").Str != "Hello from fake-anthropic: hello there" ||
		m.Get("model").Str != "claude-sonnet-4-5@20250929" || m.Get("stop_reason").Str != "end_turn" || m.Get("usage.input_tokens").Int() != 2 {
		t.Fatalf("%d %s", st, b)
	}
	rec, _ := s.Last()
	if rec.Path != vtxModelPath+":rawPredict" {
		t.Errorf("recorded path %q", rec.Path)
	}
	for name, hdr := range map[string]map[string]string{
		"no authorization": {"Authorization": ""},
		"wrong token":      {"Authorization": "Bearer other"},
		"not a bearer":     {"Authorization": "Basic static"},
	} {
		st, _, b := vtxPost(t, s, vtxModelPath+":rawPredict", hdr, vtxHello)
		if st != 401 || gjson.Get(b, "error.status").Str != "UNAUTHENTICATED" || gjson.Get(b, "error.code").Int() != 401 {
			t.Errorf("%s: %d %s", name, st, b)
		}
	}
	// Other routes: unknown verb, other publisher, GET.
	if st, _, b := vtxPost(t, s, vtxModelPath+":predict", nil, vtxHello); st != 404 {
		t.Errorf("predict: %d %s", st, b)
	}
	if st, _, b := vtxPost(t, s, "/v1/projects/p/locations/l/publishers/google/models/m:rawPredict", nil, vtxHello); st != 404 {
		t.Errorf("google publisher: %d %s", st, b)
	}
	resp, err := http.Get(s.URL() + vtxModelPath + ":rawPredict")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d", resp.StatusCode)
	}
}

func TestAnthropicVertexValidation(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	raw, stream := vtxModelPath+":rawPredict", vtxModelPath+":streamRawPredict"
	for _, tc := range []struct {
		name, path, body, want string
		hdr                    map[string]string
	}{
		{"no anthropic_version", raw, `{"max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, "anthropic_version: Field required", nil},
		{"API version of api.anthropic.com", raw, `{"anthropic_version":"2023-06-01","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, "anthropic_version: invalid version", nil},
		{"version not a string", raw, `{"anthropic_version":1,"max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, "anthropic_version: Input should be a valid string", nil},
		{"model in the body", raw, `{"anthropic_version":"vertex-2023-10-16","model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, "model: Extra inputs are not permitted", nil},
		{"no max_tokens", raw, `{"anthropic_version":"vertex-2023-10-16","messages":[{"role":"user","content":"x"}]}`, "max_tokens: Field required", nil},
		{"unknown field", raw, `{"anthropic_version":"vertex-2023-10-16","max_tokens":10,"n":2,"messages":[{"role":"user","content":"x"}]}`, "n: Extra inputs are not permitted", nil},
		{"unanswered tool_use", raw, `{"anthropic_version":"vertex-2023-10-16","max_tokens":10,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{}}]},{"role":"user","content":"y"}]}`, "without `tool_result` blocks", nil},
		{"stream on rawPredict", raw, `{"anthropic_version":"vertex-2023-10-16","max_tokens":10,"stream":true,"messages":[{"role":"user","content":"x"}]}`, "does not match the method :rawPredict", nil},
		{"no stream on streamRawPredict", stream, vtxHello, "does not match the method :streamRawPredict", nil},
		{"Anthropic key sent to Google", raw, vtxHello, "x-api-key", map[string]string{"x-api-key": "sk-ant-secret"}},
		{"not JSON", raw, `{"anthropic_version":`, "invalid JSON", nil},
		{"content type", raw, vtxHello, "Content-Type", map[string]string{"Content-Type": "text/plain"}},
	} {
		st, _, b := vtxPost(t, s, tc.path, tc.hdr, tc.body)
		if st != 400 || gjson.Get(b, "type").Str != "error" || gjson.Get(b, "error.type").Str != "invalid_request_error" || !strings.Contains(gjson.Get(b, "error.message").Str, tc.want) {
			t.Errorf("%s: %d %s", tc.name, st, b)
		}
	}
}

// TestAnthropicVertexStreamSequence: streamRawPredict sends the same event
// sequence as the Messages API route for the same request.
func TestAnthropicVertexStreamSequence(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{BearerToken: "static"})
	tools := `"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]`
	for _, calls := range []string{"0", "2"} {
		st, h, b := vtxPost(t, s, vtxModelPath+":streamRawPredict", map[string]string{HeaderToolCalls: calls},
			`{"anthropic_version":"vertex-2023-10-16","max_tokens":100,"stream":true,`+tools+`,"messages":[{"role":"user","content":"a b"}]}`)
		if st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %s %s", st, h.Get("Content-Type"), b)
		}
		names, data := antEvents(t, strings.NewReader(b))
		resp := antPost(t, s, `{"model":"claude-sonnet-4-5@20250929","max_tokens":100,"stream":true,`+tools+`,"messages":[{"role":"user","content":"a b"}]}`,
			map[string]string{HeaderToolCalls: calls})
		wantNames, _ := antEvents(t, resp.Body)
		if !slices.Equal(names, wantNames) || names[0] != "message_start" || names[len(names)-1] != "message_stop" {
			t.Errorf("tool calls %s: events %v, Messages API %v", calls, names, wantNames)
		}
		if gjson.Get(data[0], "message.model").Str != "claude-sonnet-4-5@20250929" {
			t.Errorf("message_start %s", data[0])
		}
		if want := map[string]string{"0": "end_turn", "2": "tool_use"}[calls]; gjson.Get(data[len(data)-2], "delta.stop_reason").Str != want {
			t.Errorf("message_delta %s, want %s", data[len(data)-2], want)
		}
	}
}

func TestAnthropicVertexFaults(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	raw := vtxModelPath + ":rawPredict"
	st, h, b := vtxPost(t, s, raw, map[string]string{HeaderStatus: "429", HeaderRetryAfter: "7"}, vtxHello)
	if st != 429 || gjson.Get(b, "error.status").Str != "RESOURCE_EXHAUSTED" || !strings.Contains(b, "anthropic-claude-sonnet-4-5.") || h.Get("retry-after") != "" {
		t.Errorf("429 (Google's front end sends no retry-after): %d %v %s", st, h, b)
	}
	st, h, b = vtxPost(t, s, raw, map[string]string{HeaderStatus: "429", HeaderErrorCode: "quota"}, vtxHello)
	if st != 429 || gjson.Get(b, "error.status").Str != "RESOURCE_EXHAUSTED" || !strings.Contains(b, "PerDay") || h.Get("retry-after") != "" {
		t.Errorf("429 quota: %d %v %s", st, h, b)
	}
	st, _, b = vtxPost(t, s, raw, map[string]string{HeaderStatus: "429", HeaderErrorCode: "rate_limit_error"}, vtxHello)
	if st != 429 || gjson.Get(b, "error.type").Str != "rate_limit_error" {
		t.Errorf("429 rate_limit_error: %d %s", st, b)
	}
	st, h, b = vtxPost(t, s, raw, map[string]string{HeaderStatus: "529"}, vtxHello)
	if st != 529 || gjson.Get(b, "error.type").Str != "overloaded_error" || h.Get("retry-after") != "1" {
		t.Errorf("529: %d %v %s", st, h, b)
	}
	for status, want := range map[string]string{"401": "UNAUTHENTICATED", "403": "PERMISSION_DENIED", "404": "NOT_FOUND"} {
		if st, _, b := vtxPost(t, s, raw, map[string]string{HeaderStatus: status}, vtxHello); gjson.Get(b, "error.status").Str != want || gjson.Get(b, "error.code").Int() != int64(st) {
			t.Errorf("%s: %d %s", status, st, b)
		}
	}
	// The status fault wins over validation and authentication, as on the
	// Messages API route.
	if st, _, _ := vtxPost(t, s, raw, map[string]string{HeaderStatus: "500", "Authorization": ""}, `{}`); st != 500 {
		t.Errorf("500 fault: %d", st)
	}
	// In-band error mid-stream.
	body := `{"anthropic_version":"vertex-2023-10-16","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"a b c"}]}`
	st, _, b = vtxPost(t, s, vtxModelPath+":streamRawPredict", map[string]string{HeaderFault: FaultInbandError, HeaderFaultAfter: "3"}, body)
	names, _ := antEvents(t, strings.NewReader(b))
	if st != 200 || len(names) != 4 || names[3] != "error" || !strings.Contains(b, "overloaded_error") {
		t.Errorf("in-band: %d %v", st, names)
	}
	// A script plan applies to the Vertex routes too.
	f := DefaultFault()
	f.Status = 503
	s.Enqueue(f)
	if st, _, _ := vtxPost(t, s, raw, nil, vtxHello); st != 503 || s.ScriptLen() != 0 {
		t.Errorf("scripted 503: %d", st)
	}
}

// TestAnthropicVertexHold: a streamRawPredict response pauses at a hold
// until it is released.
func TestAnthropicVertexHold(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	body := `{"anthropic_version":"vertex-2023-10-16","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"a b c"}]}`
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL()+vtxModelPath+":streamRawPredict", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer any")
	req.Header.Set(HeaderHold, "v1")
	req.Header.Set(HeaderHoldAfter, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitHeld(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64)
	n, _ := io.ReadAtLeast(resp.Body, first, len("event: message_start"))
	if !strings.HasPrefix(string(first[:n]), "event: message_start") {
		t.Fatalf("first bytes %q", first[:n])
	}
	s.Release("v1")
	rest, _ := io.ReadAll(resp.Body)
	if !strings.HasSuffix(strings.TrimSpace(string(rest)), `{"type":"message_stop"}`) {
		t.Errorf("rest %q", rest)
	}
}

// TestAnthropicVertexOAuth: tokens the fake Google endpoint issued through
// the service-account (JWT bearer) flow are accepted; tokens of another
// issuer are not.
func TestAnthropicVertexOAuth(t *testing.T) {
	issuer := NewGCPOAuth(t, GCPOAuthOptions{})
	other := NewGCPOAuth(t, GCPOAuthOptions{})
	s := NewAnthropic(t, AnthropicOptions{OAuth: issuer})
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer hc.CloseIdleConnections()
	token := func(o *GCPOAuth) string {
		ctx := context.WithValue(context.Background(), oauth2.HTTPClient, hc)
		creds, err := google.CredentialsFromJSON(ctx, o.CredentialsJSON(), "https://www.googleapis.com/auth/cloud-platform")
		if err != nil {
			t.Fatal(err)
		}
		tok, err := creds.TokenSource.Token()
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	good, bad := token(issuer), token(other)
	if st, _, b := vtxPost(t, s, vtxModelPath+":rawPredict", map[string]string{"Authorization": "Bearer " + good}, vtxHello); st != 200 {
		t.Errorf("issued token: %d %s", st, b)
	}
	if st, _, b := vtxPost(t, s, vtxModelPath+":rawPredict", map[string]string{"Authorization": "Bearer " + bad}, vtxHello); st != 401 || gjson.Get(b, "error.status").Str != "UNAUTHENTICATED" {
		t.Errorf("another issuer's token: %d %s", st, b)
	}
}

// TestAnthropicVertexAcceptsTranslator: what the vertex_anthropic translator
// sends passes the fake's strict validation.
func TestAnthropicVertexAcceptsTranslator(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{BearerToken: "ya29.fixed"})
	tr := anthropictr.Translator{Vertex: true, Token: func(context.Context, *translate.Target) (string, error) { return "ya29.fixed", nil }}
	target := &translate.Target{Model: "claude-sonnet-4-5@20250929", Project: "p", Region: "us-central1", Provider: "v"}
	tool := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	bodies := []string{
		`{"model":"c","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}],"temperature":0.2,"stop":["END"],"user":"u1"}`,
		`{"model":"c","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}`,
		`{"model":"c",` + tool + `,"tool_choice":"required","parallel_tool_calls":false,"messages":[{"role":"user","content":"weather?"}]}`,
		`{"model":"c",` + tool + `,"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},{"role":"tool","tool_call_id":"toolu_1","content":"12C"}]}`,
		`{"model":"c","response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"a":{"type":"string"}}}}},"messages":[{"role":"user","content":"json"}]}`,
	}
	for _, b := range bodies {
		streamed := gjson.Get(b, "stream").Bool()
		up, err := tr.Request(context.Background(), &translate.Request{Op: translate.OpChat, Body: []byte(b), Stream: streamed}, target)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		hdr := map[string]string{}
		for _, h := range up.Headers {
			hdr[h.Key] = h.Value
		}
		st, _, rb := vtxPost(t, s, up.Path, hdr, string(up.Body))
		if st != 200 {
			t.Errorf("fake rejects %s %s: %d %s", up.Path, up.Body, st, rb)
		}
	}
}
