package config

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"
)

// clearEnv unsets every variable Load reads, and the bare names envconfig
// would fall back to with tags, for the duration of the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, f := range fields {
		for _, name := range []string{f.env, strings.TrimPrefix(f.env, envPrefix+"_")} {
			t.Setenv(name, "") // registers the restore of the original value
			if err := os.Unsetenv(name); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// writeFile writes content to mesh.json in a fresh directory and returns
// its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mesh.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// loopback returns the name of a loopback interface with an IPv4 address
// ("lo" on Linux) and that address.
func loopback(t *testing.T) (name, ip string) {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Skipf("no interfaces: %v", err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 {
			continue
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return ifi.Name, n.IP.To4().String()
			}
		}
	}
	t.Skip("no loopback interface with an IPv4 address")
	return "", ""
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestFieldTableCoversMesh(t *testing.T) {
	typ := reflect.TypeFor[Mesh]()
	if typ.NumField() != len(fields) {
		t.Fatalf("Mesh has %d fields, the key table %d", typ.NumField(), len(fields))
	}
	for i := range typ.NumField() {
		sf := typ.Field(i)
		key := sf.Tag.Get("json")
		f := fieldByKey(key)
		if f == nil {
			t.Errorf("field %s: json key %q is not in the key table", sf.Name, key)
			continue
		}
		// The accessors must point at this very field.
		var m Mesh
		var p any
		switch f.kind {
		case kindString, kindPort:
			p = f.str(&m)
		case kindInt:
			p = f.num(&m)
		case kindBool:
			p = f.flag(&m)
		}
		want := reflect.ValueOf(&m).Elem().Field(i).Addr().Interface()
		if p != want {
			t.Errorf("key %q: accessor does not point at Mesh.%s", key, sf.Name)
		}
		if strings.Contains(string(sf.Tag), "envconfig") || strings.Contains(string(sf.Tag), "default") {
			t.Errorf("Mesh.%s has an envconfig or default tag: %s", sf.Name, sf.Tag)
		}
	}
}

// TestEnvNames checks that envconfig, given the prefix, reads exactly the
// variables of the key table, in order.
func TestEnvNames(t *testing.T) {
	var buf bytes.Buffer
	if err := envconfig.Usagef(envPrefix, &envVars{}, &buf, "{{range .}}{{usage_key .}}\n{{end}}"); err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(buf.String())
	var want []string
	for _, f := range fields {
		want = append(want, f.env)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("envconfig reads\n%v\nthe key table says\n%v", got, want)
	}
	// Each field of envVars must feed the key with that variable.
	ev := envVars{}
	v := reflect.ValueOf(&ev).Elem()
	for i := range v.NumField() {
		s := "marker"
		v.Field(i).Set(reflect.ValueOf(&s))
		if p := fields[i].fromEnv(&ev); p != &s {
			t.Errorf("%s: fromEnv does not read envVars.%s", fields[i].env, v.Type().Field(i).Name)
		}
		v.Field(i).Set(reflect.Zero(v.Field(i).Type()))
	}
}

func TestMarsAddr(t *testing.T) {
	m := Default()
	if got := m.MarsAddr(); got != "127.0.0.1:6789" {
		t.Errorf("MarsAddr() = %q", got)
	}
	m.MarsAddress = "::1"
	if got := m.MarsAddr(); got != "[::1]:6789" {
		t.Errorf("MarsAddr() = %q", got)
	}
}

func TestPortNumbers(t *testing.T) {
	m := Default()
	if n, err := m.PortNumber(); err != nil || n != 8000 {
		t.Errorf("PortNumber() = %d, %v", n, err)
	}
	if n, err := m.MarsPortNumber(); err != nil || n != 6789 {
		t.Errorf("MarsPortNumber() = %d, %v", n, err)
	}
	m.Port, m.MarsPort = "0", "0"
	if n, err := m.PortNumber(); err != nil || n != 0 {
		t.Errorf("PortNumber() = %d, %v", n, err)
	}
	if _, err := m.MarsPortNumber(); err == nil || !strings.Contains(err.Error(), `marsPort="0": below the minimum 1`) {
		t.Errorf("MarsPortNumber() error = %v", err)
	}
	for _, bad := range []string{"", "x", "-1", "+1", " 80", "65536", "99999999999999999999"} {
		m.Port = bad
		if _, err := m.PortNumber(); err == nil {
			t.Errorf("PortNumber(%q) succeeded", bad)
		}
	}
}

func TestDurations(t *testing.T) {
	m := Default()
	m.SendInterval = 20
	if m.RetryIntervalDuration().Milliseconds() != 1000 || m.RetryTimeoutDuration().Milliseconds() != 3000 ||
		m.SendIntervalDuration().Milliseconds() != 20 || m.MarsAddressCacheTTLDuration().Seconds() != 60 {
		t.Errorf("durations: %v %v %v %v", m.RetryIntervalDuration(), m.RetryTimeoutDuration(),
			m.SendIntervalDuration(), m.MarsAddressCacheTTLDuration())
	}
}

func TestBindAddress(t *testing.T) {
	lo, loIP := loopback(t)

	m := Default()
	m.Address = "10.1.2.3"
	if got, err := m.BindAddress(); err != nil || got != "10.1.2.3" {
		t.Errorf("without nic: BindAddress() = %q, %v", got, err)
	}

	m.NIC = lo
	if got, err := m.BindAddress(); err != nil || got != loIP {
		t.Errorf("nic %s: BindAddress() = %q, %v; want %s", lo, got, err, loIP)
	}
	m.Address = "" // the NIC alone is enough
	if err := m.Validate(); err != nil {
		t.Errorf("nic %s, empty address: Validate() = %v", lo, err)
	}

	m.NIC = "nosuchnic0"
	_, err := m.BindAddress()
	if err == nil || !strings.Contains(err.Error(), `nic="nosuchnic0": no such network interface`) ||
		!strings.Contains(err.Error(), lo) {
		t.Errorf("unknown nic: BindAddress() error = %v", err)
	}

	m.NIC, m.Address = "", ""
	if _, err := m.BindAddress(); err == nil {
		t.Error("no nic, no address: BindAddress() succeeded")
	}
}

// TestBindAddressNoIPv4 uses an interface without an IPv4 address, when
// this host has one.
func TestBindAddressNoIPv4(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Skip(err)
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		has4 := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				has4 = true
			}
		}
		if has4 {
			continue
		}
		m := Default()
		m.NIC = ifi.Name
		_, err = m.BindAddress()
		if err == nil || !strings.Contains(err.Error(), `nic="`+ifi.Name+`": the interface has no IPv4 address`) {
			t.Errorf("nic %s: BindAddress() error = %v", ifi.Name, err)
		}
		return
	}
	t.Skip("every interface has an IPv4 address")
}
