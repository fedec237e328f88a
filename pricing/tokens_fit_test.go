package pricing

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"github.com/tiktoken-go/tokenizer"
)

// The real o200k tokenizer is only used here: to fit the estimator's
// tables (-fit) and to hold the estimate to it on the corpus.

var fitTables = flag.Bool("fit", false, "refit the token cost tables from testdata/tokens/fit into tokens_table.go")

var (
	o200kOnce sync.Once
	o200k     tokenizer.Codec
	o200kErr  error
)

// realCount counts text with tiktoken-go's o200k_base.
func realCount(t testing.TB, text string) int {
	t.Helper()
	o200kOnce.Do(func() { o200k, o200kErr = tokenizer.Get(tokenizer.O200kBase) })
	if o200kErr != nil {
		t.Fatalf("o200k: %v", o200kErr)
	}
	n, err := o200k.Count(text)
	if err != nil {
		t.Fatalf("o200k count %q: %v", text, err)
	}
	return n
}

// sample is one text of the corpus.
type sample struct {
	set, name, text string
}

// corpus reads testdata/tokens/<set>/*: fit is what the tables are fitted
// on, check is held out.
func corpus(t testing.TB, sets ...string) []sample {
	t.Helper()
	var out []sample
	for _, set := range sets {
		files, err := filepath.Glob(filepath.Join("testdata", "tokens", set, "*"))
		if err != nil || len(files) == 0 {
			t.Fatalf("corpus %s: %v (%d files)", set, err, len(files))
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
			out = append(out, sample{set: set, name: name, text: string(b)})
		}
	}
	return out
}

// pieces splits text as the scanner does.
func pieces(text string) []piece {
	var out []piece
	s := scanner{b: []byte(text), visit: func(p piece) { out = append(out, p) }}
	s.run()
	return out
}

// o200kPattern is o200k_base's pre-tokenizer expression.
const o200kPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// TestScannerSplitsLikeO200k compares the scanner's pieces with the real
// pre-tokenizer's on the corpus. They differ only at English
// contractions ("don't" is one piece for o200k, two for the scanner).
func TestScannerSplitsLikeO200k(t *testing.T) {
	re := regexp2.MustCompile(o200kPattern, regexp2.None)
	for _, s := range corpus(t, "fit", "check") {
		var want []string
		m, err := re.FindStringMatch(s.text)
		for ; m != nil && err == nil; m, err = re.FindNextMatch(m) {
			want = append(want, m.String())
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range pieces(s.text) {
			got = append(got, s.text[p.start:p.end])
		}
		if strings.Join(got, "") != s.text {
			t.Errorf("%s/%s: pieces do not cover the text", s.set, s.name)
		}
		wantSet := map[string]int{}
		for _, w := range want {
			wantSet[w]++
		}
		miss := 0
		var examples []string
		for _, g := range got {
			if wantSet[g] > 0 {
				wantSet[g]--
				continue
			}
			miss++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%q", g))
			}
		}
		if rate := float64(miss) / float64(len(got)); rate > 0.01 {
			t.Errorf("%s/%s: %d of %d pieces differ from o200k's (%s)", s.set, s.name, miss, len(got), strings.Join(examples, " "))
		}
	}
}

// Accuracy bounds. A class is a kind of text (a language, code, a data
// format: the sample name without its trailing digits), over its fitted
// and held-out samples: classBound, or asciiBound for English, code and
// data. A sample alone is held to sampleBound, the corpus total to
// totalBound.
const (
	asciiBound  = 0.10
	classBound  = 0.15
	sampleBound = 0.25
	totalBound  = 0.03
)

// class returns the class of a sample and its bound.
func class(name string) (string, float64) {
	c := strings.TrimRight(name, "0123456789")
	for _, p := range []string{"en_", "code_", "json", "yaml", "csv", "html", "sql", "shell"} {
		if strings.HasPrefix(c, p) {
			return c, asciiBound
		}
	}
	return c, classBound
}

