package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/test/fakeprovider"
)

// The fault × provider matrix (docs/errors.md, "One fault, one error"):
// the same upstream fault reaches the client with the same status, OpenAI
// type and code (and metadata error_code) from every provider, through the
// whole stack (openai-go → Envoy → llmux → the provider's fake, which
// answers in the provider's documented wire format). retry-after is given
// whenever the provider said how long to wait.

// matrixColumns are the providers, each with the model group that reaches
// it and a function that starts its stack.
var matrixColumns = []struct {
	name, model string
	start       func(t *testing.T) *rig
}{
	{"openai", "gpt-4o-mini", startRig},
	{"azure_openai", "gpt-4o", func(t *testing.T) *rig { r, _ := azureRig(t); return r }},
	{"anthropic", "claude-sonnet", func(t *testing.T) *rig { r, _ := anthropicRig(t, fakeprovider.AnthropicOptions{}); return r }},
	{"vertex_anthropic", "claude-vertex", func(t *testing.T) *rig { return startVertexAnthropicRig(t, nil).rig }},
	{"bedrock", "claude", func(t *testing.T) *rig { r, _ := bedrockRig(t, fakeprovider.BedrockOptions{}); return r }},
	{"gemini", "gemini-flash", func(t *testing.T) *rig { return startGeminiRig(t).rig }},
	{"vertex", "vertex-pro", func(t *testing.T) *rig { return startGeminiRig(t).rig }},
	// A vLLM-style server: {"object":"error","message",…,"code":<status>}.
	{"openai_compatible", "local", func(t *testing.T) *rig {
		r, _ := compatibleRig(t, fakeprovider.OpenAIOptions{ErrorStyle: "vllm"})
		return r
	}},
	// An Ollama-style server: {"error":"<text>"}.
	{"ollama", "local", func(t *testing.T) *rig {
		r, _ := compatibleRig(t, fakeprovider.OpenAIOptions{ErrorStyle: "ollama"})
		return r
	}},
}

// cell is how one provider produces one fault, and what it says about
// when to retry.
type cell struct {
	// status and errCode are the fake's x-fake-status and
	// x-fake-error-code ("" for none).
	status, errCode string
	// retryAfter is the retry-after the client must get (the provider
	// said how long to wait), or "" for none.
	retryAfter string
	// na explains why the provider has no such fault; the cell is not run.
	na string
}

// Kinds of fault row.
const (
	statusFault = iota // an error status before any byte of the body
	inbandFault        // an error after content (a 200 whose body is an error when not streamed)
	resetFault         // the connection reset before response headers
)

// wait is the retry-after every provider that tells the client when to
// retry is asked to say.
const wait = "12"

