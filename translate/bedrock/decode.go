package bedrock

import (
	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/eventstream"
	"github.com/llmux/llmux/translate/internal/chunkw"
	"github.com/llmux/llmux/translate/internal/respbody"
)

// maxToolBlocks bounds the tool blocks a stream may open (memory bound).
const maxToolBlocks = 4096

// maxFrame bounds one event-stream frame of a Converse stream.
const maxFrame = 16 << 20

// toolBlock maps a Converse content block index to an OpenAI tool index.
type toolBlock struct {
	block   int64
	index   int
	hasArgs bool
}

type decoder struct {
	st           state
	stream       bool
	includeUsage bool
	status       int
	created      int64
	mode         respbody.Mode
	res          translate.Result

	// non-streamed
	whole        respbody.Whole
	headerTokens int64 // InvokeModel's input token count header, -1 when absent

	// streamed
	es        eventstream.Decoder
	head      []byte // chunk prefix, up to and including `"delta":`
	started   bool   // chunk prefix built
	roleSent  bool
	finished  bool // finish chunk sent
	stopped   bool // messageStop seen
	done      bool // terminal: [DONE] or an error was sent
	stop      string
	tools     []toolBlock
	respBlock int64 // block index of the JSON response tool, or -1
	respArgs  bool
	nTools    int
	usage     rawUsage

	// errType is the x-amzn-ErrorType header of an error response.
	errType string
}

// rawUsage is Bedrock's usage, kept apart until it is reported (Bedrock's
// inputTokens counts neither cache reads nor cache writes).
type rawUsage struct{ chunkw.CacheUsage }

var usageMembers = [...]string{"inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"}

func (u *rawUsage) read(v gjson.Result) {
	var f [len(usageMembers)]gjson.Result
	respbody.Members(v, usageMembers[:], f[:])
	u.Input, u.Output, u.CacheRead, u.CacheWrite = f[0].Int(), f[1].Int(), f[2].Int(), f[3].Int()
}

func (d *decoder) ContentType() string { return d.mode.ContentType() }

func (d *decoder) Result() *translate.Result { return &d.res }

func (d *decoder) Status() int { return clientStatus(d.status) }

func (d *decoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	if d.mode == respbody.Stream {
		return d.decodeStream(dst, src, final)
	}
	if ready, err := d.whole.Add(src, final, &d.res); !ready {
		return dst, err
	}
	if d.mode == respbody.Error {
		e := parseError(d.status, d.whole.Buf, d.errType)
		d.res.Err = e
		return e.AppendJSON(dst), nil
	}
	body := respbody.View(d.whole.Buf)
	if !gjson.Valid(body) || !gjson.Parse(body).IsObject() {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned an invalid JSON body"}
		return d.res.Err.AppendJSON(dst), nil
	}
	if d.st.op == translate.OpEmbeddings {
		return d.embedResponse(dst, body), nil
	}
	return d.converse(dst, body), nil
}

// finishReason maps Converse's stopReason to OpenAI's finish_reason.
// tools reports whether the message called a client tool.
func finishReason(stop string, tools bool) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		if tools {
			return "tool_calls"
		}
		return "stop" // only the JSON response tool was called
	case "guardrail_intervened", "content_filtered":
		return "content_filter"
	}
	return "stop" // end_turn, stop_sequence
}

// The members of a Converse response, and of its content blocks, that the
// decoder reads, each read in one pass (a gjson.Get each would scan the
// output, the bulk of the body, once per member).
var (
	responseMembers = [...]string{"output", "message", "usage", "stopReason"}
	blockMembers    = [...]string{"text", "reasoningContent", "toolUse"}
	toolUseMembers  = [...]string{"toolUseId", "name", "input"}
)

