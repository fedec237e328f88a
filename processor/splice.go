package processor

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/jsonenc"
)

// The splice: what the client was sent of a stream (observe), and the
// rewriting of a continuation's OpenAI events so that the client sees one
// stream (spliceDecoder). Pure functions over the OpenAI SSE bytes the
// decoders produce; repair.go drives them.

// splice is what the client has been sent of a streamed chat completion.
type splice struct {
	id, created, model []byte // raw JSON of the first chunk's members, kept for the continuation's chunks
	text               []byte // the content sent, JSON-escaped (a JSON string's inside)
	attemptText        int    // len(text) when the current attempt started
	tool               bool   // a tool call went out: not continuable
	finished           bool   // a finish reason went out
}

// eventErrorPrefix starts an OpenAI error event (appendEventError and every
// decoder's in-band error).
const eventErrorPrefix = `data: {"error"`

// observe records what out, whole SSE events in OpenAI's chat chunk
// shape, tells the client, and returns the offset of the first error event
// in out, or -1. It allocates only when the text outgrows its buffer and
// for the first chunk's identity.
func (s *splice) observe(out []byte) int {
	for off := 0; off < len(out); {
		n := bytes.Index(out[off:], []byte("\n\n"))
		if n < 0 {
			n = len(out) - off
		}
		ev := out[off : off+n]
		if bytes.HasPrefix(ev, []byte(eventErrorPrefix)) {
			return off
		}
		if data, ok := bytes.CutPrefix(ev, []byte("data: ")); ok && len(data) > 0 && data[0] == '{' {
			s.observeChunk(view(data))
		}
		off += n + 2
	}
	return -1
}

func (s *splice) observeChunk(js string) {
	if s.id == nil {
		s.id = []byte(gjson.Get(js, "id").Raw)
		s.created = []byte(gjson.Get(js, "created").Raw)
		s.model = []byte(gjson.Get(js, "model").Raw)
	}
	// The first choice, found without walking the members before it.
	i := strings.Index(js, `"choices":[`)
	if i < 0 || i+len(`"choices":[`) >= len(js) || js[i+len(`"choices":[`)] != '{' {
		return
	}
	gjson.Parse(js[i+len(`"choices":[`):]).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "delta":
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "content":
					if v.Type == gjson.String && len(v.Raw) > 2 {
						s.text = append(s.text, v.Raw[1:len(v.Raw)-1]...)
					}
				case "tool_calls", "function_call":
					if v.Type != gjson.Null {
						s.tool = true
					}
				}
				return true
			})
		case "finish_reason":
			if v.Type == gjson.String {
				s.finished = true
			}
		}
		return true
	})
}

// sentText is the content sent so far, unescaped.
func (s *splice) sentText() string {
	if len(s.text) == 0 {
		return ""
	}
	return gjson.Parse(`"` + string(s.text) + `"`).Str
}

// overlapWindow is how much of a continuation's text is held back to look
// for a repetition of what was sent: a model that restarts repeats a few
// words, and holding more delays the first repaired byte.
const overlapWindow = 48

