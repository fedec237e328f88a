package gemini

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chunkw"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/jsonenc"
	"github.com/llmux/llmux/translate/sse"
)

// maxCandidates bounds the per-candidate state (Gemini's candidateCount is
// at most 8).
const maxCandidates = 8

// candidate is the stream state of one choice.
type candidate struct {
	started  bool // role chunk sent
	finished bool // finish chunk sent
	tools    int  // tool calls sent (the next tool_calls index)
}

// decoder turns a generateContent response (JSON) or a
// streamGenerateContent?alt=sse stream into OpenAI's chat completion or
// chunks.
type decoder struct {
	st           state
	status       int
	includeUsage bool
	created      int64
	mode         respbody.Mode

	res   translate.Result
	sc    sse.Scanner
	whole respbody.Whole

	// stream state
	prefix    []byte // `data: {"id":…,"model":…,"choices":[` of every chunk
	cands     [maxCandidates]candidate
	finished  int   // candidates finished
	calls     int64 // tool call ids handed out (call_<n>)
	done      bool  // the stream reached its end ([DONE] sent) or failed
	usageSeen bool
}

func (d *decoder) ContentType() string { return d.mode.ContentType() }

func (d *decoder) Status() int { return d.status }

func (d *decoder) Result() *translate.Result { return &d.res }

func (d *decoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	if d.mode == respbody.Stream {
		return d.decodeStream(dst, src, final)
	}
	if ready, err := d.whole.Add(src, final, &d.res); !ready {
		return dst, err
	}
	if d.mode == respbody.Error {
		d.res.Err = ParseError(d.status, d.whole.Buf)
		return d.res.Err.AppendJSON(dst), nil
	}
	body := respbody.View(d.whole.Buf)
	if !gjson.Valid(body) {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned an invalid JSON body"}
		return d.res.Err.AppendJSON(dst), nil
	}
	root := gjson.Parse(body)
	if root.IsArray() {
		// A stream requested without alt=sse answers a JSON array of
		// responses: not produced by this translator's requests.
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned a JSON array instead of a response object"}
		return d.res.Err.AppendJSON(dst), nil
	}
	r := readResponse(root)
	if r[rError].IsObject() {
		d.res.Err = ParseError(0, d.whole.Buf)
		return d.res.Err.AppendJSON(dst), nil
	}
	if e := blocked(&r); e != nil {
		d.res.Err = e
		return e.AppendJSON(dst), nil
	}
	return d.completion(dst, &r), nil
}

// The members of a GenerateContentResponse the decoder reads, read in one
// pass (a gjson.Get each would scan the candidates, the bulk of the body,
// once per member).
var responseMembers = [...]string{"error", "promptFeedback", "candidates", "usageMetadata", "modelVersion", "responseId"}

// response holds a response's members, indexed as responseMembers.
type response [len(responseMembers)]gjson.Result

const (
	rError = iota
	rFeedback
	rCandidates
	rUsage
	rModel
	rID
)

// readResponse reads the members of the response object root.
func readResponse(root gjson.Result) (r response) {
	respbody.Members(root, responseMembers[:], r[:])
	return r
}

// blocked returns the error for a prompt Gemini refused
// (promptFeedback.blockReason, no candidates).
func blocked(r *response) *translate.Error {
	br := r[rFeedback].Get("blockReason")
	if br.Type != gjson.String || br.Str == "" || r[rCandidates].Get("0").Exists() {
		return nil
	}
	return &translate.Error{Code: translate.CodeContentFiltered, OpenAICode: "content_filter",
		Message: "The prompt was blocked by Gemini's safety filters (blockReason " + truncate(br.Str) + ")."}
}

// finishReason maps Gemini's finishReason to OpenAI's.
// MALFORMED_FUNCTION_CALL is reported as an error instead (see
// malformedCall).
func finishReason(fr string, toolCalls bool) string {
	switch fr {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "LANGUAGE":
		return "content_filter"
	}
	if toolCalls {
		return "tool_calls"
	}
	return "stop"
}

// malformedCall is the error for finishReason MALFORMED_FUNCTION_CALL: the
// model tried to call a function and produced invalid call syntax. It is
// an upstream error (another attempt may succeed), not a silent "stop"
// with no content.
func malformedCall(fr string) *translate.Error {
	return &translate.Error{Code: translate.CodeUpstreamError, OpenAICode: "malformed_function_call",
		Message: "Gemini produced a malformed function call (finishReason " + fr + "); retry the request."}
}

