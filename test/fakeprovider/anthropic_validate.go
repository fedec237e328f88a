package fakeprovider

// Strict request validation for the Anthropic fake, modelled on the request
// schema in https://docs.anthropic.com/en/api/messages and the tool-use
// turn rules in
// https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use.
// Error messages use Anthropic's "<path>: <problem>" style.
//
// The fake is stricter than the API in one documented way: consecutive
// turns with the same role are rejected (the API merges them), because
// llmux must always send alternating turns.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// antRequest is what the fake keeps of a valid request.
type antRequest struct {
	model        string
	maxTokens    int64
	stream       bool
	tools        []antTool
	toolChoice   string // "", auto, any, tool, none
	toolName     string
	lastUserText string
	answered     bool // the last user turn holds tool_result blocks
	promptTokens int
	thinking     int64 // thinking.budget_tokens when thinking is enabled, else 0
}

type antTool struct {
	name   string
	schema json.RawMessage
}

var antToolName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)

type antFields map[string]json.RawMessage

func antObject(path string, raw json.RawMessage) (antFields, *antError) {
	if jsonKind(raw) != "object" {
		e := antInvalid(path + ": Input should be a valid dictionary")
		return nil, &e
	}
	var m antFields
	if err := json.Unmarshal(raw, &m); err != nil {
		e := antInvalid(path + ": Input should be a valid dictionary")
		return nil, &e
	}
	return m, nil
}

// antTyped parses a block object and its required "type".
func antTyped(path string, raw json.RawMessage) (antFields, string, *antError) {
	m, e := antObject(path, raw)
	if e != nil {
		return nil, "", e
	}
	typ, e := m.str(path, "type", true)
	return m, typ, e
}

// textBlock validates a text block and returns its text.
func (m antFields) textBlock(path string) (string, *antError) {
	if e := m.only(path, "type", "text", "cache_control", "citations"); e != nil {
		return "", e
	}
	return m.str(path, "text", true)
}

// only rejects fields outside allowed.
func (m antFields) only(path string, allowed ...string) *antError {
	for _, k := range sortedKeys(m) {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			e := antInvalid(antPath(path, k) + ": Extra inputs are not permitted")
			return &e
		}
	}
	return nil
}

