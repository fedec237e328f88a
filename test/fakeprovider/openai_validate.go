package fakeprovider

// Strict request validation for the OpenAI fake, modelled on the request
// schemas in https://platform.openai.com/docs/api-reference/chat/create and
// https://platform.openai.com/docs/api-reference/embeddings/create, and on
// the error body described in https://platform.openai.com/docs/guides/error-codes.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// readAll returns the (already buffered) request body.
func readAll(r *http.Request) ([]byte, error) { return io.ReadAll(r.Body) }

// jsonKind classifies a raw JSON value.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "null"
	}
	switch raw[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	if _, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return "integer"
	}
	return "number"
}

func isNull(raw json.RawMessage) bool { return jsonKind(raw) == "null" }

func article(kind string) string {
	switch kind {
	case "integer", "object", "array":
		return "an " + kind
	}
	return "a " + kind
}

func typeError(param, want string, raw json.RawMessage) *oaiError {
	e := invalidRequest(fmt.Sprintf("Invalid type for '%s': expected %s, but got %s instead.", param, want, article(jsonKind(raw))), param, "invalid_type")
	return &e
}

func valueError(param, msg string) *oaiError {
	e := invalidRequest(fmt.Sprintf("Invalid value for '%s': %s", param, msg), param, "invalid_value")
	return &e
}

func missingError(param string) *oaiError {
	e := invalidRequest(fmt.Sprintf("Missing required parameter: '%s'.", param), param, "missing_required_parameter")
	return &e
}

func unknownError(param string) *oaiError {
	e := invalidRequest(fmt.Sprintf("Unrecognized request argument supplied: %s", param), "", "")
	return &e
}

// decodeObject parses body as a JSON object.
func decodeObject(body []byte) (map[string]json.RawMessage, *oaiError) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		e := invalidRequest("We could not parse the JSON body of your request. The body must be valid JSON (fake).", "", "")
		return nil, &e
	}
	if trimmed[0] != '{' {
		e := invalidRequest(fmt.Sprintf("Invalid type for request body: expected an object, but got %s instead.", article(jsonKind(trimmed))), "", "invalid_type")
		return nil, &e
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &m); err != nil {
		e := invalidRequest("We could not parse the JSON body of your request (fake).", "", "")
		return nil, &e
	}
	return m, nil
}

// fieldCheck validates one present, non-null field.
type fieldCheck func(param string, raw json.RawMessage) *oaiError

func checkString(param string, raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "string" {
		return typeError(param, "a string", raw)
	}
	return nil
}

func checkBool(param string, raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "boolean" {
		return typeError(param, "a boolean", raw)
	}
	return nil
}

func checkObject(param string, raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "object" {
		return typeError(param, "an object", raw)
	}
	return nil
}

func checkNumber(lo, hi float64) fieldCheck {
	return func(param string, raw json.RawMessage) *oaiError {
		k := jsonKind(raw)
		if k != "number" && k != "integer" {
			return typeError(param, "a decimal", raw)
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
		if err != nil || math.IsInf(v, 0) {
			return typeError(param, "a decimal", raw)
		}
		if v < lo || v > hi {
			return valueError(param, fmt.Sprintf("%v is out of range; expected a value between %v and %v.", v, lo, hi))
		}
		return nil
	}
}

func checkInt(lo, hi int64) fieldCheck {
	return func(param string, raw json.RawMessage) *oaiError {
		if jsonKind(raw) != "integer" {
			return typeError(param, "an integer", raw)
		}
		v, _ := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
		if v < lo || v > hi {
			return valueError(param, fmt.Sprintf("%d is out of range; expected a value between %d and %d.", v, lo, hi))
		}
		return nil
	}
}

func checkEnum(values ...string) fieldCheck {
	return func(param string, raw json.RawMessage) *oaiError {
		if e := checkString(param, raw); e != nil {
			return e
		}
		var s string
		_ = json.Unmarshal(raw, &s)
		for _, v := range values {
			if s == v {
				return nil
			}
		}
		return valueError(param, fmt.Sprintf("'%s'. Supported values are: '%s'.", s, strings.Join(values, "', '")))
	}
}

func checkStringOrObject(param string, raw json.RawMessage) *oaiError {
	if k := jsonKind(raw); k != "string" && k != "object" {
		return typeError(param, "a string or an object", raw)
	}
	return nil
}

func checkStop(param string, raw json.RawMessage) *oaiError {
	switch jsonKind(raw) {
	case "string":
		return nil
	case "array":
		var items []json.RawMessage
		_ = json.Unmarshal(raw, &items)
		if len(items) > 4 {
			return valueError(param, "at most 4 stop sequences are allowed.")
		}
		for i, it := range items {
			if e := checkString(fmt.Sprintf("%s[%d]", param, i), it); e != nil {
				return e
			}
		}
		return nil
	}
	return typeError(param, "a string or an array of strings", raw)
}

func checkStringArray(param string, raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "array" {
		return typeError(param, "an array of strings", raw)
	}
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items)
	for i, it := range items {
		if e := checkString(fmt.Sprintf("%s[%d]", param, i), it); e != nil {
			return e
		}
	}
	return nil
}

