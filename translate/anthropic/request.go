package anthropic

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chatreq"
	"github.com/llmux/llmux/translate/jsonenc"
)

// provider names Anthropic in error messages.
const provider = "Anthropic"

// builder translates one OpenAI chat request body into an Anthropic
// Messages body.
type builder struct {
	// set by the caller
	model         string // "" for Vertex (the model is in the path)
	vertexVersion string // Vertex's anthropic_version body field
	stream        bool
	defaultMax    int64

	sys      []byte // system text blocks, comma separated
	msgs     []byte // turns, comma separated
	turn     string // role of the open turn in msgs, "" when none
	turnOpen bool
	scratch  []byte // one block being built, before it joins msgs
}

// Top-level OpenAI parameters that are accepted and dropped: they tune
// OpenAI-side features (storage, service tiers, caching keys, determinism
// hints) that do not change the meaning of the answer. Anything not handled
// and not listed here is refused with a 400 naming it.
var dropped = map[string]bool{
	"store": true, "metadata": true, "service_tier": true, "seed": true,
	"prompt_cache_key": true, "prompt_cache_retention": true, "prediction": true,
}

// build returns the Anthropic body for the OpenAI body s.
func (b *builder) build(s string) ([]byte, *translate.Error) {
	root := gjson.Parse(s)
	var (
		maxTok, maxComp, temperature, topP, topK, stop       gjson.Result
		user, safetyID, tools, toolChoice, parallel, respFmt gjson.Result
		effort                                               gjson.Result
		bad                                                  *translate.Error
	)
	// msgs is the first messages member, null or not, as gjson.Get finds
	// it: read in the same pass as the parameters.
	var msgs gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "messages" && !msgs.Exists() {
			msgs = v
		}
		if chatreq.IsNull(v) {
			return true
		}
		switch k.Str {
		case "model", "messages", "stream", "stream_options":
		case "max_tokens":
			maxTok = v
		case "max_completion_tokens":
			maxComp = v
		case "temperature":
			temperature = v
		case "top_p":
			topP = v
		case "top_k":
			topK = v
		case "stop":
			stop = v
		case "user":
			user = v
		case "safety_identifier":
			safetyID = v
		case "tools":
			tools = v
		case "tool_choice":
			toolChoice = v
		case "parallel_tool_calls":
			parallel = v
		case "response_format":
			respFmt = v
		case "reasoning_effort":
			effort = v
		default:
			var handled bool
			if handled, bad = chatreq.OpenAIOnly(k.Str, v, provider); !handled && !dropped[k.Str] {
				bad = chatreq.Unsupported(k.Str, "Unrecognized request argument supplied: "+k.Str+" (not supported for Anthropic models).")
			}
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}

	// max_tokens
	maxTokens := b.defaultMax
	explicit, maxParam := int64(0), "max_tokens"
	for _, mt := range []struct {
		name string
		v    gjson.Result
	}{{"max_tokens", maxTok}, {"max_completion_tokens", maxComp}} {
		if !mt.v.Exists() {
			continue
		}
		n, ok := chatreq.IntValue(mt.v)
		if !ok {
			return nil, chatreq.TypeErr(mt.name, "an integer")
		}
		if n < 1 {
			return nil, chatreq.Invalid(mt.name, "'"+mt.name+"' must be at least 1.")
		}
		maxTokens, explicit, maxParam = n, n, mt.name
	}

	// reasoning_effort: extended thinking with a token budget.
	budget, bad := chatreq.ClaudeThinking(effort)
	if bad != nil {
		return nil, bad
	}
	if budget > 0 {
		if bad = chatreq.ClaudeThinkingConflicts(temperature, topP, topK, toolChoice, respFmt); bad != nil {
			return nil, bad
		}
		// Without a client limit, the default max_tokens is room for the
		// answer, on top of the budget.
		if budget, maxTokens, bad = chatreq.ClaudeThinkingFit(budget, explicit, b.defaultMax, maxParam); bad != nil {
			return nil, bad
		}
	}

	// messages
	// The turns are about as long as the request: one buffer, not a
	// growing one.
	b.msgs = make([]byte, 0, len(s))
	if e := b.messages(msgs); e != nil {
		return nil, e
	}
	b.closeTurn()

	out := make([]byte, 0, len(s)+len(b.sys)+256)
	out = append(out, '{')
	if b.model != "" {
		out = append(out, `"model":`...)
		out = jsonenc.AppendString(out, b.model)
		out = append(out, ',')
	}
	if b.vertexVersion != "" {
		out = append(out, `"anthropic_version":`...)
		out = jsonenc.AppendString(out, b.vertexVersion)
		out = append(out, ',')
	}
	out = append(out, `"max_tokens":`...)
	out = strconv.AppendInt(out, maxTokens, 10)
	if budget > 0 {
		out = append(out, `,"thinking":{"type":"enabled","budget_tokens":`...)
		out = strconv.AppendInt(out, budget, 10)
		out = append(out, '}')
	}
	if len(b.sys) > 0 {
		out = append(out, `,"system":[`...)
		out = append(out, b.sys...)
		out = append(out, ']')
	}
	out = append(out, `,"messages":[`...)
	out = append(out, b.msgs...)
	out = append(out, ']')

	if temperature.Exists() {
		if temperature.Type != gjson.Number {
			return nil, chatreq.TypeErr("temperature", "a number")
		}
		if temperature.Num < 0 || temperature.Num > 1 {
			return nil, chatreq.Invalid("temperature", "Anthropic accepts a temperature between 0 and 1; got "+temperature.Raw+".")
		}
		out = append(out, `,"temperature":`...)
		out = append(out, temperature.Raw...)
	}
	if topP.Exists() {
		if topP.Type != gjson.Number || topP.Num < 0 || topP.Num > 1 {
			return nil, chatreq.Invalid("top_p", "'top_p' must be a number between 0 and 1.")
		}
		out = append(out, `,"top_p":`...)
		out = append(out, topP.Raw...)
	}
	if topK.Exists() {
		n, ok := chatreq.IntValue(topK)
		if !ok || n < 0 {
			return nil, chatreq.Invalid("top_k", "'top_k' must be a non-negative integer.")
		}
		out = append(out, `,"top_k":`...)
		out = strconv.AppendInt(out, n, 10)
	}
	if stop.Exists() {
		var e *translate.Error
		if out, e = appendStop(out, stop); e != nil {
			return nil, e
		}
	}
	if b.stream {
		out = append(out, `,"stream":true`...)
	}
	uid := user
	if safetyID.Exists() {
		uid = safetyID
	}
	if uid.Exists() {
		if uid.Type != gjson.String {
			return nil, chatreq.TypeErr("user", "a string")
		}
		if uid.Str != "" {
			out = append(out, `,"metadata":{"user_id":`...)
			out = jsonenc.AppendString(out, uid.Str)
			out = append(out, '}')
		}
	}
	var e *translate.Error
	if out, e = appendTools(out, tools, toolChoice, parallel, respFmt); e != nil {
		return nil, e
	}
	return append(out, '}'), nil
}