func isMalformed(fr string) bool {
	return fr == "MALFORMED_FUNCTION_CALL" || fr == "UNEXPECTED_TOOL_CALL"
}

var usageMembers = [...]string{"promptTokenCount", "toolUsePromptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount"}

// readUsage reads usageMetadata into the result.
func (d *decoder) readUsage(u gjson.Result) {
	if !u.IsObject() {
		return
	}
	var f [len(usageMembers)]gjson.Result
	respbody.Members(u, usageMembers[:], f[:])
	d.res.HasUsage = true
	d.usageSeen = true
	thoughts := f[3].Int()
	d.res.Usage.InputTokens = f[0].Int() + f[1].Int()
	d.res.Usage.OutputTokens = f[2].Int() + thoughts
	d.res.Usage.CachedTokens = f[4].Int()
	d.res.Usage.ReasoningTokens = thoughts
}

// appendUsage appends OpenAI's usage object from the result.
func (d *decoder) appendUsage(dst []byte) []byte {
	u := &d.res.Usage
	return chunkw.AppendUsage(dst, u.InputTokens, u.OutputTokens, u.CachedTokens, u.ReasoningTokens)
}

// appendID appends the OpenAI id for a Gemini responseId.
func appendID(dst []byte, id gjson.Result) []byte {
	dst = append(dst, `"chatcmpl-`...)
	if id.Type == gjson.String && id.Str != "" && isIdent(id.Str) {
		dst = append(dst, id.Str...)
	} else {
		dst = append(dst, "gemini"...)
	}
	return append(dst, '"')
}