func checkResponseFormat(param string, raw json.RawMessage) *oaiError {
	if e := checkObject(param, raw); e != nil {
		return e
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	t, ok := m["type"]
	if !ok {
		return missingError(param + ".type")
	}
	if e := checkEnum("text", "json_object", "json_schema")(param+".type", t); e != nil {
		return e
	}
	if string(bytes.TrimSpace(t)) == `"json_schema"` {
		js, ok := m["json_schema"]
		if !ok {
			return missingError(param + ".json_schema")
		}
		if e := checkObject(param+".json_schema", js); e != nil {
			return e
		}
		var jm map[string]json.RawMessage
		_ = json.Unmarshal(js, &jm)
		name, ok := jm["name"]
		if !ok {
			return missingError(param + ".json_schema.name")
		}
		return checkString(param+".json_schema.name", name)
	}
	return nil
}

func checkStreamOptions(param string, raw json.RawMessage) *oaiError {
	if e := checkObject(param, raw); e != nil {
		return e
	}
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	for _, k := range sortedKeys(m) {
		switch k {
		case "include_usage", "include_obfuscation":
			if !isNull(m[k]) {
				if e := checkBool(param+"."+k, m[k]); e != nil {
					return e
				}
			}
		default:
			return unknownError(param + "." + k)
		}
	}
	return nil
}

// checkTools validates the tools array and collects function names.
func checkTools(param string, raw json.RawMessage, names *[]string) *oaiError {
	if jsonKind(raw) != "array" {
		return typeError(param, "an array", raw)
	}
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items)
	if len(items) > 128 {
		return valueError(param, "at most 128 tools are allowed.")
	}
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", param, i)
		if e := checkObject(p, it); e != nil {
			return e
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(it, &m)
		t, ok := m["type"]
		if !ok {
			return missingError(p + ".type")
		}
		if e := checkEnum("function", "custom")(p+".type", t); e != nil {
			return e
		}
		kind := "function"
		if string(bytes.TrimSpace(t)) == `"custom"` {
			kind = "custom"
		}
		def, ok := m[kind]
		if !ok {
			return missingError(p + "." + kind)
		}
		if e := checkObject(p+"."+kind, def); e != nil {
			return e
		}
		var dm map[string]json.RawMessage
		_ = json.Unmarshal(def, &dm)
		nameRaw, ok := dm["name"]
		if !ok {
			return missingError(p + "." + kind + ".name")
		}
		if e := checkString(p+"."+kind+".name", nameRaw); e != nil {
			return e
		}
		var name string
		_ = json.Unmarshal(nameRaw, &name)
		if name == "" {
			return valueError(p+"."+kind+".name", "the name must not be empty.")
		}
		if params, ok := dm["parameters"]; ok && !isNull(params) {
			if e := checkObject(p+"."+kind+".parameters", params); e != nil {
				return e
			}
		}
		if kind == "function" {
			*names = append(*names, name)
		}
	}
	return nil
}

// chatRequest is what the fake needs from a validated chat request.
type chatRequest struct {
	model        string
	stream       bool
	includeUsage bool
	n            int
	toolNames    []string
	lastUserText string
	lastRole     string // role of the last message
	promptTokens int
	jsonOutput   bool // response_format json_object or json_schema
}

