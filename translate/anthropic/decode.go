package anthropic

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/chunkw"
	"github.com/llmux/llmux/translate/internal/respbody"
	"github.com/llmux/llmux/translate/jsonenc"
	"github.com/llmux/llmux/translate/sse"
)

// maxToolBlocks bounds the tool blocks a stream may open (memory bound).
const maxToolBlocks = 4096

// toolBlock maps an Anthropic content block index to an OpenAI tool index.
type toolBlock struct {
	block   int64
	index   int
	hasArgs bool
}

type decoder struct {
	op           translate.Operation
	stream       bool
	includeUsage bool
	status       int
	created      int64
	mode         respbody.Mode
	res          translate.Result

	// non-streamed
	whole respbody.Whole

	// streamed
	sc        sse.Scanner
	head      []byte // chunk prefix, up to and including `"delta":`
	started   bool   // chunk prefix built, role chunk sent
	sawStart  bool   // message_start seen
	finished  bool   // finish chunk sent
	done      bool   // message_stop or error: nothing more is decoded
	stop      string // OpenAI finish reason from message_delta
	tools     []toolBlock
	respBlock int64 // block index of the JSON response tool, or -1
	respArgs  bool
	nTools    int
	usage     rawUsage
}

// rawUsage is Anthropic's usage, kept apart until it is reported
// (Anthropic's input_tokens counts neither cache reads nor cache writes).
type rawUsage struct{ chunkw.CacheUsage }

var usageMembers = [...]string{"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}

// read reads the counts v has, keeping the others.
func (u *rawUsage) read(v gjson.Result) {
	var f [len(usageMembers)]gjson.Result
	respbody.Members(v, usageMembers[:], f[:])
	for i, p := range [...]*int64{&u.Input, &u.Output, &u.CacheRead, &u.CacheWrite} {
		if f[i].Exists() {
			*p = f[i].Int()
		}
	}
}

func (d *decoder) ContentType() string { return d.mode.ContentType() }

func (d *decoder) Result() *translate.Result { return &d.res }

// Status maps Anthropic's 529 (overloaded) to 503; other statuses pass.
func (d *decoder) Status() int {
	if d.status == 529 {
		return 503
	}
	return d.status
}

func (d *decoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	if d.mode == respbody.Stream {
		return d.decodeStream(dst, src, final)
	}
	if ready, err := d.whole.Add(src, final, &d.res); !ready {
		return dst, err
	}
	if d.mode == respbody.Error {
		e := ParseError(d.status, d.whole.Buf)
		d.res.Err = e
		return e.AppendJSON(dst), nil
	}
	body := respbody.View(d.whole.Buf)
	root := gjson.Parse(body)
	if !gjson.Valid(body) || !root.IsObject() {
		d.res.Err = &translate.Error{Code: translate.CodeUpstreamProtocol, Message: "upstream returned an invalid JSON body"}
		return d.res.Err.AppendJSON(dst), nil
	}
	var m message
	respbody.Members(root, messageMembers[:], m[:])
	if m[mType].Str == "error" {
		d.res.Err = parseErrorObject(0, m[mError])
		return d.res.Err.AppendJSON(dst), nil
	}
	return d.message(dst, &m), nil
}

// The members of a message the decoder reads, read in one pass (a
// gjson.Get each would scan the content, the bulk of the body, once per
// member).
var messageMembers = [...]string{"type", "error", "id", "model", "content", "stop_reason", "usage"}

// message holds a message's members, indexed as messageMembers.
type message [len(messageMembers)]gjson.Result

const (
	mType = iota
	mError
	mID
	mModel
	mContent
	mStop
	mUsage
)

// The members of a content block the decoder reads.
var blockMembers = [...]string{"type", "text", "thinking", "id", "name", "input"}

const (
	bType = iota
	bText
	bThinking
	bID
	bName
	bInput
)

// finishReason maps Anthropic's stop_reason to OpenAI's finish_reason.
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
	case "refusal":
		return "content_filter"
	}
	return "stop" // end_turn, stop_sequence, pause_turn, null
}

