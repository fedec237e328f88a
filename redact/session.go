package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate/jsonenc"
)

// Input is the shape of a request body.
type Input uint8

// The request shapes (OpenAI's API).
const (
	// InputChat is a chat completions request: messages.
	InputChat Input = iota
	// InputEmbeddings is an embeddings request: input.
	InputEmbeddings
)

// KindCount is how often a kind was found in a request.
type KindCount struct {
	Kind Kind
	N    int
}

// placeholder is one reversible value of a request.
type placeholder struct {
	kind  Kind
	name  string // "<EMAIL_1>"
	value string // the original, decoded text
}

// Session is one request's redaction: the counts, the placeholders issued
// and the response restorer's state. It is not safe for concurrent use and
// holds nothing of any other request.
type Session struct {
	p      *Policy
	tenant string
	tkey   []byte // per-tenant hash key, derived on first use

	counts  []KindCount
	phs     []placeholder
	maxName int    // the longest placeholder name
	body    string // the request body, while Request runs (placeholder collisions)

	matches []Match
	edits   []edit
	arena   []byte
	text    []byte

	// Response state (restore.go).
	carry   []byte
	pending []pendingText
	scratch []byte
	events  []byte
	json    bool
}

// edit replaces src[start:end] by arena[from:to].
type edit struct {
	start, end int
	from, to   int
}

// Counts returns how often each kind was found, in the request and (with
// Responses) in the response so far, in order of first finding. The slice
// is the session's own; do not modify it.
func (s *Session) Counts() []KindCount { return s.counts }

// Total is the number of values found.
func (s *Session) Total() int {
	n := 0
	for _, c := range s.counts {
		n += c.N
	}
	return n
}

// Policy returns the session's policy.
func (s *Session) Policy() *Policy { return s.p }

// Request applies the policy to an OpenAI-shaped request body and returns
// the body to forward: body itself when nothing changed, else a new slice.
// A kind the policy blocks gives a *BlockedError; a body that is not a
// JSON object gives ErrNotJSON.
func (s *Session) Request(body []byte, in Input) ([]byte, error) {
	if !s.p.Active() {
		return body, nil
	}
	view := unsafe.String(unsafe.SliceData(body), len(body))
	root := gjson.Parse(view)
	if !root.IsObject() {
		return nil, ErrNotJSON
	}
	s.body = view
	defer func() { s.body = "" }()
	s.edits, s.arena = s.edits[:0], s.arena[:0]
	var err error
	switch in {
	case InputChat:
		err = s.chat(root)
	case InputEmbeddings:
		err = s.embeddings(root)
	}
	if err != nil || len(s.edits) == 0 {
		return body, err
	}
	slices.SortFunc(s.edits, func(a, b edit) int { return a.start - b.start })
	out := make([]byte, 0, len(body)+len(s.arena))
	last := 0
	for _, e := range s.edits {
		out = append(out, body[last:e.start]...)
		out = append(out, s.arena[e.from:e.to]...)
		last = e.end
	}
	return append(out, body[last:]...), nil
}

// field names where a value was found, for a BlockedError.
type field struct {
	msg, part int    // message index, content part index (-1: none)
	name      string // "content", "tool_calls[1].function.arguments", "input"
}

func (f field) String() string {
	switch {
	case f.msg < 0 && f.part < 0:
		return f.name
	case f.msg < 0:
		return fmt.Sprintf("%s[%d]", f.name, f.part)
	case f.part < 0:
		return fmt.Sprintf("messages[%d].%s", f.msg, f.name)
	}
	return fmt.Sprintf("messages[%d].content[%d].text", f.msg, f.part)
}

func (s *Session) chat(root gjson.Result) error {
	var err error
	i := -1
	root.Get("messages").ForEach(func(_, m gjson.Result) bool {
		i++
		// One pass over the message's members: its content may be long.
		var role, content, toolCalls, functionArgs gjson.Result
		m.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "role":
				role = v
			case "content":
				content = v
			case "tool_calls":
				toolCalls = v
			case "function_call":
				functionArgs = v.Get("arguments")
			}
			return true
		})
		scope := ScopeMessages
		switch role.Str {
		case "system", "developer":
			scope = ScopeSystem
		case "tool", "function":
			scope = ScopeToolResults
		}
		if s.p.scope&scope != 0 {
			switch {
			case content.Type == gjson.String:
				err = s.field(content, field{msg: i, part: -1, name: "content"})
			case content.IsArray():
				j := -1
				content.ForEach(func(_, part gjson.Result) bool {
					j++
					if t := part.Get("text"); t.Type == gjson.String {
						err = s.field(t, field{msg: i, part: j})
					}
					return err == nil
				})
			}
			if err != nil {
				return false
			}
		}
		if s.p.scope&ScopeToolArguments != 0 {
			j := -1
			toolCalls.ForEach(func(_, tc gjson.Result) bool {
				j++
				if a := tc.Get("function.arguments"); a.Type == gjson.String {
					err = s.field(a, field{msg: i, part: -1, name: "tool_calls[" + strconv.Itoa(j) + "].function.arguments"})
				}
				return err == nil
			})
			if err == nil && functionArgs.Type == gjson.String {
				err = s.field(functionArgs, field{msg: i, part: -1, name: "function_call.arguments"})
			}
		}
		return err == nil
	})
	return err
}

