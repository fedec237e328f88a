package processor

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func TestOverlap(t *testing.T) {
	for _, tc := range []struct {
		sent, next string
		want       int
	}{
		{"The quick brown", " brown fox", 6},       // restarts its last word, with its space
		{"The quick brown", "brown fox", 5},        // or without
		{"The quick brown", "quick brown fox", 11}, // two words
		{"The quick brown", " fox", 0},             // no repetition
		{"The quick brown", "n fox", 0},            // a letter is not a word
		{"The quick brown", "brownie", 0},          // ends inside a word of next
		{"The quick brown", "own fox", 0},          // starts inside a word of sent
		{"a, ", ", b", 0},                          // punctuation only
		{"", "anything", 0},                        // nothing sent
		{"x", "", 0},                               // nothing next
		{"The end.", "The end. More", 8},           // the whole text again
		{"Grüße aus Köln", "Köln ist schön", 5},    // multi-byte
		{"one two", "two", 3},                      // the whole continuation repeats
		{"count 1 2 3", "3 4 5", 1},                // digits count as words
		{"she said no", " no more", 3},             // a heuristic: taken as a repetition
	} {
		if got := overlap(tc.sent, tc.next); got != tc.want {
			t.Errorf("overlap(%q, %q) = %d, want %d", tc.sent, tc.next, got, tc.want)
		}
	}
}

func FuzzOverlap(f *testing.F) {
	f.Add("The quick brown", " brown fox")
	f.Add("Grüße aus Köln", "Köln ist")
	f.Add("", "")
	f.Add("\xff\xfe a", "a\xff")
	f.Fuzz(func(t *testing.T, sent, next string) {
		k := overlap(sent, next)
		if k < 0 || k > len(sent) || k > len(next) {
			t.Fatalf("overlap %d out of range", k)
		}
		if k > 0 && !strings.HasPrefix(next, sent[len(sent)-k:]) {
			t.Fatalf("overlap %d is no repetition", k)
		}
	})
}

