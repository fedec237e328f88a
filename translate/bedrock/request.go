package bedrock

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chatreq"
	"github.com/llmux/llmux/translate/jsonenc"
)

// provider names Bedrock in error messages about its models.
const provider = "Bedrock"

// builder translates one OpenAI chat request body into a Converse body.
type builder struct {
	model string // the Bedrock model id (reasoning_effort is translated for Claude only)

	sys       []byte // system content blocks, comma separated
	msgs      []byte // turns, comma separated
	turn      string // role of the open turn in msgs
	turnOpen  bool
	scratch   []byte // one block being built, before it joins msgs
	nTurns    int
	toolHist  bool     // the conversation holds toolUse or toolResult blocks
	histTools []string // tool names the conversation's toolUse blocks call, once each
	jsonMode  bool     // response_format asks for JSON: the response tool is forced
}

// Top-level OpenAI parameters that are accepted and dropped: they tune
// OpenAI-side features (storage, service tiers, caching keys, end-user
// ids, determinism hints) that Converse has no field for and that do not
// change the meaning of the answer. parallel_tool_calls is dropped too:
// Converse has no switch for it. Anything not handled and not listed here
// is refused with a 400 naming it.
var dropped = map[string]bool{
	"store": true, "metadata": true, "service_tier": true, "seed": true, "user": true, "safety_identifier": true,
	"prompt_cache_key": true, "prompt_cache_retention": true, "prediction": true, "parallel_tool_calls": true,
}

// build returns the Converse body for the OpenAI chat body s.
func (b *builder) build(s string) ([]byte, *translate.Error) {
	root := gjson.Parse(s)
	var (
		maxTok, maxComp, temperature, topP, topK, stop gjson.Result
		tools, toolChoice, respFmt, effort             gjson.Result
		bad                                            *translate.Error
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
		case "tools":
			tools = v
		case "tool_choice":
			toolChoice = v
		case "response_format":
			respFmt = v
		case "reasoning_effort":
			effort = v
		default:
			var handled bool
			if handled, bad = chatreq.OpenAIOnly(k.Str, v, "Bedrock Converse"); !handled && !dropped[k.Str] {
				bad = chatreq.Unsupported(k.Str, "Unrecognized request argument supplied: "+k.Str+" (not supported for Bedrock models).")
			}
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}

	// The turns are about as long as the request: one buffer, not a
	// growing one.
	b.msgs = make([]byte, 0, len(s))
	if e := b.messages(msgs); e != nil {
		return nil, e
	}
	b.closeTurn()

	out := make([]byte, 0, len(s)+len(b.sys)+256)
	out = append(out, `{"messages":[`...)
	out = append(out, b.msgs...)
	out = append(out, ']')
	if len(b.sys) > 0 {
		out = append(out, `,"system":[`...)
		out = append(out, b.sys...)
		out = append(out, ']')
	}

	// inferenceConfig
	n := 0
	field := func(name string) {
		if n == 0 {
			out = append(out, `,"inferenceConfig":{`...)
		} else {
			out = append(out, ',')
		}
		n++
		out = append(out, '"')
		out = append(out, name...)
		out = append(out, `":`...)
	}
	var maxTokens int64
	maxParam := "max_tokens"
	for _, mt := range []struct {
		name string
		v    gjson.Result
	}{{"max_tokens", maxTok}, {"max_completion_tokens", maxComp}} {
		if !mt.v.Exists() {
			continue
		}
		v, ok := chatreq.IntValue(mt.v)
		if !ok {
			return nil, chatreq.TypeErr(mt.name, "an integer")
		}
		if v < 1 {
			return nil, chatreq.Invalid(mt.name, "'"+mt.name+"' must be at least 1.")
		}
		maxTokens, maxParam = v, mt.name
	}
	// reasoning_effort: Claude's extended thinking, through
	// additionalModelRequestFields; maxTokens must exceed the budget.
	budget, bad := chatreq.ClaudeThinking(effort)
	if bad != nil {
		return nil, bad
	}
	if budget > 0 {
		if !IsClaude(b.model) {
			return nil, chatreq.Unsupported("reasoning_effort", "'reasoning_effort' is translated for Anthropic Claude models on Bedrock only.")
		}
		if bad = chatreq.ClaudeThinkingConflicts(temperature, topP, topK, toolChoice, respFmt); bad != nil {
			return nil, bad
		}
		if budget, maxTokens, bad = chatreq.ClaudeThinkingFit(budget, maxTokens, ThinkingAnswerTokens, maxParam); bad != nil {
			return nil, bad
		}
	}
	if maxTokens > 0 {
		field("maxTokens")
		out = strconv.AppendInt(out, maxTokens, 10)
	}
	if temperature.Exists() {
		if temperature.Type != gjson.Number || temperature.Num < 0 {
			return nil, chatreq.Invalid("temperature", "'temperature' must be a non-negative number.")
		}
		field("temperature")
		out = append(out, temperature.Raw...)
	}
	if topP.Exists() {
		if topP.Type != gjson.Number || topP.Num < 0 || topP.Num > 1 {
			return nil, chatreq.Invalid("top_p", "'top_p' must be a number between 0 and 1.")
		}
		field("topP")
		out = append(out, topP.Raw...)
	}
	if stop.Exists() {
		seqs, e := stopSequences(stop)
		if e != nil {
			return nil, e
		}
		if len(seqs) > 0 {
			field("stopSequences")
			out = append(out, '[')
			for i, q := range seqs {
				if i > 0 {
					out = append(out, ',')
				}
				out = jsonenc.AppendString(out, q)
			}
			out = append(out, ']')
		}
	}
	if n > 0 {
		out = append(out, '}')
	}
	if topK.Exists() {
		// Converse has no top_k; models that take one (Anthropic Claude,
		// Mistral) read it from additionalModelRequestFields.
		v, ok := chatreq.IntValue(topK)
		if !ok || v < 0 {
			return nil, chatreq.Invalid("top_k", "'top_k' must be a non-negative integer.")
		}
		out = append(out, `,"additionalModelRequestFields":{"top_k":`...)
		out = strconv.AppendInt(out, v, 10)
		out = append(out, '}')
	} else if budget > 0 {
		// top_k and thinking never go together (ClaudeThinkingConflicts).
		out = append(out, `,"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":`...)
		out = strconv.AppendInt(out, budget, 10)
		out = append(out, "}}"...)
	}
	var e *translate.Error
	if out, e = b.appendToolConfig(out, tools, toolChoice, respFmt); e != nil {
		return nil, e
	}
	return append(out, '}'), nil
}

