// Package chatreq reads OpenAI chat completion request bodies for the
// provider translators: content values and their parts, data URLs, tool
// calls and tool messages, and the request errors a translator returns for
// them. It writes no provider JSON; each translator encodes what it reads.
//
// Where a message names the provider, the caller passes the name in.
package chatreq

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

// Invalid returns a 400 error with OpenAI code "invalid_value" for param.
func Invalid(param, msg string) *translate.Error {
	return &translate.Error{Code: translate.CodeInvalidRequest, Param: param, OpenAICode: "invalid_value", Message: msg}
}

// Unsupported returns a 400 error with OpenAI code "unsupported_parameter"
// for param.
func Unsupported(param, msg string) *translate.Error {
	return &translate.Error{Code: translate.CodeInvalidRequest, Param: param, OpenAICode: "unsupported_parameter", Message: msg}
}

// TypeErr returns a 400 error with OpenAI code "invalid_type" saying that
// param should be want (an indefinite noun phrase: "an integer").
func TypeErr(param, want string) *translate.Error {
	return &translate.Error{Code: translate.CodeInvalidRequest, Param: param, OpenAICode: "invalid_type",
		Message: "Invalid type for '" + param + "': expected " + want + "."}
}

// Missing returns a 400 error with OpenAI code "missing_required_parameter"
// for param.
func Missing(param string) *translate.Error {
	return &translate.Error{Code: translate.CodeInvalidRequest, Param: param, OpenAICode: "missing_required_parameter",
		Message: "Missing required parameter: '" + param + "'."}
}

// IsNull reports whether r is absent or JSON null: OpenAI treats both as
// "not set".
func IsNull(r gjson.Result) bool { return !r.Exists() || r.Type == gjson.Null }

// IntValue reads an integral JSON number.
func IntValue(v gjson.Result) (int64, bool) {
	if v.Type != gjson.Number || v.Num != float64(int64(v.Num)) {
		return 0, false
	}
	return int64(v.Num), true
}

// StopSequences reads the "stop" parameter: a string or an array of
// strings. Empty sequences are kept; the caller drops what its provider
// refuses.
func StopSequences(stop gjson.Result) ([]string, *translate.Error) {
	var seqs []string
	switch {
	case stop.Type == gjson.String:
		seqs = append(seqs, stop.Str)
	case stop.IsArray():
		var bad *translate.Error
		stop.ForEach(func(_, v gjson.Result) bool {
			if v.Type != gjson.String {
				bad = TypeErr("stop", "a string or an array of strings")
				return false
			}
			seqs = append(seqs, v.Str)
			return true
		})
		if bad != nil {
			return nil, bad
		}
	default:
		return nil, TypeErr("stop", "a string or an array of strings")
	}
	return seqs, nil
}

// EachPart walks an OpenAI content value at param: a string is passed to
// text, and so is the text of each "text" part of an array; every other
// part goes to other with its param (param[i]) and type, and an error from
// other stops the walk. A null or absent content calls nothing; any other
// JSON type is an invalid_type error.
func EachPart(param string, content gjson.Result, text func(string), other func(pp, typ string, part gjson.Result) *translate.Error) *translate.Error {
	switch {
	case IsNull(content):
		return nil
	case content.Type == gjson.String:
		text(content.Str)
		return nil
	case content.IsArray():
		var bad *translate.Error
		j := 0
		content.ForEach(func(_, part gjson.Result) bool {
			pp := param + "[" + strconv.Itoa(j) + "]"
			j++
			if t := part.Get("type").Str; t == "text" {
				text(part.Get("text").Str)
			} else {
				bad = other(pp, t, part)
			}
			return bad == nil
		})
		return bad
	}
	return TypeErr(param, "a string or an array of content parts")
}

// EachText calls fn with each text of an OpenAI content value at param (a
// string, or an array of text parts; refusal parts too when refusals is
// set). A null or absent content calls nothing. Any other part type is
// refused as not supported for provider's models.
func EachText(param string, content gjson.Result, refusals bool, provider string, fn func(string)) *translate.Error {
	return EachPart(param, content, fn, func(pp, t string, part gjson.Result) *translate.Error {
		if t == "refusal" && refusals {
			fn(part.Get("refusal").Str)
			return nil
		}
		return Unsupported(pp+".type", "Content part type '"+t+"' is not supported here for "+provider+" models.")
	})
}

