package redact

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate/jsonenc"
)

// Restoring placeholders in the response.
//
// The restorer reads the OpenAI-shaped output llmux sends the client, after
// the provider's format was translated, so one restorer serves every
// provider. A placeholder the model writes may be cut anywhere: across
// chunks, and across SSE events (half in one content delta, half in the
// next). The restorer therefore works on the text of each field — a
// choice's content, refusal or reasoning, a tool call's arguments — and
// keeps back, per field, only a tail that is still a prefix of one of the
// request's placeholders (shorter than the longest one); the tail goes out
// with the field's next delta, or with the choice's finish, or before
// [DONE]. Text that stops being a placeholder prefix goes out as it is:
// a mangled placeholder is left alone.

// textFields are the per-choice text fields restored, by number.
var textFields = [...]string{"content", "refusal", "reasoning_content"}

// toolField numbers a tool call's arguments in a pending key.
const toolField = len(textFields)

// pendingText is a field's held-back tail.
type pendingText struct {
	choice, field, tool int
	text                []byte
}

// Restoring reports whether the response needs Restore: the request got
// placeholders, or the policy masks responses.
func (s *Session) Restoring() bool {
	return s != nil && (len(s.phs) > 0 || s.p.responses && len(s.p.actions) > 0)
}

// StartResponse tells the session the response's content type (from the
// decoder): an event stream is restored event by event; anything else is
// read whole at the end.
func (s *Session) StartResponse(contentType string) {
	s.json = !strings.HasPrefix(contentType, "text/event-stream")
}

// Restore rewrites one chunk of the response output (OpenAI's format),
// restoring placeholders and, when the policy asks, masking data in the
// response text. It returns the bytes to send now: src itself when the
// chunk needs no change (no allocation, no copy), else dst extended. final
// is the response's last chunk: everything held back goes out.
func (s *Session) Restore(dst, src []byte, final bool) []byte {
	if s.json {
		if !final {
			s.carry = append(s.carry, src...)
			return dst[:0]
		}
		if len(s.carry) > 0 {
			// The whole body; the carry starts over for another
			// response (a fallback's) once this one is sent.
			src = append(s.carry, src...)
			s.carry = src[:0]
		}
		if !s.p.responses && !s.mayHold(src) {
			return src
		}
		return s.object(dst, src, true)
	}
	if len(s.carry) == 0 && len(s.pending) == 0 && !s.p.responses && (len(src) == 0 || bytes.HasSuffix(src, []byte("\n\n"))) && !s.mayHold(src) {
		return src
	}
	in := src
	if len(s.carry) > 0 {
		s.carry = append(s.carry, src...)
		in = s.carry
	}
	for len(in) > 0 {
		n := bytes.Index(in, []byte("\n\n"))
		if n < 0 {
			if !final {
				break
			}
			n = len(in) - 2
		}
		ev := in[:n+2]
		in = in[n+2:]
		// Only the chunk's last event is the response's last: the
		// events before it still have the ones after to continue in.
		dst = s.event(dst, ev, final && len(in) == 0)
	}
	if len(in) > 0 {
		// An event cut by the chunk: keep it for the next one.
		rest := append(s.scratch[:0], in...)
		s.carry, s.scratch = append(s.carry[:0], rest...), rest
	} else {
		s.carry = s.carry[:0]
	}
	if final {
		dst = s.flushAll(dst)
	}
	return dst
}

// mayHold reports whether b may hold a placeholder: a '<', raw or escaped.
func (s *Session) mayHold(b []byte) bool {
	if len(s.phs) == 0 {
		return false
	}
	return bytes.IndexByte(b, '<') >= 0 || bytes.Contains(b, []byte(`\u003c`)) || bytes.Contains(b, []byte(`\u003C`))
}

// event rewrites one SSE event.
func (s *Session) event(dst, ev []byte, final bool) []byte {
	d := bytes.Index(ev, []byte("data:"))
	if d < 0 || d > 0 && ev[d-1] != '\n' {
		return append(dst, ev...)
	}
	p := d + 5
	if p < len(ev) && ev[p] == ' ' {
		p++
	}
	e := p + bytes.IndexByte(ev[p:], '\n')
	if e < p {
		e = len(ev)
	}
	payload := ev[p:e]
	if string(payload) == "[DONE]" {
		dst = s.flushAll(dst)
		return append(dst, ev...)
	}
	dst = append(dst, ev[:p]...)
	dst = s.object(dst, payload, final)
	return append(dst, ev[e:]...)
}