// message converts a whole Anthropic message into a chat.completion.
func (d *decoder) message(dst []byte, m *message) []byte {
	model := m[mModel].Str
	d.res.Model = strings.Clone(model)
	d.usage.read(m[mUsage])
	d.usage.Report(&d.res)

	dst = chunkw.AppendPrefix(dst, "chat.completion", m[mID].Str, d.created, model)
	dst = append(dst, `{"index":0,"message":{"role":"assistant","content":`...)
	// One pass over the blocks: text blocks joined into the content, the
	// thinking blocks' text as the reasoning (redacted_thinking blocks
	// carry only encrypted data and are left out), tool_use blocks as tool
	// calls, and in JSON mode the response tool's input as the answer (any
	// text around it, a preamble, is dropped).
	var msg chunkw.Message
	msg.Begin(dst)
	m[mContent].ForEach(func(_, blk gjson.Result) bool {
		var b [len(blockMembers)]gjson.Result
		respbody.Members(blk, blockMembers[:], b[:])
		switch b[bType].Str {
		case "text":
			dst = msg.Text(dst, b[bText])
		case "thinking":
			msg.Reasoning(b[bThinking])
		case "tool_use":
			if b[bName].Str != ResponseTool {
				msg.ToolCall(b[bID].Str, b[bName].Str, b[bInput].Raw)
			} else if !msg.Answer.Exists() {
				msg.Answer = b[bInput]
			}
		}
		return true
	})
	var content bool
	if dst, content = msg.End(dst); content {
		d.res.FirstContent = true
	}
	d.res.FinishReason = finishReason(m[mStop].Str, msg.Calls() > 0)
	dst = chunkw.AppendMessageEnd(dst, d.res.FinishReason)
	dst = d.usage.AppendOpenAI(dst)
	d.res.Completed = true
	return append(dst, '}')
}

// ---- streaming ----

func (d *decoder) decodeStream(dst, src []byte, final bool) ([]byte, error) {
	return translate.DecodeSSE(&d.sc, &d.res, dst, src, final, d.event)
}

// chunk appends one chat.completion.chunk whose delta is the JSON object
// made of open, raw and close.
func (d *decoder) chunk(dst []byte, open, raw, close string) []byte {
	if !d.started {
		d.begin("", "")
	}
	dst = append(dst, "data: "...)
	dst = append(dst, d.head...)
	dst = append(dst, open...)
	dst = append(dst, raw...)
	dst = append(dst, close...)
	return append(dst, chunkw.Tail...)
}

// begin builds the chunk prefix from the message id and model.
func (d *decoder) begin(id, model string) {
	d.started = true
	d.head = chunkw.AppendPrefix(d.head[:0], "chat.completion.chunk", id, d.created, model)
	d.head = append(d.head, `{"index":0,"delta":`...)
}

func (d *decoder) tool(block int64) *toolBlock {
	for i := len(d.tools) - 1; i >= 0; i-- {
		if d.tools[i].block == block {
			return &d.tools[i]
		}
	}
	return nil
}

