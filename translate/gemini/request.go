package gemini

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chatreq"
	"github.com/llmux/llmux/translate/jsonenc"
)

// Top-level OpenAI parameters accepted and dropped: they tune OpenAI-side
// features (storage, tiers, cache keys, end-user ids) or have no Gemini
// equivalent that changes the answer (parallel_tool_calls: Gemini decides
// alone). Anything not handled and not listed is refused with a 400.
var dropped = map[string]bool{
	"store": true, "metadata": true, "service_tier": true, "user": true, "safety_identifier": true,
	"prompt_cache_key": true, "prompt_cache_retention": true, "parallel_tool_calls": true,
	"stream_options": true, "stream": true, "model": true, "messages": true,
}

// unsupported is chatreq.Unsupported with Code CodeUnsupported: Gemini's
// refusals of unsupported features keep their own error code.
func unsupported(param, msg string) *translate.Error {
	return &translate.Error{Code: translate.CodeUnsupported, Param: param, OpenAICode: "unsupported_parameter", Message: msg}
}

// chatBuilder translates one OpenAI chat request body into a Gemini
// GenerateContentRequest body.
// ProMinThinkingBudget is the smallest thinkingBudget of Gemini Pro
// models, which refuse 0 ("This model only works in thinking mode").
const ProMinThinkingBudget = 128

type chatBuilder struct {
	model     string // the model id (Pro models cannot turn thinking off)
	n         int
	sys       []byte // systemInstruction parts, comma separated
	contents  []byte // turns, comma separated
	turnOpen  bool   // the last turn in contents is open (tool results)
	toolNames map[string]string
	declared  map[string]bool
}