// overlap returns how many leading bytes of next repeat the end of sent,
// as a model asked to continue its own reply tends to restart with its
// last words: the longest k such that next starts with sent's last k
// bytes, the repeated part is whole words (it starts a word in sent and
// ends one in next) and holds a letter or digit. 0 when there is none.
func overlap(sent, next string) int {
	for k := min(len(sent), len(next)); k >= 1; k-- {
		tail := sent[len(sent)-k:]
		if !strings.HasPrefix(next, tail) {
			continue
		}
		first, _ := utf8.DecodeRuneInString(tail)
		if i := len(sent) - k; i > 0 && !unicode.IsSpace(first) {
			if r, _ := utf8.DecodeLastRuneInString(sent[:i]); !unicode.IsSpace(r) {
				continue // the repetition starts inside a word
			}
		}
		if k < len(next) {
			last, _ := utf8.DecodeLastRuneInString(tail)
			if r, _ := utf8.DecodeRuneInString(next[k:]); isWordRune(last) && isWordRune(r) {
				continue // it ends inside a word of next
			}
		}
		if strings.IndexFunc(tail, isWordRune) >= 0 {
			return k
		}
	}
	return 0
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// spliceDecoder wraps a continuation's decoder: its events carry the first
// attempt's id, created and model, its role is dropped, its first content
// loses what repeats the text already sent, and its usage (in the usage
// chunk and in Result) adds the failed attempts' usage.
type spliceDecoder struct {
	translate.Decoder
	sp    *splice
	prior translate.Usage // the failed attempts' usage
	sent  string          // the text sent before this continuation, unescaped
	lead  string          // whitespace the prefill dropped from sent's end, already sent
	trim  bool            // the continuation's start is still held for trimming
	held  []byte          // that start, unescaped
	out   []byte          // scratch
	res   translate.Result
}

// Decode implements translate.Decoder.
func (d *spliceDecoder) Decode(dst, src []byte, final bool) ([]byte, error) {
	start := len(dst)
	dst, err := d.Decoder.Decode(dst, src, final)
	d.out = d.rewrite(d.out[:0], dst[start:], final)
	return append(dst[:start], d.out...), err
}

// Result implements translate.Decoder: the continuation's result with the
// failed attempts' usage added.
func (d *spliceDecoder) Result() *translate.Result {
	d.res = *d.Decoder.Result()
	d.res.HasUsage = true
	d.res.Usage = addUsage(d.res.Usage, d.prior)
	d.res.FirstContent = true // the client has had content
	return &d.res
}

func addUsage(a, b translate.Usage) translate.Usage {
	a.InputTokens += b.InputTokens
	a.OutputTokens += b.OutputTokens
	a.CachedTokens += b.CachedTokens
	a.CacheCreationTokens += b.CacheCreationTokens
	a.ReasoningTokens += b.ReasoningTokens
	a.AudioInputTokens += b.AudioInputTokens
	a.AudioOutputTokens += b.AudioOutputTokens
	return a
}

// rewrite appends to dst the events of evs (whole events) as the client
// must see them.
func (d *spliceDecoder) rewrite(dst, evs []byte, final bool) []byte {
	for off := 0; off < len(evs); {
		n := bytes.Index(evs[off:], []byte("\n\n"))
		if n < 0 {
			n = len(evs) - off
		}
		ev := evs[off : off+n]
		off += n + 2
		data, ok := bytes.CutPrefix(ev, []byte("data: "))
		if !ok || len(data) == 0 || data[0] != '{' || bytes.HasPrefix(ev, []byte(eventErrorPrefix)) {
			// [DONE], an error event, anything else: as is, after what is held.
			dst = d.flush(dst)
			dst = append(append(dst, ev...), "\n\n"...)
			continue
		}
		dst = d.chunk(dst, view(data))
	}
	if final {
		dst = d.flush(dst)
	}
	return dst
}

// chunk rewrites one chat.completion.chunk.
func (d *spliceDecoder) chunk(dst []byte, js string) []byte {
	var (
		extra   []byte // other top-level members, raw
		choice  gjson.Result
		usage   gjson.Result
		content string
		hasText bool
		delta   []byte // other delta members, raw
		rest    []byte // other choice members, raw
		other   bool   // the chunk says something beyond content
	)
	gjson.Parse(js).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "id", "object", "created", "model":
		case "choices":
			choice = v.Get("0")
		case "usage":
			usage = v
		default:
			extra = append(append(append(append(extra, ','), k.Raw...), ':'), v.Raw...)
		}
		return true
	})
	if choice.Exists() {
		choice.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "index":
			case "delta":
				v.ForEach(func(k, v gjson.Result) bool {
					switch k.Str {
					case "role":
					case "content":
						if v.Type == gjson.String {
							content, hasText = v.Str, v.Str != ""
						}
					default:
						if v.Type != gjson.Null {
							other = true
						}
						delta = append(append(append(append(delta, ','), k.Raw...), ':'), v.Raw...)
					}
					return true
				})
			default:
				if k.Str == "finish_reason" && v.Type != gjson.Null {
					other = true
				}
				rest = append(append(append(append(rest, ','), k.Raw...), ':'), v.Raw...)
			}
			return true
		})
	}
	if hasText {
		content = d.trimmed(content)
		hasText = content != ""
	}
	if other || usage.IsObject() {
		dst = d.flush(dst)
	}
	if !hasText && !other && !usage.IsObject() && choice.Exists() {
		return dst // the role chunk, an empty delta, text held back
	}
	dst = d.prefix(dst)
	dst = append(dst, extra...)
	dst = append(dst, `,"choices":[`...)
	if choice.Exists() {
		dst = append(dst, `{"index":0,"delta":{`...)
		n := len(dst)
		if hasText {
			dst = append(dst, `"content":`...)
			dst = jsonenc.AppendString(dst, content)
		}
		if len(delta) > 0 {
			if len(dst) == n {
				delta = delta[1:]
			}
			dst = append(dst, delta...)
		}
		dst = append(dst, '}')
		dst = append(dst, rest...)
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if usage.Exists() {
		dst = append(dst, `,"usage":`...)
		if usage.IsObject() {
			dst = d.appendUsage(dst, usage)
		} else {
			dst = append(dst, usage.Raw...)
		}
	}
	return append(dst, "}\n\n"...)
}

