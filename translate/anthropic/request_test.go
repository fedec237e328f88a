package anthropic

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/llmux/llmux/translate"
)

// jsonEqual compares two JSON documents semantically.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("invalid want JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func chat(body string) *translate.Request {
	return &translate.Request{Op: translate.OpChat, Body: []byte(body)}
}

// TestRequestTranslation is the request table: one case per rule of
// docs/providers/anthropic.md (request shapes from
// https://docs.anthropic.com/en/api/messages).
func TestRequestTranslation(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		stream bool
		opts   map[string]string
		want   string
	}{
		{
			name: "system and developer hoisted, default max_tokens, model replaced",
			body: `{"model":"claude","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"},{"role":"developer","content":[{"type":"text","text":"No emoji."}]}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"system":[{"type":"text","text":"Be brief."},{"type":"text","text":"No emoji."}],"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
		},
		{
			name: "max_completion_tokens wins over max_tokens; sampling; stop string; user",
			body: `{"model":"c","max_tokens":10,"max_completion_tokens":300,"temperature":0.5,"top_p":0.9,"top_k":40,"stop":"END","user":"u-42","messages":[{"role":"user","content":"x"}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":300,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"temperature":0.5,"top_p":0.9,"top_k":40,"stop_sequences":["END"],"metadata":{"user_id":"u-42"}}`,
		},
		{
			name: "default_max_tokens option; stop array without blanks; stream; dropped params",
			body: `{"model":"c","stream":true,"stream_options":{"include_usage":true},"stop":["a"," ","b"],"seed":1,"store":false,"n":1,"logprobs":false,"messages":[{"role":"user","content":"x"}]}`,
			opts: map[string]string{"default_max_tokens": "1000"}, stream: true,
			want: `{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"stop_sequences":["a","b"],"stream":true}`,
		},
		{
			name: "tools, tool_choice required → any, parallel_tool_calls false",
			body: `{"model":"c","messages":[{"role":"user","content":"w?"}],"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},{"type":"function","function":{"name":"now"}}],"tool_choice":"required","parallel_tool_calls":false}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"w?"}]}],"tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}},{"name":"now","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}`,
		},
		{
			name: "reasoning_effort medium: thinking budget on top of the default max_tokens; temperature 1 and top_p 0.95 allowed",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"medium","temperature":1,"top_p":0.95}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":12288,"thinking":{"type":"enabled","budget_tokens":8192},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"temperature":1,"top_p":0.95}`,
		},
		{
			name: "reasoning_effort high under a smaller max_tokens: the budget shrinks to half of it",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"high","max_tokens":10000}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":10000,"thinking":{"type":"enabled","budget_tokens":5000},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
		{
			name: "reasoning_effort low, minimal and none",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","max_completion_tokens":30000}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":30000,"thinking":{"type":"enabled","budget_tokens":2048},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
		{
			name: "reasoning_effort minimal with default_max_tokens and tools auto",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"minimal","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`,
			opts: map[string]string{"default_max_tokens": "1000"},
			want: `{"model":"claude-sonnet-4-5","max_tokens":2024,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto"}}`,
		},
		{
			name: "reasoning_effort none: no thinking",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"reasoning_effort":"none","temperature":0.2}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"temperature":0.2}`,
		},
		{
			name: "tool_choice none is Anthropic's none, never a tool",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"none","parameters":{"properties":{}}}}],"tool_choice":"none"}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tools":[{"name":"none","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"none"}}`,
		},
		{
			name: "tool_choice none without tools is dropped",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"tool_choice":"none"}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
		{
			name: "named tool_choice; auto explicit",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}`,
		},
		{
			name: "assistant tool_calls → tool_use; consecutive tool results merged with the next user text into one user turn",
			body: `{"model":"c","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":"Checking.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"w","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"w","arguments":""}}]},{"role":"tool","tool_call_id":"call_1","content":"18C"},{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"22C"}]},{"role":"user","content":"thanks"}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"weather?"}]},{"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"call_1","name":"w","input":{"city":"Paris"}},{"type":"tool_use","id":"call_2","name":"w","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"18C"}]},{"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"22C"}]},{"type":"text","text":"thanks"}]}]}`,
		},
		{
			name: "images: data URL → base64 source, https URL → url source; consecutive user messages merged",
			body: `{"model":"c","messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}}]},{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]}`,
		},
		{
			name: "response_format json_schema → forced response tool",
			body: `{"model":"c","messages":[{"role":"user","content":"who?"}],"response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}}}}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"who?"}]}],"tools":[{"name":"llmux_json_response","description":"Reply to the user by calling this tool exactly once; its input is the whole answer, as a JSON object. Schema: person.","input_schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}}],"tool_choice":{"type":"tool","name":"llmux_json_response"}}`,
		},
		{
			name: "response_format json_object with client tools → any",
			body: `{"model":"c","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"json_object"}}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}},{"name":"llmux_json_response","description":"Reply to the user by calling this tool exactly once; its input is the whole answer, as a JSON object.","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}`,
		},
		{
			name: "response_format text is a no-op; assistant refusal part kept as text",
			body: `{"model":"c","messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"refusal","refusal":"No."}]},{"role":"user","content":"y"}],"response_format":{"type":"text"}}`,
			want: `{"model":"claude-sonnet-4-5","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]},{"role":"assistant","content":[{"type":"text","text":"No."}]},{"role":"user","content":[{"type":"text","text":"y"}]}]}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := chat(tc.body)
			req.Stream = tc.stream
			orig := tc.body
			up, err := Translator{}.Request(context.Background(), req, &translate.Target{Model: "claude-sonnet-4-5", APIKey: "sk-ant", Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			if string(req.Body) != orig {
				t.Fatal("client body modified")
			}
			jsonEqual(t, up.Body, tc.want)
			hdr := map[string]string{}
			for _, h := range up.Headers {
				hdr[h.Key] = h.Value
			}
			if up.Path != "/v1/messages" || hdr["x-api-key"] != "sk-ant" || hdr["anthropic-version"] != DefaultAPIVersion || hdr["content-type"] != "application/json" {
				t.Errorf("path %q headers %v", up.Path, hdr)
			}
		})
	}
}

func TestRequestTargetSettings(t *testing.T) {
	up, err := Translator{}.Request(context.Background(), chat(`{"model":"c","messages":[{"role":"user","content":"x"}]}`),
		&translate.Target{Model: "m", BasePath: "/proxy/", APIVersion: "2024-01-01", Headers: map[string]string{"anthropic-beta": "b1"}})
	if err != nil {
		t.Fatal(err)
	}
	hdr := map[string]string{}
	for _, h := range up.Headers {
		hdr[h.Key] = h.Value
	}
	if up.Path != "/proxy/v1/messages" || hdr["anthropic-version"] != "2024-01-01" || hdr["anthropic-beta"] != "b1" {
		t.Errorf("%s %v", up.Path, hdr)
	}
	if _, ok := hdr["x-api-key"]; ok {
		t.Error("x-api-key without a key")
	}
}

func TestVertexRequest(t *testing.T) {
	tr := Translator{Vertex: true, Token: func(context.Context, *translate.Target) (string, error) { return "ya29.tok", nil }}
	for _, stream := range []bool{false, true} {
		req := chat(`{"model":"c","messages":[{"role":"user","content":"x"}]}`)
		req.Stream = stream
		up, err := tr.Request(context.Background(), req, &translate.Target{Model: "claude-sonnet-4-5@20250929", Project: "p1", Region: "us-east5"})
		if err != nil {
			t.Fatal(err)
		}
		want := "/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict"
		body := `{"anthropic_version":"vertex-2023-10-16","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`
		if stream {
			want = strings.Replace(want, ":rawPredict", ":streamRawPredict", 1)
			body = `{"anthropic_version":"vertex-2023-10-16","max_tokens":4096,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"stream":true}`
		}
		if up.Path != want {
			t.Errorf("path %s", up.Path)
		}
		jsonEqual(t, up.Body, body)
		var auth string
		for _, h := range up.Headers {
			if h.Key == "authorization" {
				auth = h.Value
			}
			if h.Key == "x-api-key" || h.Key == "anthropic-version" {
				t.Errorf("vertex request carries %s", h.Key)
			}
		}
		if auth != "Bearer ya29.tok" {
			t.Errorf("authorization %q", auth)
		}
	}
}