// build returns the Gemini body for the OpenAI body s.
func (b *chatBuilder) build(s string) ([]byte, *translate.Error) {
	b.n = 1
	root := gjson.Parse(s)
	var (
		maxTok, maxComp, temperature, topP, topK, stop, seed gjson.Result
		presence, frequency, tools, toolChoice, respFmt      gjson.Result
		n, effort, msgs                                      gjson.Result
		bad                                                  *translate.Error
	)
	root.ForEach(func(k, v gjson.Result) bool {
		// msgs is the first messages member, null or not, as gjson.Get
		// finds it: read in the same pass as the parameters.
		if k.Str == "messages" && !msgs.Exists() {
			msgs = v
		}
		if chatreq.IsNull(v) || dropped[k.Str] {
			return true
		}
		switch k.Str {
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
		case "seed":
			seed = v
		case "presence_penalty":
			presence = v
		case "frequency_penalty":
			frequency = v
		case "tools":
			tools = v
		case "tool_choice":
			toolChoice = v
		case "response_format":
			respFmt = v
		case "n":
			n = v
		case "reasoning_effort":
			effort = v
		case "logprobs":
			if v.Type == gjson.True {
				bad = unsupported("logprobs", "Log probabilities are not translated for Gemini.")
			}
		case "top_logprobs":
			if v.Type != gjson.Number || v.Num != 0 {
				bad = unsupported("top_logprobs", "Log probabilities are not translated for Gemini.")
			}
		case "logit_bias":
			if !v.IsObject() || len(v.Map()) != 0 {
				bad = unsupported("logit_bias", "Gemini has no 'logit_bias'.")
			}
		case "modalities":
			v.ForEach(func(_, m gjson.Result) bool {
				if m.Str != "text" {
					bad = unsupported("modalities", "Only text output is translated for Gemini; modality '"+m.String()+"' is not supported.")
				}
				return bad == nil
			})
		case "audio":
			bad = unsupported("audio", "Audio output is not translated for Gemini.")
		case "functions", "function_call":
			bad = unsupported(k.Str, "'"+k.Str+"' is deprecated and not translated; use 'tools' and 'tool_choice'.")
		default:
			bad = unsupported(k.Str, "Unrecognized or unsupported parameter '"+k.Str+"' for a Gemini deployment.")
		}
		return bad == nil
	})
	if bad != nil {
		return nil, bad
	}
	if !chatreq.IsNull(n) {
		if n.Type != gjson.Number || n.Num < 1 || n.Num > 8 || n.Num != float64(int(n.Num)) {
			return nil, chatreq.Invalid("n", "'n' must be an integer from 1 to 8 for Gemini.")
		}
		b.n = int(n.Num)
	}
	if !chatreq.IsNull(tools) {
		if err := b.declare(tools); err != nil {
			return nil, err
		}
	}
	// The turns are about as long as the request: one buffer, not a
	// growing one.
	b.contents = make([]byte, 0, len(s))
	if err := b.messages(msgs); err != nil {
		return nil, err
	}
	if len(b.contents) == 0 {
		return nil, chatreq.Invalid("messages", "Gemini needs at least one user or assistant message besides system messages.")
	}

	out := make([]byte, 0, len(b.contents)+len(b.sys)+len(s)/4+256)
	out = append(out, `{"contents":[`...)
	out = append(out, b.contents...)
	if b.turnOpen {
		out = append(out, "]}"...)
	}
	out = append(out, ']')
	if len(b.sys) > 0 {
		out = append(out, `,"systemInstruction":{"parts":[`...)
		out = append(out, b.sys...)
		out = append(out, "]}"...)
	}
	var err *translate.Error
	if !chatreq.IsNull(tools) && len(b.declared) > 0 {
		if out, err = appendTools(out, tools); err != nil {
			return nil, err
		}
		if out, err = b.toolConfig(out, toolChoice); err != nil {
			return nil, err
		}
	} else if !chatreq.IsNull(toolChoice) && toolChoice.Type != gjson.String {
		return nil, chatreq.Invalid("tool_choice", "'tool_choice' names a function but the request declares no tools.")
	}

	// generationConfig
	gc := len(out)
	out = append(out, `,"generationConfig":{`...)
	body := len(out)
	field := func(name string) {
		if len(out) > body {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, name...)
		out = append(out, '"', ':')
	}
	num := func(name, param string, v gjson.Result) {
		if chatreq.IsNull(v) || err != nil {
			return
		}
		if v.Type != gjson.Number {
			err = chatreq.TypeErr(param, "a number")
			return
		}
		field(name)
		out = append(out, v.Raw...)
	}
	integer := func(name, param string, v gjson.Result) {
		if chatreq.IsNull(v) || err != nil {
			return
		}
		if v.Type != gjson.Number || v.Num != float64(int64(v.Num)) {
			err = chatreq.TypeErr(param, "an integer")
			return
		}
		field(name)
		out = jsonenc.AppendInt(out, int64(v.Num))
	}
	num("temperature", "temperature", temperature)
	num("topP", "top_p", topP)
	integer("topK", "top_k", topK)
	if !chatreq.IsNull(maxComp) {
		integer("maxOutputTokens", "max_completion_tokens", maxComp)
	} else {
		integer("maxOutputTokens", "max_tokens", maxTok)
	}
	if b.n > 1 {
		field("candidateCount")
		out = strconv.AppendInt(out, int64(b.n), 10)
	}
	integer("seed", "seed", seed)
	num("presencePenalty", "presence_penalty", presence)
	num("frequencyPenalty", "frequency_penalty", frequency)
	if err != nil {
		return nil, err
	}
	if !chatreq.IsNull(stop) {
		field("stopSequences")
		switch {
		case stop.Type == gjson.String:
			out = append(out, '[')
			out = append(out, stop.Raw...)
			out = append(out, ']')
		case stop.IsArray():
			out = append(out, '[')
			i := 0
			stop.ForEach(func(_, v gjson.Result) bool {
				if v.Type != gjson.String {
					err = chatreq.TypeErr("stop", "a string or an array of strings")
					return false
				}
				if i > 0 {
					out = append(out, ',')
				}
				out = append(out, v.Raw...)
				i++
				return true
			})
			out = append(out, ']')
		default:
			err = chatreq.TypeErr("stop", "a string or an array of strings")
		}
		if err != nil {
			return nil, err
		}
	}
	if !chatreq.IsNull(respFmt) {
		if out, err = responseFormat(out, respFmt, func(o []byte, name string) []byte {
			if len(o) > body {
				o = append(o, ',')
			}
			return append(append(append(o, '"'), name...), '"', ':')
		}); err != nil {
			return nil, err
		}
	}
	if !chatreq.IsNull(effort) {
		budget := -1
		switch effort.Str {
		case "none", "minimal":
			budget = 0
			if strings.Contains(b.model, "-pro") {
				// Pro models only work in thinking mode: their smallest
				// budget.
				budget = ProMinThinkingBudget
			}
		case "low":
			budget = 1024
		case "medium":
			budget = 8192
		case "high":
			budget = 24576
		default:
			return nil, chatreq.Invalid("reasoning_effort", "'reasoning_effort' must be one of none, minimal, low, medium, high.")
		}
		field("thinkingConfig")
		out = append(out, `{"thinkingBudget":`...)
		out = strconv.AppendInt(out, int64(budget), 10)
		if budget > 0 {
			// Thought summaries, returned as reasoning_content.
			out = append(out, `,"includeThoughts":true`...)
		}
		out = append(out, '}')
	}
	if len(out) == body {
		out = out[:gc] // empty generationConfig
	} else {
		out = append(out, '}')
	}
	return append(out, '}'), nil
}

