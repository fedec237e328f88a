//go:build goexperiment.jsonv2

package ijson

import (
	"encoding/json/jsontext"
	"testing"
)

// FuzzCheckJSONv2 holds Check to encoding/json/v2's jsontext, which by
// default refuses duplicate names, invalid UTF-8 and unpaired surrogates:
// within MaxDepth both accept exactly the same inputs. It runs with
// GOEXPERIMENT=jsonv2.
func FuzzCheckJSONv2(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if depth(data) > MaxDepth {
			return
		}
		err := Check(data)
		if v2 := jsontext.Value(data).IsValid(); v2 != (err == nil) {
			t.Fatalf("jsontext valid=%v, Check: %v", v2, err)
		}
	})
}