// chatFields maps every top-level chat completion parameter to its check.
// Parameters checked elsewhere map to nil.
var chatFields = map[string]fieldCheck{
	"model":                  nil,
	"messages":               nil,
	"tools":                  nil,
	"stream":                 checkBool,
	"stream_options":         checkStreamOptions,
	"audio":                  checkObject,
	"frequency_penalty":      checkNumber(-2, 2),
	"presence_penalty":       checkNumber(-2, 2),
	"temperature":            checkNumber(0, 2),
	"top_p":                  checkNumber(0, 1),
	"function_call":          checkStringOrObject,
	"functions":              checkFunctions,
	"logit_bias":             checkObject,
	"logprobs":               checkBool,
	"top_logprobs":           checkInt(0, 20),
	"max_tokens":             checkInt(1, math.MaxInt32),
	"max_completion_tokens":  checkInt(1, math.MaxInt32),
	"n":                      checkInt(1, 128),
	"seed":                   checkInt(math.MinInt64, math.MaxInt64),
	"metadata":               checkObject,
	"modalities":             checkStringArray,
	"parallel_tool_calls":    checkBool,
	"prediction":             checkObject,
	"prompt_cache_key":       checkString,
	"prompt_cache_retention": checkString,
	"reasoning_effort":       checkString,
	"response_format":        checkResponseFormat,
	"safety_identifier":      checkString,
	"service_tier":           checkEnum("auto", "default", "flex", "scale", "priority"),
	"stop":                   checkStop,
	"store":                  checkBool,
	"tool_choice":            checkStringOrObject,
	"user":                   checkString,
	"verbosity":              checkEnum("low", "medium", "high"),
	"web_search_options":     checkObject,
}

func checkFunctions(param string, raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "array" {
		return typeError(param, "an array", raw)
	}
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items)
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", param, i)
		if e := checkObject(p, it); e != nil {
			return e
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(it, &m)
		name, ok := m["name"]
		if !ok {
			return missingError(p + ".name")
		}
		if e := checkString(p+".name", name); e != nil {
			return e
		}
	}
	return nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateChatRequest validates a chat completion request body.
func validateChatRequest(body []byte) (*chatRequest, *oaiError) {
	m, e := decodeObject(body)
	if e != nil {
		return nil, e
	}
	keys := sortedKeys(m)
	for _, k := range keys {
		if _, ok := chatFields[k]; !ok {
			return nil, unknownError(k)
		}
	}
	req := &chatRequest{n: 1}
	modelRaw, ok := m["model"]
	if !ok || isNull(modelRaw) {
		e := invalidRequest("You must provide a model parameter.", "", "")
		return nil, &e
	}
	if e := checkString("model", modelRaw); e != nil {
		return nil, e
	}
	_ = json.Unmarshal(modelRaw, &req.model)
	if req.model == "" {
		e := invalidRequest("You must provide a model parameter.", "", "")
		return nil, &e
	}
	if rf, ok := m["response_format"]; ok {
		var f struct{ Type string }
		_ = json.Unmarshal(rf, &f)
		req.jsonOutput = f.Type == "json_object" || f.Type == "json_schema"
	}
	msgsRaw, ok := m["messages"]
	if !ok || isNull(msgsRaw) {
		return nil, missingError("messages")
	}
	if e := req.checkMessages(msgsRaw); e != nil {
		return nil, e
	}
	for _, k := range keys {
		check := chatFields[k]
		if check == nil || isNull(m[k]) {
			continue
		}
		if e := check(k, m[k]); e != nil {
			return nil, e
		}
	}
	if raw, ok := m["tools"]; ok && !isNull(raw) {
		if e := checkTools("tools", raw, &req.toolNames); e != nil {
			return nil, e
		}
	}
	if raw, ok := m["stream"]; ok && !isNull(raw) {
		_ = json.Unmarshal(raw, &req.stream)
	}
	if raw, ok := m["stream_options"]; ok && !isNull(raw) {
		if !req.stream {
			e := invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "invalid_value")
			return nil, &e
		}
		var so struct {
			IncludeUsage *bool `json:"include_usage"`
		}
		_ = json.Unmarshal(raw, &so)
		req.includeUsage = so.IncludeUsage != nil && *so.IncludeUsage
	}
	if raw, ok := m["n"]; ok && !isNull(raw) {
		_ = json.Unmarshal(raw, &req.n)
	}
	if raw, ok := m["top_logprobs"]; ok && !isNull(raw) {
		var lp bool
		if lr, ok := m["logprobs"]; ok {
			_ = json.Unmarshal(lr, &lp)
		}
		if !lp {
			e := invalidRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs", "invalid_value")
			return nil, &e
		}
	}
	if req.promptTokens == 0 {
		req.promptTokens = 1
	}
	return req, nil
}

var chatRoles = []string{"system", "developer", "user", "assistant", "tool", "function"}