// trimmed returns what of a continuation's content t goes out now: while
// the start is held, t joins it until there is enough to find a repetition
// of the sent text.
func (d *spliceDecoder) trimmed(t string) string {
	if !d.trim {
		return t
	}
	d.held = append(d.held, t...)
	if len(d.held) < overlapWindow {
		return ""
	}
	return d.release()
}

// release ends the hold: the held start minus the whitespace the prefill
// left out and any repetition of the sent text.
func (d *spliceDecoder) release() string {
	d.trim = false
	h := string(d.held)
	d.held = nil
	if d.lead != "" {
		h = strings.TrimPrefix(h, d.lead)
	}
	return h[overlap(d.sent, h):]
}

// flush sends what is held as a content chunk.
func (d *spliceDecoder) flush(dst []byte) []byte {
	if !d.trim {
		return dst
	}
	t := d.release()
	if t == "" {
		return dst
	}
	dst = d.prefix(dst)
	dst = append(dst, `,"choices":[{"index":0,"delta":{"content":`...)
	dst = jsonenc.AppendString(dst, t)
	return append(dst, `},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
}

// prefix appends `data: {"id":…,"object":…,"created":…,"model":…` with the
// first attempt's identity.
func (d *spliceDecoder) prefix(dst []byte) []byte {
	dst = append(dst, `data: {"id":`...)
	dst = appendRawOr(dst, d.sp.id, `""`)
	dst = append(dst, `,"object":"chat.completion.chunk","created":`...)
	dst = appendRawOr(dst, d.sp.created, "0")
	dst = append(dst, `,"model":`...)
	return appendRawOr(dst, d.sp.model, `""`)
}

func appendRawOr(dst, raw []byte, def string) []byte {
	if len(raw) == 0 {
		return append(dst, def...)
	}
	return append(dst, raw...)
}

// appendUsage appends u, a continuation's usage object, with the failed
// attempts' usage added.
func (d *spliceDecoder) appendUsage(dst []byte, u gjson.Result) []byte {
	p := d.prior
	prompt := u.Get("prompt_tokens").Int() + p.InputTokens
	completion := u.Get("completion_tokens").Int() + p.OutputTokens
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, prompt, 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, completion, 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, prompt+completion, 10)
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = strconv.AppendInt(dst, u.Get("prompt_tokens_details.cached_tokens").Int()+p.CachedTokens, 10)
	dst = append(dst, `},"completion_tokens_details":{"reasoning_tokens":`...)
	dst = strconv.AppendInt(dst, u.Get("completion_tokens_details.reasoning_tokens").Int()+p.ReasoningTokens, 10)
	return append(dst, "}}"...)
}