func antPath(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func antErr(format string, args ...any) *antError {
	e := antInvalid(fmt.Sprintf(format, args...))
	return &e
}

func (m antFields) str(path, k string, required bool) (string, *antError) {
	raw, ok := m[k]
	if !ok {
		if required {
			return "", antErr("%s: Field required", antPath(path, k))
		}
		return "", nil
	}
	var s string
	if jsonKind(raw) != "string" || json.Unmarshal(raw, &s) != nil {
		return "", antErr("%s: Input should be a valid string", antPath(path, k))
	}
	return s, nil
}

func (m antFields) number(path, k string, lo, hi float64) *antError {
	raw, ok := m[k]
	if !ok {
		return nil
	}
	kind := jsonKind(raw)
	v, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
	if (kind != "number" && kind != "integer") || err != nil {
		return antErr("%s: Input should be a valid number", antPath(path, k))
	}
	if v < lo || v > hi {
		return antErr("%s: Input should be between %v and %v", antPath(path, k), lo, hi)
	}
	return nil
}

func validateAnthropicRequest(body []byte) (*antRequest, *antError) {
	if !json.Valid(bytes.TrimSpace(body)) {
		return nil, antErr("There was an issue with the format of your request body: invalid JSON")
	}
	m, e := antObject("body", body)
	if e != nil {
		return nil, e
	}
	if e := m.only("", "model", "max_tokens", "messages", "system", "stop_sequences", "temperature", "top_p", "top_k",
		"stream", "metadata", "tools", "tool_choice", "thinking", "service_tier"); e != nil {
		return nil, e
	}
	req := &antRequest{}
	if req.model, e = m.str("", "model", true); e != nil {
		return nil, e
	}
	mt, ok := m["max_tokens"]
	if !ok {
		return nil, antErr("max_tokens: Field required")
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(mt)), 10, 64)
	if jsonKind(mt) != "integer" || err != nil {
		return nil, antErr("max_tokens: Input should be a valid integer")
	}
	if n < 1 {
		return nil, antErr("max_tokens: Input should be greater than or equal to 1")
	}
	req.maxTokens = n
	if raw, ok := m["stream"]; ok {
		if jsonKind(raw) != "boolean" {
			return nil, antErr("stream: Input should be a valid boolean")
		}
		req.stream = string(bytes.TrimSpace(raw)) == "true"
	}
	for _, chk := range []*antError{m.number("", "temperature", 0, 1), m.number("", "top_p", 0, 1), m.number("", "top_k", 0, 1e9)} {
		if chk != nil {
			return nil, chk
		}
	}
	if raw, ok := m["top_k"]; ok && jsonKind(raw) != "integer" {
		return nil, antErr("top_k: Input should be a valid integer")
	}
	if raw, ok := m["system"]; ok {
		text, e := antSystem(raw)
		if e != nil {
			return nil, e
		}
		req.promptTokens += countWords(text)
	}
	if raw, ok := m["stop_sequences"]; ok {
		var seqs []json.RawMessage
		if jsonKind(raw) != "array" || json.Unmarshal(raw, &seqs) != nil {
			return nil, antErr("stop_sequences: Input should be a valid list")
		}
		for i, s := range seqs {
			var v string
			if jsonKind(s) != "string" || json.Unmarshal(s, &v) != nil {
				return nil, antErr("stop_sequences.%d: Input should be a valid string", i)
			}
			if strings.TrimSpace(v) == "" {
				return nil, antErr("stop_sequences: each stop sequence must contain non-whitespace")
			}
		}
	}
	if raw, ok := m["metadata"]; ok {
		md, e := antObject("metadata", raw)
		if e != nil {
			return nil, e
		}
		if e := md.only("metadata", "user_id"); e != nil {
			return nil, e
		}
		if _, e := md.str("metadata", "user_id", false); e != nil {
			return nil, e
		}
	}
	if raw, ok := m["tools"]; ok {
		if e := req.checkTools(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := m["tool_choice"]; ok {
		if e := req.checkToolChoice(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := m["thinking"]; ok {
		if e := req.checkThinking(m, raw); e != nil {
			return nil, e
		}
	}
	raw, ok := m["messages"]
	if !ok {
		return nil, antErr("messages: Field required")
	}
	if e := req.checkMessages(raw); e != nil {
		return nil, e
	}
	return req, nil
}

func antSystem(raw json.RawMessage) (string, *antError) {
	switch jsonKind(raw) {
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		return s, nil
	case "array":
		var blocks []json.RawMessage
		_ = json.Unmarshal(raw, &blocks)
		var sb strings.Builder
		for i, b := range blocks {
			p := "system." + strconv.Itoa(i)
			bm, typ, e := antTyped(p, b)
			if e != nil {
				return "", e
			}
			if typ != "text" {
				return "", antErr("%s.type: Input should be 'text'", p)
			}
			text, e := bm.textBlock(p)
			if e != nil {
				return "", e
			}
			if text == "" {
				return "", antErr("system: text content blocks must be non-empty")
			}
			sb.WriteString(text + " ")
		}
		return sb.String(), nil
	}
	return "", antErr("system: Input should be a valid string or list of text blocks")
}

func (req *antRequest) checkTools(raw json.RawMessage) *antError {
	var tools []json.RawMessage
	if jsonKind(raw) != "array" || json.Unmarshal(raw, &tools) != nil {
		return antErr("tools: Input should be a valid list")
	}
	seen := map[string]bool{}
	for i, t := range tools {
		p := "tools." + strconv.Itoa(i)
		tm, e := antObject(p, t)
		if e != nil {
			return e
		}
		if e := tm.only(p, "name", "description", "input_schema", "cache_control", "type"); e != nil {
			return e
		}
		if typ, _ := tm.str(p, "type", false); typ != "" && typ != "custom" {
			return antErr("%s.type: unsupported tool type %q (fake)", p, typ)
		}
		name, e := tm.str(p, "name", true)
		if e != nil {
			return e
		}
		if !antToolName.MatchString(name) {
			return antErr("%s.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'", p)
		}
		if seen[name] {
			return antErr("tools: Tool names must be unique.")
		}
		seen[name] = true
		if _, e := tm.str(p, "description", false); e != nil {
			return e
		}
		schema, ok := tm["input_schema"]
		if !ok {
			return antErr("%s.input_schema: Field required", p)
		}
		sm, e := antObject(p+".input_schema", schema)
		if e != nil {
			return e
		}
		if typ, _ := sm.str(p+".input_schema", "type", false); typ != "object" {
			return antErr("%s.input_schema.type: Input should be 'object'", p)
		}
		req.tools = append(req.tools, antTool{name: name, schema: schema})
	}
	return nil
}

func (req *antRequest) checkToolChoice(raw json.RawMessage) *antError {
	tc, e := antObject("tool_choice", raw)
	if e != nil {
		return e
	}
	typ, e := tc.str("tool_choice", "type", true)
	if e != nil {
		return e
	}
	switch typ {
	case "auto", "any":
		e = tc.only("tool_choice", "type", "disable_parallel_tool_use")
	case "none":
		e = tc.only("tool_choice", "type")
	case "tool":
		if e = tc.only("tool_choice", "type", "name", "disable_parallel_tool_use"); e == nil {
			req.toolName, e = tc.str("tool_choice", "name", true)
		}
	default:
		return antErr("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
	}
	if e != nil {
		return e
	}
	if raw, ok := tc["disable_parallel_tool_use"]; ok && jsonKind(raw) != "boolean" {
		return antErr("tool_choice.disable_parallel_tool_use: Input should be a valid boolean")
	}
	if typ == "tool" || typ == "any" {
		if len(req.tools) == 0 {
			return antErr("tool_choice: tool_choice of type %q requires tools", typ)
		}
	}
	if typ == "tool" {
		found := false
		for _, t := range req.tools {
			found = found || t.name == req.toolName
		}
		if !found {
			return antErr("tool_choice.name: Tool '%s' not found in tools", req.toolName)
		}
	}
	req.toolChoice = typ
	return nil
}

var antImageTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

func (req *antRequest) checkMessages(raw json.RawMessage) *antError {
	var msgs []json.RawMessage
	if jsonKind(raw) != "array" || json.Unmarshal(raw, &msgs) != nil {
		return antErr("messages: Input should be a valid list")
	}
	if len(msgs) == 0 {
		return antErr("messages: at least one message is required")
	}
	prevRole := ""
	var pendingTools []string // tool_use ids of the previous assistant turn
	for i, mraw := range msgs {
		p := "messages." + strconv.Itoa(i)
		mm, e := antObject(p, mraw)
		if e != nil {
			return e
		}
		if e := mm.only(p, "role", "content"); e != nil {
			return e
		}
		role, e := mm.str(p, "role", true)
		if e != nil {
			return e
		}
		if role != "user" && role != "assistant" {
			return antErr("%s.role: Input should be 'user' or 'assistant'", p)
		}
		if role == prevRole {
			return antErr("messages: roles must alternate between \"user\" and \"assistant\" (fake: llmux must merge consecutive turns)")
		}
		content, ok := mm["content"]
		if !ok {
			return antErr("%s.content: Field required", p)
		}
		var blocks []json.RawMessage
		switch jsonKind(content) {
		case "string":
			var s string
			_ = json.Unmarshal(content, &s)
			if s == "" && !(role == "assistant" && i == len(msgs)-1) {
				return antErr("%s: all messages must have non-empty content except for the optional final assistant message", p)
			}
			b, _ := json.Marshal(map[string]string{"type": "text", "text": s})
			blocks = []json.RawMessage{b}
		case "array":
			_ = json.Unmarshal(content, &blocks)
			if len(blocks) == 0 && !(role == "assistant" && i == len(msgs)-1) {
				return antErr("%s: all messages must have non-empty content except for the optional final assistant message", p)
			}
		default:
			return antErr("%s.content: Input should be a valid string or list of content blocks", p)
		}
		var texts []string
		var toolUses, results []string
		sawOther := false
		for j, braw := range blocks {
			bp := p + ".content." + strconv.Itoa(j)
			bm, typ, e := antTyped(bp, braw)
			if e != nil {
				return e
			}
			switch typ {
			case "text":
				t, e := bm.textBlock(bp)
				if e != nil {
					return e
				}
				if t == "" && jsonKind(content) == "array" {
					return antErr("%s: text content blocks must be non-empty", p)
				}
				texts = append(texts, t)
				sawOther = true
			case "image":
				if role != "user" {
					return antErr("%s.type: image blocks are only allowed in user messages", bp)
				}
				if e := bm.only(bp, "type", "source", "cache_control"); e != nil {
					return e
				}
				if e := antImageSource(bp+".source", bm["source"]); e != nil {
					return e
				}
				sawOther = true
			case "tool_use":
				if role != "assistant" {
					return antErr("%s.type: tool_use blocks are only allowed in assistant messages", bp)
				}
				if e := bm.only(bp, "type", "id", "name", "input", "cache_control"); e != nil {
					return e
				}
				id, e := bm.str(bp, "id", true)
				if e != nil {
					return e
				}
				if _, e := bm.str(bp, "name", true); e != nil {
					return e
				}
				if in, ok := bm["input"]; !ok || jsonKind(in) != "object" {
					return antErr("%s.input: Input should be a valid dictionary", bp)
				}
				toolUses = append(toolUses, id)
			case "tool_result":
				if role != "user" {
					return antErr("%s.type: tool_result blocks are only allowed in user messages", bp)
				}
				if sawOther {
					return antErr("%s: tool_result blocks must come first in the user message, before any other content", p)
				}
				if e := bm.only(bp, "type", "tool_use_id", "content", "is_error", "cache_control"); e != nil {
					return e
				}
				id, e := bm.str(bp, "tool_use_id", true)
				if e != nil {
					return e
				}
				text, e := antToolResultContent(bp+".content", bm["content"])
				if e != nil {
					return e
				}
				texts = append(texts, text)
				results = append(results, id)
			case "thinking", "redacted_thinking":
				if role != "assistant" {
					return antErr("%s.type: %s blocks are only allowed in assistant messages", bp, typ)
				}
			default:
				return antErr("%s.type: Input tag '%s' found using 'type' does not match any of the expected tags", bp, typ)
			}
		}
		// Tool turns: every tool_use answered in the next user turn, and
		// every tool_result answering the previous assistant turn.
		if role == "user" {
			for _, id := range results {
				found := false
				for _, t := range pendingTools {
					found = found || t == id
				}
				if !found {
					return antErr("%s.content: unexpected `tool_use_id` found in `tool_result` blocks: %s. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.", p, id)
				}
			}
			for _, t := range pendingTools {
				found := false
				for _, id := range results {
					found = found || t == id
				}
				if !found {
					return antErr("messages.%d: `tool_use` ids were found without `tool_result` blocks immediately after: %s. Each `tool_use` block must have a corresponding `tool_result` block in the next message.", i-1, t)
				}
			}
			req.lastUserText = strings.Join(texts, " ")
			req.answered = len(results) > 0
		}
		pendingTools = toolUses
		for _, t := range texts {
			req.promptTokens += countWords(t)
		}
		prevRole = role
	}
	return nil
}

func antImageSource(p string, raw json.RawMessage) *antError {
	if raw == nil {
		return antErr("%s: Field required", p)
	}
	sm, typ, e := antTyped(p, raw)
	if e != nil {
		return e
	}
	switch typ {
	case "base64":
		if e := sm.only(p, "type", "media_type", "data"); e != nil {
			return e
		}
		mt, e := sm.str(p, "media_type", true)
		if e != nil {
			return e
		}
		if !antImageTypes[mt] {
			return antErr("%s.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'", p)
		}
		data, e := sm.str(p, "data", true)
		if e != nil {
			return e
		}
		if data == "" || strings.ContainsAny(data, " ,:") {
			return antErr("%s.data: invalid base64 data", p)
		}
	case "url":
		if e := sm.only(p, "type", "url"); e != nil {
			return e
		}
		u, e := sm.str(p, "url", true)
		if e != nil {
			return e
		}
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return antErr("%s.url: invalid URL", p)
		}
	default:
		return antErr("%s.type: Input should be 'base64' or 'url'", p)
	}
	return nil
}

func antToolResultContent(p string, raw json.RawMessage) (string, *antError) {
	switch jsonKind(raw) {
	case "null":
		if raw == nil {
			return "", nil
		}
	case "string":
		var s string
		_ = json.Unmarshal(raw, &s)
		return s, nil
	case "array":
		var blocks []json.RawMessage
		_ = json.Unmarshal(raw, &blocks)
		var texts []string
		for j, b := range blocks {
			bp := p + "." + strconv.Itoa(j)
			bm, typ, e := antTyped(bp, b)
			if e != nil {
				return "", e
			}
			switch typ {
			case "text":
				t, e := bm.textBlock(bp)
				if e != nil {
					return "", e
				}
				if t == "" {
					return "", antErr("%s: text content blocks must be non-empty", bp)
				}
				texts = append(texts, t)
			case "image":
				if e := antImageSource(bp+".source", bm["source"]); e != nil {
					return "", e
				}
			default:
				return "", antErr("%s.type: Input should be 'text' or 'image'", bp)
			}
		}
		return strings.Join(texts, " "), nil
	}
	return "", antErr("%s: Input should be a valid string or list of blocks", p)
}

// antThinkingDoc is where Anthropic's thinking errors point.
const antThinkingDoc = " Please consult our documentation at https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking"

// checkThinking validates the thinking parameter ({"type":"enabled",
// "budget_tokens":N} or {"type":"disabled"}) and what extended thinking
// rules out: https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
// (budget_tokens at least 1024 and under max_tokens; temperature only 1,
// no top_k, top_p at least 0.95; no forced tool use).
func (req *antRequest) checkThinking(m antFields, raw json.RawMessage) *antError {
	th, e := antObject("thinking", raw)
	if e != nil {
		return e
	}
	typ, e := th.str("thinking", "type", true)
	if e != nil {
		return e
	}
	switch typ {
	case "disabled":
		return th.only("thinking", "type")
	case "enabled":
	default:
		return antErr("thinking: Input tag %q found using 'type' does not match any of the expected tags: 'disabled', 'enabled'", typ)
	}
	if e := th.only("thinking.enabled", "type", "budget_tokens"); e != nil {
		return e
	}
	b, ok := th["budget_tokens"]
	if !ok {
		return antErr("thinking.enabled.budget_tokens: Field required")
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if jsonKind(b) != "integer" || err != nil {
		return antErr("thinking.enabled.budget_tokens: Input should be a valid integer")
	}
	if n < 1024 {
		return antErr("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
	}
	if req.maxTokens <= n {
		return antErr("`max_tokens` must be greater than `thinking.budget_tokens`." + antThinkingDoc + "#max-tokens-and-context-window-size")
	}
	if t, ok := m["temperature"]; ok && string(bytes.TrimSpace(t)) != "1" && string(bytes.TrimSpace(t)) != "1.0" {
		return antErr("`temperature` may only be set to 1 when thinking is enabled." + antThinkingDoc + "#feature-compatibility")
	}
	if _, ok := m["top_k"]; ok {
		return antErr("`top_k` must be unset when thinking is enabled." + antThinkingDoc + "#feature-compatibility")
	}
	if p, ok := m["top_p"]; ok {
		if v, err := strconv.ParseFloat(string(bytes.TrimSpace(p)), 64); err != nil || v < 0.95 {
			return antErr("`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled." + antThinkingDoc + "#feature-compatibility")
		}
	}
	if req.toolChoice == "any" || req.toolChoice == "tool" {
		return antErr("Thinking may not be enabled when tool_choice forces tool use.")
	}
	req.thinking = n
	return nil
}