var matrixRows = []struct {
	fault string
	kind  int
	// The client's error, the same for every provider.
	status    int
	typ, code string
	errorCode string // io.llmux.error_code in metadata (access log)
	cells     map[string]cell
}{
	{"500", statusFault, 500, "server_error", "server_error", "upstream_error", map[string]cell{
		"openai": {status: "500"}, "azure_openai": {status: "500"}, "anthropic": {status: "500"}, "vertex_anthropic": {status: "500"},
		"bedrock": {status: "500"}, "gemini": {status: "500"}, "vertex": {status: "500"}, "openai_compatible": {status: "500"}, "ollama": {status: "500"},
	}},
	{"503", statusFault, 503, "server_error", "overloaded", "overloaded", map[string]cell{
		"openai": {status: "503", retryAfter: wait}, "azure_openai": {status: "503", retryAfter: wait},
		"anthropic": {status: "503", retryAfter: wait}, "vertex_anthropic": {status: "503", retryAfter: wait},
		"bedrock": {status: "503"}, "gemini": {status: "503"}, "vertex": {status: "503"}, "openai_compatible": {status: "503", retryAfter: wait}, "ollama": {status: "503", retryAfter: wait},
	}},
	{"529 overloaded", statusFault, 503, "server_error", "overloaded", "overloaded", map[string]cell{
		"openai": {na: "Anthropic's status"}, "azure_openai": {na: "Anthropic's status"},
		"anthropic": {status: "529", retryAfter: wait}, "vertex_anthropic": {status: "529", retryAfter: wait},
		"bedrock": {na: "Anthropic's status"}, "gemini": {na: "Anthropic's status"}, "vertex": {na: "Anthropic's status"}, "openai_compatible": {na: "Anthropic's status"}, "ollama": {na: "Anthropic's status"},
	}},
	{"429 rate limited", statusFault, 429, "rate_limit_error", "rate_limit_exceeded", "rate_limited", map[string]cell{
		"openai": {status: "429", retryAfter: wait}, "azure_openai": {status: "429", retryAfter: wait},
		"anthropic": {status: "429", retryAfter: wait},
		// Google's front end: RESOURCE_EXHAUSTED without a wait.
		"vertex_anthropic": {status: "429"},
		// ThrottlingException: Bedrock names no wait.
		"bedrock": {status: "429"},
		// RetryInfo {"retryDelay":"12s"} in the body.
		"gemini": {status: "429", retryAfter: wait},
		"vertex": {status: "429"}, "openai_compatible": {status: "429", retryAfter: wait}, "ollama": {status: "429", retryAfter: wait},
	}},
	{"429 quota exhausted", statusFault, 429, "insufficient_quota", "insufficient_quota", "quota_exhausted", map[string]cell{
		"openai":            {status: "429", errCode: "insufficient_quota", retryAfter: wait},
		"azure_openai":      {na: "Azure OpenAI's quotas are rate limits (429 code \"429\"); it has no spent-quota error"},
		"anthropic":         {status: "402", errCode: "billing_error"},
		"vertex_anthropic":  {status: "429", errCode: "quota"},
		"bedrock":           {status: "400", errCode: "ServiceQuotaExceededException"},
		"gemini":            {status: "429", errCode: "quota"},
		"vertex":            {status: "429", errCode: "quota"},
		"openai_compatible": {status: "402"}, // DeepSeek's "Insufficient Balance"
		"ollama":            {na: "a local server has no quota"},
	}},
	{"504 timeout", statusFault, 504, "server_error", "timeout", "timeout", map[string]cell{
		"openai": {status: "504"}, "azure_openai": {status: "504"}, "anthropic": {status: "504"}, "vertex_anthropic": {status: "504"},
		"bedrock": {status: "408"}, // ModelTimeoutException
		"gemini":  {status: "504"}, "vertex": {status: "504"}, "openai_compatible": {status: "504"}, "ollama": {status: "504"},
	}},
	{"in-band error", inbandFault, 500, "server_error", "server_error", "upstream_error", map[string]cell{
		"openai": {}, "azure_openai": {}, "anthropic": {errCode: "api_error"}, "vertex_anthropic": {errCode: "api_error"},
		"bedrock": {}, "gemini": {}, "vertex": {}, "openai_compatible": {}, "ollama": {},
	}},
	{"reset before headers", resetFault, 503, "server_error", "upstream_unavailable", "upstream_unavailable", map[string]cell{
		"openai": {}, "azure_openai": {}, "anthropic": {}, "vertex_anthropic": {}, "bedrock": {}, "gemini": {}, "vertex": {}, "openai_compatible": {}, "ollama": {},
	}},
}

func TestFaultMatrix(t *testing.T) {
	for _, col := range matrixColumns {
		t.Run(col.name, func(t *testing.T) {
			r := col.start(t)
			requests := 0
			for _, row := range matrixRows {
				c, ok := row.cells[col.name]
				if !ok {
					t.Fatalf("row %q has no cell for %s", row.fault, col.name)
				}
				if c.na != "" {
					continue // the provider has no such fault (see the cell)
				}
				for _, streamed := range []bool{false, true} {
					name := row.fault + map[bool]string{false: "/whole", true: "/streamed"}[streamed]
					t.Run(name, func(t *testing.T) {
						requests++
						opts := c.options(row.kind)
						got := matrixCall(t, r, col.model, streamed, opts)
						want := matrixResult{status: row.status, typ: row.typ, code: row.code, retryAfter: c.retryAfter}
						if streamed && row.kind == inbandFault {
							// The 200 went out with the content; the error is an event.
							want.status, want.retryAfter, want.inStream = http.StatusOK, "", true
						}
						if got != want {
							t.Errorf("%s %s: got %+v, want %+v", col.name, name, got, want)
						}
						if logs := r.accessLogs(requests); logs != nil {
							if ec := logs[requests-1]["error_code"]; ec != row.errorCode {
								t.Errorf("access log error_code %v, want %s", ec, row.errorCode)
							}
						}
					})
				}
			}
			r.waitNoStreams()
		})
	}
}

