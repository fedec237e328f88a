package fakeprovider

// Gemini dialect (Google AI Studio and Vertex AI). Wire formats follow the
// official references:
//
//   - generateContent / streamGenerateContent (request, response, SSE):
//     https://ai.google.dev/api/generate-content and
//     https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/inference
//   - Schema (the OpenAPI subset of function parameters and responseSchema):
//     https://ai.google.dev/api/caching#Schema
//   - Embeddings: https://ai.google.dev/api/embeddings (batchEmbedContents)
//     and https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/text-embeddings-api (predict)
//   - Errors (google.rpc.Status JSON): https://ai.google.dev/gemini-api/docs/troubleshooting
//   - Thinking (thinkingConfig, thought summaries as parts with
//     thought: true, usageMetadata.thoughtsTokenCount):
//     https://ai.google.dev/gemini-api/docs/thinking

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// GeminiOptions configures the Gemini / Vertex AI fake. The zero value is
// usable.
type GeminiOptions struct {
	// APIKey is the expected x-goog-api-key on AI Studio paths. Empty
	// accepts any non-empty key.
	APIKey string
	// OAuth, when set, is the token endpoint whose issued tokens Vertex
	// paths accept as "Authorization: Bearer".
	OAuth *GCPOAuth
	// BearerToken is accepted on Vertex paths as well (for tests without
	// OAuth). With neither OAuth nor BearerToken any bearer is accepted.
	BearerToken string
	// Reply is the model's reply text. Empty means
	// "Hello from fake-gemini: <last user text>".
	Reply string
	// ToolCalls is how many parallel function calls to answer with when the
	// request declares functions, its last turn is user text and the mode
	// is not NONE (0: text). HeaderToolCalls overrides it per request.
	ToolCalls int
	// WordsPerChunk is how many words each streamed event carries (default 1).
	WordsPerChunk int
	// EmbeddingDimensions is the vector length without outputDimensionality
	// (default 8).
	EmbeddingDimensions int
	// Script queues fault plans; see Server.Enqueue.
	Script []Fault
}

type geminiFake struct {
	s    *Server
	opts GeminiOptions
}

// NewGemini starts a Gemini fake (AI Studio and Vertex AI paths) on
// 127.0.0.1:0 that is closed when t's test finishes.
func NewGemini(t testing.TB, opts GeminiOptions) *Server {
	t.Helper()
	return newTestServer(t, "gemini", func(s *Server) http.Handler { return newGeminiHandler(s, opts) })
}

// ListenGemini starts a Gemini fake on addr for use outside tests. The
// caller must Close it.
func ListenGemini(addr string, opts GeminiOptions) (*Server, error) {
	return newServer("gemini", addr, func(s *Server) http.Handler { return newGeminiHandler(s, opts) })
}

func newGeminiHandler(s *Server, opts GeminiOptions) http.Handler {
	if opts.WordsPerChunk <= 0 {
		opts.WordsPerChunk = 1
	}
	if opts.EmbeddingDimensions <= 0 {
		opts.EmbeddingDimensions = 8
	}
	s.Enqueue(opts.Script...)
	return &geminiFake{s: s, opts: opts}
}

