package redact

import (
	"errors"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func mustPolicy(t testing.TB, o PolicyOptions) *Policy {
	t.Helper()
	if o.HashKey == nil {
		o.HashKey = []byte("test key")
	}
	p, err := NewPolicy(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func chatBody(msgs string) []byte {
	return []byte(`{"model":"m","messages":[` + msgs + `]}`)
}

func TestRequestActions(t *testing.T) {
	body := chatBody(`{"role":"user","content":"mail jane.doe@example.com or call +1 415 555 2671"}`)
	for _, tc := range []struct {
		name   string
		action Action
		want   string
	}{
		{"mask", ActionMask, "mail [EMAIL] or call [PHONE]"},
		{"drop", ActionDrop, "mail  or call "},
		{"reversible", ActionReversible, "mail <EMAIL_1> or call <PHONE_1>"},
		{"count", ActionCount, "mail jane.doe@example.com or call +1 415 555 2671"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: tc.action, KindPhone: tc.action}}).NewSession("acme")
			out, err := s.Request(body, InputChat)
			if err != nil {
				t.Fatal(err)
			}
			if !gjson.ValidBytes(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			if got := gjson.GetBytes(out, "messages.0.content").Str; got != tc.want {
				t.Errorf("content = %q, want %q", got, tc.want)
			}
			if s.Total() != 2 {
				t.Errorf("Total = %d, want 2", s.Total())
			}
		})
	}
}

func TestRequestHashStablePerTenant(t *testing.T) {
	p := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionHash}})
	body := chatBody(`{"role":"user","content":"a@example.com"}`)
	get := func(tenant string) string {
		out, err := p.NewSession(tenant).Request(body, InputChat)
		if err != nil {
			t.Fatal(err)
		}
		return gjson.GetBytes(out, "messages.0.content").Str
	}
	a1, a2, b := get("acme"), get("acme"), get("globex")
	if a1 != a2 || a1 == b || !strings.HasPrefix(a1, "[EMAIL:") || len(a1) != len("[EMAIL:")+12+1 {
		t.Errorf("acme %q, %q; globex %q: want equal within a tenant, different across", a1, a2, b)
	}
	if strings.Contains(a1, "example") {
		t.Errorf("hash %q shows the value", a1)
	}
}

func TestRequestBlock(t *testing.T) {
	p := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionMask, KindCard: ActionBlock}})
	_, err := p.NewSession("t").Request(chatBody(`{"role":"system","content":"x"},{"role":"user","content":[{"type":"text","text":"ok"},{"type":"text","text":"card 4111 1111 1111 1111"}]}`), InputChat)
	var be *BlockedError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *BlockedError", err)
	}
	if be.Kind != KindCard || be.Field != "messages[1].content[1].text" {
		t.Errorf("blocked %s in %s, want CARD in messages[1].content[1].text", be.Kind, be.Field)
	}
	if strings.Contains(err.Error(), "4111") {
		t.Errorf("error %q carries the value", err)
	}
}

func TestRequestScopes(t *testing.T) {
	body := chatBody(`{"role":"system","content":"ops a@example.com"},` +
		`{"role":"user","content":[{"type":"text","text":"me b@example.com"},{"type":"image_url","image_url":{"url":"https://x/c@example.com.png"}}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"send","arguments":"{\"to\":\"c@example.com\"}"}}]},` +
		`{"role":"tool","tool_call_id":"1","content":"sent to d@example.com"}`)
	for _, tc := range []struct {
		scope Scope
		want  [4]string // system, user text, tool arguments, tool result
	}{
		{0, [4]string{"ops <EMAIL_1>", "me <EMAIL_2>", `{"to":"<EMAIL_3>"}`, "sent to <EMAIL_4>"}},
		{ScopeMessages, [4]string{"ops a@example.com", "me <EMAIL_1>", `{"to":"c@example.com"}`, "sent to d@example.com"}},
		{ScopeSystem | ScopeToolResults, [4]string{"ops <EMAIL_1>", "me b@example.com", `{"to":"c@example.com"}`, "sent to <EMAIL_2>"}},
		{ScopeToolArguments, [4]string{"ops a@example.com", "me b@example.com", `{"to":"<EMAIL_1>"}`, "sent to d@example.com"}},
	} {
		s := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionReversible}, Scope: tc.scope}).NewSession("t")
		out, err := s.Request(body, InputChat)
		if err != nil {
			t.Fatal(err)
		}
		got := [4]string{
			gjson.GetBytes(out, "messages.0.content").Str,
			gjson.GetBytes(out, "messages.1.content.0.text").Str,
			gjson.GetBytes(out, "messages.2.tool_calls.0.function.arguments").Str,
			gjson.GetBytes(out, "messages.3.content").Str,
		}
		if got != tc.want {
			t.Errorf("scope %b: got %q, want %q", tc.scope, got, tc.want)
		}
		if u := gjson.GetBytes(out, "messages.1.content.1.image_url.url").Str; u != "https://x/c@example.com.png" {
			t.Errorf("an image URL was changed: %q", u)
		}
	}
}

