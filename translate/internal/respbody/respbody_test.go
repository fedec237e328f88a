package respbody

import (
	"testing"

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