func isIdent(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// modelOf returns the model the response names (modelVersion), or the
// configured model.
func (d *decoder) modelOf(m gjson.Result) string {
	if m.Type == gjson.String && m.Str != "" {
		return m.Str
	}
	return d.st.model
}

// completion converts a whole GenerateContentResponse.
func (d *decoder) completion(dst []byte, r *response) []byte {
	d.readUsage(r[rUsage])
	model := d.modelOf(r[rModel])
	d.res.Model = strings.Clone(model)
	start := len(dst)
	dst = append(dst, `{"id":`...)
	dst = appendID(dst, r[rID])
	dst = append(dst, `,"object":"chat.completion","created":`...)
	dst = jsonenc.AppendInt(dst, d.created)
	dst = append(dst, `,"model":`...)
	dst = jsonenc.AppendString(dst, model)
	dst = append(dst, `,"choices":[`...)
	var calls int64
	i := 0
	var fail *translate.Error
	r[rCandidates].ForEach(func(_, c gjson.Result) bool {
		var cm [len(candidateMembers)]gjson.Result
		respbody.Members(c, candidateMembers[:], cm[:])
		fr := cm[cFinish].Str
		if isMalformed(fr) {
			fail = malformedCall(fr)
			return false
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		idx := cm[cIndex].Int()
		if !cm[cIndex].Exists() {
			idx = int64(i)
		}
		i++
		dst = append(dst, `{"index":`...)
		dst = jsonenc.AppendInt(dst, idx)
		dst = append(dst, `,"message":{"role":"assistant","content":`...)
		// One pass over the parts: the answer's text, the thought
		// summaries' text (parts with thought: true, sent when
		// includeThoughts is set) and the function calls, each written
		// where it goes in the message.
		var text strings.Builder
		hasText := false
		var reasoning, toolCalls []byte
		n := 0
		cm[cContent].Get("parts").ForEach(func(_, p gjson.Result) bool {
			var pm [len(partMembers)]gjson.Result
			respbody.Members(p, partMembers[:], pm[:])
			t, thought := pm[pText], pm[pThought].Bool()
			if t.Type == gjson.String && !thought {
				text.WriteString(t.Str)
				hasText = true
			}
			if thought && t.Type == gjson.String && len(t.Raw) > 2 {
				reasoning = append(reasoning, t.Raw[1:len(t.Raw)-1]...)
			}
			fc := pm[pCall]
			if !fc.IsObject() {
				return true
			}
			if n > 0 {
				toolCalls = append(toolCalls, ',')
			}
			n++
			var fm [len(callMembers)]gjson.Result
			respbody.Members(fc, callMembers[:], fm[:])
			toolCalls = append(toolCalls, `{"id":"call_`...)
			toolCalls = strconv.AppendInt(toolCalls, calls, 10)
			calls++
			toolCalls = append(toolCalls, `","type":"function","function":{"name":`...)
			toolCalls = jsonenc.AppendString(toolCalls, fm[0].String())
			toolCalls = append(toolCalls, `,"arguments":`...)
			toolCalls = appendArgs(toolCalls, fm[1])
			toolCalls = append(toolCalls, "}}"...)
			return true
		})
		if hasText {
			dst = jsonenc.AppendString(dst, text.String())
		} else {
			dst = append(dst, "null"...)
		}
		dst = append(dst, `,"refusal":null`...)
		if len(reasoning) > 0 {
			dst = append(dst, `,"reasoning_content":"`...)
			dst = append(dst, reasoning...)
			dst = append(dst, '"')
		}
		if n > 0 {
			dst = append(dst, `,"tool_calls":[`...)
			dst = append(dst, toolCalls...)
			dst = append(dst, ']')
		}
		reason := finishReason(fr, n > 0)
		if i == 1 {
			d.res.FinishReason = reason
		}
		dst = append(dst, `},"logprobs":null,"finish_reason":"`...)
		dst = append(dst, reason...)
		dst = append(dst, `"}`...)
		return true
	})
	if fail != nil {
		d.res.Err = fail
		return fail.AppendJSON(dst[:start])
	}
	if i == 0 {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream response has no candidates"}
		return d.res.Err.AppendJSON(dst[:start])
	}
	dst = append(dst, `],"usage":`...)
	dst = d.appendUsage(dst)
	d.res.FirstContent = true
	d.res.Completed = true
	return append(dst, '}')
}

// The members of a candidate, of a part and of a functionCall the decoder
// reads, each read in one pass.
var (
	candidateMembers = [...]string{"index", "content", "finishReason"}
	partMembers      = [...]string{"text", "thought", "functionCall"}
	callMembers      = [...]string{"name", "args"}
)

const (
	cIndex = iota
	cContent
	cFinish
)

const (
	pText = iota
	pThought
	pCall
)

// appendArgs appends a functionCall's args as OpenAI's arguments string.
func appendArgs(dst []byte, args gjson.Result) []byte {
	if !args.Exists() || args.Type == gjson.Null {
		return append(dst, `"{}"`...)
	}
	return jsonenc.AppendString(dst, args.Raw)
}

// decodeStream handles a streamGenerateContent?alt=sse body.
func (d *decoder) decodeStream(dst, src []byte, final bool) ([]byte, error) {
	return translate.DecodeSSE(&d.sc, &d.res, dst, src, final, d.event)
}

// event converts one SSE event (one GenerateContentResponse).
func (d *decoder) event(dst, ev []byte) []byte {
	if d.done {
		return dst
	}
	f := d.sc.Parse(ev)
	if !f.HasData {
		return dst
	}
	chunk := respbody.View(f.Data)
	if !gjson.Valid(chunk) {
		return dst // a truncated last event: the stream is not complete
	}
	root := gjson.Parse(chunk)
	if root.IsArray() {
		root = root.Get("0")
	}
	r := readResponse(root)
	if r[rError].IsObject() {
		return d.fail(dst, ParseError(0, f.Data))
	}
	if d.prefix == nil {
		if e := blocked(&r); e != nil {
			return d.fail(dst, e)
		}
		d.start(&r)
	}
	d.readUsage(r[rUsage])
	var fail *translate.Error
	r[rCandidates].ForEach(func(_, c gjson.Result) bool {
		var cm [len(candidateMembers)]gjson.Result
		respbody.Members(c, candidateMembers[:], cm[:])
		idx := cm[cIndex].Int()
		if idx < 0 || idx >= maxCandidates {
			return true
		}
		cs := &d.cands[idx]
		if cs.finished {
			return true
		}
		if !cs.started {
			cs.started = true
			dst = d.open(dst, idx)
			dst = append(dst, `"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`...)
			dst = append(dst, '\n', '\n')
		}
		cm[cContent].Get("parts").ForEach(func(_, p gjson.Result) bool {
			var pm [len(partMembers)]gjson.Result
			respbody.Members(p, partMembers[:], pm[:])
			if fc := pm[pCall]; fc.IsObject() {
				var fm [len(callMembers)]gjson.Result
				respbody.Members(fc, callMembers[:], fm[:])
				dst = d.open(dst, idx)
				dst = append(dst, `"delta":{"tool_calls":[{"index":`...)
				dst = strconv.AppendInt(dst, int64(cs.tools), 10)
				cs.tools++
				dst = append(dst, `,"id":"call_`...)
				dst = strconv.AppendInt(dst, d.calls, 10)
				d.calls++
				dst = append(dst, `","type":"function","function":{"name":`...)
				if n := fm[0]; n.Type == gjson.String {
					dst = append(dst, n.Raw...)
				} else {
					dst = append(dst, `""`...)
				}
				dst = append(dst, `,"arguments":`...)
				dst = appendArgs(dst, fm[1])
				dst = append(dst, `}}]},"logprobs":null,"finish_reason":null}]}`...)
				dst = append(dst, '\n', '\n')
				d.res.FirstContent = true
				return true
			}
			t := pm[pText]
			if t.Type != gjson.String || t.Raw == `""` {
				return true
			}
			dst = d.open(dst, idx)
			if pm[pThought].Bool() {
				dst = append(dst, `"delta":`+chunkw.ReasoningDelta...)
			} else {
				dst = append(dst, `"delta":{"content":`...)
			}
			dst = append(dst, t.Raw...)
			dst = append(dst, `},"logprobs":null,"finish_reason":null}]}`...)
			dst = append(dst, '\n', '\n')
			d.res.FirstContent = true
			return true
		})
		fr := cm[cFinish]
		if fr.Type != gjson.String || fr.Str == "" || fr.Str == "FINISH_REASON_UNSPECIFIED" {
			return true
		}
		if isMalformed(fr.Str) {
			fail = malformedCall(fr.Str)
			return false
		}
		cs.finished = true
		d.finished++
		reason := finishReason(fr.Str, cs.tools > 0)
		if idx == 0 || d.res.FinishReason == "" {
			d.res.FinishReason = reason
		}
		dst = d.open(dst, idx)
		dst = append(dst, `"delta":{},"logprobs":null,"finish_reason":"`...)
		dst = append(dst, reason...)
		dst = append(dst, `"}]}`...)
		dst = append(dst, '\n', '\n')
		return true
	})
	if fail != nil {
		return d.fail(dst, fail)
	}
	if d.finished >= max(d.st.n, 1) {
		d.done = true
		if d.includeUsage {
			dst = append(dst, d.prefix...)
			dst = append(dst, `],"usage":`...)
			dst = d.appendUsage(dst)
			dst = append(dst, '}', '\n', '\n')
		}
		dst = append(dst, "data: [DONE]\n\n"...)
		d.res.Completed = true
	}
	return dst
}

// start builds the chunk prefix from the first event.
func (d *decoder) start(r *response) {
	model := d.modelOf(r[rModel])
	d.res.Model = strings.Clone(model)
	p := make([]byte, 0, 128+len(model))
	p = append(p, `data: {"id":`...)
	p = appendID(p, r[rID])
	p = append(p, `,"object":"chat.completion.chunk","created":`...)
	p = jsonenc.AppendInt(p, d.created)
	p = append(p, `,"model":`...)
	p = jsonenc.AppendString(p, model)
	p = append(p, `,"choices":[`...)
	d.prefix = p
}

// open appends the prefix of a chunk for choice idx, up to its "delta".
func (d *decoder) open(dst []byte, idx int64) []byte {
	dst = append(dst, d.prefix...)
	dst = append(dst, `{"index":`...)
	dst = strconv.AppendInt(dst, idx, 10)
	return append(dst, ',')
}

// fail ends the stream with an OpenAI-shaped error event.
func (d *decoder) fail(dst []byte, e *translate.Error) []byte {
	d.res.Err = e
	d.done = true
	dst = append(dst, "data: "...)
	dst = e.AppendJSON(dst)
	return append(dst, '\n', '\n')
}