func TestRequestEmbeddings(t *testing.T) {
	s := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionMask}}).NewSession("t")
	out, err := s.Request([]byte(`{"model":"e","input":["x a@example.com","plain",[1,2]]}`), InputEmbeddings)
	if err != nil {
		t.Fatal(err)
	}
	if got := gjson.GetBytes(out, "input").Raw; got != `["x [EMAIL]","plain",[1,2]]` {
		t.Errorf("input = %s", got)
	}
	out, _ = s.Request([]byte(`{"model":"e","input":"b@example.com"}`), InputEmbeddings)
	if got := gjson.GetBytes(out, "input").Str; got != "[EMAIL]" {
		t.Errorf("input = %q", got)
	}
}

func TestPlaceholders(t *testing.T) {
	s := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionReversible}}).NewSession("t")
	// The same value gets the same placeholder; a placeholder the client
	// wrote itself is never issued; escapes are read.
	out, err := s.Request(chatBody(`{"role":"user","content":"<EMAIL_1> a@example.com b\u0040example.com a@example.com"}`), InputChat)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gjson.GetBytes(out, "messages.0.content").Str, "<EMAIL_1> <EMAIL_2> <EMAIL_3> <EMAIL_2>"; got != want {
		t.Errorf("content = %q, want %q", got, want)
	}
	if s.Placeholders() != 2 {
		t.Errorf("Placeholders = %d, want 2", s.Placeholders())
	}
}

func TestRequestUnchangedIsSameSlice(t *testing.T) {
	s := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionMask}}).NewSession("t")
	body := chatBody(`{"role":"user","content":"nothing here"}`)
	out, err := s.Request(body, InputChat)
	if err != nil || &out[0] != &body[0] {
		t.Errorf("an unchanged body was copied (err %v)", err)
	}
	if _, err := s.Request([]byte(`[1]`), InputChat); !errors.Is(err, ErrNotJSON) {
		t.Errorf("err = %v, want ErrNotJSON", err)
	}
}

func TestNewPolicyErrors(t *testing.T) {
	if _, err := NewPolicy(PolicyOptions{Actions: map[Kind]Action{KindEmail: ActionHash}}); err == nil {
		t.Error("hash without a key: no error")
	}
	if _, err := NewPolicy(PolicyOptions{Actions: map[Kind]Action{"EMPLOYEE": ActionMask}}); err == nil {
		t.Error("a custom kind without a detector: no error")
	}
	d, err := NewPattern("EMPLOYEE", `EMP-[0-9]{6}`)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWords("PROJECT", []string{"Falcon", "projet Été"})
	if err != nil {
		t.Fatal(err)
	}
	p := mustPolicy(t, PolicyOptions{Actions: map[Kind]Action{"EMPLOYEE": ActionMask, "PROJECT": ActionMask}, Custom: map[Kind]Detector{"EMPLOYEE": d, "PROJECT": w}})
	out, err := p.NewSession("t").Request(chatBody(`{"role":"user","content":"EMP-123456 on falcon, falconry, PROJET ÉTÉ"}`), InputChat)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := gjson.GetBytes(out, "messages.0.content").Str, "[EMPLOYEE] on [PROJECT], falconry, [PROJECT]"; got != want {
		t.Errorf("content = %q, want %q", got, want)
	}
}