// object rewrites one chat completion (chunk) object.
func (s *Session) object(dst, obj []byte, final bool) []byte {
	view := unsafe.String(unsafe.SliceData(obj), len(obj))
	choices := gjson.Get(view, "choices")
	if !choices.IsArray() {
		return append(dst, obj...)
	}
	s.edits, s.arena = s.edits[:0], s.arena[:0]
	pos := -1
	choices.ForEach(func(_, ch gjson.Result) bool {
		pos++
		idx := pos
		if i := ch.Get("index"); i.Type == gjson.Number {
			idx = int(i.Int())
		}
		o := ch.Get("delta")
		if !o.Exists() {
			o = ch.Get("message")
		}
		fin := ch.Get("finish_reason")
		done := final || fin.Exists() && fin.Type != gjson.Null
		if !o.IsObject() {
			return true
		}
		for f, name := range textFields {
			if r := o.Get(name); r.Type == gjson.String {
				s.text1(r, idx, f, -1, done)
			}
		}
		tpos := -1
		o.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
			tpos++
			t := tpos
			if i := tc.Get("index"); i.Type == gjson.Number {
				t = int(i.Int())
			}
			if a := tc.Get("function.arguments"); a.Type == gjson.String {
				s.text1(a, idx, toolField, t, done)
			}
			return true
		})
		if done {
			s.insertPending(o, idx)
		}
		return true
	})
	if len(s.edits) == 0 {
		return append(dst, obj...)
	}
	slices.SortStableFunc(s.edits, func(a, b edit) int { return a.start - b.start })
	last := 0
	for _, e := range s.edits {
		dst = append(dst, obj[last:e.start]...)
		dst = append(dst, s.arena[e.from:e.to]...)
		last = e.end
	}
	return append(dst, obj[last:]...)
}

// text1 restores one text field: its held tail from before, then its
// text; it holds back a new tail unless done.
func (s *Session) text1(r gjson.Result, choice, f, tool int, done bool) {
	held := s.takePending(choice, f, tool)
	if len(held) == 0 && !s.p.responses && strings.IndexByte(r.Str, '<') < 0 {
		return
	}
	text := append(s.text[:0], held...)
	text = append(text, r.Str...)
	s.text = text
	t := unsafe.String(unsafe.SliceData(text), len(text))
	from := len(s.arena)
	var (
		out  []byte
		hold int
		tail string
	)
	if s.p.responses {
		// Mask what is complete: a value may continue in the next delta,
		// so the last word (and digit groups before it) waits for it.
		if !done {
			h := maskHold(t)
			t, tail = t[:len(t)-h], t[len(t)-h:]
		}
		out, _ = s.restoreText(s.arena, s.maskResponse(t), true)
	} else {
		out, hold = s.restoreText(s.arena, t, done)
		tail = t[len(t)-hold:]
	}
	if len(held) == 0 && tail == "" && string(out[from:]) == r.Str {
		s.arena = out[:from]
		return
	}
	if tail != "" {
		s.setPending(choice, f, tool, tail)
	}
	// Encode the restored text in place of the raw string.
	plain := string(out[from:]) // a copy: the arena is appended to next
	s.arena = jsonenc.AppendString(out[:from], plain)
	s.edits = append(s.edits, edit{start: r.Index, end: r.Index + len(r.Raw), from: from, to: len(s.arena)})
}

// restoreText appends t with each known placeholder replaced by its
// original; unless done, a tail of t that is a proper prefix of a
// placeholder is not appended and its length returned.
func (s *Session) restoreText(dst []byte, t string, done bool) ([]byte, int) {
	last := 0
	for i := 0; i < len(t); {
		k := strings.IndexByte(t[i:], '<')
		if k < 0 {
			break
		}
		k += i
		if p := s.lookup(t[k:]); p != nil {
			dst = append(dst, t[last:k]...)
			dst = append(dst, p.value...)
			i = k + len(p.name)
			last = i
			continue
		}
		if !done && s.prefixOf(t[k:]) {
			return append(dst, t[last:k]...), len(t) - k
		}
		i = k + 1
	}
	return append(dst, t[last:]...), 0
}

// lookup returns the placeholder t starts with.
func (s *Session) lookup(t string) *placeholder {
	for i := range s.phs {
		if strings.HasPrefix(t, s.phs[i].name) {
			return &s.phs[i]
		}
	}
	return nil
}

// prefixOf reports whether t is a proper prefix of a placeholder.
func (s *Session) prefixOf(t string) bool {
	if len(t) >= s.maxName {
		return false
	}
	for i := range s.phs {
		if len(t) < len(s.phs[i].name) && strings.HasPrefix(s.phs[i].name, t) {
			return true
		}
	}
	return false
}

func (s *Session) takePending(choice, f, tool int) []byte {
	for i := range s.pending {
		p := &s.pending[i]
		if p.choice == choice && p.field == f && p.tool == tool && len(p.text) > 0 {
			t := p.text
			p.text = p.text[len(p.text):]
			return t
		}
	}
	return nil
}