// checkMessages validates the messages array and derives the prompt token
// count and the last user text.
func (req *chatRequest) checkMessages(raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "array" {
		return typeError("messages", "an array", raw)
	}
	var msgs []json.RawMessage
	_ = json.Unmarshal(raw, &msgs)
	if len(msgs) == 0 {
		e := invalidRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", "messages", "empty_array")
		return &e
	}
	for i, mraw := range msgs {
		p := fmt.Sprintf("messages[%d]", i)
		if e := checkObject(p, mraw); e != nil {
			return e
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(mraw, &m)
		roleRaw, ok := m["role"]
		if !ok {
			return missingError(p + ".role")
		}
		if e := checkEnum(chatRoles...)(p+".role", roleRaw); e != nil {
			return e
		}
		var role string
		_ = json.Unmarshal(roleRaw, &role)
		req.lastRole = role
		if nr, ok := m["name"]; ok && !isNull(nr) {
			if e := checkString(p+".name", nr); e != nil {
				return e
			}
		}
		hasToolCalls := false
		if tc, ok := m["tool_calls"]; ok && !isNull(tc) {
			if role != "assistant" {
				return unknownError(p + ".tool_calls")
			}
			if e := checkToolCalls(p+".tool_calls", tc); e != nil {
				return e
			}
			hasToolCalls = true
		}
		if fc, ok := m["function_call"]; ok && !isNull(fc) {
			if role != "assistant" {
				return unknownError(p + ".function_call")
			}
			if e := checkObject(p+".function_call", fc); e != nil {
				return e
			}
			hasToolCalls = true
		}
		switch role {
		case "tool":
			id, ok := m["tool_call_id"]
			if !ok || isNull(id) {
				return missingError(p + ".tool_call_id")
			}
			if e := checkString(p+".tool_call_id", id); e != nil {
				return e
			}
		case "function":
			name, ok := m["name"]
			if !ok || isNull(name) {
				return missingError(p + ".name")
			}
		}
		content, ok := m["content"]
		if !ok || isNull(content) {
			if (role == "assistant" && hasToolCalls) || role == "function" {
				continue
			}
			if role == "assistant" {
				if rf, ok := m["refusal"]; ok && jsonKind(rf) == "string" {
					continue
				}
			}
			return missingError(p + ".content")
		}
		text, e := checkContent(p+".content", role, content)
		if e != nil {
			return e
		}
		req.promptTokens += countWords(text)
		if role == "user" {
			req.lastUserText = text
		}
	}
	return nil
}

func checkToolCalls(param string, raw json.RawMessage) *oaiError {
	if jsonKind(raw) != "array" {
		return typeError(param, "an array", raw)
	}
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items)
	for i, it := range items {
		p := fmt.Sprintf("%s[%d]", param, i)
		if e := checkObject(p, it); e != nil {
			return e
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(it, &m)
		for _, k := range []string{"id", "type"} {
			v, ok := m[k]
			if !ok {
				return missingError(p + "." + k)
			}
			if e := checkString(p+"."+k, v); e != nil {
				return e
			}
		}
		if fn, ok := m["function"]; ok {
			if e := checkObject(p+".function", fn); e != nil {
				return e
			}
		}
	}
	return nil
}

// contentPartTypes lists the content part types each role may send.
var contentPartTypes = map[string][]string{
	"system":    {"text"},
	"developer": {"text"},
	"user":      {"text", "image_url", "input_audio", "file"},
	"assistant": {"text", "refusal"},
	"tool":      {"text"},
	"function":  {"text"},
}

// checkContent validates message content and returns its text.
func checkContent(param, role string, raw json.RawMessage) (string, *oaiError) {
	switch jsonKind(raw) {
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		return s, nil
	case "array":
	default:
		return "", typeError(param, "one of a string or array of objects", raw)
	}
	var parts []json.RawMessage
	_ = json.Unmarshal(raw, &parts)
	if len(parts) == 0 {
		e := invalidRequest(fmt.Sprintf("Invalid '%s': empty array. Expected an array with minimum length 1, but got an empty array instead.", param), param, "empty_array")
		return "", &e
	}
	var texts []string
	for i, part := range parts {
		p := fmt.Sprintf("%s[%d]", param, i)
		if e := checkObject(p, part); e != nil {
			return "", e
		}
		var m map[string]json.RawMessage
		_ = json.Unmarshal(part, &m)
		t, ok := m["type"]
		if !ok {
			return "", missingError(p + ".type")
		}
		if e := checkEnum(contentPartTypes[role]...)(p+".type", t); e != nil {
			return "", e
		}
		var typ string
		_ = json.Unmarshal(t, &typ)
		field := typ
		want := checkObject
		switch typ {
		case "text", "refusal":
			want = checkString
		}
		v, ok := m[field]
		if !ok {
			return "", missingError(p + "." + field)
		}
		if e := want(p+"."+field, v); e != nil {
			return "", e
		}
		if typ == "text" {
			var s string
			_ = json.Unmarshal(v, &s)
			texts = append(texts, s)
		}
	}
	return strings.Join(texts, " "), nil
}

// embeddingsRequest is what the fake needs from a validated embeddings
// request.
type embeddingsRequest struct {
	model      string
	inputs     []string
	tokens     int
	base64     bool
	dimensions int
}

var embeddingsFields = map[string]fieldCheck{
	"model":           nil,
	"input":           nil,
	"encoding_format": checkEnum("float", "base64"),
	"dimensions":      checkInt(1, 4096),
	"user":            checkString,
}

// validateEmbeddingsRequest validates an embeddings request body.
func validateEmbeddingsRequest(body []byte) (*embeddingsRequest, *oaiError) {
	m, e := decodeObject(body)
	if e != nil {
		return nil, e
	}
	keys := sortedKeys(m)
	for _, k := range keys {
		if _, ok := embeddingsFields[k]; !ok {
			return nil, unknownError(k)
		}
	}
	req := &embeddingsRequest{}
	modelRaw, ok := m["model"]
	if !ok || isNull(modelRaw) {
		e := invalidRequest("You must provide a model parameter.", "", "")
		return nil, &e
	}
	if e := checkString("model", modelRaw); e != nil {
		return nil, e
	}
	_ = json.Unmarshal(modelRaw, &req.model)
	if req.model == "" {
		e := invalidRequest("You must provide a model parameter.", "", "")
		return nil, &e
	}
	for _, k := range keys {
		if check := embeddingsFields[k]; check != nil && !isNull(m[k]) {
			if e := check(k, m[k]); e != nil {
				return nil, e
			}
		}
	}
	in, ok := m["input"]
	if !ok || isNull(in) {
		return nil, missingError("input")
	}
	if e := req.parseInput(in); e != nil {
		return nil, e
	}
	if raw, ok := m["encoding_format"]; ok && !isNull(raw) {
		req.base64 = string(bytes.TrimSpace(raw)) == `"base64"`
	}
	if raw, ok := m["dimensions"]; ok && !isNull(raw) {
		_ = json.Unmarshal(raw, &req.dimensions)
	}
	return req, nil
}

// parseInput accepts a string, an array of strings, an array of token ids or
// an array of arrays of token ids.
func (req *embeddingsRequest) parseInput(raw json.RawMessage) *oaiError {
	const want = "a string, an array of strings, an array of integers or an array of arrays of integers"
	invalid := func(msg string) *oaiError {
		e := invalidRequest("'$.input' is invalid: "+msg, "input", "invalid_value")
		return &e
	}
	switch jsonKind(raw) {
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		if s == "" {
			return invalid("the input must not be empty.")
		}
		req.inputs = []string{s}
		req.tokens = max(countWords(s), 1)
		return nil
	case "array":
	default:
		return typeError("input", want, raw)
	}
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items)
	if len(items) == 0 {
		return invalid("the input array must not be empty.")
	}
	if len(items) > 2048 {
		return invalid("at most 2048 inputs are allowed.")
	}
	first := jsonKind(items[0])
	switch first {
	case "integer":
		ids, e := intArray("input", raw)
		if e != nil {
			return e
		}
		req.inputs = []string{ids}
		req.tokens = len(items)
		return nil
	case "string", "array":
	default:
		return typeError("input", want, raw)
	}
	for i, it := range items {
		p := fmt.Sprintf("input[%d]", i)
		if k := jsonKind(it); k != first {
			return typeError(p, article(first), it)
		}
		if first == "string" {
			var s string
			_ = json.Unmarshal(it, &s)
			if s == "" {
				return invalid(fmt.Sprintf("%s must not be empty.", p))
			}
			req.inputs = append(req.inputs, s)
			req.tokens += max(countWords(s), 1)
			continue
		}
		ids, e := intArray(p, it)
		if e != nil {
			return e
		}
		var n []json.RawMessage
		_ = json.Unmarshal(it, &n)
		if len(n) == 0 {
			return invalid(fmt.Sprintf("%s must not be empty.", p))
		}
		req.inputs = append(req.inputs, ids)
		req.tokens += len(n)
	}
	return nil
}

// intArray checks raw is an array of non-negative integers and returns
// them joined by commas.
func intArray(param string, raw json.RawMessage) (string, *oaiError) {
	var items []json.RawMessage
	_ = json.Unmarshal(raw, &items)
	parts := make([]string, 0, len(items))
	for i, it := range items {
		if jsonKind(it) != "integer" {
			return "", typeError(fmt.Sprintf("%s[%d]", param, i), "an integer", it)
		}
		s := string(bytes.TrimSpace(it))
		if strings.HasPrefix(s, "-") {
			return "", valueError(fmt.Sprintf("%s[%d]", param, i), "token ids must be non-negative.")
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ","), nil
}
