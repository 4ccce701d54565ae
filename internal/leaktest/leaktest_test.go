package leaktest

import (
	"strings"
	"testing"

	kcp "github.com/xtaci/kcp-go/v5"
)

// TestKCPGoroutinesFoundByPrefix: the scheduler goroutines kcp-go starts
// are found by package prefix, whatever their names.
func TestKCPGoroutinesFoundByPrefix(t *testing.T) {
	_ = kcp.SystemTimedSched
	found := 0
	for _, f := range topFunctions() {
		if strings.HasPrefix(f, kcpPrefix) {
			found++
		}
	}
	if found == 0 {
		t.Fatalf("no kcp-go goroutine among %v", topFunctions())
	}
	if len(Options()) < 2 {
		t.Fatal("no ignore options")
	}
}

func TestMain(m *testing.M) { VerifyTestMain(m) }
