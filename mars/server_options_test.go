package mars

import (
	"errors"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
)

func TestServerOptionsValidate(t *testing.T) {
	if err := (ServerOptions{}).Validate(); err != nil {
		t.Fatal("zero options:", err)
	}
	d := DefaultServerOptions()
	if err := d.Validate(); err != nil {
		t.Fatal("default options:", err)
	}
	if d.OfflineAfter != 3*time.Second || d.RemoveAfter != 10*time.Second || d.MaxNodes != 100_000 || d.TombstoneTTL != 5*time.Minute {
		t.Fatalf("defaults: %+v", d)
	}
	st := NewMemoryStore().Session()
	defer st.Close()
	for name, o := range map[string]ServerOptions{
		"negative OfflineAfter":  {OfflineAfter: -time.Second},
		"negative MaxNodes":      {MaxNodes: -1},
		"DataDir with a Store":   {DataDir: "x", Store: st},
		"bad transport interval": {Transport: rudp.Config{Interval: time.Hour}},
	} {
		err := o.Validate()
		if !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: %v, want ErrBadOptions", name, err)
		}
		if _, err := Listen("127.0.0.1:0", o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: Listen: %v, want ErrBadOptions", name, err)
		}
	}
}