// ImageURL returns the URL of an "image_url" content part: image_url.url,
// or image_url itself when a client sends the short string form.
func ImageURL(part gjson.Result) string {
	iu := part.Get("image_url")
	if iu.Type == gjson.String {
		return iu.Str
	}
	return iu.Get("url").Str
}

// Base64DataURL splits a base64 data URL, data:<media type>;base64,<data>,
// into its media type (as written) and its data. ok is false when url is
// not such a URL or its data is empty.
func Base64DataURL(url string) (mediaType, data string, ok bool) {
	rest, isData := strings.CutPrefix(url, "data:")
	meta, data, hasComma := strings.Cut(rest, ",")
	mediaType, isB64 := strings.CutSuffix(meta, ";base64")
	if !isData || !hasComma || !isB64 || data == "" {
		return "", "", false
	}
	return mediaType, data, true
}

// EachToolCall calls fn with the id, function name and arguments (a JSON
// object, "{}" when empty) of each function tool call in the tool_calls of
// the assistant message at p. Null or absent tool_calls call nothing; a
// call of another type, without an id or name, or with arguments that are
// not a JSON object is refused, naming provider.
func EachToolCall(p string, calls gjson.Result, provider string, fn func(id, name, args string)) *translate.Error {
	if IsNull(calls) {
		return nil
	}
	if !calls.IsArray() {
		return TypeErr(p+".tool_calls", "an array")
	}
	var bad *translate.Error
	j := 0
	calls.ForEach(func(_, c gjson.Result) bool {
		pp := p + ".tool_calls[" + strconv.Itoa(j) + "]"
		j++
		if t := c.Get("type"); t.Exists() && t.Str != "function" {
			bad = Unsupported(pp+".type", "Only function tool calls are translated for "+provider+" models.")
			return false
		}
		id, name := c.Get("id").Str, c.Get("function.name").Str
		if id == "" || name == "" {
			bad = Invalid(pp, "A tool call needs an 'id' and a 'function.name'.")
			return false
		}
		args := strings.TrimSpace(c.Get("function.arguments").Str)
		if args == "" {
			args = "{}"
		}
		if !gjson.Valid(args) || !gjson.Parse(args).IsObject() {
			bad = Invalid(pp+".function.arguments", "Tool call arguments must be a JSON object for "+provider+" models.")
			return false
		}
		fn(id, name, args)
		return true
	})
	return bad
}

// EachFunctionTool checks the "tools" parameter, an array of function
// tools, and calls fn with the param (tools[i]), name and "function" object
// of each; an error from fn stops the walk. It returns the tool names in
// order. A tool of another type, without a name, or named reserved (the
// gateway's own tool) is refused; messages name provider.
func EachFunctionTool(tools gjson.Result, provider, reserved string, fn func(p, name string, function gjson.Result) *translate.Error) ([]string, *translate.Error) {
	if !tools.IsArray() {
		return nil, TypeErr("tools", "an array")
	}
	var names []string
	var bad *translate.Error
	i := 0
	tools.ForEach(func(_, tl gjson.Result) bool {
		p := "tools[" + strconv.Itoa(i) + "]"
		i++
		if t := tl.Get("type").Str; t != "function" {
			bad = Unsupported(p+".type", "Only function tools are translated for "+provider+" models; got '"+t+"'.")
			return false
		}
		function := tl.Get("function")
		name := function.Get("name")
		if name.Type != gjson.String || name.Str == "" {
			bad = Invalid(p+".function.name", "A function tool needs a name.")
			return false
		}
		if name.Str == reserved {
			bad = Invalid(p+".function.name", "The tool name '"+reserved+"' is reserved by the gateway.")
			return false
		}
		names = append(names, name.Str)
		bad = fn(p, name.Str, function)
		return bad == nil
	})
	return names, bad
}