func appendStop(out []byte, stop gjson.Result) ([]byte, *translate.Error) {
	seqs, bad := chatreq.StopSequences(stop)
	if bad != nil {
		return nil, bad
	}
	n := 0
	for _, s := range seqs {
		if strings.TrimSpace(s) == "" {
			continue // Anthropic rejects empty and all-whitespace sequences
		}
		if n == 0 {
			out = append(out, `,"stop_sequences":[`...)
		} else {
			out = append(out, ',')
		}
		out = jsonenc.AppendString(out, s)
		n++
	}
	if n > 0 {
		out = append(out, ']')
	}
	return out, nil
}

// ---- messages ----

// block appends one content block (already encoded) to the turn of role.
func (b *builder) block(role string, blk []byte) {
	if !b.turnOpen || b.turn != role {
		b.closeTurn()
		if len(b.msgs) > 0 {
			b.msgs = append(b.msgs, ',')
		}
		b.msgs = append(b.msgs, `{"role":"`...)
		b.msgs = append(b.msgs, role...)
		b.msgs = append(b.msgs, `","content":[`...)
		b.turn, b.turnOpen = role, true
	} else {
		b.msgs = append(b.msgs, ',')
	}
	b.msgs = append(b.msgs, blk...)
}

func (b *builder) closeTurn() {
	if b.turnOpen {
		b.msgs = append(b.msgs, "]}"...)
		b.turnOpen = false
	}
}

func textBlock(dst []byte, text string) []byte {
	dst = append(dst, `{"type":"text","text":`...)
	dst = jsonenc.AppendString(dst, text)
	return append(dst, '}')
}

