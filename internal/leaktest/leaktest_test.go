package leaktest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestFindsALeftGoroutine: a goroutine still running is found; once it
// ends, nothing is.
func TestFindsALeftGoroutine(t *testing.T) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		<-stop
	}()
	if err := goleak.Find(); err == nil {
		t.Fatal("a running goroutine was not found")
	}
	close(stop)
	<-done
	if err := goleak.Find(); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) { VerifyTestMain(m) }
