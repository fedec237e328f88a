package fakeprovider

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	anthropictr "github.com/llmux/llmux/translate/anthropic"
)

func antPost(t *testing.T, s *Server, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(body))
	req.Header.Set("content-type", "application/json")
	req.Header.Set("x-api-key", "sk-ant-test")
	req.Header.Set("anthropic-version", "2023-06-01")
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
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func antEvents(t *testing.T, r io.Reader) (names []string, data []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, v)
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			if !json.Valid([]byte(v)) {
				t.Fatalf("invalid data %q", v)
			}
			data = append(data, v)
		}
	}
	return names, data
}

const antHello = `{"model":"claude-sonnet-4-5","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}`

func TestAnthropicMessage(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{APIKey: "sk-ant-test", CacheReadTokens: 7, CacheCreationTokens: 3})
	resp := antPost(t, s, antHello, nil)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("request-id") == "" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	m := gjson.ParseBytes(b)
	if m.Get("type").Str != "message" || m.Get("role").Str != "assistant" || m.Get("content.0.text").Str != "Hello from fake-anthropic: hello there" ||
		m.Get("stop_reason").Str != "end_turn" || m.Get("usage.input_tokens").Int() != 2 || m.Get("usage.cache_read_input_tokens").Int() != 7 ||
		m.Get("usage.cache_creation_input_tokens").Int() != 3 || m.Get("usage.output_tokens").Int() != 5 || !strings.HasPrefix(m.Get("id").Str, "msg_") {
		t.Fatalf("%s", b)
	}
}

func TestAnthropicStreamSequence(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	resp := antPost(t, s, `{"model":"m","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"a b"}]}`, nil)
	if ct := resp.Header.Get("content-type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatal(ct)
	}
	names, data := antEvents(t, resp.Body)
	want := "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
	if strings.Join(names, " ") != want {
		t.Fatalf("events %v", names)
	}
	for i, d := range data {
		if gjson.Get(d, "type").Str != names[i] {
			t.Fatalf("event %s carries %s", names[i], d)
		}
	}
	var text string
	for _, d := range data {
		text += gjson.Get(d, "delta.text").Str
	}
	if text != "Hello from fake-anthropic: a b" {
		t.Errorf("text %q", text)
	}
}

func TestAnthropicToolUse(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	tools := `"tools":[{"name":"get_weather","description":"w","input_schema":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}]`
	resp := antPost(t, s, `{"model":"m","max_tokens":100,"stream":true,`+tools+`,"messages":[{"role":"user","content":"weather"}]}`, map[string]string{HeaderToolCalls: "2"})
	names, data := antEvents(t, resp.Body)
	args := map[int64]string{}
	for _, d := range data {
		if gjson.Get(d, "delta.type").Str == "input_json_delta" {
			args[gjson.Get(d, "index").Int()] += gjson.Get(d, "delta.partial_json").Str
		}
	}
	if len(args) != 2 || args[1] != `{"city":"city-0","days":1}` || args[2] != `{"city":"city-1","days":2}` {
		t.Fatalf("args %v (%v)", args, names)
	}
	if gjson.Get(data[len(data)-2], "delta.stop_reason").Str != "tool_use" {
		t.Fatalf("%s", data[len(data)-2])
	}
	// The tool results come back: a text answer.
	resp = antPost(t, s, `{"model":"m","max_tokens":100,`+tools+`,"messages":[{"role":"user","content":"weather"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"x"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}]}`, map[string]string{HeaderToolCalls: "2"})
	b, _ := io.ReadAll(resp.Body)
	if gjson.GetBytes(b, "content.0.text").Str != "Hello from fake-anthropic: sunny" {
		t.Fatalf("%s", b)
	}
	// A forced tool is called even without x-fake-tool-calls.
	resp = antPost(t, s, `{"model":"m","max_tokens":100,`+tools+`,"tool_choice":{"type":"tool","name":"get_weather"},"messages":[{"role":"user","content":"w"}]}`, nil)
	b, _ = io.ReadAll(resp.Body)
	if gjson.GetBytes(b, "content.0.type").Str != "tool_use" || gjson.GetBytes(b, "content.#").Int() != 1 {
		t.Fatalf("%s", b)
	}
}

