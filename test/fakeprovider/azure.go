package fakeprovider

// Azure OpenAI dialect. Wire formats follow Microsoft's documentation:
//
//   - Data-plane REST reference (paths, api-version, api-key and Entra ID
//     auth, chat completions and embeddings bodies):
//     https://learn.microsoft.com/azure/ai-services/openai/reference
//   - Content filtering (prompt_filter_results, content_filter_results,
//     finish_reason "content_filter", the content_filter error with an
//     innererror): https://learn.microsoft.com/azure/ai-services/openai/concepts/content-filter
//   - Quotas and 429 with retry-after:
//     https://learn.microsoft.com/azure/ai-services/openai/how-to/quota
//
// Chat and embeddings bodies, replies, tool calls and streaming reuse the
// OpenAI dialect; this file adds Azure's paths, api-version, auth, error
// bodies and content-filter annotations.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// Azure-specific request headers.
const (
	// HeaderContentFilter triggers Azure's content filter: "prompt" answers
	// 400 with the content_filter error body; "completion" cuts the reply
	// and finishes it with finish_reason "content_filter".
	HeaderContentFilter = "x-fake-content-filter"
)

// DefaultAzureAPIVersions are the api-version values the Azure fake accepts
// when AzureOptions.APIVersions is empty.
var DefaultAzureAPIVersions = []string{"2024-02-01", "2024-06-01", "2024-10-21", "2024-12-01-preview", "2025-01-01-preview", "2025-04-01-preview"}

// AzureOptions configures the Azure OpenAI fake. The zero value is usable.
type AzureOptions struct {
	// APIKey is the expected api-key header. Empty accepts any non-empty
	// key.
	APIKey string
	// BearerToken is the expected Entra ID token in "Authorization:
	// Bearer". Empty accepts any non-empty token.
	BearerToken string
	// Deployments maps deployment names to the model they serve (echoed
	// as "model"). Empty accepts any deployment, serving a model of the
	// same name; otherwise an unknown deployment is 404
	// DeploymentNotFound.
	Deployments map[string]string
	// APIVersions are the accepted api-version values (default
	// DefaultAzureAPIVersions); a missing or unknown one is 400.
	APIVersions []string
	// Reply, ToolCalls, Created and EmbeddingDimensions are as in
	// OpenAIOptions.
	Reply               string
	ToolCalls           int
	Created             int64
	EmbeddingDimensions int
}

type azureFake struct {
	s    *Server
	opts AzureOptions
	oai  *openAI // reply building and validation
}

// NewAzure starts an Azure OpenAI fake on 127.0.0.1:0 that is closed when
// t's test finishes.
func NewAzure(t testing.TB, opts AzureOptions) *Server {
	t.Helper()
	return newTestServer(t, "azure", func(s *Server) http.Handler { return newAzureHandler(s, opts) })
}

// ListenAzure starts an Azure OpenAI fake on addr (e.g. "127.0.0.1:0") for
// use outside tests. The caller must Close it.
func ListenAzure(addr string, opts AzureOptions) (*Server, error) {
	return newServer("azure", addr, func(s *Server) http.Handler { return newAzureHandler(s, opts) })
}

func newAzureHandler(s *Server, opts AzureOptions) http.Handler {
	if len(opts.APIVersions) == 0 {
		opts.APIVersions = DefaultAzureAPIVersions
	}
	oai := newOpenAIHandler(s, OpenAIOptions{
		Reply: opts.Reply, ToolCalls: opts.ToolCalls, Created: opts.Created,
		EmbeddingDimensions: opts.EmbeddingDimensions, SystemFingerprint: "fp_azure_fake",
	}).(*openAI)
	return &azureFake{s: s, opts: opts, oai: oai}
}

// azError is Azure's error object: a code and a message, sometimes a param,
// a status and an innererror; no "type".
type azError struct {
	Code       string          `json:"code"`
	Message    string          `json:"message"`
	Param      *string         `json:"param,omitempty"`
	Type       *string         `json:"type,omitempty"`
	Status     int             `json:"status,omitempty"`
	InnerError json.RawMessage `json:"innererror,omitempty"`
}