// event decodes one SSE event.
func (d *decoder) event(dst, ev []byte) []byte {
	if d.done {
		return dst
	}
	f := d.sc.Parse(ev)
	if !f.HasData {
		return dst
	}
	data := respbody.View(f.Data)
	if !gjson.Valid(data) {
		return dst // a truncated last event; the stream is not complete
	}
	switch gjson.Get(data, "type").Str {
	case "content_block_delta":
		delta := gjson.Get(data, "delta")
		switch delta.Get("type").Str {
		case "text_delta":
			t := delta.Get("text")
			if t.Type != gjson.String || len(t.Raw) <= 2 {
				return dst
			}
			d.res.FirstContent = true
			return d.chunk(dst, `{"content":`, t.Raw, `}`)
		case "input_json_delta":
			pj := delta.Get("partial_json")
			if pj.Type != gjson.String || len(pj.Raw) <= 2 {
				return dst
			}
			idx := gjson.Get(data, "index").Int()
			if d.respBlock >= 0 && idx == d.respBlock {
				d.res.FirstContent = true
				d.respArgs = true
				return d.chunk(dst, `{"content":`, pj.Raw, `}`)
			}
			tb := d.tool(idx)
			if tb == nil {
				return dst
			}
			tb.hasArgs = true
			dst = append(dst, "data: "...)
			dst = append(dst, d.head...)
			return chunkw.AppendToolArgs(dst, tb.index, pj.Raw)
		case "thinking_delta":
			return d.reasoning(dst, delta.Get("thinking"))
		}
		return dst // signature deltas (and unknown ones) are not translated
	case "message_start":
		if d.sawStart || d.started {
			return dst // a second (or late) message_start is ignored
		}
		d.sawStart = true
		msg := gjson.Get(data, "message")
		d.res.Model = strings.Clone(msg.Get("model").Str)
		d.begin(msg.Get("id").Str, msg.Get("model").Str)
		if u := msg.Get("usage"); u.IsObject() {
			d.usage.read(u)
			d.usage.Report(&d.res)
		}
		return d.chunk(dst, `{"role":"assistant","content":""}`, "", "")
	case "content_block_start":
		blk := gjson.Get(data, "content_block")
		idx := gjson.Get(data, "index").Int()
		switch blk.Get("type").Str {
		case "text":
			if t := blk.Get("text"); t.Type == gjson.String && len(t.Raw) > 2 {
				d.res.FirstContent = true
				return d.chunk(dst, `{"content":`, t.Raw, `}`)
			}
		case "thinking":
			return d.reasoning(dst, blk.Get("thinking"))
		case "tool_use":
			in := blk.Get("input")
			hasInput := in.IsObject() && len(strings.TrimSpace(in.Raw)) > 2 && strings.TrimSpace(in.Raw[1:len(in.Raw)-1]) != ""
			if blk.Get("name").Str == ResponseTool {
				// The structured-output block is content only once its
				// JSON starts: an error before that can still fail over.
				if d.respBlock >= 0 {
					return dst
				}
				d.respBlock = idx
				if hasInput {
					d.res.FirstContent = true
					d.respArgs = true
					if !d.started {
						d.begin("", "")
					}
					dst = append(dst, "data: "...)
					dst = append(dst, d.head...)
					dst = append(dst, `{"content":`...)
					dst = jsonenc.AppendString(dst, in.Raw)
					return append(dst, `}`+chunkw.Tail...)
				}
				return dst
			}
			d.res.FirstContent = true
			if len(d.tools) >= maxToolBlocks {
				return dst
			}
			d.tools = append(d.tools, toolBlock{block: idx, index: d.nTools, hasArgs: hasInput})
			d.nTools++
			if !d.started {
				d.begin("", "")
			}
			dst = append(dst, "data: "...)
			dst = append(dst, d.head...)
			dst = chunkw.AppendToolStart(dst, d.nTools-1, blk.Get("id").Str, blk.Get("name").Str)
			if hasInput {
				dst = jsonenc.AppendString(dst, in.Raw)
			} else {
				dst = append(dst, `""`...)
			}
			return append(dst, `}}]}`+chunkw.Tail...)
		}
		return dst
	case "content_block_stop":
		idx := gjson.Get(data, "index").Int()
		if d.respBlock >= 0 && idx == d.respBlock && !d.respArgs {
			d.respArgs = true
			return d.chunk(dst, `{"content":"{}"}`, "", "")
		}
		if tb := d.tool(idx); tb != nil && !tb.hasArgs {
			// A call without input: OpenAI clients parse the arguments.
			tb.hasArgs = true
			dst = append(dst, "data: "...)
			dst = append(dst, d.head...)
			return chunkw.AppendToolArgs(dst, tb.index, `"{}"`)
		}
		return dst
	case "message_delta":
		if u := gjson.Get(data, "usage"); u.IsObject() {
			d.usage.read(u)
			d.usage.Report(&d.res)
		}
		if sr := gjson.Get(data, "delta.stop_reason"); sr.Type == gjson.String {
			d.stop = finishReason(sr.Str, d.nTools > 0)
			return d.finish(dst)
		}
		return dst
	case "message_stop":
		dst = d.finish(dst)
		d.done = true
		d.res.Completed = true
		d.usage.Report(&d.res)
		if d.includeUsage {
			dst = append(dst, "data: "...)
			dst = append(dst, d.head[:len(d.head)-len(`{"index":0,"delta":`)]...)
			dst = append(dst, `],"usage":`...)
			dst = d.usage.AppendOpenAI(dst)
			dst = append(dst, "}\n\n"...)
		}
		return append(dst, "data: [DONE]\n\n"...)
	case "error":
		d.done = true
		e := parseErrorObject(0, gjson.Get(data, "error"))
		d.res.Err = e
		dst = append(dst, "data: "...)
		dst = e.AppendJSON(dst)
		return append(dst, "\n\n"...)
	}
	return dst // ping and unknown events
}

// reasoning appends a chunk whose delta carries the thinking text t (a
// JSON string), unless t is empty.
func (d *decoder) reasoning(dst []byte, t gjson.Result) []byte {
	if t.Type != gjson.String || len(t.Raw) <= 2 {
		return dst
	}
	d.res.FirstContent = true
	return d.chunk(dst, chunkw.ReasoningDelta, t.Raw, `}`)
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
	if !d.started {
		d.begin("", "")
	}
	dst = append(dst, "data: "...)
	dst = append(dst, d.head...)
	return chunkw.AppendFinish(dst, d.stop)
}