// responseFormat appends responseMimeType (and responseSchema).
func responseFormat(out []byte, rf gjson.Result, field func([]byte, string) []byte) ([]byte, *translate.Error) {
	if !rf.IsObject() {
		return out, chatreq.TypeErr("response_format", "an object")
	}
	switch t := rf.Get("type").Str; t {
	case "text":
		return out, nil
	case "json_object":
		out = field(out, "responseMimeType")
		return append(out, `"application/json"`...), nil
	case "json_schema":
		schema := rf.Get("json_schema.schema")
		if !schema.IsObject() {
			return out, chatreq.Invalid("response_format.json_schema.schema", "'response_format.json_schema.schema' must be a JSON Schema object.")
		}
		out = field(out, "responseMimeType")
		out = append(out, `"application/json"`...)
		out = field(out, "responseSchema")
		return ConvertSchema(out, schema.Raw, "response_format.json_schema.schema")
	default:
		return out, chatreq.Invalid("response_format.type", "'response_format.type' must be text, json_object or json_schema.")
	}
}

// declare records the declared function names (tool_choice checks them).
func (b *chatBuilder) declare(tools gjson.Result) *translate.Error {
	if !tools.IsArray() {
		return chatreq.TypeErr("tools", "an array")
	}
	var bad *translate.Error
	i := 0
	tools.ForEach(func(_, t gjson.Result) bool {
		p := "tools[" + strconv.Itoa(i) + "]"
		i++
		if t.Get("type").Str != "function" {
			bad = unsupported(p+".type", "Only function tools are translated for Gemini.")
			return false
		}
		name := t.Get("function.name")
		if name.Type != gjson.String || name.Str == "" {
			bad = chatreq.Invalid(p+".function.name", "'"+p+".function.name' is required.")
			return false
		}
		if b.declared == nil {
			b.declared = make(map[string]bool)
		}
		b.declared[name.Str] = true
		return true
	})
	return bad
}