// converse converts a whole Converse response into a chat.completion.
func (d *decoder) converse(dst []byte, body string) []byte {
	var r [len(responseMembers)]gjson.Result
	respbody.Members(gjson.Parse(body), responseMembers[:], r[:])
	msg := r[0].Get("message")
	if !msg.IsObject() && r[1].Type == gjson.String {
		// AWS's error shape {"message": …} in a 200: the provider failed.
		d.res.Err = exceptionError(nil, []byte(body), nil)
		return d.res.Err.AppendJSON(dst)
	}
	if !msg.IsObject() {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "Bedrock response has no output.message"}
		return d.res.Err.AppendJSON(dst)
	}
	d.res.Model = d.st.model
	d.usage.read(r[2])
	d.usage.Report(&d.res)

	dst = chunkw.AppendPrefix(dst, "chat.completion", newID(), d.created, d.st.model)
	dst = append(dst, `{"index":0,"message":{"role":"assistant","content":`...)
	// One pass over the blocks: text blocks joined into the content,
	// reasoning blocks' text as the reasoning (redactedContent is
	// encrypted and left out), toolUse blocks as tool calls, and in JSON
	// mode the response tool's input as the answer.
	var m chunkw.Message
	m.Begin(dst)
	msg.Get("content").ForEach(func(_, blk gjson.Result) bool {
		var b [len(blockMembers)]gjson.Result
		respbody.Members(blk, blockMembers[:], b[:])
		dst = m.Text(dst, b[0])
		m.Reasoning(b[1].Get("reasoningText.text"))
		if !b[2].IsObject() {
			return true
		}
		var tu [len(toolUseMembers)]gjson.Result
		respbody.Members(b[2], toolUseMembers[:], tu[:])
		switch {
		case tu[1].Str != ResponseTool || !d.st.jsonMode:
			m.ToolCall(tu[0].Str, tu[1].Str, tu[2].Raw)
		case !m.Answer.Exists():
			m.Answer = tu[2]
		}
		return true
	})
	var content bool
	if dst, content = m.End(dst); content {
		d.res.FirstContent = true
	}
	d.res.FinishReason = finishReason(r[3].Str, m.Calls() > 0)
	dst = chunkw.AppendMessageEnd(dst, d.res.FinishReason)
	dst = d.usage.AppendOpenAI(dst)
	d.res.Completed = true
	return append(dst, '}')
}

// ---- streaming ----

func (d *decoder) decodeStream(dst, src []byte, final bool) ([]byte, error) {
	if d.es.Max == 0 {
		d.es.Max = maxFrame
	}
	if !d.done {
		d.es.Push(src)
		for !d.done {
			m, ok := d.es.Next()
			if !ok {
				break
			}
			dst = d.message(dst, &m)
		}
		if err := d.es.Err(); err != nil && !d.done {
			d.done = true
			dst = d.streamError(dst, &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "malformed Bedrock event stream: " + err.Error()})
			return dst, nil
		}
	}
	if final && !d.done && d.stopped && d.es.Buffered() == 0 {
		// messageStop arrived but the metadata event did not: the answer
		// is whole, its usage unknown.
		dst = d.end(dst, false)
	}
	return dst, nil
}

// begin builds the chunk prefix.
func (d *decoder) begin() {
	d.started = true
	d.head = chunkw.AppendPrefix(d.head[:0], "chat.completion.chunk", newID(), d.created, d.st.model)
	d.head = append(d.head, `{"index":0,"delta":`...)
}

// role appends the role chunk once.
func (d *decoder) role(dst []byte) []byte {
	if d.roleSent {
		return dst
	}
	if !d.started {
		d.begin()
	}
	d.roleSent = true
	dst = append(dst, "data: "...)
	dst = append(dst, d.head...)
	dst = append(dst, `{"role":"assistant","content":""}`...)
	return append(dst, chunkw.Tail...)
}

// open appends "data: " and the chunk prefix, sending the role chunk
// first if it has not been sent.
func (d *decoder) open(dst []byte) []byte {
	dst = d.role(dst)
	dst = append(dst, "data: "...)
	return append(dst, d.head...)
}

func (d *decoder) tool(block int64) *toolBlock {
	for i := len(d.tools) - 1; i >= 0; i-- {
		if d.tools[i].block == block {
			return &d.tools[i]
		}
	}
	return nil
}