func TestContinuationBody(t *testing.T) {
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	for _, tc := range []struct {
		prefill bool
		want    string
	}{
		{true, `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello \"you\""}],"stream":true}`},
		{false, `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"Hello \"you\" \n"},{"role":"user","content":` +
			string(mustJSON(continueInstruction)) + `}],"stream":true}`},
	} {
		got, err := continuationBody(body, "Hello \"you\" \n", tc.prefill)
		if err != nil || string(got) != tc.want {
			t.Errorf("prefill %v: %s, %v\nwant %s", tc.prefill, got, err, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("invalid JSON %s", got)
		}
	}
	if got, err := continuationBody([]byte(`{"messages":[]}`), "x", true); err != nil || string(got) != `{"messages":[{"role":"assistant","content":"x"}]}` {
		t.Errorf("empty messages: %s, %v", got, err)
	}
	if _, err := continuationBody([]byte(`{"prompt":"x"}`), "x", true); err == nil {
		t.Error("no messages: want an error")
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// chunkEvent is an OpenAI chat chunk event as a decoder writes it.
func chunkEvent(id string, delta string, finish string) string {
	fr := "null"
	if finish != "" {
		fr = `"` + finish + `"`
	}
	return fmt.Sprintf(`data: {"id":%q,"object":"chat.completion.chunk","created":7,"model":"up","system_fingerprint":"fp","choices":[{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}]}`+"\n\n", id, delta, fr)
}

func TestSpliceObserve(t *testing.T) {
	var s splice
	out := chunkEvent("first", `{"role":"assistant","content":""}`, "") + chunkEvent("first", `{"content":"Hello \"w"}`, "")
	if cut := s.observe([]byte(out)); cut != -1 {
		t.Fatalf("cut %d", cut)
	}
	errEv := `data: {"error":{"message":"x"}}` + "\n\n"
	more := chunkEvent("first", `{"content":"orld\""}`, "")
	if cut := s.observe([]byte(more + errEv)); cut != len(more) {
		t.Errorf("cut %d, want %d", cut, len(more))
	}
	if s.sentText() != `Hello "world"` || string(s.id) != `"first"` || string(s.created) != "7" || string(s.model) != `"up"` || s.tool || s.finished {
		t.Errorf("splice %+v, text %q", s, s.sentText())
	}
	s.observe([]byte(chunkEvent("first", `{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}`, "")))
	s.observe([]byte(chunkEvent("first", `{}`, "stop")))
	if !s.tool || !s.finished {
		t.Errorf("tool %v, finished %v", s.tool, s.finished)
	}
}

// stubDecoder returns scripted output, one piece per Decode call.
type stubDecoder struct {
	outs []string
	res  translate.Result
}

func (d *stubDecoder) Decode(dst, _ []byte, _ bool) ([]byte, error) {
	if len(d.outs) == 0 {
		return dst, nil
	}
	o := d.outs[0]
	d.outs = d.outs[1:]
	return append(dst, o...), nil
}
func (d *stubDecoder) ContentType() string       { return "text/event-stream" }
func (d *stubDecoder) Status() int               { return 200 }
func (d *stubDecoder) Result() *translate.Result { return &d.res }

func TestSpliceDecoder(t *testing.T) {
	sp := &splice{id: []byte(`"first"`), created: []byte("1"), model: []byte(`"m1"`)}
	usage := `data: {"id":"second","object":"chat.completion.chunk","created":9,"model":"m2","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}` + "\n\n"
	inner := &stubDecoder{outs: []string{
		chunkEvent("second", `{"role":"assistant","content":""}`, ""),
		chunkEvent("second", `{"content":" brown"}`, ""),
		chunkEvent("second", `{"content":" fox"}`, ""),
		chunkEvent("second", `{}`, "stop") + usage + "data: [DONE]\n\n",
	}, res: translate.Result{HasUsage: true, Usage: translate.Usage{InputTokens: 10, OutputTokens: 5}, Completed: true}}
	d := &spliceDecoder{Decoder: inner, sp: sp, prior: translate.Usage{InputTokens: 3, OutputTokens: 4}, sent: "The quick brown", trim: true}
	var all []byte
	for i := range 4 {
		var err error
		all, err = d.Decode(all, nil, i == 3)
		if err != nil {
			t.Fatal(err)
		}
	}
	var text strings.Builder
	events := strings.Split(strings.TrimSuffix(string(all), "\n\n"), "\n\n")
	for _, ev := range events {
		js := strings.TrimPrefix(ev, "data: ")
		if js == "[DONE]" {
			continue
		}
		if !json.Valid([]byte(js)) {
			t.Fatalf("invalid event %s", ev)
		}
		if id := gjson.Get(js, "id").Str; id != "first" || gjson.Get(js, "model").Str != "m1" || gjson.Get(js, "created").Int() != 1 {
			t.Errorf("identity of %s", js)
		}
		if gjson.Get(js, "choices.0.delta.role").Exists() {
			t.Errorf("a second role: %s", js)
		}
		text.WriteString(gjson.Get(js, "choices.0.delta.content").Str)
	}
	if text.String() != " fox" {
		t.Errorf("text %q, want %q\n%s", text.String(), " fox", all)
	}
	if len(events) != 4 || events[3] != "data: [DONE]" {
		t.Errorf("events %q", events)
	}
	u := gjson.Get(strings.TrimPrefix(events[2], "data: "), "usage")
	if u.Get("prompt_tokens").Int() != 13 || u.Get("completion_tokens").Int() != 9 || u.Get("total_tokens").Int() != 22 ||
		u.Get("prompt_tokens_details.cached_tokens").Int() != 2 || u.Get("completion_tokens_details.reasoning_tokens").Int() != 1 {
		t.Errorf("usage %s", u.Raw)
	}
	if r := d.Result(); r.Usage.InputTokens != 13 || r.Usage.OutputTokens != 9 || !r.Completed {
		t.Errorf("result %+v", r)
	}
}

// FuzzSplice: whatever a continuation says and however its decoder cuts
// it into events, the spliced stream is valid JSON events, and the client's
// text is what was sent plus the continuation minus the repetition.
func FuzzSplice(f *testing.F) {
	f.Add("The quick brown", " brown fox jumps", uint8(3), false)
	f.Add("Hello", " world", uint8(1), true)
	f.Add("ends with space ", " and more", uint8(2), true)
	f.Add("\"quoted\\", "\u2028\x00x", uint8(5), false)
	f.Fuzz(func(t *testing.T, sent, next string, cut uint8, prefill bool) {
		if !gjson.Valid(string(mustJSON(sent))) {
			t.Skip()
		}
		var outs []string
		outs = append(outs, chunkEvent("second", `{"role":"assistant","content":""}`, ""))
		// Content pieces of step runes: decoders never cut inside one.
		step, runes := int(cut%8)+1, []rune(next)
		for i := 0; i < len(runes); i += step {
			outs = append(outs, chunkEvent("second", `{"content":`+string(mustJSON(string(runes[i:min(i+step, len(runes))])))+`}`, ""))
		}
		outs = append(outs, chunkEvent("second", `{}`, "stop")+"data: [DONE]\n\n")
		sp := &splice{}
		sp.observe([]byte(chunkEvent("first", `{"content":`+string(mustJSON(sent))+`}`, "")))
		sentText := sp.sentText()
		d := &spliceDecoder{Decoder: &stubDecoder{outs: outs}, sp: sp, sent: sentText, trim: true}
		if prefill {
			d.lead = sentText[len(strings.TrimRight(sentText, " \t\r\n")):]
		}
		var all []byte
		for i := range outs {
			all, _ = d.Decode(all, nil, i == len(outs)-1)
		}
		var text strings.Builder
		for _, ev := range strings.Split(strings.TrimSuffix(string(all), "\n\n"), "\n\n") {
			js := strings.TrimPrefix(ev, "data: ")
			if js == "[DONE]" {
				continue
			}
			if !gjson.Valid(js) || gjson.Get(js, "id").Str != "first" {
				t.Fatalf("event %q", ev)
			}
			text.WriteString(gjson.Get(js, "choices.0.delta.content").Str)
		}
		// The client's text is a suffix of the continuation's (only a
		// repetition at its start is removed).
		want := string(mustJSONRoundTrip(next))
		if !strings.HasSuffix(want, text.String()) {
			t.Fatalf("text %q is not a suffix of %q", text.String(), want)
		}
	})
}

// mustJSONRoundTrip is s as JSON decoding gives it back (invalid UTF-8
// replaced).
func mustJSONRoundTrip(s string) string {
	var out string
	if err := json.Unmarshal(mustJSON(s), &out); err != nil {
		panic(err)
	}
	return out
}

// BenchmarkSpliceObserve is the per-chunk bookkeeping of a stream that
// needs no repair: one content chunk observed.
func BenchmarkSpliceObserve(b *testing.B) {
	ev := []byte(chunkEvent("chatcmpl-0123456789", `{"content":" word"}`, ""))
	var s splice
	s.observe(ev)
	s.text = make([]byte, 0, 1<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(ev)))
	for i := 0; b.Loop(); i++ {
		if i%100000 == 0 {
			s.text = s.text[:0]
		}
		s.observe(ev)
	}
}

// BenchmarkHandlerChunkRepairWatch is BenchmarkHandlerChunk with stream
// repair watching the stream (egress on, a streamed chat): the chunk's
// whole cost in the handler when no repair is needed.
func BenchmarkHandlerChunkRepairWatch(b *testing.B) {
	h := benchHandlerAtBody(b)
	h.rp.decided, h.rp.on = true, true // as with server.egress_address set
	h.rp.sp.text = make([]byte, 0, 1<<20)
	chunk := respBody(string(benchChunk), false)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchChunk)))
	for i := 0; b.Loop(); i++ {
		if i%10000 == 0 {
			h.rp.sp.text = h.rp.sp.text[:0]
		}
		if err := h.handle(chunk); err != nil {
			b.Fatal(err)
		}
	}
}