// appendTools appends "tools":[{"functionDeclarations":[…]}].
func appendTools(out []byte, tools gjson.Result) ([]byte, *translate.Error) {
	out = append(out, `,"tools":[{"functionDeclarations":[`...)
	var bad *translate.Error
	i := 0
	tools.ForEach(func(_, t gjson.Result) bool {
		p := "tools[" + strconv.Itoa(i) + "].function"
		if i > 0 {
			out = append(out, ',')
		}
		i++
		fn := t.Get("function")
		out = append(out, `{"name":`...)
		out = append(out, fn.Get("name").Raw...)
		if d := fn.Get("description"); d.Type == gjson.String && d.Str != "" {
			out = append(out, `,"description":`...)
			out = append(out, d.Raw...)
		}
		if params := fn.Get("parameters"); params.IsObject() && params.Get("properties").IsObject() && len(params.Get("properties").Map()) > 0 {
			// A function without parameters has none in Gemini (an OBJECT
			// with empty properties is refused).
			out = append(out, `,"parameters":`...)
			out, bad = ConvertSchema(out, params.Raw, p+".parameters")
			if bad != nil {
				return false
			}
		} else if params.Exists() && params.Type != gjson.Null && !params.IsObject() {
			bad = chatreq.TypeErr(p+".parameters", "an object")
			return false
		}
		out = append(out, '}')
		return true
	})
	if bad != nil {
		return out, bad
	}
	return append(out, "]}]"...), nil
}

// toolConfig appends functionCallingConfig for tool_choice. "none" keeps
// the tools declared and sets mode NONE: it never becomes a tool.
func (b *chatBuilder) toolConfig(out []byte, tc gjson.Result) ([]byte, *translate.Error) {
	if chatreq.IsNull(tc) {
		return out, nil
	}
	mode, name := "", ""
	switch {
	case tc.Type == gjson.String:
		switch tc.Str {
		case "auto":
			mode = "AUTO"
		case "none":
			mode = "NONE"
		case "required":
			mode = "ANY"
		default:
			return out, chatreq.Invalid("tool_choice", "'tool_choice' must be none, auto, required or a named function.")
		}
	case tc.IsObject():
		n := tc.Get("function.name")
		if tc.Get("type").Str != "function" || n.Type != gjson.String {
			return out, chatreq.Invalid("tool_choice", "'tool_choice' must name a function: {\"type\":\"function\",\"function\":{\"name\":…}}.")
		}
		if !b.declared[n.Str] {
			return out, chatreq.Invalid("tool_choice", "'tool_choice' names function '"+n.Str+"', which is not in 'tools'.")
		}
		mode, name = "ANY", n.Raw
	default:
		return out, chatreq.TypeErr("tool_choice", "a string or an object")
	}
	out = append(out, `,"toolConfig":{"functionCallingConfig":{"mode":"`...)
	out = append(out, mode...)
	out = append(out, '"')
	if name != "" {
		out = append(out, `,"allowedFunctionNames":[`...)
		out = append(out, name...)
		out = append(out, ']')
	}
	return append(out, "}}"...), nil
}

// messages converts the OpenAI messages into contents and
// systemInstruction.
func (b *chatBuilder) messages(msgs gjson.Result) *translate.Error {
	if !msgs.IsArray() {
		return chatreq.TypeErr("messages", "an array")
	}
	var bad *translate.Error
	i := 0
	msgs.ForEach(func(_, m gjson.Result) bool {
		p := "messages[" + strconv.Itoa(i) + "]"
		i++
		if !m.IsObject() {
			bad = chatreq.TypeErr(p, "an object")
			return false
		}
		switch role := m.Get("role").Str; role {
		case "system", "developer":
			bad = b.system(m.Get("content"), p+".content")
		case "user":
			b.closeTurn()
			start := len(b.contents)
			b.openTurn("user")
			n := 0
			if n, bad = b.parts(m.Get("content"), p+".content", false); bad == nil && n == 0 {
				b.contents = b.contents[:start] // an empty message adds nothing
				b.trimComma()
			} else {
				b.closeTurn()
			}
		case "assistant":
			b.closeTurn()
			bad = b.assistant(m, p)
		case "tool":
			bad = b.tool(m, p)
		case "function":
			bad = unsupported(p+".role", "Role 'function' is deprecated and not translated; use tool messages.")
		default:
			bad = chatreq.Invalid(p+".role", "Invalid role '"+role+"'.")
		}
		return bad == nil
	})
	b.closeTurn()
	return bad
}

