package mesh

import "testing"

// FuzzHealthAnswer: the health answer decoder takes any bytes without
// panicking, and round-trips what a node writes.
func FuzzHealthAnswer(f *testing.F) {
	f.Add([]byte{3, 0, 0, 1, 0})
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, p []byte) {
		st, err := parseHealthAnswer(p)
		if err != nil {
			if !IsRequestError(err) {
				t.Fatalf("error without the sentinel: %v", err)
			}
			return
		}
		if len(p) != 5 || st.Synced != (p[0]&1 != 0) || st.InTouch != (p[0]&2 != 0) || st.Age < 0 {
			t.Fatalf("%x decoded as %+v", p, st)
		}
	})
}