// ThinkingAnswerTokens is the room for the answer that maxTokens adds to
// the thinking budget when the client sets no limit (Converse needs
// maxTokens above the budget; Claude's own default may be lower).
const ThinkingAnswerTokens = 4096

// IsClaude reports whether a Bedrock model id (or inference profile id)
// names an Anthropic Claude model.
func IsClaude(model string) bool { return strings.Contains(model, "anthropic.claude") }

// stopSequences reads "stop", leaving out the empty sequences.
func stopSequences(stop gjson.Result) ([]string, *translate.Error) {
	seqs, bad := chatreq.StopSequences(stop)
	if bad != nil {
		return nil, bad
	}
	out := seqs[:0]
	for _, q := range seqs {
		if q != "" { // Converse rejects empty sequences
			out = append(out, q)
		}
	}
	return out, nil
}

// ---- messages ----

// block appends one content block (already encoded) to the turn of role,
// opening a new turn when the role changes: consecutive messages of one
// role (and consecutive tool results) share one Converse turn.
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
		b.nTurns++
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
	dst = append(dst, `{"text":`...)
	dst = jsonenc.AppendString(dst, text)
	return append(dst, '}')
}

func (b *builder) messages(msgs gjson.Result) *translate.Error {
	if !msgs.IsArray() {
		return chatreq.TypeErr("messages", "an array")
	}
	bad := chatreq.EachMessage(msgs, func(p, role string, m gjson.Result) (bad *translate.Error) {
		content := m.Get("content")
		switch role {
		case "system", "developer":
			// Converse has one top-level system prompt: every system and
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
			b.toolHist = true
			b.scratch = append(b.scratch[:0], `{"toolResult":{"toolUseId":`...)
			b.scratch = jsonenc.AppendString(b.scratch, id)
			b.scratch = append(b.scratch, `,"content":[`...)
			n := 0
			bad = chatreq.EachText(p+".content", content, false, provider, func(t string) {
				if t == "" {
					return
				}
				if n > 0 {
					b.scratch = append(b.scratch, ',')
				}
				b.scratch = textBlock(b.scratch, t)
				n++
			})
			if n == 0 {
				// Converse needs at least one result block.
				b.scratch = append(b.scratch, `{"json":{}}`...)
			}
			b.scratch = append(b.scratch, "]}}"...)
			b.block("user", b.scratch)
		}
		return bad
	})
	if bad == nil && b.nTurns == 0 && !b.turnOpen {
		return chatreq.Invalid("messages", "Bedrock Converse needs at least one user or assistant message with content.")
	}
	return bad
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
			bad = chatreq.Unsupported(pp, "Bedrock Converse does not accept audio input.")
		case "file":
			bad = chatreq.Unsupported(pp, "File content parts are not translated for Bedrock models.")
		default:
			bad = chatreq.Unsupported(pp+".type", "Content part type '"+t+"' is not supported for Bedrock models.")
		}
		return bad
	})
}