// TestEstimateMatchesO200k holds the estimate to the real tokenizer on
// every sample of the corpus, fitted and held out. Run with -v for the
// table in docs/pricing.md.
func TestEstimateMatchesO200k(t *testing.T) {
	type sum struct{ est, real float64 }
	classes := map[string]*sum{}
	var names []string
	var all sum
	t.Logf("| set | sample | bytes | o200k | estimate | error |")
	t.Logf("|---|---|--:|--:|--:|--:|")
	for _, s := range corpus(t, "fit", "check") {
		want := realCount(t, s.text)
		got := countText([]byte(s.text))
		e := float64(got-int64(want)) / float64(want)
		t.Logf("| %s | %s | %d | %d | %d | %+.1f%% |", s.set, s.name, len(s.text), want, got, 100*e)
		if math.Abs(e) > sampleBound {
			t.Errorf("%s/%s: estimate %d, o200k %d: error %+.1f%% beyond ±%.0f%%", s.set, s.name, got, want, 100*e, 100*sampleBound)
		}
		c, _ := class(s.name)
		if classes[c] == nil {
			classes[c] = &sum{}
			names = append(names, c)
		}
		classes[c].est += float64(got)
		classes[c].real += float64(want)
		all.est += float64(got)
		all.real += float64(want)
	}
	sort.Strings(names)
	t.Logf("| class | o200k | estimate | error | bound |")
	for _, c := range names {
		_, b := class(c)
		e := (classes[c].est - classes[c].real) / classes[c].real
		t.Logf("| %s | %.0f | %.0f | %+.1f%% | ±%.0f%% |", c, classes[c].real, classes[c].est, 100*e, 100*b)
		if math.Abs(e) > b {
			t.Errorf("class %s: estimate %.0f, o200k %.0f: error %+.1f%% beyond ±%.0f%%", c, classes[c].est, classes[c].real, 100*e, 100*b)
		}
	}
	e := (all.est - all.real) / all.real
	t.Logf("| all | %.0f | %.0f | %+.1f%% | ±%.0f%% |", all.real, all.est, 100*e, 100*totalBound)
	if math.Abs(e) > totalBound {
		t.Errorf("corpus: estimate %.0f, o200k %.0f: error %+.1f%% beyond ±%.0f%%", all.est, all.real, 100*e, 100*totalBound)
	}
}

// TestEstimateChatBodyMatchesO200k compares a whole chat body's estimate
// with o200k over the same text plus the same framing.
func TestEstimateChatBodyMatchesO200k(t *testing.T) {
	var msgs []string
	for _, s := range corpus(t, "check") {
		msgs = append(msgs, fmt.Sprintf(`{"role":"user","content":%q}`, s.text))
	}
	body := `{"model":"m","messages":[` + strings.Join(msgs, ",") + `]}`
	want := int64(tokensPerReply)
	for _, s := range corpus(t, "check") {
		want += tokensPerMessage + int64(realCount(t, s.text))
	}
	got := EstimateInputTokens(0, []byte(body))
	if e := math.Abs(float64(got-want)) / float64(want); e > totalBound {
		t.Errorf("chat body: estimate %d, o200k %d (error %.1f%%)", got, want, 100*e)
	}
}

// cell accumulates the real counts of the pieces of one table cell.
type cell struct{ sum, n float64 }

func (c *cell) add(v float64) { c.sum += v; c.n++ }

// blend is the cell's mean pulled towards prior when it has few pieces.
func (c cell) blend(prior float64) float64 {
	const k = 2
	return (c.sum + k*prior) / (c.n + k)
}

