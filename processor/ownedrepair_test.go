package processor

import (
	"testing"
)

// The body kept for a stream repair stays counted in the server's bounded
// bytes while a continuation may need it (a streamed chat completion with
// the egress listener set, here on a group without failover), and is given
// back at the request's end.
func TestRepairBodyBudget(t *testing.T) {
	rs := newRoutingServer(t, "\nserver:\n  egress_address: 127.0.0.1:1\n"+routingConfig)
	body := `{"model":"other","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	x, r := rs.start(t, nil, body)
	if r.GetImmediateResponse() != nil {
		t.Fatalf("refused: %s", r.GetImmediateResponse().GetBody())
	}
	if got, want := rs.s.Buffered(), int64(len(body)); got != want {
		t.Errorf("after forwarding: %d bytes held, want %d (the body kept for a repair)", got, want)
	}
	x.send(respHeaders(false, ":status", "200", "content-type", "text/event-stream"))
	x.send(respBody(`data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":null}]}`+"\n\n", false))
	if got, want := rs.s.Buffered(), int64(len(body)); got != want {
		t.Errorf("mid-stream: %d bytes held, want %d", got, want)
	}
	x.send(respBody(`data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n", true))
	if got := rs.s.Buffered(); got != 0 {
		t.Errorf("after the response: %d bytes held", got)
	}
	x.h.end()
	if got := rs.s.Buffered(); got != 0 {
		t.Errorf("after the end: %d bytes held", got)
	}
}

// A non-stream answer lets the repair body go at its first chunk.
func TestRepairBodyBudgetNotWatched(t *testing.T) {
	rs := newRoutingServer(t, "\nserver:\n  egress_address: 127.0.0.1:1\n"+routingConfig)
	body := `{"model":"other","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	x, _ := rs.start(t, nil, body)
	x.send(respHeaders(false, ":status", "503", "content-type", "application/json"))
	x.send(respBody(`{"error":{"message":"busy","type":"server_error"}}`, true))
	if got := rs.s.Buffered(); got != 0 {
		t.Errorf("after an error answer: %d bytes held", got)
	}
	x.h.end()
}

func TestCapContinuationTokens(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		spent      int64
		want       string
		err        bool
	}{
		{"no bound", `{"model":"m","messages":[]}`, 10, `{"model":"m","messages":[]}`, false},
		{"max_tokens", `{"max_tokens":100,"messages":[]}`, 30, `{"max_tokens":70,"messages":[]}`, false},
		{"max_completion_tokens", `{"messages":[],"max_completion_tokens": 50}`, 20, `{"messages":[],"max_completion_tokens": 30}`, false},
		{"both", `{"max_tokens":100,"max_completion_tokens":90}`, 40, `{"max_tokens":60,"max_completion_tokens":50}`, false},
		{"at least one", `{"max_tokens":10}`, 25, `{"max_tokens":1}`, false},
		{"nothing spent", `{"max_tokens":10}`, 0, `{"max_tokens":10}`, false},
		{"null", `{"max_tokens":null}`, 5, `{"max_tokens":null}`, false},
		{"nested is not the bound", `{"messages":[{"max_tokens":9}]}`, 5, `{"messages":[{"max_tokens":9}]}`, false},
		{"not a number", `{"max_tokens":"10"}`, 5, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := capContinuationTokens([]byte(tc.body), tc.spent)
			if (err != nil) != tc.err {
				t.Fatalf("err %v, want error %v", err, tc.err)
			}
			if !tc.err && string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func FuzzCapContinuationTokens(f *testing.F) {
	f.Add([]byte(`{"max_tokens":100,"max_completion_tokens":90,"messages":[]}`), int64(40))
	f.Add([]byte(`{"max_tokens":1e3}`), int64(1))
	f.Add([]byte(`{"max_tokens":-5`), int64(3))
	f.Fuzz(func(t *testing.T, body []byte, spent int64) {
		out, err := capContinuationTokens(body, spent)
		if err == nil && spent <= 0 && string(out) != string(body) {
			t.Fatalf("changed with nothing spent: %s", out)
		}
	})
}
