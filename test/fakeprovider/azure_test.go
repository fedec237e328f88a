package fakeprovider

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func azureDo(t *testing.T, s *Server, path string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
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
	return resp, string(b)
}

const azChat = `{"messages":[{"role":"user","content":"hello azure"}]}`

func TestAzureFakeRequests(t *testing.T) {
	s := NewAzure(t, AzureOptions{APIKey: "az-key", BearerToken: "entra-tok", Deployments: map[string]string{"prod-4o": "gpt-4o-2024-08-06"}})
	key := map[string]string{"api-key": "az-key"}
	tests := []struct {
		name, path string
		hdr        map[string]string
		body       string
		status     int
		code       string // error.code, or "" for success
	}{
		{"chat with api-key", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", key, azChat, 200, ""},
		{"chat with bearer", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", map[string]string{"Authorization": "Bearer entra-tok"}, azChat, 200, ""},
		{"model kept in the body", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", key, `{"model":"prod-4o","messages":[{"role":"user","content":"x"}]}`, 200, ""},
		{"missing api-version", "/openai/deployments/prod-4o/chat/completions", key, azChat, 400, "BadRequest"},
		{"unknown api-version", "/openai/deployments/prod-4o/chat/completions?api-version=1999-01-01", key, azChat, 400, "BadRequest"},
		{"wrong key", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", map[string]string{"api-key": "nope"}, azChat, 401, "401"},
		{"wrong token", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", map[string]string{"Authorization": "Bearer nope"}, azChat, 401, "InvalidAuthenticationToken"},
		{"no credentials", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", nil, azChat, 401, "401"},
		{"unknown deployment", "/openai/deployments/nope/chat/completions?api-version=2024-10-21", key, azChat, 404, "DeploymentNotFound"},
		{"unknown path", "/openai/models?api-version=2024-10-21", key, azChat, 404, "404"},
		{"prompt filtered", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", map[string]string{"api-key": "az-key", HeaderContentFilter: "prompt"}, azChat, 400, "content_filter"},
		{"429", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", map[string]string{HeaderStatus: "429"}, azChat, 429, "429"},
		{"invalid body", "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", key, `{"messages":"x"}`, 400, "invalid_type"},
		{"embeddings", "/openai/deployments/prod-4o/embeddings?api-version=2024-10-21", key, `{"input":"a"}`, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := azureDo(t, s, tc.path, tc.hdr, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := gjson.Get(body, "error.code").String(); got != tc.code {
				t.Fatalf("code %q: %s", got, body)
			}
			if tc.code == "" && gjson.Get(body, "object").String() == "chat.completion" {
				if gjson.Get(body, "model").String() != "gpt-4o-2024-08-06" || !gjson.Get(body, "prompt_filter_results.0.content_filter_results").IsObject() ||
					!gjson.Get(body, "choices.0.content_filter_results.hate").IsObject() {
					t.Errorf("not Azure-shaped: %s", body)
				}
			}
			if tc.code == "content_filter" && gjson.Get(body, "error.innererror.code").String() != "ResponsibleAIPolicyViolation" {
				t.Errorf("no innererror: %s", body)
			}
			if tc.status == 429 && resp.Header.Get("retry-after") == "" {
				t.Error("no retry-after")
			}
		})
	}
}

func TestAzureFakeStream(t *testing.T) {
	s := NewAzure(t, AzureOptions{})
	for _, filter := range []string{"", "completion"} {
		resp, body := azureDo(t, s, "/openai/deployments/d/chat/completions?api-version=2024-10-21",
			map[string]string{"api-key": "k", HeaderContentFilter: filter},
			`{"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		var datas []string
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				datas = append(datas, d)
			}
		}
		if len(datas) < 5 || !gjson.Get(datas[0], "prompt_filter_results").Exists() || len(gjson.Get(datas[0], "choices").Array()) != 0 {
			t.Fatalf("first chunk %v", datas)
		}
		if gjson.Get(datas[1], "choices.0.delta.role").String() != "assistant" {
			t.Errorf("role chunk %s", datas[1])
		}
		if datas[len(datas)-1] != "[DONE]" || !gjson.Get(datas[len(datas)-2], "usage").IsObject() {
			t.Errorf("tail %v", datas[len(datas)-2:])
		}
		want := "stop"
		if filter != "" {
			want = "content_filter"
		}
		if fr := gjson.Get(datas[len(datas)-3], "choices.0.finish_reason").String(); fr != want {
			t.Errorf("finish %q, want %q", fr, want)
		}
	}
}