// TestFitTokenTable refits tokens_table.go from the fit corpus:
// go test ./pricing -run TestFitTokenTable -fit.
func TestFitTokenTable(t *testing.T) {
	if !*fitTables {
		t.Skip("refits tokens_table.go with -fit")
	}
	type wp struct {
		p      piece
		tokens float64
	}
	cjkBits = buildCJKBits(t)
	if err := os.WriteFile("tokens_cjk.bin", []byte(cjkBits), 0o644); err != nil {
		t.Fatal(err)
	}
	var words, cjkWords, puncts, spaces []wp
	var digits [2]cell
	var shares []string
	minShare, minFunction := 1.0, 1.0
	for _, s := range corpus(t, "fit") {
		eu := europeanSample(s.name)
		latin, accented, function := 0, 0, 0
		for _, p := range pieces(s.text) {
			tok := float64(realCount(t, s.text[p.start:p.end]))
			switch p.kind {
			case kUpper:
				if p.cjk[cjkHan]+p.cjk[cjkHiragana]+p.cjk[cjkKatakana]+p.cjk[cjkHangul] > 0 {
					cjkWords = append(cjkWords, wp{p, tok})
					continue
				}
				if p.script == scLatin {
					latin++
					if p.accented {
						accented++
					}
					if w := s.text[p.end-p.n : p.end]; p.shape == shLower && p.n >= 2 && p.n <= 4 && p.prefix <= preSpace && functionWord([]byte(w)) {
						function++
					}
					if eu {
						p.script = scLatinEU
					}
				}
				words = append(words, wp{p, tok})
			case kDigit:
				if p.ascii {
					digits[1].add(tok)
				} else {
					digits[0].add(tok)
				}
			case kPunct:
				puncts = append(puncts, wp{p, tok})
			default:
				spaces = append(spaces, wp{p, tok})
			}
		}
		if latin > 0 {
			share := float64(accented) / float64(latin)
			fshare := float64(function) / float64(latin)
			shares = append(shares, fmt.Sprintf("%s %.3f/%.3f", s.name, share, fshare))
			if eu {
				minShare = min(minShare, share)
				minFunction = min(minFunction, fshare)
			}
		}
	}
	// The European table applies in full from 80% of the least accented
	// European sample's share of accented words.
	norm := int(math.Ceil(1 / (0.8 * minShare)))
	fnorm := int(math.Ceil(1 / (0.8 * minFunction)))
	t.Logf("accented/function words: %s; accentNorm %d, functionNorm %d", strings.Join(shares, ", "), norm, fnorm)

	// CJK words: least squares of a cost per prefix and per rune class.
	const nf = numPrefixes + numCJK + 2 // and pairs, rare letters
	ata := make([][]float64, nf)
	for a := range ata {
		ata[a] = make([]float64, nf+1)
	}
	for _, w := range cjkWords {
		var x [nf]float64
		x[w.p.prefix] = 1
		for k, m := range w.p.cjk {
			x[numPrefixes+k] = float64(m)
		}
		x[nf-2], x[nf-1] = -float64(w.p.pairs), float64(w.p.rare)
		for a := range nf {
			for b := range nf {
				ata[a][b] += x[a] * x[b]
			}
			ata[a][nf] += x[a] * w.tokens
		}
	}
	for a := range nf {
		ata[a][a] += 1e-3 // ridge, for classes the corpus lacks
	}
	beta := solve(ata)
	var cjkBaseTab [numPrefixes]uint16
	var cjkRuneTab [numCJK]uint16
	for k := range numPrefixes {
		cjkBaseTab[k] = fixed(beta[k])
	}
	for k := range numCJK {
		cjkRuneTab[k] = fixed(beta[numPrefixes+k])
	}

	// Words: a per-rune rate per script (also the slope past maxWordLen),
	// then means by length, prefix and shape, each backing off to the
	// coarser one when it has few pieces.
	var rate [numScripts]cell
	for _, w := range words {
		if w.p.n >= 8 {
			rate[w.p.script].sum += w.tokens
			rate[w.p.script].n += float64(w.p.n)
		}
	}
	var slope [numScripts]float64
	for sc := range slope {
		slope[sc] = 1 // unseen scripts: a token a letter
		if rate[sc].n > 0 {
			slope[sc] = rate[sc].sum / rate[sc].n
		}
	}
	var byLen [numScripts][maxWordLen + 1]cell
	var byPre [numScripts][numPrefixes][maxWordLen + 1]cell
	var byShape [numScripts][numPrefixes][numShapes][maxWordLen + 1]cell
	for _, w := range words {
		n, tok := w.p.n, w.tokens
		if n > maxWordLen {
			tok -= float64(n-maxWordLen) * slope[w.p.script]
			n = maxWordLen
		}
		byLen[w.p.script][n].add(tok)
		byPre[w.p.script][w.p.prefix][n].add(tok)
		byShape[w.p.script][w.p.prefix][w.p.shape][n].add(tok)
	}
	var wordTab [numScripts][numPrefixes][numShapes][maxWordLen + 1]uint16
	for sc := range numScripts {
		for n := 1; n <= maxWordLen; n++ {
			l := byLen[sc][n].blend(max(1, slope[sc]*float64(n)))
			for pre := range numPrefixes {
				extra := 0.0
				if pre == prePunct || pre == preOther {
					extra = 0.5 // a prefix that is not a space often stays apart
				}
				p := byPre[sc][pre][n].blend(l + extra)
				for sh := range numShapes {
					wordTab[sc][pre][sh][n] = fixed(byShape[sc][pre][sh][n].blend(p))
				}
			}
		}
	}

	// Punctuation: means by ASCII length and leading space, a slope, and
	// a cost per non-ASCII symbol by class.
	var pun [2][maxPunctLen + 1]cell
	var pslope cell
	for _, w := range puncts {
		if w.p.syms != [numSyms]int{} {
			continue
		}
		sp := b2i(w.p.space)
		if w.p.n >= 8 {
			pslope.sum += w.tokens
			pslope.n += float64(w.p.n)
		}
		pun[sp][min(w.p.n, maxPunctLen)].add(w.tokens)
	}
	ps := 0.5
	if pslope.n > 0 {
		ps = pslope.sum / pslope.n
	}
	var punctTab [2][maxPunctLen + 1]uint16
	for sp := range 2 {
		prev := float64(sp) // nothing, or the lone space
		for n := range maxPunctLen + 1 {
			prior := prev + ps
			if n == 0 {
				prior = prev
			}
			v := pun[sp][n].blend(prior)
			if n == 0 && pun[sp][n].n == 0 {
				v = prior
			}
			punctTab[sp][n] = fixed(v)
			prev = v
		}
	}
	var sym [numSyms]cell
	for _, w := range puncts {
		total := 0
		for _, m := range w.p.syms {
			total += m
		}
		if total == 0 {
			continue
		}
		rest := w.tokens - float64(punctTab[b2i(w.p.space)][min(w.p.n, maxPunctLen)])/costUnit
		for k, m := range w.p.syms {
			if m > 0 {
				sym[k].sum += rest * float64(m) / float64(total)
				sym[k].n += float64(m)
			}
		}
	}
	var symTab [numSyms]uint16
	for k := range symTab {
		symTab[k] = fixed(sym[k].blend(1))
	}

	// Whitespace: means by length, with and without a line break.
	var sp [2][maxSpaceLen + 1]cell
	var sslope cell
	for _, w := range spaces {
		nl := b2i(w.p.kind == kNewline)
		if w.p.n > maxSpaceLen {
			sslope.sum += w.tokens
			sslope.n += float64(w.p.n)
		}
		sp[nl][min(w.p.n, maxSpaceLen)].add(w.tokens)
	}
	ss := 1.0 / 16
	if sslope.n > 0 {
		ss = sslope.sum / sslope.n
	}
	var spaceTab [2][maxSpaceLen + 1]uint16
	for nl := range 2 {
		prev := 1.0
		for n := 1; n <= maxSpaceLen; n++ {
			v := sp[nl][n].blend(prev)
			spaceTab[nl][n] = fixed(v)
			prev = v
		}
	}

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "// Code generated by TestFitTokenTable (go test ./pricing -run TestFitTokenTable -fit); DO NOT EDIT.\n\n")
	fmt.Fprintf(&buf, "package pricing\n\n")
	fmt.Fprintf(&buf, "// Token costs of o200k pieces in 1/costUnit tokens, fitted on %d words, %d punctuation and %d whitespace pieces of testdata/tokens/fit.\n\n", len(words), len(puncts), len(spaces))
	fmt.Fprintf(&buf, "// wordTable is the cost of a word by script, prefix, case shape and letters.\nvar wordTable = [numScripts][numPrefixes][numShapes][maxWordLen + 1]uint16%s\n\n", lit(wordTab))
	fmt.Fprintf(&buf, "// wordSlope is the cost of a letter past maxWordLen, by script.\nvar wordSlope = [numScripts]uint16%s\n\n", lit(fixedAll(slope[:])))
	fmt.Fprintf(&buf, "// digitCost is the cost of a group of digits: non-ASCII, ASCII.\nvar digitCost = [2]int64{%d, %d}\n\n", fixed(digits[0].blend(1)), fixed(digits[1].blend(1)))
	fmt.Fprintf(&buf, "// punctTable is the cost of a punctuation run by leading space and ASCII runes.\nvar punctTable = [2][maxPunctLen + 1]uint16%s\n\n", lit(punctTab))
	fmt.Fprintf(&buf, "// punctSlope is the cost of an ASCII rune past maxPunctLen.\nconst punctSlope = %d\n\n", fixed(ps))
	fmt.Fprintf(&buf, "// symCost is the cost of a non-ASCII punctuation rune by class.\nvar symCost = [numSyms]uint16%s\n\n", lit(symTab))
	fmt.Fprintf(&buf, "// spaceTable is the cost of whitespace by line break and runes.\nvar spaceTable = [2][maxSpaceLen + 1]uint16%s\n\n", lit(spaceTab))
	fmt.Fprintf(&buf, "// cjkBase is the cost of a CJK word's prefix.\nvar cjkBase = [numPrefixes]uint16%s\n\n", lit(cjkBaseTab))
	fmt.Fprintf(&buf, "// cjkRune is the cost of a CJK word's rune by class.\nvar cjkRune = [numCJK]uint16%s\n\n", lit(cjkRuneTab))
	fmt.Fprintf(&buf, "// cjkPairSaving is what a pair of CJK letters that o200k has in one token saves.\nconst cjkPairSaving = %d\n\n", fixed(beta[nf-2]))
	fmt.Fprintf(&buf, "// cjkRare is the extra cost of a CJK letter that is not one token.\nconst cjkRare = %d\n\n", fixed(beta[nf-1]))
	fmt.Fprintf(&buf, "// functionNorm: Latin text is charged the European table in full when 1/functionNorm of its words are European function words.\nconst functionNorm = %d\n\n", fnorm)
	fmt.Fprintf(&buf, "// accentNorm: Latin text is charged the European table in full when 1/accentNorm of its words have an accented letter.\nconst accentNorm = %d\n\n", norm)
	fmt.Fprintf(&buf, "// spaceSlope is the cost of a whitespace rune past maxSpaceLen.\nconst spaceSlope = %d\n", fixed(ss))
	src, err := format.Source(buf.Bytes())
	if err != nil {
		t.Fatalf("format: %v\n%s", err, buf.Bytes())
	}
	if err := os.WriteFile("tokens_table.go", src, 0o644); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0)
	for sc := range numScripts {
		keys = append(keys, fmt.Sprintf("script %d: %.3f tokens/letter", sc, slope[sc]))
	}
	sort.Strings(keys)
	t.Logf("wrote tokens_table.go; %s; digits %.2f/%.2f; punct slope %.2f; space slope %.2f",
		strings.Join(keys, ", "), digits[0].blend(1), digits[1].blend(1), ps, ss)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fixed converts a token count to the tables' unit.
