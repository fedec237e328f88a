package fakeprovider

import (
	"context"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
)

// Continuations: a gateway that repairs a stream cut after some content
// asks the provider for the rest of the reply, with the original messages
// plus the text already received as the assistant's. A model answers such a
// request in one of two ways, which the fakes imitate:
//
//   - the request ends with the assistant's message (a prefill, which
//     Anthropic's Messages API, Claude on Bedrock Converse and Gemini's
//     model turn accept): the model writes only what follows it;
//   - the assistant's message is followed by a user message asking to
//     continue: the model goes on, restarting with the last word it had
//     written (the overlap a gateway must trim).
//
// The fakes answer with the rest of their reply text (HeaderReply, the
// Reply option, or the default), so a test can check that the client's
// reassembled text is the reply text exactly.

type bodyKey struct{}

// withBody stores the request body in r's context for continueText.
func withBody(r *http.Request, body []byte) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), bodyKey{}, body))
}

// continueText returns what the fake answers to r given its whole reply
// text: the rest of text after the assistant's message when r asks for a
// continuation of it, text itself otherwise.
func continueText(r *http.Request, text string) string {
	body, _ := r.Context().Value(bodyKey{}).([]byte)
	sent, prefill, ok := assistantTail(body)
	if ok && !prefill {
		// A default reply quotes the last user message, here the request
		// to continue: the reply being continued quoted the one before.
		if instr, asked := userBefore(body, 0), userBefore(body, 2); instr != "" && asked != "" && strings.HasSuffix(text, instr) {
			text = strings.TrimSuffix(text, instr) + asked
		}
	}
	if !ok || sent == "" || !strings.HasPrefix(text, sent) {
		return text
	}
	rest := text[len(sent):]
	if prefill {
		return rest
	}
	if i := strings.LastIndexAny(sent, " \n\t"); i >= 0 {
		return sent[i:] + rest // the model restarts its last word
	}
	return sent + rest
}

// assistantTail finds the assistant text a request asks to continue, in
// any of the fakes' schemas: the last message when it is the assistant's
// (prefill), or the one before a last user message that asks to continue.
func assistantTail(body []byte) (sent string, prefill, ok bool) {
	msgs := gjson.GetBytes(body, "messages")
	assistant := "assistant"
	if !msgs.IsArray() {
		msgs = gjson.GetBytes(body, "contents") // Gemini
		assistant = "model"
	}
	all := msgs.Array()
	if len(all) == 0 {
		return "", false, false
	}
	last := all[len(all)-1]
	if last.Get("role").Str == assistant {
		return messageText(last), true, true
	}
	if len(all) < 2 || last.Get("role").Str != "user" || !strings.Contains(strings.ToLower(messageText(last)), "continue") {
		return "", false, false
	}
	prev := all[len(all)-2]
	if prev.Get("role").Str != assistant {
		return "", false, false
	}
	return messageText(prev), false, true
}

// messageText joins a message's text, whatever the schema: a string
// content, content parts ({"type":"text","text"} or Bedrock's {"text"}), or
// Gemini's parts.
func messageText(m gjson.Result) string {
	c := m.Get("content")
	if c.Type == gjson.String {
		return c.Str
	}
	if !c.IsArray() {
		c = m.Get("parts")
	}
	var b strings.Builder
	for _, p := range c.Array() {
		if t := p.Get("text"); t.Type == gjson.String {
			b.WriteString(t.Str)
		}
	}
	return b.String()
}

// userBefore returns the text of the message back messages before the
// last one when it is the user's, or "".
func userBefore(body []byte, back int) string {
	msgs := gjson.GetBytes(body, "messages")
	if !msgs.IsArray() {
		msgs = gjson.GetBytes(body, "contents")
	}
	all := msgs.Array()
	if i := len(all) - 1 - back; i >= 0 && all[i].Get("role").Str == "user" {
		return messageText(all[i])
	}
	return ""
}
