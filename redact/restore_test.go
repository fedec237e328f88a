package redact

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate/jsonenc"
)

// reversibleSession returns a session that issued placeholders for the
// given e-mail addresses (<EMAIL_1>, ...).
func reversibleSession(t testing.TB, emails ...string) *Session {
	t.Helper()
	s := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionReversible, KindPhone: ActionReversible}}).NewSession("t")
	var msgs []string
	for _, e := range emails {
		msgs = append(msgs, `{"role":"user","content":"`+e+`"}`)
	}
	if _, err := s.Request(chatBody(strings.Join(msgs, ",")), InputChat); err != nil {
		t.Fatal(err)
	}
	s.StartResponse("text/event-stream")
	return s
}

// sseChunk is one OpenAI stream event carrying content for choice 0.
func sseChunk(content string) string {
	return `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + string(jsonenc.AppendString(nil, content)) + `},"finish_reason":null}]}` + "\n\n"
}

const sseFinish = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
const sseDone = "data: [DONE]\n\n"

// contentOf reassembles the content of choice 0 (and tool call 0's
// arguments) from an OpenAI event stream, checking each event is JSON.
func contentOf(t testing.TB, stream string) (content, args string) {
	t.Helper()
	for _, ev := range strings.Split(stream, "\n\n") {
		if ev == "" || ev == "data: [DONE]" {
			continue
		}
		p, ok := strings.CutPrefix(ev, "data: ")
		if !ok || !gjson.Valid(p) {
			t.Fatalf("malformed event %q", ev)
		}
		content += gjson.Get(p, "choices.0.delta.content").Str
		args += gjson.Get(p, "choices.0.delta.tool_calls.0.function.arguments").Str
	}
	return content, args
}

// TestRestoreEverySplit cuts a content holding placeholders into two
// deltas at every point, and the resulting stream into two chunks at every
// point: the client always gets the originals, and never more than the
// longest placeholder's prefix is held back.
func TestRestoreEverySplit(t *testing.T) {
	const text = "Hi <EMAIL_1>, cc <EMAIL_2>; <EMAIL_3 stays, <EMAIL_9> too."
	const want = "Hi jane@example.com, cc bo@example.org; <EMAIL_3 stays, <EMAIL_9> too."
	for cut := 0; cut <= len(text); cut++ {
		stream := sseChunk(text[:cut]) + sseChunk(text[cut:]) + sseFinish + sseDone
		for at := 0; at <= len(stream); at += 7 {
			s := reversibleSession(t, "jane@example.com", "bo@example.org")
			var out []byte
			out = append(out, s.Restore(nil, []byte(stream[:at]), false)...)
			out = append(out, s.Restore(nil, []byte(stream[at:]), true)...)
			got, _ := contentOf(t, string(out))
			if got != want {
				t.Fatalf("cut %d, chunk split %d: content %q, want %q", cut, at, got, want)
			}
		}
		// Event by event: what went out after the first delta is the
		// restored text less at most a placeholder prefix.
		s := reversibleSession(t, "jane@example.com", "bo@example.org")
		first, _ := contentOf(t, string(s.Restore(nil, []byte(sseChunk(text[:cut])), false)))
		full := strings.NewReplacer("<EMAIL_1>", "jane@example.com", "<EMAIL_2>", "bo@example.org").Replace(text[:cut])
		if !strings.HasPrefix(full, first) || len(full)-len(first) >= len("<EMAIL_1>") {
			t.Fatalf("cut %d: sent %q of %q: held back too much", cut, first, full)
		}
	}
}

func TestRestoreToolArgumentsAndFinish(t *testing.T) {
	s := reversibleSession(t, "jane@example.com")
	ev := func(args string) string {
		return `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":` + string(jsonenc.AppendString(nil, args)) + `}}]},"finish_reason":null}]}` + "\n\n"
	}
	var out []byte
	out = append(out, s.Restore(nil, []byte(ev(`{"to":"<EMA`)), false)...)
	out = append(out, s.Restore(nil, []byte(ev(`IL_1>","cc":"<EMAIL_`)), false)...)
	// The stream finishes with a placeholder prefix still held: it goes
	// out with the finish event, unchanged.
	out = append(out, s.Restore(nil, []byte(`data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`+"\n\n"+sseDone), true)...)
	_, args := contentOf(t, string(out))
	if want := `{"to":"jane@example.com","cc":"<EMAIL_`; args != want {
		t.Errorf("arguments %q, want %q", args, want)
	}
}

func TestRestoreHeldBeforeDone(t *testing.T) {
	s := reversibleSession(t, "jane@example.com")
	out := append([]byte(nil), s.Restore(nil, []byte(sseChunk("see <EMAIL")), false)...)
	out = append(out, s.Restore(nil, []byte(sseDone), true)...)
	if got, _ := contentOf(t, string(out)); got != "see <EMAIL" {
		t.Errorf("content %q, want the held prefix back before [DONE]", got)
	}
	if !bytes.HasSuffix(out, []byte(sseDone)) {
		t.Errorf("[DONE] is not last: %q", out)
	}
}

