package rudp

import (
	"errors"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateKey()
	if a == b || a == ([32]byte{}) {
		t.Fatalf("GenerateKey gave %x and %x", a, b)
	}
}

func TestBadKeysRefused(t *testing.T) {
	good, _ := GenerateKey()
	for name, keys := range map[string][][32]byte{
		"zero":     {{}},
		"zero2nd":  {good, {}},
		"too many": make([][32]byte, MaxKeys+1),
	} {
		if name == "too many" {
			for i := range keys {
				keys[i], _ = GenerateKey()
			}
		}
		_, err := Listen("127.0.0.1:0", Config{Keys: keys})
		if !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: err = %v, want ErrBadKey", name, err)
		}
	}
}