// messages appends the system blocks and the turns of the messages.
func (b *builder) messages(msgs gjson.Result) *translate.Error {
	return chatreq.EachMessage(msgs, func(p, role string, m gjson.Result) (bad *translate.Error) {
		content := m.Get("content")
		switch role {
		case "system", "developer":
			// Anthropic has one top-level system prompt: every system and
			// developer message is hoisted into it, in order.
			bad = chatreq.EachText(p+".content", content, false, provider, func(t string) {
				if t == "" {
					return
				}
				if len(b.sys) > 0 {
					b.sys = append(b.sys, ',')
				}
				if b.sys == nil {
					b.sys = make([]byte, 0, len(t)+64)
				}
				b.sys = textBlock(b.sys, t)
			})
		case "user":
			bad = b.userContent(p, content)
		case "assistant":
			bad = chatreq.EachText(p+".content", content, true, provider, func(t string) {
				if t != "" {
					b.scratch = textBlock(b.scratch[:0], t)
					b.block("assistant", b.scratch)
				}
			})
			if bad == nil {
				bad = b.toolCalls(p, m.Get("tool_calls"))
			}
		case "tool":
			var id string
			if id, bad = chatreq.ToolCallID(p, m); bad != nil {
				return bad
			}
			b.scratch = append(b.scratch[:0], `{"type":"tool_result","tool_use_id":`...)
			b.scratch = jsonenc.AppendString(b.scratch, id)
			n := 0
			bad = chatreq.EachText(p+".content", content, false, provider, func(t string) {
				if t == "" {
					return
				}
				if n == 0 {
					b.scratch = append(b.scratch, `,"content":[`...)
				} else {
					b.scratch = append(b.scratch, ',')
				}
				b.scratch = textBlock(b.scratch, t)
				n++
			})
			if n > 0 {
				b.scratch = append(b.scratch, ']')
			}
			b.scratch = append(b.scratch, '}')
			// Consecutive tool results (and a user message after them)
			// share one user turn, as Anthropic requires.
			b.block("user", b.scratch)
		}
		return bad
	})
}

// userContent appends the blocks of a user message's content.
func (b *builder) userContent(p string, content gjson.Result) *translate.Error {
	return chatreq.EachPart(p+".content", content, func(txt string) {
		if txt != "" {
			b.scratch = textBlock(b.scratch[:0], txt)
			b.block("user", b.scratch)
		}
	}, func(pp, t string, part gjson.Result) (bad *translate.Error) {
		switch t {
		case "image_url":
			b.scratch, bad = appendImage(b.scratch[:0], pp+".image_url.url", chatreq.ImageURL(part))
			if bad == nil {
				b.block("user", b.scratch)
			}
		case "input_audio":
			bad = chatreq.Unsupported(pp, "Anthropic models do not accept audio input.")
		case "file":
			bad = chatreq.Unsupported(pp, "File content parts are not translated for Anthropic models.")
		default:
			bad = chatreq.Unsupported(pp+".type", "Content part type '"+t+"' is not supported for Anthropic models.")
		}
		return bad
	})
}

// Image media types Anthropic accepts.
var imageTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// appendImage appends an Anthropic image block for an OpenAI image URL: a
// data URL becomes a base64 source, an http(s) URL a url source.
func appendImage(dst []byte, param, url string) ([]byte, *translate.Error) {
	switch {
	case strings.HasPrefix(url, "data:"):
		mt, data, ok := chatreq.Base64DataURL(url)
		if !ok {
			return dst, chatreq.Invalid(param, "Image data URLs must be base64: data:<media type>;base64,<data>.")
		}
		mt = strings.ToLower(strings.TrimSpace(mt))
		if !imageTypes[mt] {
			return dst, chatreq.Invalid(param, "Anthropic accepts image/jpeg, image/png, image/gif and image/webp; got '"+mt+"'.")
		}
		dst = append(dst, `{"type":"image","source":{"type":"base64","media_type":`...)
		dst = jsonenc.AppendString(dst, mt)
		dst = append(dst, `,"data":`...)
		dst = jsonenc.AppendString(dst, data)
		return append(dst, "}}"...), nil
	case strings.HasPrefix(url, "https://"), strings.HasPrefix(url, "http://"):
		dst = append(dst, `{"type":"image","source":{"type":"url","url":`...)
		dst = jsonenc.AppendString(dst, url)
		return append(dst, "}}"...), nil
	}
	return dst, chatreq.Invalid(param, "An image URL must be an http(s) URL or a base64 data URL.")
}

