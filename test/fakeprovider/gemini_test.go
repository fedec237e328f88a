package fakeprovider

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func geminiPost(t *testing.T, url string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGeminiValidation(t *testing.T) {
	s := NewGemini(t, GeminiOptions{APIKey: "k"})
	url := s.URL() + "/v1beta/models/gemini-2.5-flash:generateContent"
	key := map[string]string{"x-goog-api-key": "k"}
	ok := `{"contents":[{"role":"user","parts":[{"text":"hi there"}]}]}`
	if st, b := geminiPost(t, url, key, ok); st != 200 || gjson.Get(b, "candidates.0.content.parts.0.text").Str != "Hello from fake-gemini: hi there" {
		t.Fatalf("%d %s", st, b)
	}
	if st, b := geminiPost(t, url, map[string]string{"x-goog-api-key": "bad"}, ok); st != 400 || !strings.Contains(b, "API_KEY_INVALID") {
		t.Errorf("bad key: %d %s", st, b)
	}
	for name, body := range map[string]string{
		"unknown field":        `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"messages":[]}`,
		"bad role":             `{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}`,
		"empty parts":          `{"contents":[{"role":"user","parts":[]}]}`,
		"response no name":     `{"contents":[{"role":"user","parts":[{"functionResponse":{"response":{}}}]}]}`,
		"additionalProperties": `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"a":{"type":"STRING"}},"additionalProperties":false}}]}]}`,
		"$schema":              `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"$schema":"x","type":"OBJECT","properties":{"a":{"type":"STRING"}}}}}`,
		"type array":           `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"a":{"type":["string","null"]}}}}]}]}`,
		"integer enum":         `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"a":{"type":"INTEGER","enum":[1]}}}}]}]}`,
		"required undeclared":  `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"a":{"type":"STRING"}},"required":["b"]}}]}]}`,
	} {
		if st, b := geminiPost(t, url, key, body); st != 400 || gjson.Get(b, "error.status").Str != "INVALID_ARGUMENT" {
			t.Errorf("%s: %d %s", name, st, b)
		}
	}
}

func TestGeminiVertexOAuthAndStream(t *testing.T) {
	o := NewGCPOAuth(t, GCPOAuthOptions{})
	s := NewGemini(t, GeminiOptions{OAuth: o, BearerToken: "static"})
	base := s.URL() + "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro"
	body := `{"contents":[{"role":"user","parts":[{"text":"one two three"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"city":{"type":"STRING"}}}}]}]}`
	if st, _ := geminiPost(t, base+":generateContent", map[string]string{"Authorization": "Bearer nope"}, body); st != 401 {
		t.Errorf("bad bearer: %d", st)
	}
	st, b := geminiPost(t, base+":streamGenerateContent?alt=sse", map[string]string{"Authorization": "Bearer static"}, body)
	if st != 200 || strings.Count(b, "data: ") != 7 || !strings.Contains(b, `"finishReason":"STOP"`) || !strings.Contains(b, "\r\n\r\n") {
		t.Errorf("stream %d %q", st, b)
	}
	st, b = geminiPost(t, base+":generateContent", map[string]string{"Authorization": "Bearer static", HeaderToolCalls: "2"}, body)
	if st != 200 || len(gjson.Get(b, "candidates.0.content.parts").Array()) != 2 || gjson.Get(b, "candidates.0.content.parts.1.functionCall.args.city").Str == "" {
		t.Errorf("tool calls %d %s", st, b)
	}
	st, b = geminiPost(t, base+":generateContent", map[string]string{"Authorization": "Bearer static", HeaderStatus: "429"}, body)
	if st != 429 || gjson.Get(b, "error.status").Str != "RESOURCE_EXHAUSTED" || gjson.Get(b, "error.details").Exists() {
		t.Errorf("fault (Vertex's 429 has no details) %d %s", st, b)
	}
	aiStudio := s.URL() + "/v1beta/models/gemini-2.5-flash:generateContent"
	st, b = geminiPost(t, aiStudio, map[string]string{HeaderStatus: "429", HeaderRetryAfter: "12"}, body)
	if st != 429 || gjson.Get(b, `error.details.#(@type=="type.googleapis.com/google.rpc.RetryInfo").retryDelay`).Str != "12s" {
		t.Errorf("Gemini API 429 without RetryInfo: %d %s", st, b)
	}
	st, b = geminiPost(t, s.URL()+"/v1/projects/p/locations/l/publishers/google/models/text-embedding-005:predict", map[string]string{"Authorization": "Bearer static"}, `{"instances":[{"content":"a b"}],"parameters":{"outputDimensionality":4}}`)
	if st != 200 || gjson.Get(b, "predictions.0.embeddings.statistics.token_count").Int() != 2 || len(gjson.Get(b, "predictions.0.embeddings.values").Array()) != 4 {
		t.Errorf("predict %d %s", st, b)
	}
}

// TestGeminiThinking: includeThoughts gets thought parts (thought: true)
// before the answer and thoughtsTokenCount in the usage; without it only
// the count; budgets out of range, and 0 on a Pro model, are refused.
func TestGeminiThinking(t *testing.T) {
	s := NewGemini(t, GeminiOptions{APIKey: "k"})
	key := map[string]string{"x-goog-api-key": "k"}
	flash := s.URL() + "/v1beta/models/gemini-2.5-flash:generateContent"
	st, b := geminiPost(t, flash, key, `{"contents":[{"role":"user","parts":[{"text":"hi there"}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":1024,"includeThoughts":true}}}`)
	reply := "Hello from fake-gemini: hi there"
	if st != 200 || !gjson.Get(b, "candidates.0.content.parts.0.thought").Bool() || gjson.Get(b, "candidates.0.content.parts.0.text").Str != FakeThinking(reply) ||
		gjson.Get(b, "candidates.0.content.parts.1.text").Str != reply || gjson.Get(b, "usageMetadata.thoughtsTokenCount").Int() != int64(countWords(FakeThinking(reply))) {
		t.Fatalf("%d %s", st, b)
	}
	st, b = geminiPost(t, flash, key, `{"contents":[{"role":"user","parts":[{"text":"hi there"}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":1024}}}`)
	if st != 200 || gjson.Get(b, "candidates.0.content.parts.#").Int() != 1 || gjson.Get(b, "usageMetadata.thoughtsTokenCount").Int() == 0 {
		t.Fatalf("%d %s", st, b)
	}
	st, b = geminiPost(t, s.URL()+"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", key, `{"contents":[{"role":"user","parts":[{"text":"hi there"}]}],"generationConfig":{"thinkingConfig":{"includeThoughts":true}}}`)
	if first := strings.Index(b, `"thought":true`); st != 200 || first < 0 || first > strings.Index(b, `"text":"Hello"`) {
		t.Fatalf("%d %s", st, b)
	}
	for name, tc := range map[string]struct{ model, cfg string }{
		"budget too large": {"gemini-2.5-flash", `{"thinkingBudget":40000}`},
		"budget 0 on pro":  {"gemini-2.5-pro", `{"thinkingBudget":0}`},
		"unknown field":    {"gemini-2.5-flash", `{"thinkingBudget":10,"effort":"low"}`},
	} {
		url := s.URL() + "/v1beta/models/" + tc.model + ":generateContent"
		if st, b := geminiPost(t, url, key, `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"thinkingConfig":`+tc.cfg+`}}`); st != 400 || gjson.Get(b, "error.status").Str != "INVALID_ARGUMENT" {
			t.Errorf("%s: %d %s", name, st, b)
		}
	}
}