// openTurn starts a content turn with role.
func (b *chatBuilder) openTurn(role string) {
	if len(b.contents) > 0 {
		b.contents = append(b.contents, ',')
	}
	b.contents = append(b.contents, `{"role":"`...)
	b.contents = append(b.contents, role...)
	b.contents = append(b.contents, `","parts":[`...)
	b.turnOpen = true
}

// closeTurn ends the open turn, if any.
func (b *chatBuilder) closeTurn() {
	if b.turnOpen {
		b.contents = append(b.contents, "]}"...)
		b.turnOpen = false
	}
}

// trimComma removes a trailing comma left by an emptied turn.
func (b *chatBuilder) trimComma() {
	b.turnOpen = false
	if n := len(b.contents); n > 0 && b.contents[n-1] == ',' {
		b.contents = b.contents[:n-1]
	}
}

// system appends a system or developer message's text to systemInstruction.
func (b *chatBuilder) system(c gjson.Result, p string) *translate.Error {
	switch {
	case c.Type == gjson.String:
		if c.Str != "" {
			b.sysText(c.Raw)
		}
	case c.IsArray():
		var bad *translate.Error
		j := 0
		c.ForEach(func(_, part gjson.Result) bool {
			pp := p + "[" + strconv.Itoa(j) + "]"
			j++
			if part.Get("type").Str != "text" {
				bad = chatreq.Invalid(pp+".type", "System messages may only contain text parts.")
				return false
			}
			if t := part.Get("text"); t.Type == gjson.String && t.Str != "" {
				b.sysText(t.Raw)
			}
			return true
		})
		return bad
	default:
		return chatreq.TypeErr(p, "a string or an array of text parts")
	}
	return nil
}

func (b *chatBuilder) sysText(raw string) {
	if b.sys == nil {
		b.sys = make([]byte, 0, len(raw)+64)
	}
	if len(b.sys) > 0 {
		b.sys = append(b.sys, ',')
	}
	b.sys = append(b.sys, `{"text":`...)
	b.sys = append(b.sys, raw...)
	b.sys = append(b.sys, '}')
}

// part appends one part (its JSON object) to the open turn.
func (b *chatBuilder) part(n *int, obj ...string) {
	if *n > 0 {
		b.contents = append(b.contents, ',')
	}
	*n++
	for _, s := range obj {
		b.contents = append(b.contents, s...)
	}
}

// parts appends the parts of a user or assistant content to the open turn
// and returns how many it appended.
func (b *chatBuilder) parts(c gjson.Result, p string, assistant bool) (int, *translate.Error) {
	n := 0
	switch {
	case chatreq.IsNull(c):
		return 0, nil
	case c.Type == gjson.String:
		if c.Str != "" {
			b.part(&n, `{"text":`, c.Raw, `}`)
		}
		return n, nil
	case !c.IsArray():
		return 0, chatreq.TypeErr(p, "a string or an array of content parts")
	}
	var bad *translate.Error
	j := 0
	c.ForEach(func(_, part gjson.Result) bool {
		pp := p + "[" + strconv.Itoa(j) + "]"
		j++
		switch typ := part.Get("type").Str; {
		case typ == "text" || (assistant && typ == "refusal"):
			t := part.Get(typ)
			if t.Type != gjson.String {
				bad = chatreq.TypeErr(pp+"."+typ, "a string")
				return false
			}
			if t.Str != "" {
				b.part(&n, `{"text":`, t.Raw, `}`)
			}
		case !assistant && typ == "image_url":
			u := part.Get("image_url.url")
			if u.Type != gjson.String {
				u = part.Get("image_url") // the short form some clients send
			}
			bad = b.media(&n, u.Str, pp+".image_url.url", "")
		case !assistant && typ == "input_audio":
			format := part.Get("input_audio.format").Str
			mime := ""
			switch format {
			case "wav":
				mime = "audio/wav"
			case "mp3":
				mime = "audio/mp3"
			default:
				bad = chatreq.Invalid(pp+".input_audio.format", "'input_audio.format' must be wav or mp3.")
				return false
			}
			data := part.Get("input_audio.data")
			if data.Type != gjson.String || data.Str == "" {
				bad = chatreq.Invalid(pp+".input_audio.data", "'input_audio.data' must be base64 audio.")
				return false
			}
			b.part(&n, `{"inlineData":{"mimeType":"`, mime, `","data":`, data.Raw, `}}`)
		case !assistant && typ == "file":
			fd := part.Get("file.file_data")
			if fd.Type != gjson.String {
				bad = unsupported(pp+".file", "Only inline files (file.file_data as a data URL) are translated for Gemini; uploaded file ids are not.")
				return false
			}
			bad = b.media(&n, fd.Str, pp+".file.file_data", "")
		default:
			bad = chatreq.Invalid(pp+".type", "Unsupported content part type '"+typ+"'.")
		}
		return bad == nil
	})
	return n, bad
}