// googleError is the google.rpc.Status error body.
func googleError(code int, status, msg string, details ...any) []byte {
	e := map[string]any{"code": code, "message": msg, "status": status}
	if len(details) > 0 {
		e["details"] = details
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return b
}

func writeGoogleError(w http.ResponseWriter, code int, status, msg string, details ...any) {
	b := googleError(code, status, msg, details...)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// geminiStatusError is the error body Google sends with status for an
// x-fake-error-code ("" picks the status' most common error): the
// google.rpc.Status JSON of https://cloud.google.com/apis/design/errors,
// with the statuses of https://ai.google.dev/gemini-api/docs/troubleshooting
// (429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE, 504
// DEADLINE_EXCEEDED). Neither API sends retry-after: the Gemini API puts a
// google.rpc.RetryInfo detail ({"retryDelay":"<retryAfter>s"}) in its 429
// bodies, next to QuotaFailure and Help; Vertex AI's 429 is the bare
// "Resource exhausted" of
// https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429.
func geminiStatusError(status int, code string, vertex bool, retryAfter string) []byte {
	retryInfo := map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retryAfter + "s"}
	help := map[string]any{"@type": "type.googleapis.com/google.rpc.Help", "links": []any{map[string]any{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}}}
	switch code {
	case "api_key_invalid":
		return googleError(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key. (fake)",
			map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"})
	case "context_length_exceeded":
		return googleError(400, "INVALID_ARGUMENT", "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576). (fake)")
	case "quota", "insufficient_quota":
		// A daily quota: no RetryInfo (waiting seconds does not help).
		return googleError(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. (fake)",
			map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}}}, help)
	}
	switch status {
	case 400:
		return googleError(400, "INVALID_ARGUMENT", "Request contains an invalid argument. (fake)")
	case 401:
		return googleError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. (fake)")
	case 403:
		return googleError(403, "PERMISSION_DENIED", "Permission denied on resource project fake-project. (fake)")
	case 404:
		return googleError(404, "NOT_FOUND", "models/unknown is not found for API version v1beta. (fake)")
	case 429:
		if vertex {
			return googleError(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details. (fake)")
		}
		return googleError(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10 per minute. Please retry in "+retryAfter+"s. (fake)",
			map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}}}, help, retryInfo)
	case 500:
		return googleError(500, "INTERNAL", "An internal error has occurred. (fake)")
	case 503:
		return googleError(503, "UNAVAILABLE", "The model is overloaded. Please try again later. (fake)")
	case 504:
		return googleError(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete. (fake)")
	}
	return googleError(status, "UNKNOWN", fmt.Sprintf("Request failed with status %d. (fake)", status))
}

var (
	aiStudioPath = regexp.MustCompile(`^/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent|batchEmbedContents)$`)
	vertexPath   = regexp.MustCompile(`^/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):(generateContent|streamGenerateContent|predict)$`)
)

func (g *geminiFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var model, method string
	vertex := false
	if m := aiStudioPath.FindStringSubmatch(r.URL.Path); m != nil {
		model, method = m[1], m[2]
	} else if m := vertexPath.FindStringSubmatch(r.URL.Path); m != nil {
		model, method, vertex = m[3], m[4], true
	} else {
		writeGoogleError(w, http.StatusNotFound, "NOT_FOUND", "fakeprovider: unknown path "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeGoogleError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "Method "+r.Method+" not allowed; use POST.")
		return
	}
	f, err := g.s.planFault(r)
	if err != nil {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if f.Kind == FaultResetBeforeHeaders {
		abortBeforeHeaders(w, r)
	}
	if f.Status != 0 {
		b := geminiStatusError(f.Status, f.ErrorCode, vertex, f.RetryAfter)
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(f.Status)
		_, _ = w.Write(b)
		return
	}
	if !g.authorized(w, r, vertex) {
		return
	}
	body, _ := readGeminiBody(r)
	switch method {
	case "generateContent", "streamGenerateContent":
		stream := method == "streamGenerateContent"
		if stream && r.URL.Query().Get("alt") != "sse" {
			writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "fakeprovider: streamGenerateContent is only served with alt=sse")
			return
		}
		req, err := parseGenerateRequest(body)
		if err == nil {
			err = checkThinking(model, req)
		}
		if err != nil {
			writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
			return
		}
		g.generate(w, r, f, model, req, stream)
	case "batchEmbedContents":
		g.batchEmbed(w, r, f, model, body)
	case "predict":
		g.predict(w, r, f, body)
	}
}

func readGeminiBody(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r.Body)
	return b.Bytes(), err
}

