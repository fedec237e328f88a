package redact

// ibanDetector finds IBANs: a country code with its national length, two
// check digits and the account part, plain or in groups of four separated
// by single spaces, passing the mod-97 check (ISO 13616). Upper case only.
type ibanDetector struct{}

func (ibanDetector) Kind() Kind { return KindIBAN }

// ibanLengths are the IBAN lengths of the registry's countries.
var ibanLengths = map[[2]byte]uint8{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28, {'B', 'A'}: 20, {'B', 'E'}: 16,
	{'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'R'}: 29, {'B', 'Y'}: 28, {'C', 'H'}: 21, {'C', 'R'}: 22, {'C', 'Y'}: 28,
	{'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'K'}: 18, {'D', 'O'}: 28, {'E', 'E'}: 20, {'E', 'G'}: 29, {'E', 'S'}: 24,
	{'F', 'I'}: 18, {'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22, {'G', 'E'}: 22, {'G', 'I'}: 23, {'G', 'L'}: 18,
	{'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'R'}: 21, {'H', 'U'}: 28, {'I', 'E'}: 22, {'I', 'L'}: 23, {'I', 'Q'}: 23,
	{'I', 'S'}: 26, {'I', 'T'}: 27, {'J', 'O'}: 30, {'K', 'W'}: 30, {'K', 'Z'}: 20, {'L', 'B'}: 28, {'L', 'C'}: 32,
	{'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20, {'L', 'V'}: 21, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22,
	{'M', 'K'}: 19, {'M', 'R'}: 27, {'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'L'}: 18, {'N', 'O'}: 15, {'P', 'K'}: 24,
	{'P', 'L'}: 28, {'P', 'S'}: 29, {'P', 'T'}: 25, {'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22, {'S', 'A'}: 24,
	{'S', 'C'}: 31, {'S', 'E'}: 24, {'S', 'I'}: 19, {'S', 'K'}: 24, {'S', 'M'}: 27, {'S', 'T'}: 25, {'S', 'V'}: 28,
	{'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26, {'U', 'A'}: 29, {'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20,
}

func (d ibanDetector) Find(dst []Match, s string) []Match { return findRuns(d, dst, s) }

func (ibanDetector) findIn(dst []Match, s string, runs []int32) []Match {
	next := 0
	for _, r := range runs {
		i := int(r) - 2
		if i < next || i+4 >= len(s) || !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+3]) || !boundaryBefore(s, i) {
			continue
		}
		want, ok := ibanLengths[[2]byte{s[i], s[i+1]}]
		if !ok {
			continue
		}
		var buf [34]byte
		n, j := 0, i
		grouped := i+4 < len(s) && s[i+4] == ' '
		for j < len(s) && n < int(want) {
			c := s[j]
			if grouped && c == ' ' && n%4 == 0 && n > 0 && j+1 < len(s) && isAlnum(s[j+1]) {
				j++
				continue
			}
			if !(isUpper(c) || isDigit(c)) {
				break
			}
			buf[n] = c
			n++
			j++
		}
		if n != int(want) || !boundaryAfter(s, j) || !mod97(buf[:n]) {
			continue
		}
		dst = append(dst, Match{Start: i, End: j, Kind: KindIBAN})
		next = j
	}
	return dst
}

// mod97 checks an IBAN: the first four characters moved to the end,
// letters as 10..35, the number modulo 97 must be 1.
func mod97(iban []byte) bool {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
			return
		}
		v := int(c-'A') + 10
		r = (r*100 + v) % 97
	}
	for _, c := range iban[4:] {
		add(c)
	}
	for _, c := range iban[:4] {
		add(c)
	}
	return r == 1
}
