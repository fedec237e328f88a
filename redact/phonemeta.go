package redact

import (
	"regexp"
	"slices"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Phone number validity from libphonenumber's metadata, as embedded in
// github.com/nyaruka/phonenumbers: each region's country calling code,
// national (trunk) prefix, possible lengths and general national number
// pattern. The library's own Parse and IsValidNumber run every number-type
// pattern of every region sharing a calling code and cost 17–32 µs of CPU
// per number (docs/performance.md); matching the general pattern of the
// number's region costs about 0.1 µs and rejects the same
// look-alikes (wrong length, unused area codes and prefixes). What it lets
// through that the full check would not: numbers in a range of the right
// shape that is not assigned to any type.

// phoneRegion is one region's metadata.
type phoneRegion struct {
	id             string
	nationalPrefix string
	lengths        []int32
	pattern        string

	once sync.Once
	re   *regexp.Regexp
}

// valid reports whether national (digits only) is a number of the region.
func (r *phoneRegion) valid(national string) bool {
	if len(r.lengths) > 0 && !slices.Contains(r.lengths, int32(len(national))) {
		return false
	}
	r.once.Do(func() {
		// A pattern the metadata holds that Go cannot compile leaves
		// the region's numbers unmatched.
		r.re, _ = regexp.Compile("^(?:" + r.pattern + ")$")
	})
	return r.re != nil && r.re.MatchString(national)
}

var phoneMeta struct {
	once sync.Once
	byCC map[int][]*phoneRegion // main region first
	byID map[string]*phoneRegion
}

func loadPhoneMeta() {
	phoneMeta.once.Do(func() {
		phoneMeta.byCC = map[int][]*phoneRegion{}
		phoneMeta.byID = map[string]*phoneRegion{}
		coll, err := phonenumbers.MetadataCollection()
		if err != nil {
			return // no metadata: no phone number is valid
		}
		for _, m := range coll.GetMetadata() {
			g := m.GetGeneralDesc()
			if g.GetNationalNumberPattern() == "" {
				continue
			}
			r := &phoneRegion{id: m.GetId(), nationalPrefix: m.GetNationalPrefix(), lengths: g.GetPossibleLength(), pattern: g.GetNationalNumberPattern()}
			cc := int(m.GetCountryCode())
			if m.GetMainCountryForCode() {
				phoneMeta.byCC[cc] = append([]*phoneRegion{r}, phoneMeta.byCC[cc]...)
			} else {
				phoneMeta.byCC[cc] = append(phoneMeta.byCC[cc], r)
			}
			phoneMeta.byID[r.id] = r
		}
	})
}

// validInternational reports whether digits (after + or 00) are a country
// calling code and a valid national number of one of its regions.
func validInternational(digits string) bool {
	loadPhoneMeta()
	for n := 1; n <= 3 && n < len(digits); n++ {
		cc := 0
		for _, c := range digits[:n] {
			cc = cc*10 + int(c-'0')
		}
		regions, ok := phoneMeta.byCC[cc]
		if !ok {
			continue
		}
		national := digits[n:]
		for _, r := range regions {
			if r.valid(national) {
				return true
			}
		}
		return false // calling codes are prefix-free
	}
	return false
}

// validNational reports whether digits are a valid number of region
// written nationally, with or without its trunk prefix.
func validNational(digits, region string) bool {
	loadPhoneMeta()
	r, ok := phoneMeta.byID[region]
	if !ok {
		return false
	}
	if p := r.nationalPrefix; p != "" && len(digits) > len(p) && digits[:len(p)] == p && r.valid(digits[len(p):]) {
		return true
	}
	return r.valid(digits)
}

// knownRegion reports whether the metadata has region.
func knownRegion(region string) bool {
	loadPhoneMeta()
	_, ok := phoneMeta.byID[region]
	return ok
}

// KnownPhoneRegion reports whether the phone number metadata has region
// (an ISO 3166 code such as "US"), for checking a configuration.
func KnownPhoneRegion(region string) bool { return knownRegion(region) }
