package fakeprovider

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	brtr "github.com/llmux/llmux/translate/bedrock"
	"github.com/llmux/llmux/translate/eventstream"
)

// brDo translates an OpenAI body with the Bedrock translator (signed with
// the fake's credentials) and sends it to the fake.
func brDo(t *testing.T, s *Server, op translate.Operation, model, body string, stream bool, hdr map[string]string, mutate func(*translate.Upstream)) (*http.Response, []byte) {
	t.Helper()
	tr := brtr.Translator{Credentials: func(context.Context, *translate.Target) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: BedrockAccessKeyID, SecretAccessKey: BedrockSecretAccessKey}, nil
	}}
	up, err := tr.Request(context.Background(), &translate.Request{Op: op, Body: []byte(body), Stream: stream},
		&translate.Target{Model: model, Region: "us-east-1", Provider: "fake-test"})
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(up)
	}
	req, _ := http.NewRequest(http.MethodPost, s.URL()+up.Path, bytes.NewReader(up.Body))
	req.Host = "bedrock-runtime.us-east-1.amazonaws.com"
	for _, h := range up.Headers {
		req.Header.Set(h.Key, h.Value)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

const brModel = "anthropic.claude-3-5-sonnet-20240620-v1:0"

func TestBedrockConverse(t *testing.T) {
	s := NewBedrock(t, BedrockOptions{CacheReadTokens: 5})
	resp, b := brDo(t, s, translate.OpChat, brModel, `{"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi there"}],"max_tokens":50}`, false, nil, nil)
	if resp.StatusCode != 200 || gjson.GetBytes(b, "output.message.content.0.text").Str != "Hello from fake-bedrock: hi there" ||
		gjson.GetBytes(b, "stopReason").Str != "end_turn" || gjson.GetBytes(b, "usage.cacheReadInputTokens").Int() != 5 {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	got, _ := s.Last()
	if got.Path != "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse" {
		t.Errorf("path %s", got.Path)
	}
	// Tools: two parallel calls, then the round trip answers with text.
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]`
	_, b = brDo(t, s, translate.OpChat, brModel, `{"model":"m","messages":[{"role":"user","content":"weather?"}],`+tools+`}`, false, map[string]string{HeaderToolCalls: "2"}, nil)
	if gjson.GetBytes(b, "stopReason").Str != "tool_use" || gjson.GetBytes(b, "output.message.content.#").Int() != 3 {
		t.Fatalf("%s", b)
	}
	_, b = brDo(t, s, translate.OpChat, brModel, `{"model":"m","messages":[{"role":"user","content":"weather?"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":"sunny"}],`+tools+`}`, false, map[string]string{HeaderToolCalls: "2"}, nil)
	if gjson.GetBytes(b, "stopReason").Str != "end_turn" {
		t.Fatalf("%s", b)
	}
}

func TestBedrockStream(t *testing.T) {
	s := NewBedrock(t, BedrockOptions{})
	resp, b := brDo(t, s, translate.OpChat, brModel, `{"model":"m","messages":[{"role":"user","content":"one two"}]}`, true, nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/vnd.amazon.eventstream" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var d eventstream.Decoder
	d.Push(b)
	var types []string
	var text string
	for {
		m, ok := d.Next()
		if !ok {
			break
		}
		types = append(types, string(m.EventType()))
		text += gjson.GetBytes(m.Payload, "delta.text").Str
	}
	if d.Err() != nil || text != "Hello from fake-bedrock: one two" || types[0] != "messageStart" || types[len(types)-1] != "metadata" || types[len(types)-2] != "messageStop" {
		t.Fatalf("%v %q %v", d.Err(), text, types)
	}
	// In-band exception after two frames.
	_, b = brDo(t, s, translate.OpChat, brModel, `{"model":"m","messages":[{"role":"user","content":"one two"}]}`, true,
		map[string]string{HeaderFault: FaultInbandError, HeaderFaultAfter: "2", HeaderErrorCode: "throttlingException"}, nil)
	d = eventstream.Decoder{}
	d.Push(b)
	var last eventstream.Message
	n := 0
	for {
		m, ok := d.Next()
		if !ok {
			break
		}
		last, n = m, n+1
	}
	if n != 3 || string(last.MessageType()) != "exception" || string(last.ExceptionType()) != "throttlingException" {
		t.Fatalf("%d frames, last %q", n, last.Headers)
	}
}

func TestBedrockRejects(t *testing.T) {
	s := NewBedrock(t, BedrockOptions{Models: []string{brModel, "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"}})
	user := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name   string
		model  string
		body   string
		mutate func(*translate.Upstream)
		status int
		typ    string
		msg    string
	}{
		{"bad signature", brModel, user, func(u *translate.Upstream) { u.Body = append(u.Body[:len(u.Body)-1], ' ', '}') }, 403, "InvalidSignatureException", "x-amz-content-sha256"},
		{"tampered signature", brModel, user, func(u *translate.Upstream) {
			for i := range u.Headers {
				if u.Headers[i].Key == "authorization" {
					// Change the last hex digit to a different one.
					v := u.Headers[i].Value
					last := "0"
					if v[len(v)-1] == '0' {
						last = "1"
					}
					u.Headers[i].Value = v[:len(v)-1] + last
				}
			}
		}, 403, "InvalidSignatureException", "signature"},
		{"unknown model", "nope", user, nil, 404, "ResourceNotFoundException", "identifier"},
		{"assistant first", brModel, `{"model":"m","messages":[{"role":"assistant","content":"x"},{"role":"user","content":"y"}]}`, nil, 400, "ValidationException", "start with a user message"},
		{"unknown field", brModel, user, func(u *translate.Upstream) { u.Body = append([]byte(`{"foo":1,`), u.Body[1:]...) }, 400, "", ""},
		{"tool result without use", brModel, `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"zz","content":"r"}],"tools":[{"type":"function","function":{"name":"f"}}]}`, nil, 400, "ValidationException", "toolUseId"},
		{"embeddings body changed after signing", "cohere.embed-english-v3", `{"model":"e","input":["a"]}`, func(u *translate.Upstream) { u.Body = []byte(`{"texts":["a"],"input_type":"bogus"}`) }, 403, "InvalidSignatureException", ""},
	}
	for _, tc := range tests {
		op := translate.OpChat
		if strings.Contains(tc.model, "embed") {
			op = translate.OpEmbeddings
		}
		resp, b := brDo(t, s, op, tc.model, tc.body, false, nil, tc.mutate)
		if tc.name == "unknown field" {
			// The body changed after signing: the signature check catches it first.
			if resp.StatusCode != 403 {
				t.Errorf("%s: %d %s", tc.name, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != tc.status || (tc.typ != "" && !strings.HasPrefix(resp.Header.Get("x-amzn-ErrorType"), tc.typ)) || !strings.Contains(strings.ToLower(gjson.GetBytes(b, "message").Str), strings.ToLower(tc.msg)) {
			t.Errorf("%s: %d %s %s", tc.name, resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"), b)
		}
	}
	// Unsigned.
	resp, _ := http.Post(s.URL()+"/model/x/converse", "application/json", strings.NewReader(user))
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.HasPrefix(resp.Header.Get("x-amzn-ErrorType"), "MissingAuthenticationTokenException") {
		t.Errorf("unsigned: %d", resp.StatusCode)
	}
	// Status faults carry Bedrock's error type.
	for status, typ := range map[string]string{"429": "ThrottlingException", "400": "ValidationException", "503": "ServiceUnavailableException", "408": "ModelTimeoutException"} {
		resp, b := brDo(t, s, translate.OpChat, brModel, user, false, map[string]string{HeaderStatus: status}, nil)
		if strings.Split(resp.Header.Get("x-amzn-ErrorType"), ":")[0] != typ || gjson.GetBytes(b, "message").Str == "" {
			t.Errorf("%s: %v %s", status, resp.Header, b)
		}
	}
}

func TestBedrockValidation(t *testing.T) {
	bad := []string{
		`{}`,
		`{"foo":1,"messages":[{"role":"user","content":[{"text":"a"}]}]}`,
		`{"messages":[{"role":"user","content":[{"text":"a","extra":1}]}]}`,
		`{"messages":[]}`,
		`{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"user","content":[{"text":"b"}]}]}`,
		`{"messages":[{"role":"user","content":[{"toolResult":{"toolUseId":"a","content":[{"text":"x"}]}}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}]}}`,
		`{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"a","name":"f","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"a","content":[{"text":"x"}]}}]}]}`,
		`{"messages":[{"role":"user","content":[{"text":"a"},{"toolUse":{"toolUseId":"a","name":"f","input":{}}}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}]}}`,
		`{"messages":[{"role":"user","content":[{"image":{"format":"bmp","source":{"bytes":"AA=="}}}]}]}`,
		`{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":0}}`,
		`{"messages":[{"role":"user","content":[{"text":"a"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}],"toolChoice":{"tool":{"name":"none"}}}}`,
		`{"messages":[{"role":"user","content":[{"text":" "}]}]}`,
	}
	for _, b := range bad {
		if _, e := validateConverse([]byte(b)); e == nil {
			t.Errorf("accepted %s", b)
		}
	}
	good := `{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"a","name":"f","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"a","content":[{"json":{}}]}},{"text":"next"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}],"toolChoice":{"any":{}}}}`
	if r, e := validateConverse([]byte(good)); e != nil || !r.answered || r.lastUserText != "next" {
		t.Fatalf("%+v %+v", r, e)
	}
}

func TestBedrockEmbeddings(t *testing.T) {
	s := NewBedrock(t, BedrockOptions{})
	resp, b := brDo(t, s, translate.OpEmbeddings, "amazon.titan-embed-text-v2:0", `{"model":"e","input":"hello world","dimensions":256}`, false, nil, nil)
	if resp.StatusCode != 200 || gjson.GetBytes(b, "embedding.#").Int() != 256 || gjson.GetBytes(b, "inputTextTokenCount").Int() != 2 {
		t.Fatalf("%d %.200s", resp.StatusCode, b)
	}
	resp, b = brDo(t, s, translate.OpEmbeddings, "cohere.embed-english-v3", `{"model":"e","input":["a","b c"]}`, false, nil, nil)
	if resp.StatusCode != 200 || gjson.GetBytes(b, "embeddings.#").Int() != 2 || resp.Header.Get("X-Amzn-Bedrock-Input-Token-Count") != "3" {
		t.Fatalf("%d %.200s", resp.StatusCode, b)
	}
}

// TestBedrockReasoning: Claude thinking asked through
// additionalModelRequestFields gets a reasoningContent block (streamed as
// reasoningContent deltas: text, then the signature); settings thinking
// rules out are a ValidationException.
func TestBedrockReasoning(t *testing.T) {
	s := NewBedrock(t, BedrockOptions{})
	body := `{"model":"m","messages":[{"role":"user","content":"hi there"}],"reasoning_effort":"low"}`
	resp, b := brDo(t, s, translate.OpChat, brModel, body, false, nil, nil)
	if resp.StatusCode != 200 || gjson.GetBytes(b, "output.message.content.0.reasoningContent.reasoningText.text").Str != FakeThinking("hi there") ||
		gjson.GetBytes(b, "output.message.content.0.reasoningContent.reasoningText.signature").Str == "" || gjson.GetBytes(b, "output.message.content.1.text").Str == "" {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	_, b = brDo(t, s, translate.OpChat, brModel, body, true, nil, nil)
	var dec eventstream.Decoder
	dec.Push(b)
	var kinds []string
	for {
		m, ok := dec.Next()
		if !ok {
			break
		}
		if string(m.EventType()) == "contentBlockDelta" {
			d := gjson.GetBytes(m.Payload, "delta")
			switch {
			case d.Get("reasoningContent.text").Exists():
				kinds = append(kinds, "text")
			case d.Get("reasoningContent.signature").Exists():
				kinds = append(kinds, "signature")
			default:
				kinds = append(kinds, "answer")
			}
		}
	}
	if got := strings.Join(kinds, ","); !strings.HasPrefix(got, "text,") || !strings.Contains(got, "text,signature,answer") {
		t.Fatalf("deltas %s", got)
	}
	for name, raw := range map[string]string{
		"budget under 1024":     `{"messages":[{"role":"user","content":[{"text":"a"}]}],"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":10}}}`,
		"maxTokens not above":   `{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":2000},"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":2000}}}`,
		"default maxTokens":     `{"messages":[{"role":"user","content":[{"text":"a"}]}],"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":8192}}}`,
		"temperature":           `{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":5000,"temperature":0.2},"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":1024}}}`,
		"top_k":                 `{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":5000},"additionalModelRequestFields":{"top_k":3,"thinking":{"type":"enabled","budget_tokens":1024}}}`,
		"forced tool":           `{"messages":[{"role":"user","content":[{"text":"a"}]}],"inferenceConfig":{"maxTokens":5000},"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}],"toolChoice":{"any":{}}},"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":1024}}}`,
		"unknown thinking type": `{"messages":[{"role":"user","content":[{"text":"a"}]}],"additionalModelRequestFields":{"thinking":{"type":"on"}}}`,
	} {
		if _, e := validateConverse([]byte(raw)); e == nil || e.Type != "ValidationException" || e.Status != 400 {
			t.Errorf("%s: %+v", name, e)
		}
	}
}

// TestBedrockToolBlocksNeedToolConfig: Bedrock's own rule and message.
func TestBedrockToolBlocksNeedToolConfig(t *testing.T) {
	raw := `{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"a","name":"f","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"a","content":[{"text":"x"}]}}]}]}`
	_, e := validateConverse([]byte(raw))
	if e == nil || e.Type != "ValidationException" || e.Status != 400 || e.Message != "The toolConfig field must be defined when using toolUse and toolResult content blocks." {
		t.Fatalf("%+v", e)
	}
}