func TestRestoreWholeBody(t *testing.T) {
	s := reversibleSession(t, "jane@example.com")
	s.StartResponse("application/json")
	body := `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"To <EMAIL_1>.","tool_calls":[{"id":"x","type":"function","function":{"name":"f","arguments":"{\"a\":\"<EMAIL_1>\"}"}}]},"finish_reason":"stop"}]}`
	if out := s.Restore(nil, []byte(body[:20]), false); len(out) != 0 {
		t.Fatalf("a part of a whole body went out: %q", out)
	}
	out := s.Restore(nil, []byte(body[20:]), true)
	if got := gjson.GetBytes(out, "choices.0.message.content").Str; got != "To jane@example.com." {
		t.Errorf("content %q", got)
	}
	if got := gjson.GetBytes(out, "choices.0.message.tool_calls.0.function.arguments").Str; got != `{"a":"jane@example.com"}` {
		t.Errorf("arguments %q", got)
	}
}

// TestRestoreNeverCrossesRequests: a placeholder of one request is left
// alone in another's response.
func TestRestoreNeverCrossesRequests(t *testing.T) {
	a := reversibleSession(t, "jane@example.com")
	b := reversibleSession(t)
	stream := sseChunk("<EMAIL_1>") + sseFinish
	if got, _ := contentOf(t, string(b.Restore(nil, []byte(stream), true))); got != "<EMAIL_1>" {
		t.Errorf("request b got %q", got)
	}
	if got, _ := contentOf(t, string(a.Restore(nil, []byte(stream), true))); got != "jane@example.com" {
		t.Errorf("request a got %q", got)
	}
}

func TestRestoreResponseMasking(t *testing.T) {
	p := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionMask}, Responses: true})
	s := p.NewSession("t")
	s.StartResponse("text/event-stream")
	got, _ := contentOf(t, string(s.Restore(nil, []byte(sseChunk("write to x@example.com")+sseFinish), true)))
	if got != "write to [EMAIL]" {
		t.Errorf("content %q", got)
	}
	if s.Total() != 1 {
		t.Errorf("Total %d, want 1", s.Total())
	}
}

func TestRestoreFastPathNoAlloc(t *testing.T) {
	s := reversibleSession(t, "jane@example.com")
	chunk := []byte(sseChunk("a chunk of ordinary text with no placeholder in it at all"))
	dst := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		if out := s.Restore(dst, chunk, false); &out[0] != &chunk[0] {
			t.Fatal("the chunk was copied")
		}
	}); n != 0 {
		t.Errorf("%v allocations per chunk, want 0", n)
	}
}

func FuzzRestore(f *testing.F) {
	f.Add("Hi <EMAIL_1>, <EMAIL_2>!", uint8(5), uint8(9))
	f.Add("<<EMAIL_1<EMAIL_1>>", uint8(1), uint8(2))
	f.Add("<EMAIL_1", uint8(3), uint8(0))
	f.Add("\u003cEMAIL_1>\"\\", uint8(0), uint8(200))
	f.Fuzz(func(t *testing.T, text string, cut1, cut2 uint8) {
		if !strings.ContainsRune(text, '\uFFFD') && !isValidUTF8(text) {
			return
		}
		c1 := int(cut1) % (len(text) + 1)
		c2 := c1 + int(cut2)%(len(text)-c1+1)
		// Deltas carry whole characters.
		for c1 > 0 && c1 < len(text) && !utf8.RuneStart(text[c1]) {
			c1--
		}
		for c2 > c1 && c2 < len(text) && !utf8.RuneStart(text[c2]) {
			c2--
		}
		s := reversibleSession(t, "jane@example.com", "bo@example.org")
		stream := sseChunk(text[:c1]) + sseChunk(text[c1:c2]) + sseChunk(text[c2:]) + sseFinish + sseDone
		at := (c1 * 31) % (len(stream) + 1)
		var out []byte
		out = append(out, s.Restore(nil, []byte(stream[:at]), false)...)
		out = append(out, s.Restore(nil, []byte(stream[at:]), true)...)
		got, _ := contentOf(t, string(out))
		want := strings.NewReplacer("<EMAIL_1>", "jane@example.com", "<EMAIL_2>", "bo@example.org").Replace(string(jsonRoundTrip(text)))
		if got != want {
			t.Fatalf("content %q, want %q", got, want)
		}
	})
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// jsonRoundTrip is what the text reads as after JSON encoding (invalid
// UTF-8 replaced).
func jsonRoundTrip(s string) string {
	return gjson.Parse(string(jsonenc.AppendString(nil, s))).Str
}

// TestRestoreResponseMaskingAcrossDeltas: a value the model spreads over
// deltas is masked whole; the held tail is the last word only.
func TestRestoreResponseMaskingAcrossDeltas(t *testing.T) {
	p := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionMask, KindPhone: ActionMask}, Responses: true})
	s := p.NewSession("t")
	s.StartResponse("text/event-stream")
	var out []byte
	for _, d := range []string{"write to x@exa", "mple.com or call +1 415 ", "555 2671 today"} {
		out = append(out, s.Restore(nil, []byte(sseChunk(d)), false)...)
	}
	first, _ := contentOf(t, string(out))
	out = append(out, s.Restore(nil, []byte(sseFinish+sseDone), true)...)
	got, _ := contentOf(t, string(out))
	if got != "write to [EMAIL] or call [PHONE] today" {
		t.Errorf("content %q", got)
	}
	if first != "write to [EMAIL] or call [PHONE] " {
		t.Errorf("sent before the finish: %q", first)
	}
}