// ResponseTool reads response_format for a provider that answers in JSON
// through a forced tool: jsonMode is set for json_object and json_schema,
// with the requested schema (null when none) and a description for the
// tool. Other types than text are refused; messages name provider.
func ResponseTool(respFmt gjson.Result, provider string) (jsonMode bool, schema gjson.Result, desc string, err *translate.Error) {
	if !respFmt.Exists() {
		return false, schema, "", nil
	}
	desc = "Reply to the user by calling this tool exactly once; its input is the whole answer, as a JSON object."
	switch t := respFmt.Get("type").Str; t {
	case "text":
	case "json_object":
		jsonMode = true
	case "json_schema":
		jsonMode = true
		js := respFmt.Get("json_schema")
		schema = js.Get("schema")
		if nm := js.Get("name").Str; nm != "" {
			desc += " Schema: " + nm + "."
		}
		if d := js.Get("description").Str; d != "" {
			desc += " " + d
		}
	default:
		return false, schema, desc, Unsupported("response_format.type", "response_format type '"+t+"' is not supported for "+provider+" models.")
	}
	return jsonMode, schema, desc, nil
}

// ToolChoice reads tool_choice against the declared tool names: kind is
// "auto" (also when choice is absent), "none", "required" or "named", with
// named the function's name. Naming an undeclared function, or requiring a
// tool when none is declared, is invalid; other forms are refused, naming
// provider.
func ToolChoice(choice gjson.Result, names []string, provider string) (kind, named string, err *translate.Error) {
	kind = "auto"
	switch {
	case !choice.Exists():
	case choice.Type == gjson.String:
		switch choice.Str {
		case "auto", "none", "required":
			kind = choice.Str
		default:
			return "", "", Invalid("tool_choice", "tool_choice must be 'auto', 'none', 'required' or a named function.")
		}
	case choice.IsObject() && choice.Get("type").Str == "function":
		kind, named = "named", choice.Get("function.name").Str
		found := false
		for _, nm := range names {
			found = found || nm == named
		}
		if !found {
			return "", "", Invalid("tool_choice", "tool_choice names function '"+named+"', which is not in 'tools'.")
		}
	default:
		return "", "", Unsupported("tool_choice", "This tool_choice form is not supported for "+provider+" models.")
	}
	if len(names) == 0 && (kind == "required" || kind == "named") {
		return "", "", Invalid("tool_choice", "'tool_choice' requires 'tools'.")
	}
	return kind, named, nil
}

// EachMessage calls fn with the param (messages[i]), role and value of
// each message of msgs in order, stopping at the first error. fn sees the
// roles system, developer, user, assistant and tool; the deprecated
// function role and unknown roles are refused here.
func EachMessage(msgs gjson.Result, fn func(p, role string, m gjson.Result) *translate.Error) *translate.Error {
	var bad *translate.Error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		p := "messages[" + strconv.Itoa(i) + "]"
		i++
		switch role := m.Get("role").Str; role {
		case "system", "developer", "user", "assistant", "tool":
			bad = fn(p, role, m)
		case "function":
			bad = Unsupported(p+".role", "The deprecated 'function' role is not translated; use 'tool' messages.")
		default:
			bad = Invalid(p+".role", "Unknown role '"+role+"'.")
		}
		return bad == nil
	})
	return bad
}

// ToolCallID returns the tool_call_id of the tool message m at p, or a
// missing-parameter error when it is not a non-empty string.
func ToolCallID(p string, m gjson.Result) (string, *translate.Error) {
	id := m.Get("tool_call_id")
	if id.Type != gjson.String || id.Str == "" {
		return "", Missing(p + ".tool_call_id")
	}
	return id.Str, nil
}

// OpenAIOnly checks the top-level parameter key, set to the non-null v, when
// it asks for an OpenAI feature that provider (as named in a sentence:
// "Bedrock Converse") lacks: n other than 1, log probabilities, frequency
// and presence penalties, logit_bias, non-text modalities, audio output and
// the deprecated functions and function_call. handled is false for any
// other key; err is set when the value asks for what provider lacks.
func OpenAIOnly(key string, v gjson.Result, provider string) (handled bool, err *translate.Error) {
	switch key {
	case "n":
		if v.Type != gjson.Number || v.Num != 1 {
			err = Unsupported("n", provider+" returns one choice per request; 'n' must be 1.")
		}
	case "logprobs":
		if v.Type == gjson.True {
			err = Unsupported("logprobs", provider+" does not return log probabilities.")
		}
	case "top_logprobs":
		if v.Type != gjson.Number || v.Num != 0 {
			err = Unsupported("top_logprobs", provider+" does not return log probabilities.")
		}
	case "frequency_penalty", "presence_penalty":
		if v.Type != gjson.Number || v.Num != 0 {
			err = Unsupported(key, provider+" has no '"+key+"'.")
		}
	case "logit_bias":
		if !v.IsObject() || len(v.Map()) != 0 {
			err = Unsupported("logit_bias", provider+" has no 'logit_bias'.")
		}
	case "modalities":
		v.ForEach(func(_, m gjson.Result) bool {
			if m.Str != "text" {
				err = Unsupported("modalities", provider+" produces text only; modality '"+m.String()+"' is not supported.")
			}
			return err == nil
		})
	case "audio":
		err = Unsupported("audio", provider+" produces no audio output.")
	case "functions", "function_call":
		err = Unsupported(key, "'"+key+"' is deprecated and not translated; use 'tools' and 'tool_choice'.")
	default:
		return false, nil
	}
	return true, err
}

