package redact

import (
	"strings"
	"testing"

	"github.com/llmux/llmux/translate/jsonenc"
)

// prompt builds a chat body of about n bytes of mixed prose with some
// personal data and look-alikes in every kilobyte.
func prompt(n int) []byte {
	const para = "The customer wrote on 2024-01-15 10:30 about order 7766554433 (version 2.14.3). " +
		"Please reply to jane.doe@example.com or call +1 415 555 2671; the card on file is 4111 1111 1111 1111. " +
		"Der Kunde hat am Montag angerufen und möchte die Rechnung per Post erhalten, nicht per E-Mail. " +
		"请尽快处理这个问题，谢谢。 The server 10.0.0.1 logged request 550e8400-e29b-41d4-a716-446655440000 " +
		"with a latency of 12.5 ms and no errors were reported by the upstream service during the window. "
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(para)
	}
	text := b.String()[:n]
	for !strings.HasSuffix(text, " ") && len(text) > 0 { // whole characters
		text = text[:len(text)-1]
	}
	return []byte(`{"model":"m","messages":[{"role":"user","content":` + string(jsonenc.AppendString(nil, text)) + `}]}`)
}

func benchRequest(b *testing.B, n int) {
	body := prompt(n)
	p := allReversible(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if _, err := p.NewSession("t").Request(body, InputChat); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkRequest4KB and BenchmarkRequest100KB redact a prompt with every
// built-in detector on (docs/performance.md; target ≤ 20 µs per KB).
func BenchmarkRequest4KB(b *testing.B)   { benchRequest(b, 4<<10) }
func BenchmarkRequest100KB(b *testing.B) { benchRequest(b, 100<<10) }

// BenchmarkDetectorsClean4KB scans 4 KB of text holding nothing.
func BenchmarkDetectorsClean4KB(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog near the river bank. ", 64)
	p := allReversible(b)
	var ms []Match
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		ms = p.Detectors().Find(ms[:0], text)
	}
	reportCPU(b, start)
}

// BenchmarkRestoreChunk is the restorer on a stream chunk with no
// placeholder (target ≤ 1 µs, no allocation).
func BenchmarkRestoreChunk(b *testing.B) {
	s := reversibleSession(b, "jane@example.com")
	chunk := []byte(sseChunk("a chunk of ordinary model output with no placeholder in it"))
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		_ = s.Restore(dst, chunk, false)
	}
	reportCPU(b, start)
}

// BenchmarkRestoreChunkPlaceholder is a chunk that completes a
// placeholder.
func BenchmarkRestoreChunkPlaceholder(b *testing.B) {
	s := reversibleSession(b, "jane@example.com")
	chunk := []byte(sseChunk("write to <EMAIL_1> today"))
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		dst = s.Restore(dst[:0], chunk, false)
	}
	reportCPU(b, start)
}
