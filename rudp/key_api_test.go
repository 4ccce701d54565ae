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

// TestCookieSecretsForgotten: a cookie bucket's secret is kept for that
// bucket and the next, then forgotten (the responder's forward secrecy).
func TestCookieSecretsForgotten(t *testing.T) {
	var c cookieSecrets
	c.init(10)
	s10, ok := c.get(10)
	if !ok {
		t.Fatal("current bucket has no secret")
	}
	if s, ok := c.get(11); !ok || s == s10 {
		t.Fatal("next bucket: no new secret")
	}
	if s, ok := c.get(10); !ok || s != s10 {
		t.Fatal("previous bucket's secret lost too early")
	}
	c.get(12)
	if _, ok := c.get(10); ok {
		t.Fatal("secret of bucket 10 still known in bucket 12")
	}
	c.get(20)
	if _, ok := c.get(19); !ok {
		t.Fatal("after a jump the previous bucket has no secret")
	}
}
