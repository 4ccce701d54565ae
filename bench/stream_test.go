package main

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestStreamSuiteStartsAndStops runs the stream suite with short counts:
// every case of every system delivers everything it sent, closes, and
// leaves no goroutine behind; the report shows the table.
func TestStreamSuiteStartsAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	base := runtime.NumGoroutine()
	b := &bench{plan: plan{duration: 30 * time.Second, rounds: 2, streamCount: 300}, // a safety bound, not a goal
		budgetEnd: time.Now().Add(time.Hour)}
	b.suiteStream()
	if want := len(streamSystems()) * len(streamPayloads); len(b.run.Records) != want {
		t.Fatalf("%d records, want %d: %+v", len(b.run.Records), want, b.run.Records)
	}
	for _, r := range b.run.Records {
		if r.Suite != "stream" || r.Err != "" || r.Sent != countFor(300, r.Payload) || r.Count != r.Sent || r.Rate <= 0 || r.MBps <= 0 {
			t.Errorf("%s %s: %+v", r.Name, sizeName(r.Payload), r)
		}
	}
	md := Markdown(b.run, "")
	for _, s := range []string{"## Streams", "marsmesh stream", "gRPC bidi stream", "| 64 KiB |"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	settleGoroutines(t, base+leakSlack)
}
