package fakeprovider

// Request checks of the Bedrock fake: SigV4 verification (recomputed with
// the AWS SDK's signer over the headers the request names in
// SignedHeaders) and strict Converse / InvokeModel body validation after
// the Converse request reference
// (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html)
// and the model parameter pages for Titan and Cohere embeddings.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/tidwall/gjson"
)

var brAuthRe = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$`)

func brForbidden(typ, msg string) *brError { return &brError{typ, http.StatusForbidden, msg} }

// verifySignature checks r's SigV4 signature the way AWS does: known
// access key, region and service in the scope, a date within 15 minutes,
// the payload hash, the Host, and the signature recomputed over exactly
// the signed headers.
func (b *bedrock) verifySignature(r *http.Request, body []byte) *brError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return brForbidden("MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	m := brAuthRe.FindStringSubmatch(auth)
	if m == nil {
		return brForbidden("IncompleteSignatureException", "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters (fake).")
	}
	key, day, region, service, signed := m[1], m[2], m[3], m[4], m[5]
	if key != b.opts.AccessKeyID {
		return brForbidden("UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	if region != b.opts.Region || service != "bedrock" {
		return brForbidden("InvalidSignatureException", "Credential should be scoped to a valid region and service 'bedrock' (fake): got "+region+"/"+service+".")
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || at.Format("20060102") != day {
		return brForbidden("IncompleteSignatureException", "X-Amz-Date is missing or does not match the credential scope (fake).")
	}
	if d := time.Since(at); d > 15*time.Minute || d < -15*time.Minute {
		return brForbidden("InvalidSignatureException", "Signature expired (fake).")
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != hash {
		return brForbidden("InvalidSignatureException", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	if want := "bedrock-runtime." + b.opts.Region + ".amazonaws.com"; r.Host != want {
		return brForbidden("InvalidSignatureException", "The request signature we calculated does not match the signature you provided (fake: Host "+strconv.Quote(r.Host)+", want "+want+").")
	}
	names := strings.Split(signed, ";")
	for _, need := range []string{"host", "x-amz-date"} {
		found := false
		for _, n := range names {
			found = found || n == need
		}
		if !found {
			return brForbidden("InvalidSignatureException", "SignedHeaders must include "+need+" (fake).")
		}
	}
	u := &url.URL{Scheme: "https", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	re := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}}
	for _, n := range names {
		switch n {
		case "host":
		case "content-length":
			re.ContentLength = int64(len(body))
		default:
			vs := r.Header.Values(n)
			if len(vs) == 0 {
				return brForbidden("InvalidSignatureException", "The request signature we calculated does not match the signature you provided (fake: signed header "+n+" missing).")
			}
			re.Header[http.CanonicalHeaderKey(n)] = vs
		}
	}
	creds := aws.Credentials{AccessKeyID: key, SecretAccessKey: b.opts.SecretAccessKey, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, re, hash, "bedrock", region, at); err != nil {
		return brForbidden("InvalidSignatureException", err.Error())
	}
	if re.Header.Get("Authorization") != auth {
		return brForbidden("InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	return nil
}

// ---- Converse validation ----

type brRequest struct {
	maxTokens    int
	tools        []antTool
	toolChoice   string // "", auto, any, tool
	toolName     string
	lastUserText string
	answered     bool // the last user turn holds toolResult blocks
	promptTokens int
	thinking     int // Claude's thinking budget_tokens when enabled, else 0
}

var brToolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

type brFields map[string]json.RawMessage

func brObject(path string, raw json.RawMessage) (brFields, *brError) {
	var m brFields
	if jsonKind(raw) != "object" || json.Unmarshal(raw, &m) != nil {
		return nil, brValidation("Malformed input request: %s: expected an object", path)
	}
	return m, nil
}

func (m brFields) only(path string, allowed ...string) *brError {
	for _, k := range sortedKeys(m) {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return brValidation("Malformed input request: %s: extraneous key [%s] is not permitted", path, k)
		}
	}
	return nil
}

// one returns the single member of a union object.
func (m brFields) one(path string) (string, json.RawMessage, *brError) {
	if len(m) != 1 {
		return "", nil, brValidation("Malformed input request: %s: exactly one member must be set, got %d", path, len(m))
	}
	for k, v := range m {
		return k, v, nil
	}
	return "", nil, nil
}

func validateConverse(body []byte) (*brRequest, *brError) { return validateConverseFor(body, "") }

// validateConverseFor validates a Converse request to model: a Claude
// model (an id with "anthropic.") also accepts a trailing assistant turn of
// text as a prefill, which it continues; like Anthropic's API, Bedrock
// refuses a prefill that ends with whitespace.
func validateConverseFor(body []byte, model string) (*brRequest, *brError) {
	top, e := brObject("#", body)
	if e != nil {
		return nil, e
	}
	if e := top.only("#", "messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields",
		"additionalModelResponseFieldPaths", "guardrailConfig", "promptVariables", "requestMetadata", "performanceConfig"); e != nil {
		return nil, e
	}
	req := &brRequest{}
	if raw, ok := top["system"]; ok {
		var sys []json.RawMessage
		if json.Unmarshal(raw, &sys) != nil {
			return nil, brValidation("Malformed input request: #/system: expected an array")
		}
		for i, s := range sys {
			p := "#/system/" + strconv.Itoa(i)
			f, e := brObject(p, s)
			if e != nil {
				return nil, e
			}
			k, v, e := f.one(p)
			if e != nil {
				return nil, e
			}
			if k != "text" && k != "cachePoint" && k != "guardContent" {
				return nil, brValidation("Malformed input request: %s: unknown member %s", p, k)
			}
			if k == "text" {
				var t string
				if json.Unmarshal(v, &t) != nil || strings.TrimSpace(t) == "" {
					return nil, brValidation("The text field in the ContentBlock object at %s is blank. Add text to the text field, and try again.", p)
				}
				req.promptTokens += countWords(t)
			}
		}
	}
	if raw, ok := top["inferenceConfig"]; ok {
		ic, e := brObject("#/inferenceConfig", raw)
		if e != nil {
			return nil, e
		}
		if e := ic.only("#/inferenceConfig", "maxTokens", "temperature", "topP", "stopSequences"); e != nil {
			return nil, e
		}
		if v, ok := ic["maxTokens"]; ok {
			if json.Unmarshal(v, &req.maxTokens) != nil || req.maxTokens < 1 {
				return nil, brValidation("1 validation error detected: Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1")
			}
		}
		for _, k := range []string{"temperature", "topP"} {
			if v, ok := ic[k]; ok {
				var x float64
				if json.Unmarshal(v, &x) != nil || x < 0 || x > 1 {
					return nil, brValidation("1 validation error detected: Value at 'inferenceConfig.%s' failed to satisfy constraint: Member must have value between 0 and 1", k)
				}
			}
		}
		if v, ok := ic["stopSequences"]; ok {
			var ss []string
			if json.Unmarshal(v, &ss) != nil {
				return nil, brValidation("Malformed input request: #/inferenceConfig/stopSequences: expected an array of strings")
			}
			for _, s := range ss {
				if s == "" {
					return nil, brValidation("1 validation error detected: Value at 'inferenceConfig.stopSequences' failed to satisfy constraint: Member must have length greater than or equal to 1")
				}
			}
		}
	}
	if raw, ok := top["additionalModelRequestFields"]; ok && jsonKind(raw) != "object" {
		return nil, brValidation("Malformed input request: #/additionalModelRequestFields: expected an object")
	}
	hasToolConfig := false
	if raw, ok := top["toolConfig"]; ok {
		hasToolConfig = true
		if e := req.toolConfig(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := top["additionalModelRequestFields"]; ok {
		if e := req.claudeThinking(raw, top["inferenceConfig"]); e != nil {
			return nil, e
		}
	}
	raw, ok := top["messages"]
	if !ok {
		return nil, brValidation("1 validation error detected: Value null at 'messages' failed to satisfy constraint: Member must not be null")
	}
	var msgs []json.RawMessage
	if json.Unmarshal(raw, &msgs) != nil || len(msgs) == 0 {
		return nil, brValidation("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
	}
	var prevRole string
	pendingUses := map[string]bool{}
	for i, mr := range msgs {
		p := "#/messages/" + strconv.Itoa(i)
		m, e := brObject(p, mr)
		if e != nil {
			return nil, e
		}
		if e := m.only(p, "role", "content"); e != nil {
			return nil, e
		}
		var role string
		_ = json.Unmarshal(m["role"], &role)
		if role != "user" && role != "assistant" {
			return nil, brValidation("Malformed input request: %s/role: %q is not a valid enum value", p, role)
		}
		if i == 0 && role != "user" {
			return nil, brValidation("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
		}
		if role == prevRole {
			return nil, brValidation("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.")
		}
		prevRole = role
		var blocks []json.RawMessage
		if json.Unmarshal(m["content"], &blocks) != nil || len(blocks) == 0 {
			return nil, brValidation("The content field in the Message object at messages.%d is empty. Add a ContentBlock object to the content field and try again.", i)
		}
		uses := map[string]bool{}
		answered, userText := false, ""
		for j, br := range blocks {
			bp := p + "/content/" + strconv.Itoa(j)
			bf, e := brObject(bp, br)
			if e != nil {
				return nil, e
			}
			k, v, e := bf.one(bp)
			if e != nil {
				return nil, e
			}
			switch k {
			case "text":
				var t string
				if json.Unmarshal(v, &t) != nil || strings.TrimSpace(t) == "" {
					return nil, brValidation("The text field in the ContentBlock object at messages.%d.content.%d is blank. Add text to the text field, and try again.", i, j)
				}
				req.promptTokens += countWords(t)
				if role == "user" {
					userText = strings.TrimSpace(userText + " " + t)
				}
			case "image":
				if role != "user" {
					return nil, brValidation("Images are only allowed in user messages (%s).", bp)
				}
				if e := validateBrImage(bp, v); e != nil {
					return nil, e
				}
				req.promptTokens += 85
			case "toolUse":
				if role != "assistant" {
					return nil, brValidation("toolUse blocks are only allowed in assistant messages (%s).", bp)
				}
				tu, e := brObject(bp+"/toolUse", v)
				if e != nil {
					return nil, e
				}
				if e := tu.only(bp+"/toolUse", "toolUseId", "name", "input"); e != nil {
					return nil, e
				}
				var id, name string
				_ = json.Unmarshal(tu["toolUseId"], &id)
				_ = json.Unmarshal(tu["name"], &name)
				if id == "" || !brToolName.MatchString(name) || jsonKind(tu["input"]) != "object" {
					return nil, brValidation("Malformed input request: %s/toolUse: toolUseId, name and an object input are required", bp)
				}
				uses[id] = true
			case "toolResult":
				if role != "user" {
					return nil, brValidation("toolResult blocks are only allowed in user messages (%s).", bp)
				}
				tr, e := brObject(bp+"/toolResult", v)
				if e != nil {
					return nil, e
				}
				if e := tr.only(bp+"/toolResult", "toolUseId", "content", "status"); e != nil {
					return nil, e
				}
				var id string
				_ = json.Unmarshal(tr["toolUseId"], &id)
				if !pendingUses[id] {
					return nil, brValidation("The toolResult block at %s references toolUseId %q, which is not in the previous assistant turn.", bp, id)
				}
				var content []brFields
				if json.Unmarshal(tr["content"], &content) != nil || len(content) == 0 {
					return nil, brValidation("Malformed input request: %s/toolResult/content: expected a non-empty array", bp)
				}
				for _, c := range content {
					if len(c) != 1 || (c["text"] == nil && c["json"] == nil && c["image"] == nil && c["document"] == nil) {
						return nil, brValidation("Malformed input request: %s/toolResult/content: each item needs exactly one of text, json, image, document", bp)
					}
				}
				answered = true
			case "document", "video", "cachePoint", "guardContent", "reasoningContent":
			default:
				return nil, brValidation("Malformed input request: %s: unknown member %s", bp, k)
			}
			if (k == "toolUse" || k == "toolResult") && !hasToolConfig {
				return nil, brValidation("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
			}
		}
		if role == "user" {
			req.answered = answered
			if userText != "" {
				req.lastUserText = userText
			}
		}
		pendingUses = uses
	}
	if prevRole != "user" {
		// Bedrock allows a trailing assistant turn as a prefill for Claude
		// models (llmux sends one to continue a cut stream).
		last := gjson.GetBytes(body, "messages.@reverse.0.content.0.text")
		if !strings.Contains(model, "anthropic.") || last.Type != gjson.String || last.Str == "" || strings.TrimRightFunc(last.Str, unicode.IsSpace) != last.Str {
			return nil, brValidation("The last message must be a user message, or an assistant prefill of text without trailing whitespace for Claude models.")
		}
	}
	return req, nil
}

func validateBrImage(p string, raw json.RawMessage) *brError {
	img, e := brObject(p+"/image", raw)
	if e != nil {
		return e
	}
	if e := img.only(p+"/image", "format", "source"); e != nil {
		return e
	}
	var format string
	_ = json.Unmarshal(img["format"], &format)
	switch format {
	case "png", "jpeg", "gif", "webp":
	default:
		return brValidation("Malformed input request: %s/image/format: %q is not a valid enum value", p, format)
	}
	src, e := brObject(p+"/image/source", img["source"])
	if e != nil {
		return e
	}
	k, v, e := src.one(p + "/image/source")
	if e != nil {
		return e
	}
	switch k {
	case "bytes":
		var s string
		if json.Unmarshal(v, &s) != nil {
			return brValidation("Malformed input request: %s/image/source/bytes: expected a base64 string", p)
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil || s == "" {
			return brValidation("Malformed input request: %s/image/source/bytes: invalid base64", p)
		}
	case "s3Location":
	default:
		return brValidation("Malformed input request: %s/image/source: unknown member %s", p, k)
	}
	return nil
}

func (req *brRequest) toolConfig(raw json.RawMessage) *brError {
	tc, e := brObject("#/toolConfig", raw)
	if e != nil {
		return e
	}
	if e := tc.only("#/toolConfig", "tools", "toolChoice"); e != nil {
		return e
	}
	var tools []json.RawMessage
	if json.Unmarshal(tc["tools"], &tools) != nil || len(tools) == 0 {
		return brValidation("1 validation error detected: Value at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	for i, tr := range tools {
		p := "#/toolConfig/tools/" + strconv.Itoa(i)
		tf, e := brObject(p, tr)
		if e != nil {
			return e
		}
		k, v, e := tf.one(p)
		if e != nil {
			return e
		}
		if k == "cachePoint" {
			continue
		}
		if k != "toolSpec" {
			return brValidation("Malformed input request: %s: unknown member %s", p, k)
		}
		spec, e := brObject(p+"/toolSpec", v)
		if e != nil {
			return e
		}
		if e := spec.only(p+"/toolSpec", "name", "description", "inputSchema"); e != nil {
			return e
		}
		var name string
		_ = json.Unmarshal(spec["name"], &name)
		if !brToolName.MatchString(name) {
			return brValidation("1 validation error detected: Value at 'toolConfig.tools.%d.member.toolSpec.name' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+", i)
		}
		for _, t := range req.tools {
			if t.name == name {
				return brValidation("The tool name %q is used more than once.", name)
			}
		}
		is, e := brObject(p+"/toolSpec/inputSchema", spec["inputSchema"])
		if e != nil {
			return e
		}
		if e := is.only(p+"/toolSpec/inputSchema", "json"); e != nil {
			return e
		}
		if jsonKind(is["json"]) != "object" {
			return brValidation("Malformed input request: %s/toolSpec/inputSchema/json: expected a JSON schema object", p)
		}
		req.tools = append(req.tools, antTool{name: name, schema: is["json"]})
	}
	if raw, ok := tc["toolChoice"]; ok {
		ch, e := brObject("#/toolConfig/toolChoice", raw)
		if e != nil {
			return e
		}
		k, v, e := ch.one("#/toolConfig/toolChoice")
		if e != nil {
			return e
		}
		switch k {
		case "auto", "any":
			if jsonKind(v) != "object" || strings.TrimSpace(string(v)) != "{}" {
				return brValidation("Malformed input request: #/toolConfig/toolChoice/%s: expected {}", k)
			}
			req.toolChoice = k
		case "tool":
			t, e := brObject("#/toolConfig/toolChoice/tool", v)
			if e != nil {
				return e
			}
			if e := t.only("#/toolConfig/toolChoice/tool", "name"); e != nil {
				return e
			}
			_ = json.Unmarshal(t["name"], &req.toolName)
			found := false
			for _, tl := range req.tools {
				found = found || tl.name == req.toolName
			}
			if !found {
				return brValidation("The tool %q in toolChoice is not in toolConfig.tools.", req.toolName)
			}
			req.toolChoice = "tool"
		default:
			return brValidation("Malformed input request: #/toolConfig/toolChoice: unknown member %s", k)
		}
	}
	return nil
}

// ---- InvokeModel: embeddings ----

func (b *bedrock) invoke(w http.ResponseWriter, r *http.Request, f Fault, model string, body []byte) {
	m, e := brObject("#", body)
	if e != nil {
		b.writeError(w, *e)
		return
	}
	type obj = map[string]any
	var out obj
	tokens := 0
	switch {
	case strings.Contains(model, "titan-embed-text"):
		v2 := strings.Contains(model, "v2")
		allowed := []string{"inputText"}
		if v2 {
			allowed = append(allowed, "dimensions", "normalize", "embeddingTypes")
		}
		if e := m.only("#", allowed...); e != nil {
			b.writeError(w, *e)
			return
		}
		var text string
		if json.Unmarshal(m["inputText"], &text) != nil || text == "" {
			b.writeError(w, *brValidation("Malformed input request: #: required key [inputText] not found"))
			return
		}
		dims := 1536
		if v2 {
			dims = 1024
		}
		if raw, ok := m["dimensions"]; ok {
			if json.Unmarshal(raw, &dims) != nil || (dims != 256 && dims != 512 && dims != 1024) {
				b.writeError(w, *brValidation("Malformed input request: #/dimensions: %s is not a valid enum value", raw))
				return
			}
		}
		if raw, ok := m["normalize"]; ok && jsonKind(raw) != "boolean" {
			b.writeError(w, *brValidation("Malformed input request: #/normalize: expected type: Boolean"))
			return
		}
		tokens = countWords(text)
		out = obj{"embedding": EmbeddingVector(text, dims), "inputTextTokenCount": tokens}
	case strings.Contains(model, "cohere.embed"):
		if e := m.only("#", "texts", "input_type", "truncate", "embedding_types", "images"); e != nil {
			b.writeError(w, *e)
			return
		}
		var texts []string
		if json.Unmarshal(m["texts"], &texts) != nil || len(texts) == 0 || len(texts) > 96 {
			b.writeError(w, *brValidation("Malformed input request: #/texts: expected 1 to 96 strings"))
			return
		}
		var it string
		_ = json.Unmarshal(m["input_type"], &it)
		switch it {
		case "search_document", "search_query", "classification", "clustering":
		default:
			b.writeError(w, *brValidation("Malformed input request: #/input_type: %q is not a valid enum value", it))
			return
		}
		vecs := make([][]float32, len(texts))
		for i, t := range texts {
			vecs[i] = EmbeddingVector(t, 1024)
			tokens += countWords(t)
		}
		out = obj{"embeddings": vecs, "id": "emb-" + fakeHex("cohere", b.s.nextID(), 16), "response_type": "embeddings_floats", "texts": texts}
	default:
		b.writeError(w, *brValidation("The fake serves only Titan Text Embeddings and Cohere Embed through InvokeModel; got %q.", model))
		return
	}
	w.Header().Set("X-Amzn-Bedrock-Input-Token-Count", strconv.Itoa(tokens))
	w.Header().Set("X-Amzn-Bedrock-Output-Token-Count", "0")
	enc, _ := json.Marshal(out)
	b.s.writeBody(w, r, f, http.StatusOK, "application/json", enc)
}

// brClaudeDefaultMaxTokens is the maxTokens the fake assumes when a
// request sets none.
const brClaudeDefaultMaxTokens = 4096

// claudeThinking validates Claude's extended thinking passed through
// additionalModelRequestFields ({"thinking":{"type":"enabled",
// "budget_tokens":N}}). Bedrock hands these fields to the model, so the
// errors are Anthropic's, wrapped in a ValidationException:
// https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-extended-thinking.html
func (req *brRequest) claudeThinking(raw, inference json.RawMessage) *brError {
	var f struct {
		Thinking *struct {
			Type         string `json:"type"`
			BudgetTokens *int   `json:"budget_tokens"`
		} `json:"thinking"`
	}
	if json.Unmarshal(raw, &f) != nil {
		return brValidation("The model returned the following errors: thinking: Input should be a valid dictionary")
	}
	th := f.Thinking
	if th == nil || th.Type == "disabled" {
		return nil
	}
	if th.Type != "enabled" {
		return brValidation("The model returned the following errors: thinking: Input tag %q found using 'type' does not match any of the expected tags: 'disabled', 'enabled'", th.Type)
	}
	if th.BudgetTokens == nil || *th.BudgetTokens < 1024 {
		return brValidation("The model returned the following errors: thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
	}
	var ic struct {
		MaxTokens   *int     `json:"maxTokens"`
		Temperature *float64 `json:"temperature"`
		TopP        *float64 `json:"topP"`
	}
	_ = json.Unmarshal(inference, &ic)
	maxTokens := brClaudeDefaultMaxTokens
	if ic.MaxTokens != nil {
		maxTokens = *ic.MaxTokens
	}
	switch {
	case maxTokens <= *th.BudgetTokens:
		return brValidation("The model returned the following errors: `max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
	case ic.Temperature != nil && *ic.Temperature != 1:
		return brValidation("The model returned the following errors: `temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility")
	case ic.TopP != nil && *ic.TopP < 0.95:
		return brValidation("The model returned the following errors: `top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility")
	case req.toolChoice == "any" || req.toolChoice == "tool":
		return brValidation("The model returned the following errors: Thinking may not be enabled when tool_choice forces tool use.")
	}
	var other map[string]json.RawMessage
	_ = json.Unmarshal(raw, &other)
	if _, ok := other["top_k"]; ok {
		return brValidation("The model returned the following errors: `top_k` must be unset when thinking is enabled. Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking#feature-compatibility")
	}
	req.thinking = *th.BudgetTokens
	return nil
}