func fixed(v float64) uint16 { return uint16(math.Round(max(0, v) * costUnit)) }

func fixedAll(v []float64) (out [numScripts]uint16) {
	for i, x := range v {
		out[i] = fixed(x)
	}
	return out
}

// europeanSample reports whether a corpus sample is in a European
// language other than English (its Latin words fit the European table).
func europeanSample(name string) bool {
	for _, p := range []string{"fr", "de", "es", "it", "pt"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// solve solves the linear system of the augmented matrix m by Gaussian
// elimination with partial pivoting.
func solve(m [][]float64) []float64 {
	n := len(m)
	for c := range n {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(m[r][c]) > math.Abs(m[p][c]) {
				p = r
			}
		}
		m[c], m[p] = m[p], m[c]
		for r := c + 1; r < n; r++ {
			f := m[r][c] / m[c][c]
			for k := c; k <= n; k++ {
				m[r][k] -= f * m[c][k]
			}
		}
	}
	x := make([]float64, n)
	for r := n - 1; r >= 0; r-- {
		v := m[r][n]
		for k := r + 1; k < n; k++ {
			v -= m[r][k] * x[k]
		}
		x[r] = v / m[r][r]
	}
	return x
}

// buildCJKBits derives cjkBits from o200k's vocabulary: the CJK letters
// that are one token, and the pairs of CJK letters inside a token.
func buildCJKBits(t *testing.T) string {
	realCount(t, "")
	b := make([]byte, cjkBitsLen)
	const off = (cjkLetters + 7) / 8
	for id := uint(0); id < 200_019; id++ {
		s, err := o200k.Decode([]uint{id})
		if err != nil || !utf8.ValidString(s) {
			continue
		}
		rs := []rune(strings.TrimPrefix(s, " "))
		ok := len(rs) > 0
		for _, r := range rs {
			if cjkOf(r) == cjkOther {
				ok = false
			}
		}
		if !ok {
			continue
		}
		if len(rs) == 1 && s == string(rs) {
			i, _ := cjkLetterIndex(rs[0])
			b[i>>3] |= 1 << (i & 7)
		}
		for i := 0; i+1 < len(rs); i++ {
			x, y := cjkPairHash(rs[i], rs[i+1])
			b[off+x>>3] |= 1 << (x & 7)
			b[off+y>>3] |= 1 << (y & 7)
		}
	}
	return string(b)
}

// lit is the composite literal of an array, its types elided.
func lit(v any) string {
	return regexp.MustCompile(`(\[\d+\])+uint16\{`).ReplaceAllString(fmt.Sprintf("%#v", v), "{")
}