// options are the fault plan of a cell.
func (c cell) options(kind int) []option.RequestOption {
	var opts []option.RequestOption
	switch kind {
	case statusFault:
		opts = append(opts, withFault(fakeprovider.HeaderStatus, c.status), withFault(fakeprovider.HeaderRetryAfter, wait))
	case inbandFault:
		opts = append(opts, withFault(fakeprovider.HeaderFault, fakeprovider.FaultInbandError), withFault(fakeprovider.HeaderFaultAfter, "5"))
	case resetFault:
		opts = append(opts, withFault(fakeprovider.HeaderFault, fakeprovider.FaultResetBeforeHeaders))
	}
	if c.errCode != "" {
		opts = append(opts, withFault(fakeprovider.HeaderErrorCode, c.errCode))
	}
	return opts
}

// matrixResult is what the client saw of one fault.
type matrixResult struct {
	status     int
	typ, code  string
	retryAfter string
	// inStream reports that the error came as an event of a stream that
	// had content before it.
	inStream bool
}

// matrixCall sends one chat request with the SDK and reports the error the
// client got.
func matrixCall(t *testing.T, r *rig, model string, streamed bool, opts []option.RequestOption) matrixResult {
	t.Helper()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: model, Messages: userMsg("one two three four five six seven eight")}
	var err error
	content := ""
	if streamed {
		s := r.client.Chat.Completions.NewStreaming(ctx, params, opts...)
		for s.Next() {
			if ch := s.Current(); len(ch.Choices) > 0 {
				content += ch.Choices[0].Delta.Content
			}
		}
		err = s.Err()
		_ = s.Close()
	} else {
		_, err = r.client.Chat.Completions.New(ctx, params, opts...)
	}
	var ae *openai.Error
	var se *ssestream.StreamError
	switch {
	case errors.As(err, &ae):
		if content != "" {
			t.Errorf("content %q before an error status", content)
		}
		return matrixResult{status: ae.StatusCode, typ: ae.Type, code: ae.Code, retryAfter: ae.Response.Header.Get("retry-after")}
	case errors.As(err, &se):
		if content == "" {
			t.Errorf("in-band error before any content")
		}
		e := gjson.GetBytes(se.Event.Data, "error")
		return matrixResult{status: http.StatusOK, typ: e.Get("type").Str, code: e.Get("code").Str, inStream: true}
	}
	t.Fatalf("want an API or stream error, got %T %v", err, err)
	return matrixResult{}
}

// TestBedrockErrorTypeHeader: Bedrock names its error type only in the
// x-amzn-ErrorType response header; llmux hands that header to the decoder
// (translate.Request.ResponseHeaders), so the type, not the status or the
// message, decides. Here a 429 whose header says ServiceUnavailableException
// (and whose message is the throttling one) must be overloaded, not
// rate_limited.
func TestBedrockErrorTypeHeader(t *testing.T) {
	r, _ := bedrockRig(t, fakeprovider.BedrockOptions{})
	got := matrixCall(t, r, "claude", false, []option.RequestOption{
		withFault(fakeprovider.HeaderStatus, "429"), withFault(fakeprovider.HeaderErrorCode, "ServiceUnavailableException"),
	})
	if want := (matrixResult{status: 503, typ: "server_error", code: "overloaded"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	r.waitNoStreams()
}