// message decodes one event-stream message.
func (d *decoder) message(dst []byte, m *eventstream.Message) []byte {
	switch string(m.MessageType()) {
	case eventstream.MessageEvent:
	case eventstream.MessageException:
		d.done = true
		return d.streamError(dst, exceptionError(m.ExceptionType(), m.Payload, nil))
	case eventstream.MessageError:
		d.done = true
		return d.streamError(dst, exceptionError(m.ErrorCode(), nil, m.ErrorMessage()))
	default:
		return dst
	}
	data := respbody.View(m.Payload)
	switch string(m.EventType()) {
	case "contentBlockDelta":
		delta := gjson.Get(data, "delta")
		if t := delta.Get("text"); t.Exists() {
			if t.Type != gjson.String || len(t.Raw) <= 2 {
				return dst
			}
			d.res.FirstContent = true
			dst = d.open(dst)
			dst = append(dst, `{"content":`...)
			dst = append(dst, t.Raw...)
			return append(dst, "}"+chunkw.Tail...)
		}
		if rc := delta.Get("reasoningContent"); rc.Exists() {
			// Reasoning text; its signature and redactedContent are not
			// sent to the client.
			t := rc.Get("text")
			if t.Type != gjson.String || len(t.Raw) <= 2 {
				return dst
			}
			d.res.FirstContent = true
			dst = d.open(dst)
			dst = append(dst, chunkw.ReasoningDelta...)
			dst = append(dst, t.Raw...)
			return append(dst, "}"+chunkw.Tail...)
		}
		in := delta.Get("toolUse.input")
		if in.Type != gjson.String || len(in.Raw) <= 2 {
			return dst // citations and empty deltas are not translated
		}
		idx := gjson.Get(data, "contentBlockIndex").Int()
		if d.respBlock >= 0 && idx == d.respBlock {
			d.res.FirstContent = true
			d.respArgs = true
			dst = d.open(dst)
			dst = append(dst, `{"content":`...)
			dst = append(dst, in.Raw...)
			return append(dst, "}"+chunkw.Tail...)
		}
		tb := d.tool(idx)
		if tb == nil {
			return dst
		}
		tb.hasArgs = true
		dst = d.open(dst)
		return chunkw.AppendToolArgs(dst, tb.index, in.Raw)
	case "messageStart":
		return d.role(dst) // a second messageStart is ignored
	case "contentBlockStart":
		tu := gjson.Get(data, "start.toolUse")
		if !tu.IsObject() {
			return dst
		}
		idx := gjson.Get(data, "contentBlockIndex").Int()
		if d.st.jsonMode && tu.Get("name").Str == ResponseTool {
			// The structured-output block is content only once its JSON
			// starts: an error before that can still fail over.
			if !d.started {
				d.begin()
			}
			if d.respBlock < 0 {
				d.respBlock = idx
			}
			return dst
		}
		d.res.FirstContent = true
		if len(d.tools) >= maxToolBlocks || d.tool(idx) != nil {
			return dst
		}
		d.tools = append(d.tools, toolBlock{block: idx, index: d.nTools})
		d.nTools++
		dst = d.open(dst)
		dst = chunkw.AppendToolStart(dst, d.nTools-1, tu.Get("toolUseId").Str, tu.Get("name").Str)
		return append(dst, `""}}]}`+chunkw.Tail...)
	case "contentBlockStop":
		idx := gjson.Get(data, "contentBlockIndex").Int()
		if d.respBlock >= 0 && idx == d.respBlock && !d.respArgs {
			d.respArgs = true
			dst = d.open(dst)
			return append(dst, `{"content":"{}"}`+chunkw.Tail...)
		}
		if tb := d.tool(idx); tb != nil && !tb.hasArgs {
			// A call without input: OpenAI clients parse the arguments.
			tb.hasArgs = true
			dst = d.open(dst)
			return chunkw.AppendToolArgs(dst, tb.index, `"{}"`)
		}
		return dst
	case "messageStop":
		if d.stopped {
			return dst
		}
		d.stopped = true
		d.stop = finishReason(gjson.Get(data, "stopReason").Str, d.nTools > 0)
		return d.finish(dst)
	case "metadata":
		if u := gjson.Get(data, "usage"); u.IsObject() {
			d.usage.read(u)
			d.usage.Report(&d.res)
		}
		if !d.stopped {
			return dst // metadata before messageStop: not the end
		}
		return d.end(dst, d.res.HasUsage)
	}
	return dst // unknown events
}

// end appends the usage chunk (when the client asked and usage is known)
// and [DONE]: the stream reached its proper end.
func (d *decoder) end(dst []byte, usage bool) []byte {
	dst = d.finish(dst)
	d.done = true
	d.res.Completed = true
	if d.includeUsage && usage {
		dst = append(dst, "data: "...)
		dst = append(dst, d.head[:len(d.head)-len(`{"index":0,"delta":`)]...)
		dst = append(dst, `],"usage":`...)
		dst = d.usage.AppendOpenAI(dst)
		dst = append(dst, "}\n\n"...)
	}
	return append(dst, "data: [DONE]\n\n"...)
}

// finish appends the finish chunk once.
func (d *decoder) finish(dst []byte) []byte {
	if d.finished {
		return dst
	}
	d.finished = true
	if d.stop == "" {
		d.stop = finishReason("", d.nTools > 0)
	}
	d.res.FinishReason = d.stop
	d.res.Model = d.st.model
	dst = d.open(dst)
	return chunkw.AppendFinish(dst, d.stop)
}

// streamError appends e as an OpenAI-shaped SSE error event.
func (d *decoder) streamError(dst []byte, e *translate.Error) []byte {
	d.res.Err = e
	dst = append(dst, "data: "...)
	dst = e.AppendJSON(dst)
	return append(dst, "\n\n"...)
}
