package bedrock

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

var testCreds = aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "session-token-example"}

var signTime = time.Date(2025, 3, 10, 1, 31, 23, 0, time.UTC)

func testTranslator() Translator {
	return Translator{
		Credentials: func(context.Context, *translate.Target) (aws.Credentials, error) { return testCreds, nil },
		Now:         func() time.Time { return signTime },
	}
}

func target(model string) *translate.Target {
	return &translate.Target{Model: model, Region: "us-east-1", Provider: "bedrock-test"}
}

func chatBody(t *testing.T, body string) (string, *translate.Error) {
	t.Helper()
	req := &translate.Request{Op: translate.OpChat, Body: []byte(body)}
	up, err := testTranslator().Request(context.Background(), req, target(testModel))
	if err != nil {
		var te *translate.Error
		if !errors.As(err, &te) {
			t.Fatalf("not a translate.Error: %v", err)
		}
		return "", te
	}
	if !gjson.ValidBytes(up.Body) {
		t.Fatalf("invalid body %s", up.Body)
	}
	return string(up.Body), nil
}

// TestRequestTable checks each translated request against the Converse
// request shape.
func TestRequestTable(t *testing.T) {
	const weather = `{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}`
	const weatherSpec = `{"toolSpec":{"name":"get_weather","description":"Weather","inputSchema":{"json":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}}`
	tests := []struct {
		name, in, want string
	}{
		{"plain",
			`{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Use French."}]},{"role":"user","content":"Hi"}],"max_tokens":100,"temperature":0.5,"top_p":0.9,"stop":["END",""],"user":"u1","seed":3,"stream_options":{"include_usage":true}}`,
			`{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"system":[{"text":"Be brief."},{"text":"Use French."}],"inferenceConfig":{"maxTokens":100,"temperature":0.5,"topP":0.9,"stopSequences":["END"]}}`},
		{"top_k and max_completion_tokens",
			`{"model":"m","messages":[{"role":"user","content":"Hi"}],"max_completion_tokens":7,"top_k":40,"stop":"X"}`,
			`{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":7,"stopSequences":["X"]},"additionalModelRequestFields":{"top_k":40}}`},
		{"tools auto default",
			`{"model":"m","messages":[{"role":"user","content":"Weather?"}],"tools":[` + weather + `],"parallel_tool_calls":true}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather?"}]}],"toolConfig":{"tools":[` + weatherSpec + `]}}`},
		{"tools required",
			`{"model":"m","messages":[{"role":"user","content":"Weather?"}],"tools":[` + weather + `],"tool_choice":"required"}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather?"}]}],"toolConfig":{"tools":[` + weatherSpec + `],"toolChoice":{"any":{}}}}`},
		{"tools named",
			`{"model":"m","messages":[{"role":"user","content":"Weather?"}],"tools":[` + weather + `],"tool_choice":{"type":"function","function":{"name":"get_weather"}}}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather?"}]}],"toolConfig":{"tools":[` + weatherSpec + `],"toolChoice":{"tool":{"name":"get_weather"}}}}`},
		{"tool_choice none drops the tools, never a tool named none",
			`{"model":"m","messages":[{"role":"user","content":"Weather?"}],"tools":[` + weather + `],"tool_choice":"none"}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather?"}]}]}`},
		{"tool round trip: consecutive results in one user turn",
			`{"model":"m","messages":[{"role":"user","content":"Weather in Paris and Tokyo?"},{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},{"id":"t2","type":"function","function":{"name":"get_weather","arguments":""}}]},{"role":"tool","tool_call_id":"t1","content":"18C"},{"role":"tool","tool_call_id":"t2","content":[{"type":"text","text":"25C"}]},{"role":"user","content":"Thanks"}],"tools":[` + weather + `],"tool_choice":"none"}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather in Paris and Tokyo?"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"get_weather","input":{"location":"Paris"}}},{"toolUse":{"toolUseId":"t2","name":"get_weather","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"text":"18C"}]}},{"toolResult":{"toolUseId":"t2","content":[{"text":"25C"}]}},{"text":"Thanks"}]}],"toolConfig":{"tools":[` + weatherSpec + `]}}`},
		{"tool history without tools: a toolConfig from the history, no toolChoice",
			`{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},{"id":"t2","type":"function","function":{"name":"get_time","arguments":"{}"}},{"id":"t3","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"t1","content":"18C"},{"role":"tool","tool_call_id":"t2","content":"noon"},{"role":"tool","tool_call_id":"t3","content":"dry"}]}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather in Paris?"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"get_weather","input":{"location":"Paris"}}},{"toolUse":{"toolUseId":"t2","name":"get_time","input":{}}},{"toolUse":{"toolUseId":"t3","name":"get_weather","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"text":"18C"}]}},{"toolResult":{"toolUseId":"t2","content":[{"text":"noon"}]}},{"toolResult":{"toolUseId":"t3","content":[{"text":"dry"}]}}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","description":"A tool called earlier in this conversation.","inputSchema":{"json":{"type":"object"}}}},{"toolSpec":{"name":"get_time","description":"A tool called earlier in this conversation.","inputSchema":{"json":{"type":"object"}}}}]}}`},
		{"tool history, tool_choice none and no tools: the history's tools, no toolChoice",
			`{"model":"m","messages":[{"role":"user","content":"Weather?"},{"role":"assistant","content":"Checking.","tool_calls":[{"id":"t1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"t1","content":"18C"}],"tool_choice":"none"}`,
			`{"messages":[{"role":"user","content":[{"text":"Weather?"}]},{"role":"assistant","content":[{"text":"Checking."},{"toolUse":{"toolUseId":"t1","name":"get_weather","input":{}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"text":"18C"}]}}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","description":"A tool called earlier in this conversation.","inputSchema":{"json":{"type":"object"}}}}]}}`},
		{"reasoning_effort: Claude thinking in additionalModelRequestFields, maxTokens above the budget",
			`{"model":"m","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"medium"}`,
			`{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":12288},"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":8192}}}`},
		{"reasoning_effort high under a client max_completion_tokens",
			`{"model":"m","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"high","max_completion_tokens":3000,"temperature":1}`,
			`{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":3000,"temperature":1},"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":1500}}}`},
		{"reasoning_effort none",
			`{"model":"m","messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"none","top_k":3}`,
			`{"messages":[{"role":"user","content":[{"text":"Hi"}]}],"additionalModelRequestFields":{"top_k":3}}`},
		{"image data URL",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"low"}}]}]}`,
			`{"messages":[{"role":"user","content":[{"text":"What is this?"},{"image":{"format":"png","source":{"bytes":"iVBORw0KGgo="}}}]}]}`},
		{"image s3",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"s3://bucket/cat.JPG"}}]}]}`,
			`{"messages":[{"role":"user","content":[{"image":{"format":"jpeg","source":{"s3Location":{"uri":"s3://bucket/cat.JPG"}}}}]}]}`},
		{"json_schema: forced response tool",
			`{"model":"m","messages":[{"role":"user","content":"Who?"}],"response_format":{"type":"json_schema","json_schema":{"name":"person","schema":{"type":"object","properties":{"name":{"type":"string"}}},"strict":true}}}`,
			`{"messages":[{"role":"user","content":[{"text":"Who?"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"llmux_json_response","description":"Reply to the user by calling this tool exactly once; its input is the whole answer, as a JSON object. Schema: person.","inputSchema":{"json":{"type":"object","properties":{"name":{"type":"string"}}}}}}],"toolChoice":{"tool":{"name":"llmux_json_response"}}}}`},
		{"json_object with client tools: any",
			`{"model":"m","messages":[{"role":"user","content":"Who?"}],"tools":[` + weather + `],"response_format":{"type":"json_object"}}`,
			`{"messages":[{"role":"user","content":[{"text":"Who?"}]}],"toolConfig":{"tools":[` + weatherSpec + `,{"toolSpec":{"name":"llmux_json_response","description":"Reply to the user by calling this tool exactly once; its input is the whole answer, as a JSON object.","inputSchema":{"json":{"type":"object"}}}}],"toolChoice":{"any":{}}}}`},
		{"assistant text merged into one turn",
			`{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"},{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]},{"role":"user","content":"d"}]}`,
			`{"messages":[{"role":"user","content":[{"text":"a"},{"text":"b"}]},{"role":"assistant","content":[{"text":"c"},{"text":"no"}]},{"role":"user","content":[{"text":"d"}]}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, e := chatBody(t, tc.in)
			if e != nil {
				t.Fatal(e)
			}
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestRequestRefused(t *testing.T) {
	tests := []struct{ name, in, param string }{
		{"http image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"bad image type", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/bmp;base64,AA=="}}]}]}`, "messages[0].content[0].image_url.url"},
		{"n", `{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}`, "n"},
		{"logprobs", `{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}`, "logprobs"},
		{"unknown", `{"model":"m","messages":[{"role":"user","content":"x"}],"frobnicate":1}`, "frobnicate"},
		{"reserved tool", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"llmux_json_response"}}]}`, "tools[0].function.name"},
		{"named tool missing", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}`, "tool_choice"},
		{"required without tools", `{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"required"}`, "tool_choice"},
		{"tool without id", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","content":"y"}]}`, "messages[1].tool_call_id"},
		{"bad args", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[0].tool_calls[0].function.arguments"},
		{"no messages", `{"model":"m","messages":[{"role":"system","content":"x"}]}`, "messages"},
		{"audio", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, "messages[0].content[0]"},
		{"max_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}`, "max_tokens"},
		{"reasoning_effort value", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"max"}`, "reasoning_effort"},
		{"thinking and temperature", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","temperature":0.3}`, "temperature"},
		{"thinking and top_k", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","top_k":3}`, "top_k"},
		{"thinking and JSON", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low","response_format":{"type":"json_object"}}`, "response_format"},
		{"thinking and a small max_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"high","max_tokens":500}`, "max_tokens"},
	}
	for _, tc := range tests {
		_, e := chatBody(t, tc.in)
		if e == nil || e.Param != tc.param || e.Code != translate.CodeInvalidRequest || e.Message == "" {
			t.Errorf("%s: %+v", tc.name, e)
		}
	}
}

// TestSigning checks the path, host and SigV4 headers: the signature is
// recomputed from the headers the translator set, the way AWS checks it.
func TestSigning(t *testing.T) {
	for _, stream := range []bool{false, true} {
		req := &translate.Request{Op: translate.OpChat, Stream: stream, Body: []byte(`{"model":"m","messages":[{"role":"user","content":"Hi"}]}`)}
		tg := target("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0")
		up, err := testTranslator().Request(context.Background(), req, tg)
		if err != nil {
			t.Fatal(err)
		}
		wantPath := "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
		if stream {
			wantPath += "-stream"
		}
		if up.Path != wantPath {
			t.Fatalf("path %s", up.Path)
		}
		h := map[string]string{}
		for _, kv := range up.Headers {
			h[kv.Key] = kv.Value
		}
		if h["content-type"] != "application/json" || h["x-amz-date"] != "20250310T013123Z" || h["x-amz-security-token"] != testCreds.SessionToken {
			t.Fatalf("headers %v", h)
		}
		auth := h["authorization"]
		if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250310/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=") {
			t.Fatalf("authorization %s", auth)
		}
		// Verify as the service would: rebuild the request as received.
		u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com" + up.Path)
		hr := &http.Request{Method: "POST", URL: u, Host: u.Host, Header: http.Header{}}
		hr.Header.Set("Content-Type", h["content-type"])
		hr.Header.Set("X-Amz-Content-Sha256", h["x-amz-content-sha256"])
		if err := v4.NewSigner().SignHTTP(context.Background(), testCreds, hr, h["x-amz-content-sha256"], "bedrock", "us-east-1", signTime); err != nil {
			t.Fatal(err)
		}
		if hr.Header.Get("Authorization") != auth {
			t.Fatalf("signature mismatch:\n%s\n%s", hr.Header.Get("Authorization"), auth)
		}
	}
	// Target.Host is signed instead of the regional default.
	tg := target(testModel)
	tg.Host = "bedrock-runtime-fips.us-east-1.amazonaws.com"
	if Host(tg) != tg.Host || Host(target("x")) != "bedrock-runtime.us-east-1.amazonaws.com" {
		t.Fatal("host")
	}
	if _, err := testTranslator().Request(context.Background(), &translate.Request{Op: translate.OpChat, Body: []byte(`{}`)}, &translate.Target{Model: "m"}); err == nil {
		t.Fatal("no region accepted")
	}
}

// TestDefaultCredentials: the default chain reads static environment
// credentials, and they are cached per provider and region.
func TestDefaultCredentials(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	tg := &translate.Target{Provider: "creds-test", Region: "eu-west-1", Model: testModel}
	c, err := DefaultCredentials(context.Background(), tg)
	if err != nil || c.AccessKeyID != "AKIDENV" || c.SecretAccessKey != "envsecret" {
		t.Fatalf("%+v %v", c, err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDOTHER")
	if c, _ := DefaultCredentials(context.Background(), tg); c.AccessKeyID != "AKIDENV" {
		t.Fatalf("not cached: %+v", c)
	}
	up, err := Translator{}.Request(context.Background(), &translate.Request{Op: translate.OpChat, Body: []byte(`{"messages":[{"role":"user","content":"x"}]}`)}, tg)
	if err != nil || !strings.Contains(up.Headers[1].Value, "Credential=AKIDENV/") {
		t.Fatalf("%v %v", up, err)
	}
}

func TestEmbeddings(t *testing.T) {
	const titan = "amazon.titan-embed-text-v2:0"
	const cohere = "cohere.embed-english-v3"
	tests := []struct {
		name, model, in, want, param string
	}{
		{"titan string", titan, `{"model":"e","input":"hello","dimensions":256,"encoding_format":"float","user":"u"}`, `{"inputText":"hello","dimensions":256,"normalize":true}`, ""},
		{"titan one-element array", titan, `{"model":"e","input":["hello"]}`, `{"inputText":"hello","normalize":true}`, ""},
		{"titan array refused", titan, `{"model":"e","input":["a","b"]}`, "", "input"},
		{"titan bad dimensions", titan, `{"model":"e","input":"a","dimensions":300}`, "", "dimensions"},
		{"titan v1", "amazon.titan-embed-text-v1", `{"model":"e","input":"a"}`, `{"inputText":"a"}`, ""},
		{"cohere array", cohere, `{"model":"e","input":["a","b"]}`, `{"texts":["a","b"],"input_type":"search_document"}`, ""},
		{"cohere dimensions", cohere, `{"model":"e","input":["a"],"dimensions":3}`, "", "dimensions"},
		{"tokens", cohere, `{"model":"e","input":[[1,2]]}`, "", "input[0]"},
		{"not an embedder", testModel, `{"model":"e","input":"a"}`, "", "model"},
		{"bad format", titan, `{"model":"e","input":"a","encoding_format":"hex"}`, "", "encoding_format"},
	}
	for _, tc := range tests {
		req := &translate.Request{Op: translate.OpEmbeddings, Body: []byte(tc.in)}
		up, err := testTranslator().Request(context.Background(), req, target(tc.model))
		if tc.param != "" {
			var te *translate.Error
			if !errors.As(err, &te) || te.Param != tc.param || te.HTTPStatus() != 400 {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err != nil || string(up.Body) != tc.want || !strings.HasSuffix(up.Path, "/invoke") {
			t.Errorf("%s: %v %s %s", tc.name, err, up.Path, up.Body)
		}
	}

	decode := func(model, in, body string) (map[string]any, *translate.Result) {
		req := &translate.Request{Op: translate.OpEmbeddings, Body: []byte(in)}
		if _, err := testTranslator().Request(context.Background(), req, target(model)); err != nil {
			t.Fatal(err)
		}
		d := Translator{}.NewDecoder(req, 200, "application/json")
		out := decodeAll(t, d, []byte(body), 4)
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		return m, d.Result()
	}
	m, r := decode(titan, `{"model":"e","input":"hello"}`, `{"embedding":[0.5,-0.25,1e-3],"inputTextTokenCount":2}`)
	data := m["data"].([]any)
	if len(data) != 1 || m["object"] != "list" || m["model"] != titan || r.Usage.InputTokens != 2 || !r.HasUsage || !r.Completed {
		t.Fatalf("%v %+v", m, r)
	}
	if v := data[0].(map[string]any)["embedding"].([]any); len(v) != 3 || v[2].(float64) != 0.001 {
		t.Fatalf("%v", v)
	}
	if u := m["usage"].(map[string]any); u["prompt_tokens"].(float64) != 2 || u["total_tokens"].(float64) != 2 {
		t.Fatalf("%v", u)
	}
	m, _ = decode(cohere, `{"model":"e","input":["a","b"],"encoding_format":"base64"}`,
		`{"embeddings":[[0.5,-0.25],[1,2]],"id":"x","response_type":"embeddings_floats","texts":["a","b"]}`)
	data = m["data"].([]any)
	if len(data) != 2 {
		t.Fatalf("%v", m)
	}
	raw, err := base64.StdEncoding.DecodeString(data[1].(map[string]any)["embedding"].(string))
	if err != nil || len(raw) != 8 || math.Float32frombits(binary.LittleEndian.Uint32(raw[4:])) != 2 || data[1].(map[string]any)["index"].(float64) != 1 {
		t.Fatalf("%v %x", err, raw)
	}
	m, _ = decode(cohere, `{"model":"e","input":["a"]}`, `{"embeddings":{"float":[[0.1]]},"response_type":"embeddings_by_type"}`)
	if len(m["data"].([]any)) != 1 {
		t.Fatalf("%v", m)
	}
	_, r = decode(titan, `{"model":"e","input":"a"}`, `{"embedding":"nope"}`)
	if r.Err == nil || r.Err.Code != translate.CodeUpstreamProtocol {
		t.Fatalf("%+v", r)
	}
}

// headerMap is a translate.HeaderGetter over a map of lower-case names.
type headerMap map[string]string

func (h headerMap) Get(name string) string { return h[name] }

// TestCohereEmbeddingUsage: Cohere Embed's InvokeModel body counts no
// tokens; the usage comes from the X-Amzn-Bedrock-Input-Token-Count
// response header, and is unknown (not zero) without it.
func TestCohereEmbeddingUsage(t *testing.T) {
	const body = `{"embeddings":[[0.5],[1]],"id":"x","response_type":"embeddings_floats","texts":["a b","c"]}`
	tests := []struct {
		name     string
		headers  translate.HeaderGetter
		tokens   int64
		hasUsage bool
	}{
		{"header", headerMap{"x-amzn-bedrock-input-token-count": "3", "x-amzn-bedrock-output-token-count": "0"}, 3, true},
		{"no header", headerMap{}, 0, false},
		{"malformed header", headerMap{"x-amzn-bedrock-input-token-count": "many"}, 0, false},
		{"no headers known", nil, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &translate.Request{Op: translate.OpEmbeddings, Body: []byte(`{"model":"e","input":["a b","c"]}`)}
			if _, err := testTranslator().Request(context.Background(), req, target("cohere.embed-english-v3")); err != nil {
				t.Fatal(err)
			}
			req.ResponseHeaders = tc.headers
			d := Translator{}.NewDecoder(req, 200, "application/json")
			req.ResponseHeaders = nil // the decoder keeps no reference
			out := decodeAll(t, d, []byte(body), 7)
			r := d.Result()
			if r.Usage.InputTokens != tc.tokens || r.HasUsage != tc.hasUsage || !r.Completed {
				t.Errorf("result %+v", r)
			}
			if got := gjson.GetBytes(out, "usage.prompt_tokens").Int(); got != tc.tokens || gjson.GetBytes(out, "usage.total_tokens").Int() != tc.tokens {
				t.Errorf("usage %s", gjson.GetBytes(out, "usage").Raw)
			}
		})
	}
}

// TestReasoningEffortNotClaude: Converse takes thinking settings per model
// family; only Claude's are translated, other models refuse the parameter.
func TestReasoningEffortNotClaude(t *testing.T) {
	req := &translate.Request{Op: translate.OpChat, Body: []byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low"}`)}
	_, err := testTranslator().Request(context.Background(), req, target("amazon.nova-pro-v1:0"))
	var te *translate.Error
	if !errors.As(err, &te) || te.Param != "reasoning_effort" || te.HTTPStatus() != 400 {
		t.Fatalf("%v", err)
	}
	req.Body = []byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low"}`)
	up, err := testTranslator().Request(context.Background(), req, target("us.anthropic.claude-sonnet-4-5-20250929-v1:0"))
	if err != nil || gjson.GetBytes(up.Body, "additionalModelRequestFields.thinking.budget_tokens").Int() != 2048 {
		t.Fatalf("%v %s", err, up.Body)
	}
}