// toolCalls appends a tool_use block for each tool call of the assistant
// message at p.
func (b *builder) toolCalls(p string, calls gjson.Result) *translate.Error {
	return chatreq.EachToolCall(p, calls, provider, func(id, name, args string) {
		b.scratch = append(b.scratch[:0], `{"type":"tool_use","id":`...)
		b.scratch = jsonenc.AppendString(b.scratch, id)
		b.scratch = append(b.scratch, `,"name":`...)
		b.scratch = jsonenc.AppendString(b.scratch, name)
		b.scratch = append(b.scratch, `,"input":`...)
		b.scratch = append(b.scratch, args...)
		b.scratch = append(b.scratch, '}')
		b.block("assistant", b.scratch)
	})
}

// ---- tools, tool_choice, response_format ----

// appendSchema appends an object JSON schema, adding "type":"object" when
// the schema has no type (Anthropic requires it on input_schema).
func appendSchema(dst []byte, param string, schema gjson.Result) ([]byte, *translate.Error) {
	if chatreq.IsNull(schema) {
		return append(dst, `{"type":"object","properties":{}}`...), nil
	}
	if !schema.IsObject() {
		return dst, chatreq.TypeErr(param, "a JSON schema object")
	}
	if t := schema.Get("type"); t.Exists() {
		if t.Str != "object" {
			return dst, chatreq.Invalid(param, "Anthropic needs an object schema here (type \"object\").")
		}
		return append(dst, schema.Raw...), nil
	}
	inner := strings.TrimSpace(schema.Raw[1:])
	dst = append(dst, `{"type":"object"`...)
	if !strings.HasPrefix(inner, "}") {
		dst = append(dst, ',')
	}
	return append(dst, inner...), nil
}

func appendTools(out []byte, tools, choice, parallel, respFmt gjson.Result) ([]byte, *translate.Error) {
	var (
		names []string
		bad   *translate.Error
	)
	n := 0
	if tools.Exists() {
		names, bad = chatreq.EachFunctionTool(tools, provider, ResponseTool, func(p, name string, fn gjson.Result) (err *translate.Error) {
			if n == 0 {
				out = append(out, `,"tools":[`...)
			} else {
				out = append(out, ',')
			}
			n++
			out = append(out, `{"name":`...)
			out = jsonenc.AppendString(out, name)
			if d := fn.Get("description").Str; d != "" {
				out = append(out, `,"description":`...)
				out = jsonenc.AppendString(out, d)
			}
			out = append(out, `,"input_schema":`...)
			out, err = appendSchema(out, p+".function.parameters", fn.Get("parameters"))
			out = append(out, '}')
			return err
		})
		if bad != nil {
			return nil, bad
		}
	}

	// response_format: a forced tool whose input schema is the requested
	// schema; the decoder returns its input as the message content.
	jsonMode, schema, desc, bad := chatreq.ResponseTool(respFmt, provider)
	if bad != nil {
		return nil, bad
	}
	if jsonMode {
		if n == 0 {
			out = append(out, `,"tools":[`...)
		} else {
			out = append(out, ',')
		}
		out = append(out, `{"name":"`+ResponseTool+`","description":`...)
		out = jsonenc.AppendString(out, desc)
		out = append(out, `,"input_schema":`...)
		if chatreq.IsNull(schema) {
			out = append(out, `{"type":"object"}`...)
		} else if out, bad = appendSchema(out, "response_format.json_schema.schema", schema); bad != nil {
			return nil, bad
		}
		out = append(out, '}')
	}
	if n > 0 || jsonMode {
		out = append(out, ']')
	}

	// tool_choice
	explicit := choice.Exists()
	kind, named, bad := chatreq.ToolChoice(choice, names, provider)
	if bad != nil {
		return nil, bad
	}
	if jsonMode {
		switch {
		case kind == "none" || (kind == "auto" && n == 0):
			kind, named = "named", ResponseTool
		case kind == "auto":
			kind = "required" // a client tool or the JSON answer
		}
	}
	if n == 0 && !jsonMode {
		return out, nil // no tools: nothing to choose
	}
	noParallel := parallel.Type == gjson.False
	if kind == "auto" && !explicit && !noParallel {
		return out, nil // Anthropic's default
	}
	out = append(out, `,"tool_choice":{"type":`...)
	switch kind {
	case "auto":
		out = append(out, `"auto"`...)
	case "none":
		// Never a tool: Anthropic's own "none".
		return append(out, `"none"}`...), nil
	case "required":
		out = append(out, `"any"`...)
	case "named":
		out = append(out, `"tool","name":`...)
		out = jsonenc.AppendString(out, named)
	}
	if noParallel {
		out = append(out, `,"disable_parallel_tool_use":true`...)
	}
	return append(out, '}'), nil
}