// imageFormats maps media types and file extensions to Converse image
// formats.
var imageFormats = map[string]string{
	"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/gif": "gif", "image/webp": "webp",
	".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".webp": "webp",
}

// appendImage appends a Converse image block for an OpenAI image URL: a
// base64 data URL becomes source.bytes, an s3:// URL source.s3Location.
// http(s) URLs are refused: Converse takes no web URLs, and a translator
// does no I/O.
func appendImage(dst []byte, param, url string) ([]byte, *translate.Error) {
	switch {
	case strings.HasPrefix(url, "data:"):
		mt, data, ok := chatreq.Base64DataURL(url)
		if !ok {
			return dst, chatreq.Invalid(param, "Image data URLs must be base64: data:<media type>;base64,<data>.")
		}
		mt = strings.ToLower(strings.TrimSpace(mt))
		format, known := imageFormats[mt]
		if !known || !strings.HasPrefix(mt, "image/") {
			return dst, chatreq.Invalid(param, "Bedrock accepts image/png, image/jpeg, image/gif and image/webp; got '"+mt+"'.")
		}
		dst = append(dst, `{"image":{"format":"`...)
		dst = append(dst, format...)
		dst = append(dst, `","source":{"bytes":`...)
		dst = jsonenc.AppendString(dst, data)
		return append(dst, "}}}"...), nil
	case strings.HasPrefix(url, "s3://"):
		ext := strings.ToLower(url[strings.LastIndexByte(url, '.')+1:])
		format, known := imageFormats["."+ext]
		if !known || !strings.Contains(url, ".") {
			return dst, chatreq.Invalid(param, "An s3:// image URL must end in .png, .jpg, .jpeg, .gif or .webp.")
		}
		dst = append(dst, `{"image":{"format":"`...)
		dst = append(dst, format...)
		dst = append(dst, `","source":{"s3Location":{"uri":`...)
		dst = jsonenc.AppendString(dst, url)
		return append(dst, "}}}}"...), nil
	case strings.HasPrefix(url, "https://"), strings.HasPrefix(url, "http://"):
		return dst, &translate.Error{Code: translate.CodeInvalidRequest, Param: param, OpenAICode: "unsupported_image_url",
			Message: "Bedrock models take images as bytes (or from S3), not web URLs, and the gateway does not fetch URLs: send the image as a base64 data URL (data:image/png;base64,...) or an s3:// URL."}
	}
	return dst, chatreq.Invalid(param, "An image URL must be a base64 data URL or an s3:// URL for Bedrock models.")
}

// toolCalls appends a toolUse block for each tool call of the assistant
// message at p.
func (b *builder) toolCalls(p string, calls gjson.Result) *translate.Error {
	return chatreq.EachToolCall(p, calls, provider, func(id, name, args string) {
		b.toolHist = true
		if !slices.Contains(b.histTools, name) {
			b.histTools = append(b.histTools, name)
		}
		b.scratch = append(b.scratch[:0], `{"toolUse":{"toolUseId":`...)
		b.scratch = jsonenc.AppendString(b.scratch, id)
		b.scratch = append(b.scratch, `,"name":`...)
		b.scratch = jsonenc.AppendString(b.scratch, name)
		b.scratch = append(b.scratch, `,"input":`...)
		b.scratch = append(b.scratch, args...)
		b.scratch = append(b.scratch, "}}"...)
		b.block("assistant", b.scratch)
	})
}

// ---- toolConfig ----

// toolSpec appends {"toolSpec":{name, description, inputSchema:{json}}}.
func appendToolSpec(dst []byte, param, name, desc string, schema gjson.Result) ([]byte, *translate.Error) {
	dst = append(dst, `{"toolSpec":{"name":`...)
	dst = jsonenc.AppendString(dst, name)
	if desc != "" {
		dst = append(dst, `,"description":`...)
		dst = jsonenc.AppendString(dst, desc)
	}
	dst = append(dst, `,"inputSchema":{"json":`...)
	switch {
	case chatreq.IsNull(schema):
		dst = append(dst, `{"type":"object","properties":{}}`...)
	case !schema.IsObject():
		return dst, chatreq.TypeErr(param, "a JSON schema object")
	default:
		dst = append(dst, schema.Raw...)
	}
	return append(dst, "}}}"...), nil
}

