package egress

import (
	"context"
	"io"
	"testing"
)

// BenchmarkDo is one provider call through the stand-in's egress listener
// to the OpenAI fake and back, whole and streamed: what a failover adds
// between the detected failure and the fallback's first byte, on loopback
// and with the stand-in in Envoy's place (docs/recovery.md).
func BenchmarkDo(b *testing.B) {
	for _, h2c := range []bool{false, true} {
		for _, stream := range []bool{false, true} {
			name := map[bool]string{false: "http1", true: "h2c"}[h2c] + map[bool]string{false: "/whole", true: "/stream"}[stream]
			b.Run(name, func(b *testing.B) {
				r := newRig(b)
				c := r.client(b, Options{H2C: h2c})
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					resp, err := c.Do(ctx, chat(stream))
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, resp.Body); err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
				}
			})
		}
	}
}