func (s *Session) setPending(choice, f, tool int, t string) {
	for i := range s.pending {
		p := &s.pending[i]
		if p.choice == choice && p.field == f && p.tool == tool {
			p.text = append(p.text[:0], t...)
			return
		}
	}
	s.pending = append(s.pending, pendingText{choice: choice, field: f, tool: tool, text: []byte(t)})
}

// insertPending puts a finished choice's held tails into its delta (or
// message) object o, for fields this object does not carry.
func (s *Session) insertPending(o gjson.Result, choice int) {
	from := len(s.arena)
	for i := range s.pending {
		p := &s.pending[i]
		if p.choice != choice || len(p.text) == 0 {
			continue
		}
		if len(s.arena) > from {
			s.arena = append(s.arena, ',')
		}
		s.finishTail(p)
		s.arena = appendPending(s.arena, p)
		p.text = p.text[:0]
	}
	if len(s.arena) == from {
		return
	}
	if strings.TrimSpace(o.Raw[1:len(o.Raw)-1]) != "" {
		s.arena = append(s.arena, ',')
	}
	at := o.Index + 1
	s.edits = append(s.edits, edit{start: at, end: at, from: from, to: len(s.arena)})
}

// flushAll sends every held tail as an event of its own (before [DONE],
// or at the end of a stream that ended without finishing its choices).
func (s *Session) flushAll(dst []byte) []byte {
	for i := range s.pending {
		p := &s.pending[i]
		if len(p.text) == 0 {
			continue
		}
		dst = append(dst, `data: {"object":"chat.completion.chunk","choices":[{"index":`...)
		dst = strconv.AppendInt(dst, int64(p.choice), 10)
		dst = append(dst, `,"delta":{`...)
		s.finishTail(p)
		dst = appendPending(dst, p)
		dst = append(dst, "},\"finish_reason\":null}]}\n\n"...)
		p.text = p.text[:0]
	}
	return dst
}

// finishTail makes a held tail final: masked when the policy masks
// responses, and restored (a placeholder prefix stays as it is).
func (s *Session) finishTail(p *pendingText) {
	t := string(p.text)
	if s.p.responses {
		t = s.maskResponse(t)
	}
	p.text, _ = s.restoreText(p.text[:0], t, true)
}

// appendPending appends a held tail as the delta member it belongs to.
func appendPending(dst []byte, p *pendingText) []byte {
	if p.field == toolField {
		dst = append(dst, `"tool_calls":[{"index":`...)
		dst = strconv.AppendInt(dst, int64(p.tool), 10)
		dst = append(dst, `,"function":{"arguments":`...)
		dst = jsonenc.AppendString(dst, string(p.text))
		return append(dst, "}}]"...)
	}
	dst = append(dst, '"')
	dst = append(dst, textFields[p.field]...)
	dst = append(dst, `":`...)
	return jsonenc.AppendString(dst, string(p.text))
}

// maxMaskHold bounds the tail held back for response masking.
const maxMaskHold = 256

// maskHold returns how much of t's end may still be part of a value the
// next delta completes: the last word and, when it is a digit group (or
// empty), the digit groups before it (a phone or card number written with
// spaces); nothing past maxMaskHold.
func maskHold(t string) int {
	i := len(t)
	for i > 0 && !isSpace(t[i-1]) {
		i--
	}
	numeric := true // the last word could be a digit group
	for k := i; k < len(t); k++ {
		numeric = numeric && isNumberByte(t[k])
	}
	for numeric && i > 1 && t[i-1] == ' ' && isNumberByte(t[i-2]) {
		j := i - 1
		for j > 0 && isNumberByte(t[j-1]) {
			j--
		}
		i = j
	}
	if len(t)-i > maxMaskHold {
		return 0
	}
	return len(t) - i
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func isNumberByte(c byte) bool {
	return isDigit(c) || c == '+' || c == '(' || c == ')' || c == '-' || c == '.'
}

// maskResponse masks the policy's kinds in response text (placeholders
// are not data and are left for restoring).
func (s *Session) maskResponse(t string) string {
	s.matches = s.p.set.Find(s.matches[:0], t)
	if len(s.matches) == 0 {
		return t
	}
	out := make([]byte, 0, len(t))
	last := 0
	for _, m := range s.matches {
		if s.p.actions[m.Kind] == ActionCount {
			s.count(m.Kind)
			continue
		}
		s.count(m.Kind)
		out = append(out, t[last:m.Start]...)
		out = append(append(append(out, '['), m.Kind...), ']')
		last = m.End
	}
	out = append(out, t[last:]...)
	return string(out)
}
