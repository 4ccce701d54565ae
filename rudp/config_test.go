package rudp

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// TestDefaultConfigAndValidate: the defaults and the zero Config are
// valid and equal once defaulted; a field out of range is refused with an
// error that names it and wraps ErrBadConfig, and New refuses to start.
func TestDefaultConfigAndValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	z, d := Config{}.withDefaults(), DefaultConfig().withDefaults()
	z.Logger, d.Logger = nil, nil
	if z.RetryTimeout != d.RetryTimeout || z.MaxQueued != d.MaxQueued || z.Interval != d.Interval || z.RecvWindow != d.RecvWindow {
		t.Fatalf("zero config defaults to %+v, want %+v", z, d)
	}
	n := faultnet.New(30)
	for _, c := range []struct {
		field string
		cfg   Config
	}{
		{"RetryInterval", Config{RetryInterval: -time.Second}},
		{"RetryTimeout", Config{RetryTimeout: time.Millisecond}},
		{"Interval", Config{Interval: time.Millisecond}},
		{"Interval", Config{Interval: time.Minute}},
		{"SendWindow", Config{SendWindow: -1}},
		{"RecvWindow", Config{RecvWindow: 1 << 16}},
		{"MaxQueued", Config{MaxQueued: -5}},
		{"CloseTimeout", Config{CloseTimeout: -1}},
		{"ReassemblyTTL", Config{ReassemblyTTL: 2 * time.Hour}},
		{"ReassemblyLimit", Config{ReassemblyLimit: 100}},
	} {
		err := c.cfg.Validate()
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want ErrBadConfig naming the field", c.field, err)
		}
		conn, lerr := n.Listen("127.0.0.1:0")
		if lerr != nil {
			t.Fatal(lerr)
		}
		if tr, err := New(conn, c.cfg); err == nil {
			tr.Close()
			t.Errorf("%s: New accepted %+v", c.field, c.cfg)
		}
	}
	if err := (Config{Keys: [][32]byte{{}}}).Validate(); !errors.Is(err, ErrBadKey) {
		t.Errorf("all-zero key: %v, want ErrBadKey", err)
	}
}