// Extended thinking for Anthropic Claude models (on Anthropic, Vertex and
// Bedrock), asked for with OpenAI's reasoning_effort.
const (
	// ClaudeMinThinkingBudget is the smallest budget_tokens Anthropic
	// accepts.
	ClaudeMinThinkingBudget = 1024
)

// claudeBudgets maps reasoning_effort to Claude's thinking budget_tokens
// (docs/providers/anthropic.md).
var claudeBudgets = map[string]int64{"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}

// ClaudeThinking reads reasoning_effort for Claude's extended thinking:
// the budget_tokens to ask for, 0 when thinking stays off (absent, null or
// "none").
func ClaudeThinking(effort gjson.Result) (int64, *translate.Error) {
	if IsNull(effort) || (effort.Type == gjson.String && effort.Str == "none") {
		return 0, nil
	}
	b, ok := claudeBudgets[effort.Str]
	if effort.Type != gjson.String || !ok {
		return 0, Invalid("reasoning_effort", "'reasoning_effort' must be one of none, minimal, low, medium, high.")
	}
	return b, nil
}

// ClaudeThinkingFit makes a thinking budget fit max_tokens, which Claude
// requires to be larger than the budget (both count thinking and answer,
// as OpenAI's max_completion_tokens does). Without a client limit
// (maxTokens 0) max_tokens becomes the budget plus answer, room for the
// answer. A client limit is kept: a budget that does
// not fit under it shrinks to half of it (at least the minimum budget),
// and a limit at or under the minimum budget is refused, naming param.
func ClaudeThinkingFit(budget, maxTokens, answer int64, param string) (newBudget, newMax int64, err *translate.Error) {
	switch {
	case maxTokens == 0:
		return budget, budget + answer, nil
	case maxTokens > budget:
		return budget, maxTokens, nil
	case maxTokens <= ClaudeMinThinkingBudget:
		return 0, 0, Invalid(param, "With 'reasoning_effort', '"+param+"' must be more than "+strconv.Itoa(ClaudeMinThinkingBudget)+
			": it counts the model's thinking, whose smallest budget is "+strconv.Itoa(ClaudeMinThinkingBudget)+" tokens.")
	}
	return max(maxTokens/2, ClaudeMinThinkingBudget), maxTokens, nil
}

// ClaudeThinkingConflicts refuses what Claude does not allow with extended
// thinking: a temperature other than 1, top_k, a top_p under 0.95, and a
// forced tool (tool_choice "required" or a named function, or a JSON
// response_format, which llmux answers through a forced tool).
func ClaudeThinkingConflicts(temperature, topP, topK, toolChoice, respFmt gjson.Result) *translate.Error {
	const why = " is not compatible with 'reasoning_effort' (extended thinking) on Claude models."
	switch {
	case !IsNull(temperature) && !(temperature.Type == gjson.Number && temperature.Num == 1):
		return Unsupported("temperature", "A 'temperature' other than 1"+why)
	case !IsNull(topK):
		return Unsupported("top_k", "'top_k'"+why)
	case !IsNull(topP) && topP.Type == gjson.Number && topP.Num < 0.95:
		return Unsupported("top_p", "A 'top_p' under 0.95"+why)
	case toolChoice.Type == gjson.String && toolChoice.Str == "required", toolChoice.IsObject():
		return Unsupported("tool_choice", "A forced tool_choice"+why)
	case respFmt.IsObject() && respFmt.Get("type").Str != "text":
		return Unsupported("response_format", "A JSON response_format (answered through a forced tool)"+why)
	}
	return nil
}
