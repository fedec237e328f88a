package respbody

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
)

func TestModeOf(t *testing.T) {
	for _, c := range []struct {
		status int
		stream bool
		ct     string
		want   Mode
	}{
		{200, true, "text/event-stream; charset=utf-8", Stream},
		{200, false, "text/event-stream", JSON},
		{200, true, "application/json", JSON},
		{400, true, "text/event-stream", Error},
		{529, false, "application/json", Error},
	} {
		if got := ModeOf(c.status, c.stream, c.ct, "text/event-stream"); got != c.want {
			t.Errorf("ModeOf(%d, %v, %q) = %v, want %v", c.status, c.stream, c.ct, got, c.want)
		}
	}
	if Stream.ContentType() != "text/event-stream" || JSON.ContentType() != "application/json" || Error.ContentType() != "application/json" {
		t.Error("ContentType")
	}
	if View(nil) != "" || View([]byte("ab")) != "ab" {
		t.Error("View")
	}
}

func TestWhole(t *testing.T) {
	var res translate.Result
	w := Whole{Max: 4, Name: "p"}
	if ready, err := w.Add([]byte("ab"), false, &res); ready || err != nil {
		t.Fatal(ready, err)
	}
	if ready, err := w.Add([]byte("cd"), true, &res); !ready || err != nil || string(w.Buf) != "abcd" {
		t.Fatal(ready, err, string(w.Buf))
	}
	w = Whole{Max: 4, Name: "p"}
	if ready, err := w.Add([]byte("abcde"), false, &res); ready || err == nil || err.Error() != "p: response body over 4 bytes" || res.Err == nil || w.Buf != nil {
		t.Fatal(ready, err, res.Err)
	}
	if ready, err := w.Add([]byte("x"), true, &res); ready || err != nil {
		t.Fatal("after failure:", ready, err)
	}
}

// Members finds what gjson.Get finds, member by member, in one pass.
func TestMembers(t *testing.T) {
	names := []string{"model", "usage", "error", "object", "choices", "absent"}
	for _, body := range []string{
		`{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0}],"usage":{"prompt_tokens":3}}`,
		`{"model":"first","model":"second","usage":null,"error":"boom"}`,
		`{"mod\u0065l":"escaped","object":"error","error":{"message":"m"}}`,
		`{"nested":{"model":"inner"},"choices":[],"usage":{}}`,
		`{}`, `[]`, `"model"`, `null`, `{"model":1e3, "usage" : [1,2] }`,
	} {
		out := make([]gjson.Result, len(names))
		out[0] = gjson.Parse(`"stale"`) // Members clears what it is given
		Members(gjson.Parse(body), names, out)
		for i, n := range names {
			want := gjson.Get(body, n)
			if !gjson.Parse(body).IsObject() {
				want = gjson.Result{}
			}
			if out[i].Raw != want.Raw || out[i].Type != want.Type || out[i].Str != want.Str {
				t.Errorf("%s: %s = %#v, gjson.Get finds %#v", body, n, out[i], want)
			}
		}
	}
}
