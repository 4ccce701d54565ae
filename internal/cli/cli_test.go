package cli

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

func TestJSONDurationsAsText(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("x", "silent", 1500*time.Millisecond, "n", 3)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["silent"] != "1.5s" || rec["n"] != float64(3) {
		t.Fatalf("logged %s", buf.String())
	}
}
