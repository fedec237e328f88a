package redact

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// labelled is one line of testdata/labelled.tsv: a text and the one value
// of kind it holds, or kind "-" for a text that holds none.
type labelled struct {
	line        int
	kind        Kind
	text, value string
}

func readLabelled(t testing.TB) []labelled {
	t.Helper()
	f, err := os.Open("testdata/labelled.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unesc := strings.NewReplacer(`\\`, `\`, `\n`, "\n")
	var out []labelled
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		parts := strings.Split(l, "\t")
		if len(parts) != 3 {
			t.Fatalf("labelled.tsv:%d: want 3 tab-separated fields, got %d", n, len(parts))
		}
		out = append(out, labelled{line: n, kind: Kind(parts[0]), text: unesc.Replace(parts[1]), value: unesc.Replace(parts[2])})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// score is a detector's tally over the labelled set.
type score struct{ tp, fp, fn int }

func (s score) precision() float64 {
	if s.tp+s.fp == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fp)
}

func (s score) recall() float64 {
	if s.tp+s.fn == 0 {
		return 1
	}
	return float64(s.tp) / float64(s.tp+s.fn)
}

// TestLabelled runs the built-in detectors together (as a policy that
// enables them all does) over the labelled set and holds each to its
// precision and recall; `go test -run TestLabelled -v`
// prints the table of docs/redaction.md.
func TestLabelled(t *testing.T) {
	set := readLabelled(t)
	if len(set) < 300 {
		t.Fatalf("the labelled set has %d strings, want at least 300", len(set))
	}
	positives := map[Kind]int{}
	scores := map[Kind]*score{}
	var dets []Detector
	for _, k := range BuiltinKinds {
		d, _ := Builtin(k, nil)
		dets = append(dets, d)
	}
	all := NewSet(dets...)
	for _, k := range BuiltinKinds {
		sc := &score{}
		scores[k] = sc
		for _, l := range set {
			found := all.Find(nil, l.text)
			hit := false
			for _, m := range found {
				if m.Kind != k {
					continue
				}
				if l.kind == k && l.text[m.Start:m.End] == l.value {
					hit = true
					continue
				}
				sc.fp++
				t.Logf("labelled.tsv:%d: %s: false positive %q", l.line, k, l.text[m.Start:m.End])
			}
			if l.kind == k {
				positives[k]++
				if hit {
					sc.tp++
				} else {
					sc.fn++
					t.Logf("labelled.tsv:%d: %s: missed %q", l.line, k, l.value)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| detector | positives | true pos. | false pos. | missed | precision | recall |\n|---|---|---|---|---|---|---|\n")
	for _, k := range BuiltinKinds {
		sc := scores[k]
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %.3f | %.3f |\n", k, positives[k], sc.tp, sc.fp, sc.fn, sc.precision(), sc.recall())
		if positives[k] < 4 {
			t.Errorf("%s: %d labelled positives, want at least 4", k, positives[k])
		}
		if sc.precision() < 0.95 || sc.recall() < 0.9 {
			t.Errorf("%s: precision %.3f (want ≥ 0.95), recall %.3f (want ≥ 0.9)", k, sc.precision(), sc.recall())
		}
	}
	fmt.Fprintf(&b, "\n%d strings: %d negatives (look-alikes and plain text)\n", len(set), len(set)-sum(positives))
	t.Log(b.String())
}

func sum(m map[Kind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