// authorized checks x-goog-api-key (AI Studio) or the OAuth bearer (Vertex).
func (g *geminiFake) authorized(w http.ResponseWriter, r *http.Request, vertex bool) bool {
	if !vertex {
		key := r.Header.Get("x-goog-api-key")
		if key == "" || (g.opts.APIKey != "" && key != g.opts.APIKey) {
			b := geminiStatusError(400, "api_key_invalid", false, "")
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write(b)
			return false
		}
		return true
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	ok := strings.EqualFold(scheme, "Bearer") && tok != ""
	if ok && (g.opts.OAuth != nil || g.opts.BearerToken != "") {
		ok = (g.opts.BearerToken != "" && tok == g.opts.BearerToken) || (g.opts.OAuth != nil && g.opts.OAuth.Valid(tok))
	}
	if !ok {
		writeGoogleError(w, http.StatusUnauthorized, "UNAUTHENTICATED",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. (fake)")
	}
	return ok
}

// ---- request schema (strict) ----

type gBlob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

type gFileData struct {
	MimeType string `json:"mimeType"`
	FileURI  string `json:"fileUri"`
}

type gFunctionCall struct {
	ID   string         `json:"id,omitempty"`
	Name string         `json:"name"`
	Args map[string]any `json:"args,omitempty"`
}

type gFunctionResponse struct {
	ID       string         `json:"id,omitempty"`
	Name     string         `json:"name"`
	Response map[string]any `json:"response"`
}

type gPart struct {
	Text             *string            `json:"text,omitempty"`
	InlineData       *gBlob             `json:"inlineData,omitempty"`
	FileData         *gFileData         `json:"fileData,omitempty"`
	FunctionCall     *gFunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse *gFunctionResponse `json:"functionResponse,omitempty"`
	Thought          bool               `json:"thought,omitempty"`
	ThoughtSignature string             `json:"thoughtSignature,omitempty"`
}

type gContent struct {
	Role  string  `json:"role,omitempty"`
	Parts []gPart `json:"parts"`
}

type gFunctionDeclaration struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Response    json.RawMessage `json:"response,omitempty"`
}

type gTool struct {
	FunctionDeclarations []gFunctionDeclaration `json:"functionDeclarations,omitempty"`
}

type gToolConfig struct {
	FunctionCallingConfig *struct {
		Mode                 string   `json:"mode,omitempty"`
		AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
	} `json:"functionCallingConfig,omitempty"`
}

type gGenerationConfig struct {
	StopSequences    []string        `json:"stopSequences,omitempty"`
	ResponseMimeType string          `json:"responseMimeType,omitempty"`
	ResponseSchema   json.RawMessage `json:"responseSchema,omitempty"`
	CandidateCount   *int            `json:"candidateCount,omitempty"`
	MaxOutputTokens  *int            `json:"maxOutputTokens,omitempty"`
	Temperature      *float64        `json:"temperature,omitempty"`
	TopP             *float64        `json:"topP,omitempty"`
	TopK             *int            `json:"topK,omitempty"`
	Seed             *int64          `json:"seed,omitempty"`
	PresencePenalty  *float64        `json:"presencePenalty,omitempty"`
	FrequencyPenalty *float64        `json:"frequencyPenalty,omitempty"`
	ThinkingConfig   *struct {
		ThinkingBudget  *int   `json:"thinkingBudget,omitempty"`
		ThinkingLevel   string `json:"thinkingLevel,omitempty"`
		IncludeThoughts bool   `json:"includeThoughts,omitempty"`
	} `json:"thinkingConfig,omitempty"`
}

type gGenerateRequest struct {
	Contents          []gContent         `json:"contents"`
	SystemInstruction *gContent          `json:"systemInstruction,omitempty"`
	Tools             []gTool            `json:"tools,omitempty"`
	ToolConfig        *gToolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *gGenerationConfig `json:"generationConfig,omitempty"`
	SafetySettings    []json.RawMessage  `json:"safetySettings,omitempty"`
	CachedContent     string             `json:"cachedContent,omitempty"`
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("Invalid JSON payload received. %v", err)
	}
	if dec.More() {
		return fmt.Errorf("Invalid JSON payload received. Unexpected data after the object.")
	}
	return nil
}

