package fakeprovider

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/openai/golden from the fake's output")

// shapeDiff compares the key structure of two JSON values: objects must have
// the same keys, arrays are compared by their first element, and scalars by
// kind (numbers are one kind; null matches anything, since the fixtures show
// one possible value of nullable fields). It returns the differences.
func shapeDiff(path string, want, got any) []string {
	if want == nil || got == nil {
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{path + ": want an object"}
		}
		var out []string
		for k := range w {
			if _, ok := g[k]; !ok {
				out = append(out, path+"."+k+": missing")
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				out = append(out, path+"."+k+": not in the documented shape")
			}
		}
		for k, wv := range w {
			if gv, ok := g[k]; ok {
				out = append(out, shapeDiff(path+"."+k, wv, gv)...)
			}
		}
		slices.Sort(out)
		return out
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{path + ": want an array"}
		}
		if len(w) == 0 || len(g) == 0 {
			return nil
		}
		return shapeDiff(path+"[0]", w[0], g[0])
	}
	if kindOf(want) != kindOf(got) {
		return []string{path + ": want " + kindOf(want) + ", got " + kindOf(got)}
	}
	return nil
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "null"
}

func readFixture(t *testing.T, name string) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "openai", name))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// sseEvents splits an SSE body into its data payloads.
func sseEvents(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, ev := range strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("malformed event %q", ev)
		}
		out = append(out, data)
	}
	return out
}

func readBody(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const toolsBody = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"weather in paris"}],` +
	`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`

func TestOpenAIShapes(t *testing.T) {
	srv := NewOpenAI(t, OpenAIOptions{})
	check := func(name, body string) {
		t.Helper()
		var got any
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%s: %v in %s", name, err, body)
		}
		if d := shapeDiff("$", readFixture(t, name), got); len(d) > 0 {
			t.Errorf("%s:\n  %s\n%s", name, strings.Join(d, "\n  "), body)
		}
	}
	check("chat_completion.json", readBody(t, rawPost(t, srv, "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, nil)))
	check("chat_completion_tool_calls.json", readBody(t, rawPost(t, srv, "/v1/chat/completions", toolsBody+`}`, map[string]string{HeaderToolCalls: "1"})))

	events := sseEvents(t, readBody(t, rawPost(t, srv, "/v1/chat/completions", streamBody, nil)))
	check("chat_completion_chunk.json", events[1])
	usage := `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
	events = sseEvents(t, readBody(t, rawPost(t, srv, "/v1/chat/completions", usage, nil)))
	check("chat_completion_chunk_usage.json", events[len(events)-2])

	check("embeddings.json", readBody(t, rawPost(t, srv, "/v1/embeddings", `{"model":"text-embedding-3-small","input":"hi"}`, nil)))
	check("error.json", readBody(t, rawPost(t, srv, "/v1/chat/completions", `{"model":"m","messages":[]}`, nil)))
	check("error.json", readBody(t, rawPost(t, srv, "/v1/chat/completions", `{}`, map[string]string{HeaderStatus: "429"})))

	req, _ := http.NewRequestWithContext(testCtx(t), http.MethodGet, srv.URL()+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer k")
	res, err := newHTTPClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	check("models.json", readBody(t, res))
}

// TestOpenAIGolden pins the fake's exact output for fixed requests; run with
// -update after an intended change and review the diff.
func TestOpenAIGolden(t *testing.T) {
	cases := []struct {
		file, path, body string
		hdr              map[string]string
	}{
		{"chat_completion.json", "/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"ping pong"}]}`, nil},
		{"chat_stream_include_usage.sse", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"ping pong"}]}`, nil},
		{"chat_stream_tool_calls.sse", "/v1/chat/completions", strings.Replace(toolsBody, `"model"`, `"stream":true,"model"`, 1) + `}`, map[string]string{HeaderToolCalls: "2"}},
		{"chat_stream_inband_error.sse", "/v1/chat/completions", streamBody, map[string]string{HeaderFault: FaultInbandError, HeaderFaultAfter: "2"}},
		{"embeddings_base64.json", "/v1/embeddings", `{"model":"text-embedding-3-small","input":["hello world","bye"],"encoding_format":"base64","dimensions":4}`, nil},
		{"error_429.json", "/v1/chat/completions", `{}`, map[string]string{HeaderStatus: "429"}},
		{"error_unknown_field.json", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"temprature":1}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			// A fresh server per case keeps ids (which count requests) stable.
			srv := NewOpenAI(t, OpenAIOptions{Created: 1750000000})
			got := []byte(readBody(t, rawPost(t, srv, tc.path, tc.body, tc.hdr)))
			if strings.HasSuffix(tc.file, ".json") {
				var buf bytes.Buffer
				if err := json.Indent(&buf, got, "", "  "); err != nil {
					t.Fatalf("%v: %s", err, got)
				}
				buf.WriteByte('\n')
				got = buf.Bytes()
			}
			file := filepath.Join("testdata", "openai", "golden", tc.file)
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update if intended)\ngot:\n%s", file, got)
			}
		})
	}
}
