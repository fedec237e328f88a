package redact

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate/jsonenc"
)

// allReversible is a policy that makes every built-in kind reversible.
func allReversible(t testing.TB) *Policy {
	acts := map[Kind]Action{}
	for _, k := range BuiltinKinds {
		acts[k] = ActionReversible
	}
	return mustPolicy(t, PolicyOptions{Actions: acts})
}

func addSeeds(f *testing.F) {
	for _, s := range []string{
		"jane.doe@example.com +1 415 555 2671 4111 1111 1111 1111 DE89370400440532013000",
		"123-45-6789 10.0.0.1 2001:db8::1 AKIAIOSFODNN7EXAMPLE sk-abcdefghij0123456789xyz",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_123 -----BEGIN RSA PRIVATE KEY-----\nabc",
		"ghp_abcdefghijklmnopqrstuvwxyz0123456789 xoxb-1234567890-abcdefghij",
		"电话：+86 138 0013 8000 @@ a@b ::: 1.2.3.4.5 (415) 555-2671",
		"<EMAIL_1> \xff\xfe <EMAIL_",
	} {
		f.Add(s)
	}
}

// FuzzDetectors: every detector accepts any text, and the set's matches
// are in bounds, ordered and disjoint.
func FuzzDetectors(f *testing.F) {
	addSeeds(f)
	p := allReversible(f)
	f.Fuzz(func(t *testing.T, text string) {
		ms := p.Detectors().Find(nil, text)
		end := 0
		for _, m := range ms {
			if m.Start < end || m.End <= m.Start || m.End > len(text) {
				t.Fatalf("match %+v after %d in a text of %d bytes", m, end, len(text))
			}
			end = m.End
		}
	})
}

// FuzzRoundTrip: a request redacted with every kind reversible is valid
// JSON, and a response that echoes the redacted text gets the client's
// text back.
func FuzzRoundTrip(f *testing.F) {
	addSeeds(f)
	p := allReversible(f)
	f.Fuzz(func(t *testing.T, text string) {
		body := `{"model":"m","messages":[{"role":"user","content":` + string(jsonenc.AppendString(nil, text)) + `}]}`
		s := p.NewSession("t")
		out, err := s.Request([]byte(body), InputChat)
		if err != nil {
			t.Fatal(err)
		}
		if !gjson.ValidBytes(out) {
			t.Fatalf("invalid JSON %q", out)
		}
		red := gjson.GetBytes(out, "messages.0.content").Str
		orig := gjson.Get(body, "messages.0.content").Str
		for _, ph := range s.phs {
			if ph.value == "" {
				t.Fatalf("empty value for %s", ph.name)
			}
		}
		resp := `{"choices":[{"index":0,"message":{"role":"assistant","content":` + string(jsonenc.AppendString(nil, red)) + `},"finish_reason":"stop"}]}`
		s.StartResponse("application/json")
		back := gjson.GetBytes(s.Restore(nil, []byte(resp), true), "choices.0.message.content").Str
		if back != orig {
			t.Fatalf("round trip: %q -> %q -> %q", orig, red, back)
		}
	})
}