// media appends an inlineData part for a data URL, or a fileData part for a
// gs:// URI. http(s) URLs are refused: Gemini does not fetch them (the
// gateway does no I/O).
func (b *chatBuilder) media(n *int, u, param, mime string) *translate.Error {
	switch {
	case strings.HasPrefix(u, "data:"):
		var data string
		var ok bool
		if mime, data, ok = chatreq.Base64DataURL(u); !ok {
			return chatreq.Invalid(param, "Invalid data URL in '"+param+"': expected data:<mime type>;base64,<data>.")
		}
		if mime == "" || strings.ContainsAny(mime, `"\`) {
			return chatreq.Invalid(param, "Invalid media type in the data URL of '"+param+"'.")
		}
		if !validBase64(data) {
			return chatreq.Invalid(param, "Invalid base64 data in the data URL of '"+param+"'.")
		}
		b.part(n, `{"inlineData":{"mimeType":"`, mime, `","data":"`, data, `"}}`)
		return nil
	case strings.HasPrefix(u, "gs://"):
		mime = mimeFromName(u)
		if mime == "" {
			return chatreq.Invalid(param, "Cannot tell the media type of '"+u+"' from its extension (png, jpg, jpeg, webp, gif, heic, heif, pdf, wav, mp3, mp4).")
		}
		var esc []byte
		esc = jsonenc.AppendString(esc, u)
		b.part(n, `{"fileData":{"mimeType":"`, mime, `","fileUri":`, string(esc), `}}`)
		return nil
	case strings.HasPrefix(u, "http://"), strings.HasPrefix(u, "https://"):
		return unsupported(param, "Gemini does not fetch image URLs; send the image as a data URL (data:image/png;base64,…) or a gs:// URI.")
	}
	return chatreq.Invalid(param, "'"+param+"' must be a data URL or a gs:// URI.")
}

func validBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func mimeFromName(u string) string {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	ext := strings.ToLower(u[strings.LastIndexByte(u, '.')+1:])
	switch ext {
	case "png":
		return "image/png"
	case "jpg", "jpeg":
		return "image/jpeg"
	case "webp":
		return "image/webp"
	case "gif":
		return "image/gif"
	case "heic":
		return "image/heic"
	case "heif":
		return "image/heif"
	case "pdf":
		return "application/pdf"
	case "wav":
		return "audio/wav"
	case "mp3":
		return "audio/mp3"
	case "mp4":
		return "video/mp4"
	}
	return ""
}

// assistant appends a model turn: text parts, then functionCall parts.
func (b *chatBuilder) assistant(m gjson.Result, p string) *translate.Error {
	start := len(b.contents)
	b.openTurn("model")
	n, bad := b.parts(m.Get("content"), p+".content", true)
	if bad != nil {
		return bad
	}
	calls := m.Get("tool_calls")
	if !chatreq.IsNull(calls) && !calls.IsArray() {
		return chatreq.TypeErr(p+".tool_calls", "an array")
	}
	j := 0
	calls.ForEach(func(_, tc gjson.Result) bool {
		pp := p + ".tool_calls[" + strconv.Itoa(j) + "]"
		j++
		name := tc.Get("function.name")
		if name.Type != gjson.String || name.Str == "" {
			bad = chatreq.Invalid(pp+".function.name", "'"+pp+".function.name' is required.")
			return false
		}
		args := tc.Get("function.arguments")
		raw := "{}"
		if args.Type == gjson.String && strings.TrimSpace(args.Str) != "" {
			a := gjson.Parse(args.Str)
			if !gjson.Valid(args.Str) || !a.IsObject() {
				bad = chatreq.Invalid(pp+".function.arguments", "'"+pp+".function.arguments' must be a JSON object (Gemini takes function arguments as an object).")
				return false
			}
			raw = a.Raw
		} else if args.Exists() && args.Type != gjson.String && args.Type != gjson.Null {
			bad = chatreq.TypeErr(pp+".function.arguments", "a string")
			return false
		}
		if id := tc.Get("id"); id.Type == gjson.String && id.Str != "" {
			if b.toolNames == nil {
				b.toolNames = make(map[string]string)
			}
			b.toolNames[id.Str] = name.Str
		}
		b.part(&n, `{"functionCall":{"name":`, name.Raw, `,"args":`, raw, `}}`)
		return true
	})
	if bad != nil {
		return bad
	}
	if n == 0 {
		b.contents = b.contents[:start] // nothing to say: no turn
		b.trimComma()
		return nil
	}
	b.closeTurn()
	return nil
}

// tool appends a functionResponse part; consecutive tool messages share
// one user turn.
func (b *chatBuilder) tool(m gjson.Result, p string) *translate.Error {
	id := m.Get("tool_call_id")
	if id.Type != gjson.String || id.Str == "" {
		return chatreq.Invalid(p+".tool_call_id", "'"+p+".tool_call_id' is required.")
	}
	name, ok := b.toolNames[id.Str]
	if !ok {
		return chatreq.Invalid(p+".tool_call_id", "'"+p+".tool_call_id' ("+id.Str+") matches no tool call of an earlier assistant message; Gemini needs the function name.")
	}
	var text string
	c := m.Get("content")
	switch {
	case c.Type == gjson.String:
		text = c.Str
	case c.IsArray():
		var sb strings.Builder
		c.ForEach(func(_, part gjson.Result) bool {
			if part.Get("type").Str == "text" {
				sb.WriteString(part.Get("text").Str)
			}
			return true
		})
		text = sb.String()
	case chatreq.IsNull(c):
	default:
		return chatreq.TypeErr(p+".content", "a string or an array of text parts")
	}
	if !b.turnOpen || !b.toolTurn() {
		b.closeTurn()
		b.openTurn("user")
	} else {
		b.contents = append(b.contents, ',')
	}
	b.contents = append(b.contents, `{"functionResponse":{"name":`...)
	b.contents = jsonenc.AppendString(b.contents, name)
	b.contents = append(b.contents, `,"response":`...)
	t := strings.TrimSpace(text)
	switch {
	case gjson.Valid(t) && gjson.Parse(t).IsObject():
		b.contents = append(b.contents, t...)
	case t != "" && gjson.Valid(t):
		b.contents = append(b.contents, `{"result":`...)
		b.contents = append(b.contents, t...)
		b.contents = append(b.contents, '}')
	default:
		b.contents = append(b.contents, `{"result":`...)
		b.contents = jsonenc.AppendString(b.contents, text)
		b.contents = append(b.contents, '}')
	}
	b.contents = append(b.contents, "}}"...)
	return nil
}

// toolTurn reports whether the open turn holds tool results (only tool
// messages leave a turn open).
func (b *chatBuilder) toolTurn() bool { return b.turnOpen }
