package gemini

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func chatBody(t *testing.T, body string) (string, *translate.Error) {
	t.Helper()
	var b chatBuilder
	out, err := b.build(body)
	if err != nil {
		return "", err
	}
	if !json.Valid(out) {
		t.Fatalf("invalid JSON out: %s", out)
	}
	return string(out), nil
}

func TestRequestRules(t *testing.T) {
	img := "data:image/png;base64,iVBORw0KGgo="
	cases := []struct {
		name string
		body string
		want map[string]string // gjson path → raw JSON (compacted compare)
	}{
		{"system and developer to systemInstruction", `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Use French."}]},{"role":"user","content":"hi"}]}`,
			map[string]string{"systemInstruction": `{"parts":[{"text":"Be brief."},{"text":"Use French."}]}`, "contents": `[{"role":"user","parts":[{"text":"hi"}]}]`}},
		{"assistant is model", `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}`,
			map[string]string{"contents.1": `{"role":"model","parts":[{"text":"b"}]}`, "contents.#": `3`}},
		{"escapes kept", `{"model":"m","messages":[{"role":"user","content":"say \"hi\"\n\u00e9"}]}`,
			map[string]string{"contents.0.parts.0.text": `"say \"hi\"\n\u00e9"`}},
		{"tool calls and results", `{"model":"m","messages":[{"role":"user","content":"weather?"},
			{"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_1","type":"function","function":{"name":"get_time","arguments":""}}]},
			{"role":"tool","tool_call_id":"call_0","content":"{\"temp\":21}"},
			{"role":"tool","tool_call_id":"call_1","content":"noon"}]}`,
			map[string]string{
				"contents.1": `{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}},{"functionCall":{"name":"get_time","args":{}}}]}`,
				"contents.2": `{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"temp":21}}},{"functionResponse":{"name":"get_time","response":{"result":"noon"}}}]}`,
				"contents.#": `3`,
			}},
		{"tool result JSON non-object wrapped", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":[{"type":"text","text":"[1,2]"}]}]}`,
			map[string]string{"contents.2.parts.0.functionResponse.response": `{"result":[1,2]}`}},
		{"image data URL", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"what?"},{"type":"image_url","image_url":{"url":"` + img + `"}}]}]}`,
			map[string]string{"contents.0.parts.1": `{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}}`}},
		{"gs URI", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"gs://bucket/cat.JPG"}}]}]}`,
			map[string]string{"contents.0.parts.0": `{"fileData":{"mimeType":"image/jpeg","fileUri":"gs://bucket/cat.JPG"}}`}},
		{"audio", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}}]}]}`,
			map[string]string{"contents.0.parts.0": `{"inlineData":{"mimeType":"audio/wav","data":"UklGRg=="}}`}},
		{"generation config", `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.2,"top_p":0.9,"max_tokens":100,"stop":"END","n":2,"seed":7,"presence_penalty":0.5,"frequency_penalty":-0.5}`,
			map[string]string{"generationConfig": `{"temperature":0.2,"topP":0.9,"maxOutputTokens":100,"candidateCount":2,"seed":7,"presencePenalty":0.5,"frequencyPenalty":-0.5,"stopSequences":["END"]}`}},
		{"max_completion_tokens wins", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":100,"max_completion_tokens":50,"stop":["a","b"]}`,
			map[string]string{"generationConfig": `{"maxOutputTokens":50,"stopSequences":["a","b"]}`}},
		{"no generation config", `{"model":"m","messages":[{"role":"user","content":"x"}],"user":"u1","store":false,"parallel_tool_calls":true}`,
			map[string]string{"generationConfig": ``}},
		{"json_object", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
			map[string]string{"generationConfig": `{"responseMimeType":"application/json"}`}},
		{"json_schema", `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"p","strict":true,"schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}}}}`,
			map[string]string{"generationConfig": `{"responseMimeType":"application/json","responseSchema":{"type":"OBJECT","properties":{"name":{"type":"STRING"}},"required":["name"]}}`}},
		{"reasoning effort", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low"}`,
			map[string]string{"generationConfig": `{"thinkingConfig":{"thinkingBudget":1024,"includeThoughts":true}}`}},
		{"reasoning effort minimal: no thinking, no thoughts", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"minimal"}`,
			map[string]string{"generationConfig": `{"thinkingConfig":{"thinkingBudget":0}}`}},
		{"tools and auto", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","description":"does f","parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false}}},{"type":"function","function":{"name":"g","parameters":{"type":"object","properties":{}}}}],"tool_choice":"auto"}`,
			map[string]string{
				"tools":      `[{"functionDeclarations":[{"name":"f","description":"does f","parameters":{"type":"OBJECT","properties":{"a":{"type":"INTEGER"}}}},{"name":"g"}]}]`,
				"toolConfig": `{"functionCallingConfig":{"mode":"AUTO"}}`,
			}},
		{"tool_choice none never a tool", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}`,
			map[string]string{"toolConfig": `{"functionCallingConfig":{"mode":"NONE"}}`, "tools.0.functionDeclarations.#": `1`, "tools.0.functionDeclarations.0.name": `"f"`}},
		{"tool_choice required", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`,
			map[string]string{"toolConfig": `{"functionCallingConfig":{"mode":"ANY"}}`}},
		{"tool_choice named", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"g"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`,
			map[string]string{"toolConfig": `{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["g"]}}`}},
		{"empty user message skipped", `{"model":"m","messages":[{"role":"user","content":""},{"role":"user","content":"x"}]}`,
			map[string]string{"contents": `[{"role":"user","parts":[{"text":"x"}]}]`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := chatBody(t, c.body)
			if err != nil {
				t.Fatalf("error %v", err)
			}
			for path, want := range c.want {
				got := gjson.Get(out, path)
				if want == "" {
					if got.Exists() {
						t.Errorf("%s present: %s", path, got.Raw)
					}
					continue
				}
				if !jsonEqual(got.Raw, want) {
					t.Errorf("%s:\n got %s\nwant %s\nbody %s", path, got.Raw, want, out)
				}
			}
		})
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func TestRequestRefusals(t *testing.T) {
	cases := []struct {
		name, body, param string
		code              translate.Code
	}{
		{"http image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`, "messages[0].content[0].image_url.url", translate.CodeUnsupported},
		{"bad data URL", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "messages[0].content[0].image_url.url", translate.CodeInvalidRequest},
		{"unknown tool id", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"zz","content":"1"}]}`, "messages[1].tool_call_id", translate.CodeInvalidRequest},
		{"bad arguments", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[1].tool_calls[0].function.arguments", translate.CodeInvalidRequest},
		{"unknown param", `{"model":"m","messages":[{"role":"user","content":"x"}],"web_search_options":{}}`, "web_search_options", translate.CodeUnsupported},
		{"logprobs", `{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}`, "logprobs", translate.CodeUnsupported},
		{"only system", `{"model":"m","messages":[{"role":"system","content":"x"}]}`, "messages", translate.CodeInvalidRequest},
		{"bad role", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, "messages[0].role", translate.CodeInvalidRequest},
		{"named tool undeclared", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, "tool_choice", translate.CodeInvalidRequest},
		{"non-function tool", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}`, "tools[0].type", translate.CodeUnsupported},
		{"n too big", `{"model":"m","messages":[{"role":"user","content":"x"}],"n":9}`, "n", translate.CodeInvalidRequest},
		{"recursive schema", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"n":{"$ref":"#/$defs/node"}},"$defs":{"node":{"type":"object","properties":{"next":{"$ref":"#/$defs/node"}}}}}}}]}`, "tools[0].function.parameters", translate.CodeInvalidRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := chatBody(t, c.body)
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Param != c.param || err.Code != c.code {
				t.Errorf("param %q code %s (%s), want %q %s", err.Param, err.Code, err.Message, c.param, c.code)
			}
			if err.HTTPStatus() != 400 {
				t.Errorf("status %d", err.HTTPStatus())
			}
		})
	}
}

func TestRequestPathsAndHeaders(t *testing.T) {
	ctx := context.Background()
	body := []byte(`{"model":"g","messages":[{"role":"user","content":"hi"}]}`)
	req := &translate.Request{Op: translate.OpChat, Body: body}
	up, err := Translator{}.Request(ctx, req, &translate.Target{Model: "gemini-2.5-flash", APIKey: "k1", Headers: map[string]string{"x-b": "2", "x-a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if up.Path != "/v1beta/models/gemini-2.5-flash:generateContent" {
		t.Errorf("path %q", up.Path)
	}
	want := []translate.Header{{Key: "content-type", Value: "application/json"}, {Key: "x-goog-api-key", Value: "k1"}, {Key: "x-a", Value: "1"}, {Key: "x-b", Value: "2"}}
	if !reflect.DeepEqual(up.Headers, want) {
		t.Errorf("headers %v", up.Headers)
	}
	if st, _ := req.State.(*state); st == nil || st.n != 1 {
		t.Errorf("state %+v", req.State)
	}

	sreq := &translate.Request{Op: translate.OpChat, Body: body, Stream: true}
	up, _ = Translator{}.Request(ctx, sreq, &translate.Target{Model: "models/gemini-2.5-flash", BasePath: "/v1/"})
	if up.Path != "/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse" {
		t.Errorf("stream path %q", up.Path)
	}

	var gotKey string
	vt := Translator{Vertex: true, Token: func(_ context.Context, key string) (string, error) { gotKey = key; return "tok", nil }}
	up, err = vt.Request(ctx, sreq, &translate.Target{Model: "gemini-2.5-pro", Provider: "vx", Project: "p1", Region: "us-central1"})
	if err != nil {
		t.Fatal(err)
	}
	if up.Path != "/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse" {
		t.Errorf("vertex path %q", up.Path)
	}
	if gotKey != "vx" || up.Headers[1] != (translate.Header{Key: "authorization", Value: "Bearer tok"}) {
		t.Errorf("vertex auth %v (key %q)", up.Headers, gotKey)
	}
	ereq := &translate.Request{Op: translate.OpEmbeddings, Body: []byte(`{"model":"e","input":["a","b"],"dimensions":3}`)}
	up, _ = vt.Request(ctx, ereq, &translate.Target{Model: "text-embedding-005", Provider: "vx", Project: "p1", Region: "europe-west4"})
	if up.Path != "/v1/projects/p1/locations/europe-west4/publishers/google/models/text-embedding-005:predict" ||
		!jsonEqual(string(up.Body), `{"instances":[{"content":"a"},{"content":"b"}],"parameters":{"outputDimensionality":3}}`) {
		t.Errorf("vertex embeddings %s %s", up.Path, up.Body)
	}

	failing := Translator{Vertex: true, Token: func(context.Context, string) (string, error) { return "", errors.New("no adc") }}
	if _, err := failing.Request(ctx, sreq, &translate.Target{Model: "m", Project: "p", Region: "r"}); err == nil || !strings.Contains(err.Error(), "no adc") {
		t.Errorf("token failure: %v", err)
	}
	if _, err := vt.Request(ctx, sreq, &translate.Target{Model: "m"}); err == nil {
		t.Error("vertex without project accepted")
	}
}

func TestEmbeddingsRequest(t *testing.T) {
	st := &state{}
	out, err := buildEmbeddings(`{"model":"e","input":["hello world","x"],"dimensions":256,"encoding_format":"base64"}`, "gemini-embedding-001", false, st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"requests":[{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"hello world"}]},"outputDimensionality":256},{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"x"}]},"outputDimensionality":256}]}`
	if !jsonEqual(string(out), want) {
		t.Errorf("body %s", out)
	}
	if !st.base64 || st.inputTokens != 4 {
		t.Errorf("state %+v", st)
	}
	if _, err := buildEmbeddings(`{"model":"e","input":[[1,2]]}`, "m", false, &state{}); err == nil || err.Code != translate.CodeUnsupported {
		t.Errorf("token input: %v", err)
	}
}

// TestThinkingBudgetPro: Pro models only work in thinking mode (budget 0
// is refused), so none and minimal ask for their smallest budget.
func TestThinkingBudgetPro(t *testing.T) {
	for _, tc := range []struct{ model, effort, want string }{
		{"gemini-2.5-pro", "minimal", `{"thinkingBudget":128,"includeThoughts":true}`},
		{"gemini-2.5-pro", "none", `{"thinkingBudget":128,"includeThoughts":true}`},
		{"gemini-2.5-pro", "high", `{"thinkingBudget":24576,"includeThoughts":true}`},
		{"gemini-2.5-flash", "none", `{"thinkingBudget":0}`},
	} {
		b := chatBuilder{model: tc.model}
		out, err := b.build(`{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"` + tc.effort + `"}`)
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, "generationConfig.thinkingConfig").Raw; got != tc.want {
			t.Errorf("%s %s: %s", tc.model, tc.effort, got)
		}
	}
}