// TestAnthropicRejects: requests the real API rejects get a 400 with
// Anthropic's error body naming the field.
func TestAnthropicRejects(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{APIKey: "sk-ant-test"})
	u := `{"role":"user","content":"x"}`
	tests := []struct {
		name, body string
		hdr        map[string]string
		status     int
		typ, msg   string
	}{
		{"missing max_tokens", `{"model":"m","messages":[` + u + `]}`, nil, 400, "invalid_request_error", "max_tokens: Field required"},
		{"system in messages", `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"s"},` + u + `]}`, nil, 400, "invalid_request_error", "messages.0.role"},
		{"unknown field", `{"model":"m","max_tokens":5,"messages":[` + u + `],"n":1}`, nil, 400, "invalid_request_error", "n: Extra inputs are not permitted"},
		{"unknown message field", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x","name":"bob"}]}`, nil, 400, "invalid_request_error", "messages.0.name: Extra inputs"},
		{"consecutive roles", `{"model":"m","max_tokens":5,"messages":[` + u + `,` + u + `]}`, nil, 400, "invalid_request_error", "alternate"},
		{"tool_result in assistant turn", `{"model":"m","max_tokens":5,"messages":[` + u + `,{"role":"assistant","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}]}`, nil, 400, "invalid_request_error", "only allowed in user messages"},
		{"tool_result without tool_use", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"x"}]}]}`, nil, 400, "invalid_request_error", "unexpected `tool_use_id`"},
		{"tool_use unanswered", `{"model":"m","max_tokens":5,"messages":[` + u + `,{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},` + u + `]}`, nil, 400, "invalid_request_error", "without `tool_result`"},
		{"tool_result after text", `{"model":"m","max_tokens":5,"messages":[` + u + `,{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]},{"role":"user","content":[{"type":"text","text":"a"},{"type":"tool_result","tool_use_id":"t"}]}]}`, nil, 400, "invalid_request_error", "must come first"},
		{"temperature above 1", `{"model":"m","max_tokens":5,"temperature":1.5,"messages":[` + u + `]}`, nil, 400, "invalid_request_error", "temperature"},
		{"schema not object", `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{"type":"string"}}],"messages":[` + u + `]}`, nil, 400, "invalid_request_error", "input_schema.type"},
		{"tool_choice none with name", `{"model":"m","max_tokens":5,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"none","name":"f"},"messages":[` + u + `]}`, nil, 400, "invalid_request_error", "tool_choice.name"},
		{"bad image type", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/tiff","data":"AA"}}]}]}`, nil, 400, "invalid_request_error", "media_type"},
		{"empty text block", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":""}]}]}`, nil, 400, "invalid_request_error", "non-empty"},
		{"no key", antHello, map[string]string{"x-api-key": ""}, 401, "authentication_error", "x-api-key"},
		{"wrong key", antHello, map[string]string{"x-api-key": "nope"}, 401, "authentication_error", "invalid x-api-key"},
		{"no version", antHello, map[string]string{"anthropic-version": ""}, 400, "invalid_request_error", "anthropic-version"},
		{"429", antHello, map[string]string{HeaderStatus: "429"}, 429, "rate_limit_error", "rate limit"},
		{"529", antHello, map[string]string{HeaderStatus: "529"}, 529, "overloaded_error", "Overloaded"},
		{"prompt too long", antHello, map[string]string{HeaderStatus: "400", HeaderErrorCode: "prompt_too_long"}, 400, "invalid_request_error", "prompt is too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := antPost(t, s, tc.body, tc.hdr)
			b, _ := io.ReadAll(resp.Body)
			e := gjson.ParseBytes(b)
			if resp.StatusCode != tc.status || e.Get("type").Str != "error" || e.Get("error.type").Str != tc.typ || !strings.Contains(e.Get("error.message").Str, tc.msg) || e.Get("request_id").Str == "" {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if tc.status == 429 || tc.status == 529 {
				if resp.Header.Get("retry-after") == "" {
					t.Error("no retry-after")
				}
			}
		})
	}
}