func (e azError) body() []byte {
	b, _ := json.Marshal(struct {
		Error azError `json:"error"`
	}{e})
	return b
}

func (a *azureFake) writeError(w http.ResponseWriter, status int, e azError) {
	b := e.body()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// azureFilterResults is one content_filter_results object; filtered names
// the category that was filtered, if any.
func azureFilterResults(filtered string) json.RawMessage {
	m := map[string]any{}
	for _, c := range []string{"hate", "self_harm", "sexual", "violence"} {
		if c == filtered {
			m[c] = map[string]any{"filtered": true, "severity": "high"}
		} else {
			m[c] = map[string]any{"filtered": false, "severity": "safe"}
		}
	}
	b, _ := json.Marshal(m)
	return b
}

func azurePromptFilterResults(filtered string) json.RawMessage {
	b, _ := json.Marshal([]any{map[string]any{"prompt_index": 0, "content_filter_results": azureFilterResults(filtered)}})
	return b
}

// azureStatusError is the error body Azure sends with status for code (""
// picks the status' most common error): {"error":{"code","message",…}}
// with a string code and no type, as
// https://learn.microsoft.com/azure/ai-services/openai/reference and
// https://learn.microsoft.com/azure/ai-services/openai/how-to/quota show
// (429 code "429" with retry-after and retry-after-ms; 400 content_filter
// with innererror ResponsibleAIPolicyViolation; 404 DeploymentNotFound;
// 500 InternalServerError; 503 ServiceUnavailable).
func azureStatusError(status int, code string) azError {
	switch code {
	case "content_filter":
		inner, _ := json.Marshal(map[string]any{
			"code":                  "ResponsibleAIPolicyViolation",
			"content_filter_result": azureFilterResults("violence"),
		})
		return azError{Code: code, Status: 400, Param: strPtr("prompt"), InnerError: inner,
			Message: "The response was filtered due to the prompt triggering the content management policy (fake)."}
	case "DeploymentNotFound":
		return azError{Code: code, Message: "The API deployment for this resource does not exist (fake)."}
	case "context_length_exceeded":
		return azError{Code: code, Type: strPtr("invalid_request_error"), Param: strPtr("messages"), Message: "This model's maximum context length was exceeded (fake)."}
	case "":
	default:
		e := azureStatusError(status, "")
		e.Code = code
		return e
	}
	switch status {
	case http.StatusBadRequest:
		return azError{Code: "BadRequest", Message: "Invalid request (fake)."}
	case http.StatusUnauthorized:
		return azError{Code: "401", Message: "Access denied: invalid subscription key or wrong API endpoint (fake)."}
	case http.StatusForbidden:
		return azError{Code: "PermissionDenied", Message: "The principal lacks the data action on this resource (fake)."}
	case http.StatusNotFound:
		return azureStatusError(status, "DeploymentNotFound")
	case http.StatusTooManyRequests:
		return azError{Code: "429", Message: "Requests to the ChatCompletions_Create operation have exceeded the rate limit of your pricing tier. Please retry after 1 second (fake)."}
	case http.StatusServiceUnavailable:
		return azError{Code: "ServiceUnavailable", Message: "The service is temporarily unable to process your request (fake)."}
	}
	if status >= 500 {
		return azError{Code: "InternalServerError", Message: "The server had an error while processing your request (fake)."}
	}
	return azError{Code: fmt.Sprint(status), Message: fmt.Sprintf("Request failed with status %d (fake).", status)}
}

func (a *azureFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := a.s.requestID()
	w.Header().Set("apim-request-id", id)
	w.Header().Set("x-request-id", id)
	w.Header().Set("x-ms-region", "Fake Region")
	// /openai/deployments/{deployment}/{operation}
	rest, ok := strings.CutPrefix(strings.TrimSuffix(r.URL.Path, "/"), "/openai/deployments/")
	dep, op, _ := strings.Cut(rest, "/")
	if !ok || dep == "" || (op != "chat/completions" && op != "embeddings") {
		a.writeError(w, http.StatusNotFound, azError{Code: "404", Message: "Resource not found"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.writeError(w, http.StatusMethodNotAllowed, azError{Code: "405", Message: "Method not allowed (fake)."})
		return
	}
	switch v := r.URL.Query().Get("api-version"); {
	case v == "":
		a.writeError(w, http.StatusBadRequest, azError{Code: "BadRequest", Message: "Missing required query parameter: api-version (fake)."})
		return
	case !slices.Contains(a.opts.APIVersions, v):
		a.writeError(w, http.StatusBadRequest, azError{Code: "BadRequest", Message: fmt.Sprintf("API version %s is not supported (fake).", v)})
		return
	}
	f, err := a.s.planFault(r)
	if err != nil {
		a.writeError(w, http.StatusBadRequest, azError{Code: "fakeprovider_bad_header", Message: err.Error()})
		return
	}
	if f.Kind == FaultResetBeforeHeaders {
		abortBeforeHeaders(w, r)
	}
	if f.Status != 0 {
		if needsRetryAfter(f.Status) {
			w.Header().Set("retry-after", f.RetryAfter)
			w.Header().Set("retry-after-ms", f.RetryAfter+"000")
		}
		a.writeError(w, f.Status, azureStatusError(f.Status, f.ErrorCode))
		return
	}
	if e, ok := a.checkAuth(r); !ok {
		a.writeError(w, http.StatusUnauthorized, e)
		return
	}
	model := dep
	if len(a.opts.Deployments) > 0 {
		m, ok := a.opts.Deployments[dep]
		if !ok {
			a.writeError(w, http.StatusNotFound, azureStatusError(http.StatusNotFound, "DeploymentNotFound"))
			return
		}
		model = m
	}
	if op == "embeddings" {
		a.embeddings(w, r, f, model)
		return
	}
	a.chat(w, r, f, model)
}

// checkAuth accepts "api-key: <key>" or "Authorization: Bearer <token>".
func (a *azureFake) checkAuth(r *http.Request) (azError, bool) {
	if key := r.Header.Get("api-key"); key != "" {
		if a.opts.APIKey != "" && key != a.opts.APIKey {
			return azError{Code: "401", Message: "Access denied: invalid subscription key or wrong API endpoint (fake)."}, false
		}
		return azError{}, true
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return azError{Code: "401", Message: "Access denied: missing subscription key or access token (fake)."}, false
	}
	if a.opts.BearerToken != "" && strings.TrimSpace(tok) != a.opts.BearerToken {
		return azError{Code: "InvalidAuthenticationToken", Message: "The access token is invalid or has expired (fake)."}, false
	}
	return azError{}, true
}

// withModel returns body with "model" set when the request has none (Azure
// routes by deployment; the OpenAI validator wants a model).
func withModel(body []byte, model string) []byte {
	if gjson.GetBytes(body, "model").Exists() || !gjson.ValidBytes(body) || !gjson.ParseBytes(body).IsObject() {
		return body
	}
	out, err := sjson.SetBytes(body, "model", model)
	if err != nil {
		return body
	}
	return out
}

func (a *azureFake) chat(w http.ResponseWriter, r *http.Request, f Fault, model string) {
	nTools := a.opts.ToolCalls
	if v := strings.TrimSpace(fakeHeader(r, HeaderToolCalls)); v != "" {
		if _, err := fmt.Sscan(v, &nTools); err != nil || nTools < 0 || nTools > maxToolCalls {
			a.writeError(w, http.StatusBadRequest, azError{Code: "fakeprovider_bad_header", Message: "fakeprovider: invalid " + HeaderToolCalls})
			return
		}
	}
	body, _ := readAll(r)
	req, verr := validateChatRequest(withModel(body, model))
	if verr != nil {
		a.writeError(w, http.StatusBadRequest, azError{Code: strDeref(verr.Code, "BadRequest"), Message: verr.Message, Param: verr.Param, Type: strPtr(verr.Type)})
		return
	}
	filter := strings.ToLower(strings.TrimSpace(fakeHeader(r, HeaderContentFilter)))
	if filter == "prompt" {
		a.writeError(w, http.StatusBadRequest, azureStatusError(http.StatusBadRequest, "content_filter"))
		return
	}
	req.model = model
	rep := a.oai.buildReply(r, req, nTools)
	if filter == "completion" && len(rep.toolCalls) == 0 {
		// The filter stops the output halfway.
		rep.pieces = rep.pieces[:(len(rep.pieces)+1)/2]
		rep.text = strings.Join(rep.pieces, "")
	}
	if f.Kind == FaultInbandError && !req.stream {
		a.s.writeBody(w, r, Fault{Hold: f.Hold}, http.StatusOK, "application/json", azureStatusError(http.StatusInternalServerError, f.ErrorCode).body())
		return
	}
	if !req.stream {
		b, _ := json.Marshal(rep.completion(a.oai.opts.SystemFingerprint))
		b, _ = sjson.SetRawBytes(b, "prompt_filter_results", azurePromptFilterResults(""))
		for i := range rep.n {
			cat := ""
			if filter == "completion" {
				cat = "violence"
				b, _ = sjson.SetBytes(b, fmt.Sprintf("choices.%d.finish_reason", i), "content_filter")
			}
			b, _ = sjson.SetRawBytes(b, fmt.Sprintf("choices.%d.content_filter_results", i), azureFilterResults(cat))
		}
		a.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
		return
	}
	p := rep.streamPlan(a.oai.opts.SystemFingerprint, req.includeUsage, f.ErrorCode)
	p.inband = sseData(azureStatusError(http.StatusInternalServerError, f.ErrorCode).body())
	frames := make([][]byte, 0, len(p.frames)+1)
	// Azure's first chunk: prompt annotations, empty choices, no id.
	first, _ := json.Marshal(map[string]any{"choices": []any{}, "created": 0, "id": "", "model": "", "object": "",
		"prompt_filter_results": azurePromptFilterResults("")})
	frames = append(frames, sseData(first))
	for i, fr := range p.frames {
		payload := sseDataPayload(fr)
		choices := gjson.GetBytes(payload, "choices")
		if !choices.IsArray() || len(choices.Array()) == 0 {
			frames = append(frames, fr)
			continue
		}
		for ci := range choices.Array() {
			cf := azureFilterResults("")
			if i == 0 {
				cf = json.RawMessage(`{}`) // the role chunk carries an empty object
			}
			if fin := choices.Get(fmt.Sprintf("%d.finish_reason", ci)); fin.Type == gjson.String && filter == "completion" {
				payload, _ = sjson.SetBytes(payload, fmt.Sprintf("choices.%d.finish_reason", ci), "content_filter")
				cf = azureFilterResults("violence")
			}
			payload, _ = sjson.SetRawBytes(payload, fmt.Sprintf("choices.%d.content_filter_results", ci), cf)
		}
		frames = append(frames, sseData(payload))
	}
	p.frames = frames
	a.s.stream(w, r, f, p)
}

func (a *azureFake) embeddings(w http.ResponseWriter, r *http.Request, f Fault, model string) {
	body, _ := readAll(r)
	req, verr := validateEmbeddingsRequest(withModel(body, model))
	if verr != nil {
		a.writeError(w, http.StatusBadRequest, azError{Code: strDeref(verr.Code, "BadRequest"), Message: verr.Message, Param: verr.Param, Type: strPtr(verr.Type)})
		return
	}
	req.model = model
	b := a.oai.embeddingsBody(req)
	if f.Kind == FaultInbandError {
		b = azureStatusError(http.StatusInternalServerError, f.ErrorCode).body()
		f = Fault{Hold: f.Hold}
	}
	a.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
}

func strDeref(p *string, def string) string {
	if p == nil || *p == "" {
		return def
	}
	return *p
}