func (b *builder) appendToolConfig(out []byte, tools, choice, respFmt gjson.Result) ([]byte, *translate.Error) {
	var (
		specs []byte
		names []string
		bad   *translate.Error
	)
	if tools.Exists() {
		names, bad = chatreq.EachFunctionTool(tools, provider, ResponseTool, func(p, name string, fn gjson.Result) (err *translate.Error) {
			if len(specs) > 0 {
				specs = append(specs, ',')
			}
			specs, err = appendToolSpec(specs, p+".function.parameters", name, fn.Get("description").Str, fn.Get("parameters"))
			return err
		})
		if bad != nil {
			return nil, bad
		}
	}

	// response_format: a forced tool whose input schema is the requested
	// schema; the decoder returns its input as the message content.
	var (
		respSpec []byte
		schema   gjson.Result
		desc     string
	)
	if b.jsonMode, schema, desc, bad = chatreq.ResponseTool(respFmt, provider); bad != nil {
		return nil, bad
	}
	if b.jsonMode {
		if chatreq.IsNull(schema) {
			schema = gjson.Parse(`{"type":"object"}`)
		}
		if respSpec, bad = appendToolSpec(nil, "response_format.json_schema.schema", ResponseTool, desc, schema); bad != nil {
			return nil, bad
		}
	}

	// tool_choice
	explicit := choice.Exists()
	kind, named, bad := chatreq.ToolChoice(choice, names, provider)
	if bad != nil {
		return nil, bad
	}
	if kind == "none" && !b.toolHist {
		// Converse has no "none": the client tools are left out of this
		// request, so the model cannot call one. (When the conversation
		// already holds tool calls or results, Converse requires the tool
		// definitions; they are then kept, without a toolChoice.)
		specs, names = nil, nil
	}
	if b.jsonMode {
		switch {
		case kind == "none" || (kind == "auto" && len(names) == 0):
			kind, named = "named", ResponseTool
		case kind == "auto":
			kind = "required" // a client tool or the JSON answer
		}
	}
	if len(specs) == 0 && b.toolHist {
		// The conversation holds toolUse or toolResult blocks but the
		// request declares no tools (an agent's last turn): Converse
		// refuses tool blocks without a toolConfig. The tools the history
		// calls are declared with a schema that takes any object, and no
		// toolChoice is sent, so the model is free to answer in text.
		specs = b.historySpecs(specs)
	}
	if len(specs) == 0 && len(respSpec) == 0 {
		return out, nil // no tools: nothing to choose
	}
	out = append(out, `,"toolConfig":{"tools":[`...)
	out = append(out, specs...)
	if len(respSpec) > 0 {
		if len(specs) > 0 {
			out = append(out, ',')
		}
		out = append(out, respSpec...)
	}
	out = append(out, ']')
	switch kind {
	case "auto":
		if explicit {
			out = append(out, `,"toolChoice":{"auto":{}}`...)
		}
	case "none":
		// Never a tool and never a toolChoice: see above.
	case "required":
		out = append(out, `,"toolChoice":{"any":{}}`...)
	case "named":
		out = append(out, `,"toolChoice":{"tool":{"name":`...)
		out = jsonenc.AppendString(out, named)
		out = append(out, "}}"...)
	}
	return append(out, '}'), nil
}

// HistoryToolDescription describes a tool that the gateway declares to
// Converse only because the conversation's history calls it.
const HistoryToolDescription = "A tool called earlier in this conversation."

// historySpecs appends a toolSpec, taking any JSON object, for each tool
// the conversation's toolUse blocks call (the response tool excepted). When
// the history holds only toolResult blocks, whose toolUse Converse already
// requires in the turn before, nothing is called by name and no spec is
// added: Converse then refuses the request on its own terms.
func (b *builder) historySpecs(specs []byte) []byte {
	anyObject := gjson.Parse(`{"type":"object"}`)
	for _, name := range b.histTools {
		if name == ResponseTool {
			continue
		}
		if len(specs) > 0 {
			specs = append(specs, ',')
		}
		specs, _ = appendToolSpec(specs, "", name, HistoryToolDescription, anyObject)
	}
	return specs
}

// randHex returns n random hex digits.
func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