var functionName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$`)

// parseGenerateRequest decodes and validates a GenerateContentRequest.
func parseGenerateRequest(b []byte) (*gGenerateRequest, error) {
	var req gGenerateRequest
	if err := strictDecode(b, &req); err != nil {
		return nil, err
	}
	if len(req.Contents) == 0 {
		return nil, fmt.Errorf("* GenerateContentRequest.contents: contents is not specified")
	}
	for i, c := range req.Contents {
		if c.Role != "user" && c.Role != "model" {
			return nil, fmt.Errorf("* GenerateContentRequest.contents[%d].role: Please use a valid role: user, model.", i)
		}
		if err := validateParts(fmt.Sprintf("contents[%d]", i), c.Parts); err != nil {
			return nil, err
		}
	}
	if si := req.SystemInstruction; si != nil {
		for j, p := range si.Parts {
			if p.Text == nil || p.InlineData != nil || p.FunctionCall != nil || p.FunctionResponse != nil {
				return nil, fmt.Errorf("* GenerateContentRequest.system_instruction.parts[%d]: only text parts are allowed", j)
			}
		}
	}
	declared := map[string]bool{}
	for i, t := range req.Tools {
		for j, fd := range t.FunctionDeclarations {
			p := fmt.Sprintf("tools[%d].function_declarations[%d]", i, j)
			if !functionName.MatchString(fd.Name) {
				return nil, fmt.Errorf("* GenerateContentRequest.%s.name: Invalid function name.", p)
			}
			declared[fd.Name] = true
			if len(fd.Parameters) > 0 {
				if err := validateSchema(p+".parameters", fd.Parameters); err != nil {
					return nil, err
				}
			}
		}
	}
	if tc := req.ToolConfig; tc != nil && tc.FunctionCallingConfig != nil {
		fc := tc.FunctionCallingConfig
		switch fc.Mode {
		case "", "AUTO", "ANY", "NONE", "VALIDATED":
		default:
			return nil, fmt.Errorf("* GenerateContentRequest.tool_config.function_calling_config.mode: invalid value %q", fc.Mode)
		}
		if len(fc.AllowedFunctionNames) > 0 && fc.Mode != "ANY" && fc.Mode != "VALIDATED" {
			return nil, fmt.Errorf("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only allowed with mode ANY")
		}
		for _, n := range fc.AllowedFunctionNames {
			if !declared[n] {
				return nil, fmt.Errorf("* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: %q is not declared", n)
			}
		}
	}
	if gc := req.GenerationConfig; gc != nil {
		if gc.CandidateCount != nil && (*gc.CandidateCount < 1 || *gc.CandidateCount > 8) {
			return nil, fmt.Errorf("* GenerateContentRequest.generation_config.candidate_count: must be 1 to 8")
		}
		if len(gc.ResponseSchema) > 0 {
			if gc.ResponseMimeType != "application/json" {
				return nil, fmt.Errorf("* GenerateContentRequest.generation_config.response_schema: only allowed with response_mime_type application/json")
			}
			if err := validateSchema("generation_config.response_schema", gc.ResponseSchema); err != nil {
				return nil, err
			}
		}
		if len(gc.StopSequences) > 5 {
			return nil, fmt.Errorf("* GenerateContentRequest.generation_config.stop_sequences: at most 5")
		}
	}
	return &req, nil
}

func validateParts(p string, parts []gPart) error {
	if len(parts) == 0 {
		return fmt.Errorf("* GenerateContentRequest.%s.parts: contents.parts must not be empty.", p)
	}
	for j, part := range parts {
		pp := fmt.Sprintf("GenerateContentRequest.%s.parts[%d]", p, j)
		n := 0
		if part.Text != nil {
			n++
			if *part.Text == "" && !part.Thought {
				return fmt.Errorf("* %s.text: Unable to submit request because it has an empty text parameter.", pp)
			}
		}
		if part.InlineData != nil {
			n++
			if part.InlineData.MimeType == "" {
				return fmt.Errorf("* %s.inline_data.mime_type: required", pp)
			}
			if _, err := base64.StdEncoding.DecodeString(part.InlineData.Data); err != nil || part.InlineData.Data == "" {
				return fmt.Errorf("* %s.inline_data.data: Invalid value (bytes): invalid base64", pp)
			}
		}
		if part.FileData != nil {
			n++
			if part.FileData.FileURI == "" || part.FileData.MimeType == "" {
				return fmt.Errorf("* %s.file_data: file_uri and mime_type are required", pp)
			}
		}
		if part.FunctionCall != nil {
			n++
			if part.FunctionCall.Name == "" {
				return fmt.Errorf("* %s.function_call.name: Name cannot be empty.", pp)
			}
		}
		if part.FunctionResponse != nil {
			n++
			if part.FunctionResponse.Name == "" {
				return fmt.Errorf("* %s.function_response.name: Name cannot be empty.", pp)
			}
			if part.FunctionResponse.Response == nil {
				return fmt.Errorf("* %s.function_response.response: must be an object", pp)
			}
		}
		if n != 1 {
			return fmt.Errorf("* %s: a part must hold exactly one of text, inline_data, file_data, function_call, function_response", pp)
		}
	}
	return nil
}

// schemaFields are the Schema fields Gemini accepts.
var schemaFields = map[string]bool{
	"type": true, "format": true, "title": true, "description": true, "nullable": true, "enum": true,
	"maxItems": true, "minItems": true, "properties": true, "required": true, "minProperties": true,
	"maxProperties": true, "minLength": true, "maxLength": true, "pattern": true, "example": true,
	"anyOf": true, "propertyOrdering": true, "default": true, "items": true, "minimum": true, "maximum": true,
}

var schemaTypes = map[string]bool{
	"TYPE_UNSPECIFIED": true, "STRING": true, "NUMBER": true, "INTEGER": true, "BOOLEAN": true, "ARRAY": true, "OBJECT": true, "NULL": true,
}

// validateSchema rejects what Gemini's Schema does not accept
// (additionalProperties, $schema, $ref, const, type arrays, …).
func validateSchema(p string, raw json.RawMessage) error {
	var s any
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("* GenerateContentRequest.%s: invalid JSON", p)
	}
	return checkSchema(p, s, 0)
}

func checkSchema(p string, v any, depth int) error {
	if depth > 64 {
		return fmt.Errorf("* GenerateContentRequest.%s: schema too deep", p)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("* GenerateContentRequest.%s: a schema must be an object", p)
	}
	for k := range m {
		if !schemaFields[k] {
			return fmt.Errorf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", k, p)
		}
	}
	typ := ""
	if t, ok := m["type"]; ok {
		ts, ok := t.(string)
		if !ok || !schemaTypes[strings.ToUpper(ts)] {
			return fmt.Errorf("Invalid value at '%s.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), %v", p, t)
		}
		typ = strings.ToUpper(ts)
	}
	if e, ok := m["enum"]; ok {
		list, ok := e.([]any)
		if !ok {
			return fmt.Errorf("* GenerateContentRequest.%s.enum: must be a list of strings", p)
		}
		for _, x := range list {
			if _, ok := x.(string); !ok {
				return fmt.Errorf("Invalid value at '%s.enum': %v is not a string", p, x)
			}
		}
	}
	props, _ := m["properties"].(map[string]any)
	if _, has := m["properties"]; has && props == nil {
		return fmt.Errorf("* GenerateContentRequest.%s.properties: must be an object", p)
	}
	for name, sub := range props {
		if err := checkSchema(p+".properties["+name+"]", sub, depth+1); err != nil {
			return err
		}
	}
	if req, ok := m["required"]; ok {
		list, _ := req.([]any)
		for _, r := range list {
			name, _ := r.(string)
			if _, ok := props[name]; !ok {
				return fmt.Errorf("* GenerateContentRequest.%s.required[%v]: property is not defined", p, r)
			}
		}
	}
	if typ == "OBJECT" && depth == 0 && len(props) == 0 {
		return fmt.Errorf("* GenerateContentRequest.%s.properties: should be non-empty for OBJECT type", p)
	}
	if it, ok := m["items"]; ok {
		if err := checkSchema(p+".items", it, depth+1); err != nil {
			return err
		}
	}
	if a, ok := m["anyOf"]; ok {
		list, _ := a.([]any)
		for i, sub := range list {
			if err := checkSchema(fmt.Sprintf("%s.any_of[%d]", p, i), sub, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- responses ----

func (g *geminiFake) replyText(r *http.Request, req *gGenerateRequest) string {
	if v := fakeHeader(r, HeaderReply); v != "" {
		return v
	}
	if g.opts.Reply != "" {
		return g.opts.Reply
	}
	last := ""
	for _, c := range req.Contents {
		if c.Role != "user" {
			continue
		}
		for _, p := range c.Parts {
			switch {
			case p.Text != nil:
				last = *p.Text
			case p.FunctionResponse != nil:
				b, _ := json.Marshal(p.FunctionResponse.Response)
				last = p.FunctionResponse.Name + " returned " + string(b)
			case p.InlineData != nil:
				last = "an attachment of type " + p.InlineData.MimeType
			}
		}
	}
	return "Hello from fake-gemini: " + last
}

// toolCalls returns the function calls to answer with, or nil.
func (g *geminiFake) toolCalls(r *http.Request, req *gGenerateRequest) []map[string]any {
	n := g.opts.ToolCalls
	if v := fakeHeader(r, HeaderToolCalls); v != "" {
		n, _ = strconv.Atoi(v)
	}
	var decls []gFunctionDeclaration
	for _, t := range req.Tools {
		decls = append(decls, t.FunctionDeclarations...)
	}
	mode := ""
	var allowed []string
	if tc := req.ToolConfig; tc != nil && tc.FunctionCallingConfig != nil {
		mode, allowed = tc.FunctionCallingConfig.Mode, tc.FunctionCallingConfig.AllowedFunctionNames
	}
	if n <= 0 || len(decls) == 0 || mode == "NONE" {
		return nil
	}
	last := req.Contents[len(req.Contents)-1]
	if last.Role != "user" || last.Parts[0].Text == nil {
		return nil // answer function results with text
	}
	var calls []map[string]any
	for i := 0; i < n; i++ {
		d := decls[i%len(decls)]
		if len(allowed) > 0 {
			for _, a := range decls {
				if a.Name == allowed[i%len(allowed)] {
					d = a
				}
			}
		}
		var schema any
		_ = json.Unmarshal(d.Parameters, &schema)
		args, _ := sampleValue(schema, i).(map[string]any)
		if args == nil {
			args = map[string]any{}
		}
		calls = append(calls, map[string]any{"functionCall": map[string]any{"name": d.Name, "args": args}})
	}
	return calls
}

// sampleValue returns a value of Gemini schema s (n varies it).
func sampleValue(s any, n int) any {
	m, _ := s.(map[string]any)
	if m == nil {
		return nil
	}
	if e, ok := m["enum"].([]any); ok && len(e) > 0 {
		return e[n%len(e)]
	}
	if a, ok := m["anyOf"].([]any); ok && len(a) > 0 {
		return sampleValue(a[0], n)
	}
	switch t, _ := m["type"].(string); strings.ToUpper(t) {
	case "STRING":
		return "value-" + strconv.Itoa(n)
	case "INTEGER":
		return n + 1
	case "NUMBER":
		return float64(n) + 0.5
	case "BOOLEAN":
		return n%2 == 0
	case "ARRAY":
		return []any{sampleValue(m["items"], n)}
	default:
		out := map[string]any{}
		props, _ := m["properties"].(map[string]any)
		for k, v := range props {
			out[k] = sampleValue(v, n)
		}
		return out
	}
}

func (g *geminiFake) promptTokens(req *gGenerateRequest) int {
	n := 0
	for _, c := range req.Contents {
		for _, p := range c.Parts {
			if p.Text != nil {
				n += countWords(*p.Text)
			} else {
				n += 4
			}
		}
	}
	if req.SystemInstruction != nil {
		for _, p := range req.SystemInstruction.Parts {
			if p.Text != nil {
				n += countWords(*p.Text)
			}
		}
	}
	return max(n, 1)
}

// checkThinking validates generationConfig.thinkingConfig against the
// model (https://ai.google.dev/gemini-api/docs/thinking): thinkingBudget
// -1 (dynamic) or 0 to 32768, and never 0 on the Pro models, which only
// work in thinking mode.
func checkThinking(model string, req *gGenerateRequest) error {
	gc := req.GenerationConfig
	if gc == nil || gc.ThinkingConfig == nil || gc.ThinkingConfig.ThinkingBudget == nil {
		return nil
	}
	b := *gc.ThinkingConfig.ThinkingBudget
	switch {
	case b < -1 || b > 32768:
		return fmt.Errorf("* GenerateContentRequest.generation_config.thinking_config.thinking_budget: The thinking budget %d is invalid. Please choose a value between -1 and 32768.", b)
	case b == 0 && strings.Contains(model, "pro"):
		return fmt.Errorf("Budget 0 is invalid. This model only works in thinking mode.")
	}
	return nil
}

// thoughts returns the thought summary to send (empty when the request
// did not ask for thoughts) and the thinking tokens to report (zero when
// thinking is off).
func thoughts(req *gGenerateRequest, userText string) (summary string, tokens int) {
	gc := req.GenerationConfig
	if gc == nil || gc.ThinkingConfig == nil {
		return "", 0
	}
	tc := gc.ThinkingConfig
	if tc.ThinkingBudget != nil && *tc.ThinkingBudget == 0 {
		return "", 0
	}
	text := FakeThinking(userText)
	if !tc.IncludeThoughts {
		return "", countWords(text)
	}
	return text, countWords(text)
}

func (g *geminiFake) generate(w http.ResponseWriter, r *http.Request, f Fault, model string, req *gGenerateRequest, stream bool) {
	id := g.s.requestID()
	calls := g.toolCalls(r, req)
	text := continueText(r, g.replyText(r, req)) // continuation.go
	thought, thoughtTokens := thoughts(req, text)
	if gc := req.GenerationConfig; gc != nil && gc.ResponseMimeType == "application/json" && calls == nil {
		var schema any
		_ = json.Unmarshal(gc.ResponseSchema, &schema)
		v := sampleValue(schema, 0)
		if v == nil {
			v = map[string]any{"reply": text}
		}
		b, _ := json.Marshal(v)
		text = string(b)
	}
	candidates := 1
	if gc := req.GenerationConfig; gc != nil && gc.CandidateCount != nil {
		candidates = *gc.CandidateCount
	}
	prompt := g.promptTokens(req)
	out := countWords(text)
	if calls != nil {
		out = 5 * len(calls)
	}
	usage := map[string]any{"promptTokenCount": prompt, "candidatesTokenCount": out * candidates, "totalTokenCount": prompt + out*candidates + thoughtTokens}
	if thoughtTokens > 0 {
		usage["thoughtsTokenCount"] = thoughtTokens
	}
	mk := func(cands []any, u map[string]any) []byte {
		resp := map[string]any{"candidates": cands, "modelVersion": model, "responseId": id}
		if u != nil {
			resp["usageMetadata"] = u
		}
		b, _ := json.Marshal(resp)
		return b
	}
	var parts []any
	if calls != nil {
		for _, c := range calls {
			parts = append(parts, c)
		}
	} else {
		parts = []any{map[string]any{"text": text}}
	}
	if thought != "" {
		// Thought summaries come first, as parts with thought: true.
		parts = append([]any{map[string]any{"text": thought, "thought": true}}, parts...)
	}
	if !stream {
		var cands []any
		for i := 0; i < candidates; i++ {
			cands = append(cands, map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "finishReason": "STOP", "index": i})
		}
		b := mk(cands, usage)
		if f.Kind == FaultInbandError {
			b = googleError(500, "INTERNAL", "An internal error has occurred. (fake in-band)")
		}
		g.s.writeBody(w, r, f, http.StatusOK, "application/json; charset=UTF-8", b)
		return
	}
	frame := func(b []byte) []byte { return append(append([]byte("data: "), b...), "\r\n\r\n"...) }
	var frames [][]byte
	partial := map[string]any{"promptTokenCount": prompt, "totalTokenCount": prompt}
	// textFrames streams text as events of WordsPerChunk words, each but
	// the first with its leading space; thought parts carry thought: true.
	textFrames := func(text string, thought bool) {
		words := strings.Fields(text)
		for i := 0; i < len(words); i += g.opts.WordsPerChunk {
			piece := strings.Join(words[i:min(i+g.opts.WordsPerChunk, len(words))], " ")
			if i > 0 {
				piece = " " + piece
			}
			part := map[string]any{"text": piece}
			if thought {
				part["thought"] = true
			}
			var cands []any
			for c := 0; c < candidates; c++ {
				cands = append(cands, map[string]any{"content": map[string]any{"role": "model", "parts": []any{part}}, "index": c})
			}
			frames = append(frames, frame(mk(cands, partial)))
		}
	}
	textFrames(thought, true)
	if calls != nil {
		var cands []any
		for i := 0; i < candidates; i++ {
			cands = append(cands, map[string]any{"content": map[string]any{"role": "model", "parts": parts[len(parts)-len(calls):]}, "index": i})
		}
		frames = append(frames, frame(mk(cands, partial)))
	} else {
		textFrames(text, false)
	}
	var last []any
	for c := 0; c < candidates; c++ {
		last = append(last, map[string]any{"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": ""}}}, "finishReason": "STOP", "index": c})
	}
	frames = append(frames, frame(mk(last, usage)))
	g.s.stream(w, r, f, streamPlan{
		contentType: "text/event-stream",
		frames:      frames,
		tail:        1,
		inband:      frame(googleError(500, "INTERNAL", "An internal error has occurred. (fake in-band)")),
	})
}

// fakeVector returns a deterministic unit vector for text.
func fakeVector(text string, dims int) []float64 {
	v := make([]float64, dims)
	var norm float64
	seed := sha256.Sum256([]byte(text))
	for i := range v {
		h := sha256.Sum256(append(seed[:], byte(i), byte(i>>8)))
		x := float64(binary.LittleEndian.Uint32(h[:4]))/math.MaxUint32*2 - 1
		v[i] = x
		norm += x * x
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = math.Round(v[i]/norm*1e6) / 1e6
	}
	return v
}

func (g *geminiFake) batchEmbed(w http.ResponseWriter, r *http.Request, f Fault, model string, body []byte) {
	var req struct {
		Requests []struct {
			Model                string   `json:"model"`
			Content              gContent `json:"content"`
			TaskType             string   `json:"taskType,omitempty"`
			Title                string   `json:"title,omitempty"`
			OutputDimensionality *int     `json:"outputDimensionality,omitempty"`
		} `json:"requests"`
	}
	if err := strictDecode(body, &req); err != nil {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if len(req.Requests) == 0 || len(req.Requests) > 250 {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "* BatchEmbedContentsRequest.requests: 1 to 250 requests")
		return
	}
	var embs []any
	for i, rq := range req.Requests {
		if rq.Model != "models/"+model {
			writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("* BatchEmbedContentsRequest.requests[%d].model: Model names should match the parent (models/%s).", i, model))
			return
		}
		if err := validateParts(fmt.Sprintf("requests[%d].content", i), rq.Content.Parts); err != nil || rq.Content.Parts[0].Text == nil {
			writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("* BatchEmbedContentsRequest.requests[%d].content: one text part required", i))
			return
		}
		dims := g.opts.EmbeddingDimensions
		if rq.OutputDimensionality != nil {
			dims = *rq.OutputDimensionality
		}
		embs = append(embs, map[string]any{"values": fakeVector(*rq.Content.Parts[0].Text, dims)})
	}
	b, _ := json.Marshal(map[string]any{"embeddings": embs})
	g.s.writeBody(w, r, f, http.StatusOK, "application/json; charset=UTF-8", b)
}

func (g *geminiFake) predict(w http.ResponseWriter, r *http.Request, f Fault, body []byte) {
	var req struct {
		Instances []struct {
			Content  string `json:"content"`
			TaskType string `json:"task_type,omitempty"`
			Title    string `json:"title,omitempty"`
		} `json:"instances"`
		Parameters *struct {
			AutoTruncate         *bool `json:"autoTruncate,omitempty"`
			OutputDimensionality *int  `json:"outputDimensionality,omitempty"`
		} `json:"parameters,omitempty"`
	}
	if err := strictDecode(body, &req); err != nil {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if len(req.Instances) == 0 {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "instances must not be empty")
		return
	}
	dims := g.opts.EmbeddingDimensions
	if req.Parameters != nil && req.Parameters.OutputDimensionality != nil {
		dims = *req.Parameters.OutputDimensionality
	}
	var preds []any
	for _, in := range req.Instances {
		if in.Content == "" {
			writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "instance content must not be empty")
			return
		}
		preds = append(preds, map[string]any{"embeddings": map[string]any{
			"statistics": map[string]any{"truncated": false, "token_count": max(countWords(in.Content), 1)},
			"values":     fakeVector(in.Content, dims),
		}})
	}
	b, _ := json.Marshal(map[string]any{"predictions": preds, "metadata": map[string]any{"billableCharacterCount": len(body)}})
	g.s.writeBody(w, r, f, http.StatusOK, "application/json; charset=UTF-8", b)
}
