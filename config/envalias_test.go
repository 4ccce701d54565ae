package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestEnvAliasNames(t *testing.T) {
	got := slices.Sorted(maps.Keys(envAliases))
	want := []string{"DIARKIS_MARS_ADDRESS", "DIARKIS_RELIABLE_RETRY_TIMEOUT"}
	if !slices.Equal(got, want) {
		t.Fatalf("aliases %v, want %v", got, want)
	}
	for _, c := range [][2]string{{"marsAddressCacheTTL", "DIARKIS_MARS_ADDRESS_CACHE_TTL"}, {"nic", "DIARKIS_NIC"},
		{"strictCheckForExternal", "DIARKIS_STRICT_CHECK_FOR_EXTERNAL"}, {"meshKeyFile", "DIARKIS_MESH_KEY_FILE"}} {
		if got := envName(c[0]); got != c[1] {
			t.Errorf("envName(%q) = %q, want %q", c[0], got, c[1])
		}
	}
}

func TestEnvAliasSetsTheKey(t *testing.T) {
	t.Setenv("DIARKIS_MARS_ADDRESS", "10.1.2.3")
	t.Setenv("DIARKIS_RELIABLE_RETRY_TIMEOUT", "4000")
	m, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if m.MarsAddress != "10.1.2.3" || m.RetryTimeout != 4000 {
		t.Fatalf("marsAddress %q retryTimeout %d", m.MarsAddress, m.RetryTimeout)
	}
	if w := UnknownEnv([]string{"DIARKIS_MARS_ADDRESS=x", "DIARKIS_RELIABLE_RETRY_TIMEOUT=1"}); len(w) != 0 {
		t.Errorf("aliases warned about: %q", w)
	}
}

func TestEnvAliasAndVariableBothSet(t *testing.T) {
	t.Setenv("DIARKIS_MARS_ADDR", "10.1.2.3")
	t.Setenv("DIARKIS_MARS_ADDRESS", " 10.1.2.3 ")
	if m, err := Load(""); err != nil || m.MarsAddress != "10.1.2.3" {
		t.Fatalf("the same value twice: %q, %v", m.MarsAddress, err)
	}
	t.Setenv("DIARKIS_MARS_ADDRESS", "10.9.9.9")
	_, err := Load("")
	if err == nil {
		t.Fatal("different values: no error")
	}
	for _, want := range []string{"DIARKIS_MARS_ADDR", "DIARKIS_MARS_ADDRESS", "10.9.9.9", "unset one"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestEnvAliasErrorNamesTheAlias(t *testing.T) {
	t.Setenv("DIARKIS_RELIABLE_RETRY_TIMEOUT", "soon")
	_, err := Load("")
	if err == nil || !strings.Contains(err.Error(), "env DIARKIS_RELIABLE_RETRY_TIMEOUT") || !strings.Contains(err.Error(), "retryTimeout") {
		t.Fatalf("err = %v, want one naming DIARKIS_RELIABLE_RETRY_TIMEOUT and retryTimeout", err)
	}
}

func TestUnknownEnvGuesses(t *testing.T) {
	for name, want := range map[string]string{
		"DIARKIS_MARSADDRESS":   "DIARKIS_MARS_ADDR",
		"DIARKIS_MARS_ADRESS":   "DIARKIS_MARS_ADDR",
		"DIARKIS_MARSPORT":      "DIARKIS_MARS_PORT",
		"DIARKIS_RETRYTIMEOUT":  "DIARKIS_RETRY_TIMEOUT",
		"DIARKIS_SENDINTERVALL": "DIARKIS_SEND_INTERVAL",
		"DIARKIS_MESHKEYFILE":   "DIARKIS_MESH_KEY_FILE",
	} {
		w := UnknownEnv([]string{name + "=1"})
		if len(w) != 1 || !strings.Contains(w[0], "did you mean "+want+"?") {
			t.Errorf("%s: %q, want a did-you-mean %s", name, w, want)
		}
	}
}
