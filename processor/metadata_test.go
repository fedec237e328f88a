package processor

import (
	"fmt"
	"testing"
)

// mdValues takes its values from arrays sized for metadata(); fields past
// them still get values of their own.
func TestMetadataValuesPastArrays(t *testing.T) {
	v := mdValues{size: mdFields}
	for i := range 2 * mdFields {
		v.str(fmt.Sprint("s", i), fmt.Sprint("v", i))
		v.num(fmt.Sprint("n", i), float64(i))
	}
	v.str("empty", "")
	f := v.wrap("ns").GetFields()["ns"].GetStructValue().GetFields()
	if len(f) != 4*mdFields {
		t.Fatalf("%d fields, want %d", len(f), 4*mdFields)
	}
	for i := range 2 * mdFields {
		if got := f[fmt.Sprint("s", i)].GetStringValue(); got != fmt.Sprint("v", i) {
			t.Errorf("s%d = %q", i, got)
		}
		if got := f[fmt.Sprint("n", i)].GetNumberValue(); got != float64(i) {
			t.Errorf("n%d = %v", i, got)
		}
	}
	var empty mdValues
	if f := empty.wrap("ns").GetFields()["ns"].GetStructValue(); f == nil || len(f.GetFields()) != 0 {
		t.Errorf("empty metadata: %v", f)
	}
}
