package config

import (
	"errors"
	"strings"
	"testing"
)

func TestMarsStoreDefaultsAndValidate(t *testing.T) {
	clearEnv(t)
	if d := Default(); d.MarsStore != StoreMemory || d.MarsEtcdEndpoints != "" || d.Validate() != nil {
		t.Fatalf("default store %q endpoints %q", d.MarsStore, d.MarsEtcdEndpoints)
	}
	for _, c := range []struct {
		store, eps string
		want       string // "" = valid
	}{
		{"memory", "", ""},
		{"etcd", "http://127.0.0.1:2379", ""},
		{"etcd", " http://127.0.0.1:2379 , https://etcd.example:2379/ ", ""},
		{"memory", "http://127.0.0.1:2379", ""},
		{"etc", "", `marsStore="etc": not "memory" or "etcd"`},
		{"", "", `marsStore="": not "memory" or "etcd"`},
		{"etcd", "", `marsEtcdEndpoints="": empty while marsStore is "etcd"`},
		{"etcd", "127.0.0.1:2379", `entry "127.0.0.1:2379"`},
		{"etcd", "http://127.0.0.1:2379,ftp://x:1", `entry "ftp://x:1": not an http:// or https:// URL`},
		{"etcd", "http://:2379", `entry "http://:2379": no host`},
		{"etcd", "http://h:99999", `port`},
		{"etcd", "http://h:2379/v3", `a path or query`},
	} {
		m := Default()
		m.MarsStore, m.MarsEtcdEndpoints = c.store, c.eps
		err := m.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q %q: %v", c.store, c.eps, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q %q: %v; want %q", c.store, c.eps, err, c.want)
		case c.want != "":
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("%q %q: %T is not an *Error", c.store, c.eps, err)
			}
		}
	}
}

func TestMarsStoreFromFileAndEnv(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, `{"marsStore": "etcd", "marsEtcdEndpoints": "http://127.0.0.1:2379"}`)
	m, err := Load(path)
	if err != nil || m.MarsStore != "etcd" || len(m.MarsEtcdEndpointList()) != 1 {
		t.Fatalf("from file: %+v, %v", m, err)
	}
	t.Setenv("DIARKIS_MARS_STORE", "memory")
	t.Setenv("DIARKIS_MARS_ETCD_ENDPOINTS", "http://a:1,http://b:2")
	if m, err = Load(path); err != nil || m.MarsStore != "memory" || strings.Join(m.MarsEtcdEndpointList(), " ") != "http://a:1 http://b:2" {
		t.Fatalf("from env: %+v, %v", m, err)
	}
	if _, err := Load(writeFile(t, `{"marsStor": "etcd"}`)); err == nil || !strings.Contains(err.Error(), `did you mean "marsStore"`) {
		t.Fatalf("misspelt key: %v", err)
	}
	if w := UnknownEnv([]string{"DIARKIS_MARS_STOR=etcd"}); len(w) != 1 || !strings.Contains(w[0], "DIARKIS_MARS_STORE") {
		t.Fatalf("UnknownEnv: %v", w)
	}
}