func TestAnthropicStreamFaults(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	stream := `{"model":"m","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"a b c"}]}`
	resp := antPost(t, s, stream, map[string]string{HeaderFault: FaultInbandError, HeaderFaultAfter: "3"})
	names, data := antEvents(t, resp.Body)
	if len(names) != 4 || names[3] != "error" || gjson.Get(data[3], "error.type").Str != "overloaded_error" {
		t.Fatalf("%v %v", names, data)
	}
	resp = antPost(t, s, stream, map[string]string{HeaderFault: FaultTruncate, HeaderFaultAfter: "100"})
	names, _ = antEvents(t, resp.Body)
	if names[len(names)-1] == "message_stop" || names[len(names)-1] == "message_delta" {
		t.Fatalf("truncated stream ended with %v", names)
	}
	// Hold: the stream pauses after the first event until released.
	ctx := context.Background()
	resp = antPost(t, s, stream, map[string]string{HeaderHold: "h1"})
	if err := s.WaitHeld(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	s.Release("h1")
	names, _ = antEvents(t, resp.Body)
	if names[len(names)-1] != "message_stop" {
		t.Fatalf("%v", names)
	}
}

// TestAnthropicAcceptsTranslations: what llmux's translator sends for a
// range of OpenAI requests passes the fake's strict validation.
func TestAnthropicAcceptsTranslations(t *testing.T) {
	bodies := []string{
		`{"model":"c","messages":[{"role":"system","content":"s"},{"role":"user","content":"x"}],"stop":["a"],"temperature":0.2,"user":"u"}`,
		`{"model":"c","messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{\"city\":\"P\"}"}},{"id":"c2","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"18"},{"role":"tool","tool_call_id":"c2","content":"20"},{"role":"user","content":"and?"}],"tools":[{"type":"function","function":{"name":"w","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"auto","parallel_tool_calls":false}`,
		`{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"see"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`,
		`{"model":"c","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"p","schema":{"type":"object","properties":{"n":{"type":"string"}}}}}}`,
		`{"model":"c","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}`,
		`{"model":"c","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","response_format":{"type":"json_object"}}`,
	}
	for _, b := range bodies {
		up, err := anthropictr.Translator{}.Request(context.Background(), &translate.Request{Op: translate.OpChat, Body: []byte(b)}, &translate.Target{Model: "claude-sonnet-4-5"})
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if _, e := validateAnthropicRequest(up.Body); e != nil {
			t.Errorf("fake rejects %s: %s", up.Body, e.Message)
		}
	}
}

// FuzzAnthropicValidate: the validator never panics.
func FuzzAnthropicValidate(f *testing.F) {
	f.Add([]byte(antHello))
	f.Add([]byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"http://x"}}]}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := validateAnthropicRequest(body)
		if (req == nil) == (e == nil) {
			t.Fatal("exactly one of request and error expected")
		}
		if req != nil {
			schemaExample(nil, 0, "")
			for _, tl := range req.tools {
				if !json.Valid(schemaExample(tl.schema, 1, "q")) {
					t.Fatal("invalid example")
				}
			}
		}
	})
}

// TestAnthropicThinking: with thinking enabled the fake answers a thinking
// block (with its signature) before the text, streamed as thinking_delta
// and signature_delta events, and refuses what extended thinking rules out.
func TestAnthropicThinking(t *testing.T) {
	s := NewAnthropic(t, AnthropicOptions{})
	const think = `{"model":"claude-sonnet-4-5","max_tokens":3000,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"hello there"}]`
	resp := antPost(t, s, think+`}`, nil)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || gjson.GetBytes(b, "content.0.type").Str != "thinking" || gjson.GetBytes(b, "content.0.thinking").Str != FakeThinking("hello there") ||
		gjson.GetBytes(b, "content.0.signature").Str == "" || gjson.GetBytes(b, "content.1.text").Str != "Hello from fake-anthropic: hello there" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	resp = antPost(t, s, think+`,"stream":true}`, nil)
	names, data := antEvents(t, resp.Body)
	var deltas []string
	for _, d := range data {
		if gjson.Get(d, "type").Str == "content_block_delta" {
			deltas = append(deltas, gjson.Get(d, "delta.type").Str)
		}
	}
	if gjson.Get(data[1], "content_block.type").Str != "thinking" || deltas[0] != "thinking_delta" || !strings.Contains(strings.Join(deltas, ","), "thinking_delta,signature_delta,text_delta") {
		t.Fatalf("%v %v", names, deltas)
	}
	for name, body := range map[string]string{
		"budget under 1024":     `{"model":"c","max_tokens":3000,"thinking":{"type":"enabled","budget_tokens":500},"messages":[{"role":"user","content":"x"}]}`,
		"max_tokens not above":  `{"model":"c","max_tokens":1024,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"x"}]}`,
		"temperature":           `{"model":"c","max_tokens":3000,"temperature":0.5,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"x"}]}`,
		"top_k":                 `{"model":"c","max_tokens":3000,"top_k":5,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"x"}]}`,
		"forced tool":           `{"model":"c","max_tokens":3000,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":"x"}]}`,
		"unknown thinking type": `{"model":"c","max_tokens":3000,"thinking":{"type":"on"},"messages":[{"role":"user","content":"x"}]}`,
	} {
		resp := antPost(t, s, body, nil)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || gjson.GetBytes(b, "error.type").Str != "invalid_request_error" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, b)
		}
	}
}