// TestRequestRefusals: inputs Anthropic cannot honour are a 400 naming the
// parameter, never silently dropped.
func TestRequestRefusals(t *testing.T) {
	msgs := `"messages":[{"role":"user","content":"x"}]`
	tests := []struct{ body, param string }{
		{`{"model":"c",` + msgs + `,"n":2}`, "n"},
		{`{"model":"c",` + msgs + `,"logprobs":true}`, "logprobs"},
		{`{"model":"c",` + msgs + `,"top_logprobs":3}`, "top_logprobs"},
		{`{"model":"c",` + msgs + `,"modalities":["text","audio"]}`, "modalities"},
		{`{"model":"c",` + msgs + `,"audio":{"voice":"alloy","format":"mp3"}}`, "audio"},
		{`{"model":"c",` + msgs + `,"frequency_penalty":0.5}`, "frequency_penalty"},
		{`{"model":"c",` + msgs + `,"logit_bias":{"50256":-100}}`, "logit_bias"},
		{`{"model":"c",` + msgs + `,"functions":[{"name":"f"}]}`, "functions"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"extreme"}`, "reasoning_effort"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":2}`, "reasoning_effort"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"low","temperature":0.5}`, "temperature"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"low","top_k":5}`, "top_k"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"low","top_p":0.9}`, "top_p"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"low","tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`, "tool_choice"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"low","response_format":{"type":"json_object"}}`, "response_format"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"low","max_tokens":1024}`, "max_tokens"},
		{`{"model":"c",` + msgs + `,"reasoning_effort":"minimal","max_completion_tokens":900}`, "max_completion_tokens"},
		{`{"model":"c",` + msgs + `,"temperature":1.5}`, "temperature"},
		{`{"model":"c",` + msgs + `,"max_tokens":0}`, "max_tokens"},
		{`{"model":"c",` + msgs + `,"max_completion_tokens":"9"}`, "max_completion_tokens"},
		{`{"model":"c",` + msgs + `,"stop":7}`, "stop"},
		{`{"model":"c",` + msgs + `,"tool_choice":"required"}`, "tool_choice"},
		{`{"model":"c",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, "tool_choice"},
		{`{"model":"c",` + msgs + `,"tools":[{"type":"custom","custom":{"name":"f"}}]}`, "tools[0].type"},
		{`{"model":"c",` + msgs + `,"tools":[{"type":"function","function":{"name":"llmux_json_response"}}]}`, "tools[0].function.name"},
		{`{"model":"c",` + msgs + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"array"}}}]}`, "tools[0].function.parameters"},
		{`{"model":"c",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"string"}}}}`, "response_format.json_schema.schema"},
		{`{"model":"c",` + msgs + `,"response_format":{"type":"grammar"}}`, "response_format.type"},
		{`{"model":"c","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAA","format":"wav"}}]}]}`, "messages[0].content[0]"},
		{`{"model":"c","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]}`, "messages[0].content[0]"},
		{`{"model":"c","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/tiff;base64,AAAA"}}]}]}`, "messages[0].content[0].image_url.url"},
		{`{"model":"c","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[0].image_url.url"},
		{`{"model":"c","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[1].tool_calls[0].function.arguments"},
		{`{"model":"c","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id"},
		{`{"model":"c","messages":[{"role":"function","name":"f","content":"x"}]}`, "messages[0].role"},
		{`{"model":"c","messages":[{"role":"robot","content":"x"}]}`, "messages[0].role"},
		{`{"model":"c",` + msgs + `,"web_search_options":{}}`, "web_search_options"},
	}
	for _, tc := range tests {
		t.Run(tc.param, func(t *testing.T) {
			_, err := Translator{}.Request(context.Background(), chat(tc.body), &translate.Target{Model: "m"})
			te, ok := err.(*translate.Error)
			if !ok {
				t.Fatalf("%s: want *translate.Error, got %v", tc.body, err)
			}
			if te.HTTPStatus() != 400 || te.Param != tc.param || te.Message == "" {
				t.Fatalf("%s: got %d param %q (%s)", tc.body, te.HTTPStatus(), te.Param, te.Message)
			}
		})
	}
}

func TestEmbeddingsRefused(t *testing.T) {
	_, err := Translator{}.Request(context.Background(), &translate.Request{Op: translate.OpEmbeddings, Body: []byte(`{"model":"e","input":"x"}`)}, &translate.Target{Model: "m"})
	te, ok := err.(*translate.Error)
	if !ok || te.HTTPStatus() != 400 || te.OpenAICode != "unsupported_operation" {
		t.Fatalf("%v", err)
	}
}

func TestBadDefaultMaxTokensOption(t *testing.T) {
	_, err := Translator{}.Request(context.Background(), chat(`{"model":"c","messages":[{"role":"user","content":"x"}]}`), &translate.Target{Model: "m", Options: map[string]string{"default_max_tokens": "lots"}})
	if _, ok := err.(*translate.Error); err == nil || ok {
		t.Fatalf("want a configuration error, got %v", err)
	}
}
