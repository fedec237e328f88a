package jsonenc

import (
	"encoding/json"
	"testing"
)

func TestAppendStringRoundTrip(t *testing.T) {
	cases := []string{"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f\n\r\t", "héllo wörld ✓", "bad \xff utf8", "sep \u2028 \u2029", "<html>&amp;"}
	for _, s := range cases {
		out := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", s, out, err)
		}
		want := s
		if s == "bad \xff utf8" {
			want = "bad \ufffd utf8"
		}
		if got != want {
			t.Errorf("round trip %q: got %q", want, got)
		}
	}
}

func TestAppendStringOrNull(t *testing.T) {
	if got := string(AppendStringOrNull(nil, "")); got != "null" {
		t.Errorf("empty: %s", got)
	}
	if got := string(AppendStringOrNull(nil, "x")); got != `"x"` {
		t.Errorf("x: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("hello")
	f.Add("\xff\xfe\"\\\n")
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON for %q: %s", s, out)
		}
	})
}