func (s *Session) embeddings(root gjson.Result) error {
	if s.p.scope&ScopeEmbeddings == 0 {
		return nil
	}
	in := root.Get("input")
	if in.Type == gjson.String {
		return s.field(in, field{msg: -1, part: -1, name: "input"})
	}
	var err error
	j := -1
	in.ForEach(func(_, v gjson.Result) bool {
		j++
		if v.Type == gjson.String {
			err = s.field(v, field{msg: -1, part: j, name: "input"})
		}
		return err == nil
	})
	return err
}

// field redacts one JSON string of the request.
func (s *Session) field(r gjson.Result, f field) error {
	if r.Index <= 0 {
		return nil
	}
	text := r.Str
	s.matches = s.p.set.Find(s.matches[:0], text)
	if len(s.matches) == 0 {
		return nil
	}
	if cap(s.text) < len(text)+64 {
		// Room for the text and its replacements in one allocation.
		s.text = make([]byte, 0, len(text)+len(text)/8+64)
	}
	if need := len(s.arena) + len(text) + len(text)/8 + 64; cap(s.arena) < need {
		s.arena = append(make([]byte, 0, need+cap(s.arena)), s.arena...)
	}
	s.text = s.text[:0]
	last, changed := 0, false
	for _, m := range s.matches {
		a := s.p.actions[m.Kind]
		if a == ActionBlock {
			s.count(m.Kind)
			return &BlockedError{Kind: m.Kind, Field: f.String()}
		}
		s.count(m.Kind)
		if a == ActionCount {
			continue
		}
		changed = true
		s.text = append(s.text, text[last:m.Start]...)
		s.text = s.replacement(s.text, m.Kind, a, text[m.Start:m.End])
		last = m.End
	}
	if !changed {
		return nil
	}
	s.text = append(s.text, text[last:]...)
	from := len(s.arena)
	s.arena = jsonenc.AppendString(s.arena, unsafe.String(unsafe.SliceData(s.text), len(s.text)))
	s.edits = append(s.edits, edit{start: r.Index, end: r.Index + len(r.Raw), from: from, to: len(s.arena)})
	return nil
}

func (s *Session) count(k Kind) {
	for i := range s.counts {
		if s.counts[i].Kind == k {
			s.counts[i].N++
			return
		}
	}
	s.counts = append(s.counts, KindCount{Kind: k, N: 1})
}

// replacement appends what value of kind k becomes under action a.
func (s *Session) replacement(dst []byte, k Kind, a Action, value string) []byte {
	switch a {
	case ActionMask:
		return append(append(append(dst, '['), k...), ']')
	case ActionHash:
		if s.tkey == nil {
			s.tkey = s.p.tenantKey(s.tenant)
		}
		m := hmac.New(sha256.New, s.tkey)
		m.Write([]byte(k))
		m.Write([]byte{0})
		m.Write([]byte(value))
		var sum [sha256.Size]byte
		dst = append(append(dst, '['), k...)
		dst = append(dst, ':')
		dst = hex.AppendEncode(dst, m.Sum(sum[:0])[:6])
		return append(dst, ']')
	case ActionReversible:
		return append(dst, s.placeholder(k, value)...)
	}
	return dst // ActionDrop
}

// placeholder returns the placeholder of value: the same one for the same
// value within the request, a new one otherwise, never one that already
// appears in the request's own text.
func (s *Session) placeholder(k Kind, value string) string {
	n := 0
	for _, p := range s.phs {
		if p.kind == k {
			if p.value == value {
				return p.name
			}
			n++
		}
	}
	for {
		n++
		name := "<" + string(k) + "_" + strconv.Itoa(n) + ">"
		if strings.Contains(s.body, name) || s.known(name) {
			continue
		}
		s.phs = append(s.phs, placeholder{kind: k, name: name, value: strings.Clone(value)})
		s.maxName = max(s.maxName, len(name))
		return name
	}
}

func (s *Session) known(name string) bool {
	for _, p := range s.phs {
		if p.name == name {
			return true
		}
	}
	return false
}

// Placeholders reports how many reversible placeholders the request got.
func (s *Session) Placeholders() int { return len(s.phs) }
