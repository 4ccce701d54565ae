package config

import (
	"slices"
	"strings"
	"testing"
)

func TestMarsAddressList(t *testing.T) {
	m := Default()
	m.MarsAddress, m.MarsPort = "127.0.0.1, 127.0.0.2,mars.example", "7000"
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:7000", "127.0.0.2:7000", "mars.example:7000"}
	if got := m.MarsAddrs(); !slices.Equal(got, want) {
		t.Fatalf("MarsAddrs() = %v, want %v", got, want)
	}
	if m.MarsAddr() != want[0] {
		t.Fatalf("MarsAddr() = %q", m.MarsAddr())
	}
	for _, bad := range []string{"127.0.0.1,,127.0.0.2", "127.0.0.1,127.0.0.2:7000", " , "} {
		m.MarsAddress = bad
		err := m.Validate()
		if err == nil || !strings.Contains(err.Error(), "marsAddress") {
			t.Errorf("marsAddress %q: %v", bad, err)
		}
	}
}
