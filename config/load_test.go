package config

import (
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

// row is one key of the table: a JSON value, an environment value, and
// the Mesh each produces from the defaults.
type row struct {
	key, env       string
	json, envValue string
	fromJSON       func(*Mesh)
	fromEnv        func(*Mesh)
}

func rows(t *testing.T) []row {
	lo, _ := loopback(t)
	_, k1 := testKey(1)
	_, k2 := testKey(2)
	f1, f2 := keyFile(t, k1), keyFile(t, k2)
	return []row{
		{keyAddress, "DIARKIS_ADDRESS", `"::1"`, "0.0.0.0",
			func(m *Mesh) { m.Address = "::1" }, func(m *Mesh) { m.Address = "0.0.0.0" }},
		{keyNIC, "DIARKIS_NIC", `"` + lo + `"`, lo,
			func(m *Mesh) { m.NIC = lo }, func(m *Mesh) { m.NIC = lo }},
		{keyPort, "DIARKIS_PORT", `"9000"`, "9001",
			func(m *Mesh) { m.Port = "9000" }, func(m *Mesh) { m.Port = "9001" }},
		{keyMarsAddress, "DIARKIS_MARS_ADDR", `"mars.internal"`, "10.1.2.3",
			func(m *Mesh) { m.MarsAddress = "mars.internal" }, func(m *Mesh) { m.MarsAddress = "10.1.2.3" }},
		{keyMarsPort, "DIARKIS_MARS_PORT", `7000`, "7001",
			func(m *Mesh) { m.MarsPort = "7000" }, func(m *Mesh) { m.MarsPort = "7001" }},
		{keyMarsAddressCacheTTL, "DIARKIS_MARS_ADDRESS_CACHE_TTL", `0`, "120",
			func(m *Mesh) { m.MarsAddressCacheTTL = 0 }, func(m *Mesh) { m.MarsAddressCacheTTL = 120 }},
		{keyRetryInterval, "DIARKIS_RETRY_INTERVAL", `500`, "200",
			func(m *Mesh) { m.RetryInterval = 500 }, func(m *Mesh) { m.RetryInterval = 200 }},
		{keyRetryTimeout, "DIARKIS_RETRY_TIMEOUT", `10000`, "5000",
			func(m *Mesh) { m.RetryTimeout = 10000 }, func(m *Mesh) { m.RetryTimeout = 5000 }},
		{keyStrictCheckForExternal, "DIARKIS_STRICT_CHECK_FOR_EXTERNAL", `true`, "true",
			func(m *Mesh) { m.StrictCheckForExternal = true }, func(m *Mesh) { m.StrictCheckForExternal = true }},
		{keySendInterval, "DIARKIS_SEND_INTERVAL", `17`, "50",
			func(m *Mesh) { m.SendInterval = 17 }, func(m *Mesh) { m.SendInterval = 50 }},
		{keyMeshKey, "DIARKIS_MESH_KEY", `"` + k1 + `"`, k2,
			func(m *Mesh) { m.MeshKey = k1 }, func(m *Mesh) { m.MeshKey = k2 }},
		{keyMeshKeyFile, "DIARKIS_MESH_KEY_FILE", `"` + f1 + `"`, f2,
			func(m *Mesh) { m.MeshKeyFile = f1 }, func(m *Mesh) { m.MeshKeyFile = f2 }},
	}
}

func TestLoadEmptyPathIsDefaults(t *testing.T) {
	clearEnv(t)
	m, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if m != Default() {
		t.Errorf("Load(\"\") = %+v, want %+v", m, Default())
	}
}

func TestLoadEachKey(t *testing.T) {
	for _, r := range rows(t) {
		t.Run(r.key+"/json", func(t *testing.T) {
			clearEnv(t)
			m, err := Load(writeFile(t, `{"`+r.key+`": `+r.json+`}`))
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			r.fromJSON(&want)
			if m != want {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
		t.Run(r.key+"/env", func(t *testing.T) {
			clearEnv(t)
			t.Setenv(r.env, r.envValue)
			m, err := Load("") // empty path = defaults + environment
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			r.fromEnv(&want)
			if m != want {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
		t.Run(r.key+"/env-overrides-json", func(t *testing.T) {
			clearEnv(t)
			t.Setenv(r.env, r.envValue)
			m, err := Load(writeFile(t, `{"`+r.key+`": `+r.json+`}`))
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			r.fromJSON(&want)
			r.fromEnv(&want)
			if m != want {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
	}
}

// fullFile sets every key to a value other than its default.
const fullFile = `{
  "address": "127.0.0.2",
  "nic": "",
  "port": 9100,
  "marsAddress": "mars.internal",
  "marsPort": "7100",
  "marsAddressCacheTTL": 30,
  "marsStore": "etcd",
  "marsEtcdEndpoints": "http://127.0.0.1:2379,https://etcd.internal:2379",
  "retryInterval": 400,
  "retryTimeout": 4000,
  "strictCheckForExternal": true,
  "sendInterval": 25
}`

var fullMesh = Mesh{
	Address: "127.0.0.2", Port: "9100", MarsAddress: "mars.internal", MarsPort: "7100",
	MarsAddressCacheTTL: 30, RetryInterval: 400, RetryTimeout: 4000,
	StrictCheckForExternal: true, SendInterval: 25,
	MarsStore: "etcd", MarsEtcdEndpoints: "http://127.0.0.1:2379,https://etcd.internal:2379",
}

func TestEnvUnsetLeavesJSON(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, fullFile)
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m != fullMesh {
		t.Errorf("got  %+v\nwant %+v", m, fullMesh)
	}

	// Set but empty (or blank) numbers and booleans count as unset too.
	for _, f := range fields {
		if f.kind != kindString {
			t.Setenv(f.env, "  ")
		}
	}
	m, err = Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m != fullMesh {
		t.Errorf("blank variables: got  %+v\nwant %+v", m, fullMesh)
	}
}

func TestEnvEmptyStrings(t *testing.T) {
	lo, _ := loopback(t)
	clearEnv(t)
	path := writeFile(t, `{"nic": "`+lo+`"}`)

	// DIARKIS_NIC= switches off a NIC set in the file.
	t.Setenv("DIARKIS_NIC", "")
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.NIC != "" {
		t.Errorf("DIARKIS_NIC= left nic %q", m.NIC)
	}

	// DIARKIS_ADDRESS= is fine with a NIC, an error without one.
	clearEnv(t)
	t.Setenv("DIARKIS_ADDRESS", "")
	if m, err := Load(path); err != nil || m.Address != "" || m.NIC != lo {
		t.Errorf("DIARKIS_ADDRESS= with nic: %+v, %v", m, err)
	}
	_, err = Load("")
	wantErr(t, err, `config: env DIARKIS_ADDRESS="" (address): empty while nic is not set (allowed: `)
}

func TestEnvValuesAreTrimmed(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIARKIS_PORT", " 9000\n")
	t.Setenv("DIARKIS_RETRY_INTERVAL", "\t700 ")
	t.Setenv("DIARKIS_STRICT_CHECK_FOR_EXTERNAL", " 1 ")
	m, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if m.Port != "9000" || m.RetryInterval != 700 || !m.StrictCheckForExternal {
		t.Errorf("got %+v", m)
	}
}

// TestBareNamesIgnored: envconfig with tags would fall back to PORT,
// ADDRESS, NIC... when DIARKIS_* is unset; Load must not.
func TestBareNamesIgnored(t *testing.T) {
	clearEnv(t)
	for _, f := range fields {
		t.Setenv(strings.TrimPrefix(f.env, envPrefix+"_"), "junk value")
	}
	t.Setenv("MARS_ADDRESS", "junk value")
	m, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if m != Default() {
		t.Errorf("got %+v", m)
	}
}

func TestPortNumberOrString(t *testing.T) {
	clearEnv(t)
	for _, c := range []struct{ file, port, marsPort string }{
		{`{"port": 8001, "marsPort": 6790}`, "8001", "6790"},
		{`{"port": "8001", "marsPort": "6790"}`, "8001", "6790"},
		{`{"port": 0}`, "0", "6789"},
		{`{"port": "0"}`, "0", "6789"},
		{`{"port": 65535, "marsPort": 1}`, "65535", "1"},
	} {
		m, err := Load(writeFile(t, c.file))
		if err != nil {
			t.Errorf("%s: %v", c.file, err)
			continue
		}
		if m.Port != c.port || m.MarsPort != c.marsPort {
			t.Errorf("%s: port %q marsPort %q, want %q %q", c.file, m.Port, m.MarsPort, c.port, c.marsPort)
		}
	}
}

func TestAddressForms(t *testing.T) {
	clearEnv(t)
	for _, addr := range []string{"localhost", "0.0.0.0", "::", "::1", "fe80::1%lo"} {
		m := Default()
		m.Address = addr
		if err := m.Validate(); err != nil {
			t.Errorf("address %q: %v", addr, err)
		}
	}
}

// wantErr checks that err is an *Error (possibly among joined ones) and
// that its text contains every part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Errorf("error %T is not a *config.Error: %v", err, err)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error\n%v\ndoes not contain\n%s", err, p)
		}
	}
}

func TestBadFile(t *testing.T) {
	for _, c := range []struct {
		name, file string
		want       []string
	}{
		{"syntax", "{\n  \"port\": \"8000\",\n}", []string{"mesh.json:3:1: invalid JSON: invalid character '}'"}},
		{"syntax-first-line", `{"port" 8000}`, []string{"mesh.json:1:9: invalid JSON"}},
		{"truncated", `{"port": 8000`, []string{"mesh.json:1:14: invalid JSON: unexpected end of JSON input"}},
		{"trailing", `{} {}`, []string{"mesh.json:1:4: invalid JSON: invalid character '{' after top-level value"}},
		{"empty", " \n", []string{"mesh.json:1:1: the file is empty (allowed: a JSON object"}},
		{"array", `[1, 2]`, []string{"mesh.json:1:1: the top level is an array, not an object"}},
		{"unknown-key", "{\n  \"port\": 1,\n  \"zzz\": 8000\n}",
			[]string{`mesh.json:3:3: unknown key "zzz" (allowed: the keys address, nic, port, marsAddress, marsPort,`}},
		{"misspelt-key", "{\n  \"port\": 1,\n  \"prot\": 8000\n}", []string{`mesh.json:3:3: unknown key "prot" (did you mean "port"?)`}},
		{"misspelt-key-2", `{"retryIntreval": 500}`, []string{`unknown key "retryIntreval" (did you mean "retryInterval"?)`}},
		{"misspelt-key-case", `{"MarsAdress": "x"}`, []string{`unknown key "MarsAdress" (did you mean "marsAddress"?)`}},
		{"alias-duplicate", `{"retryTimeout": 3000, "reliableRetryTimeout": 4000}`, []string{`retryTimeout: duplicate key`}},
		{"key-case", `{"MarsPort": 1}`, []string{`mesh.json:1:2: unknown key "MarsPort" (keys are case-sensitive: did you mean "marsPort"?)`}},
		{"duplicate", "{\"port\": 1,\n \"port\": 2}", []string{`mesh.json:2:2: port: duplicate key (first at line 1, column 10)`}},
		{"string-for-int", `{"retryInterval": "fast"}`,
			[]string{`mesh.json:1:19: retryInterval="fast": wrong type: want an integer, got a string (allowed: an integer 10..60000 milliseconds)`}},
		{"string-number-for-int", `{"sendInterval": "20"}`, []string{`sendInterval="20": wrong type: want an integer, got a string`}},
		{"float-for-int", `{"retryTimeout": 3000.5}`, []string{`retryTimeout=3000.5: not an integer`}},
		{"exponent-for-int", `{"retryTimeout": 3e3}`, []string{`retryTimeout=3e3: not an integer`}},
		{"huge-int", `{"retryTimeout": 99999999999999999999}`, []string{`retryTimeout=99999999999999999999: out of range`}},
		{"string-for-bool", `{"strictCheckForExternal": "yes"}`,
			[]string{`strictCheckForExternal="yes": wrong type: want true or false, got a string (allowed: true or false)`}},
		{"bool-for-port", `{"port": true}`, []string{`port=true: wrong type: want a string or an integer, got a boolean (allowed: an integer 0..65535; 0 = any free port)`}},
		{"float-for-port", `{"port": 80.5}`, []string{`port=80.5: not an integer`}},
		{"number-for-string", `{"address": 127}`, []string{`address=127: wrong type: want a string, got a number`}},
		{"null", `{"marsAddress": null}`, []string{`marsAddress=null: wrong type: want a string, got null`}},
		{"object", `{"nic": {"name": "lo"}}`, []string{`nic={"name": "lo"}: wrong type: want a string, got an object`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			m, err := Load(writeFile(t, c.file))
			wantErr(t, err, c.want...)
			if m != (Mesh{}) {
				t.Errorf("Load returned %+v with the error", m)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	clearEnv(t)
	_, err := Load("/nonexistent/mesh.json")
	wantErr(t, err, "config: /nonexistent/mesh.json: cannot read the file: ")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
	}
}

func TestOutOfRangeInFile(t *testing.T) {
	for _, c := range []struct {
		name, file string
		want       []string
	}{
		{"retryInterval-low", `{"retryInterval": 5}`,
			[]string{`mesh.json:1:19: retryInterval=5: below the minimum 10 (allowed: an integer 10..60000 milliseconds)`}},
		{"retryInterval-high", `{"retryInterval": 60001, "retryTimeout": 70000}`, []string{`retryInterval=60001: above the maximum 60000`}},
		{"retryTimeout-low", `{"retryTimeout": 99}`, []string{`retryTimeout=99: below the minimum 100`}},
		{"retryTimeout-high", `{"retryTimeout": 600001}`, []string{`retryTimeout=600001: above the maximum 600000`}},
		{"retryTimeout-equal", "{\"retryInterval\": 2000,\n \"retryTimeout\": 2000}",
			[]string{`mesh.json:2:18: retryTimeout=2000: must be greater than retryInterval 2000 (set at line 1, column 19)`,
				`(allowed: an integer 100..600000 milliseconds, greater than retryInterval)`}},
		{"retryTimeout-below", `{"retryTimeout": 500}`, []string{`retryTimeout=500: must be greater than retryInterval 1000 (allowed:`}},
		{"ttl-negative", `{"marsAddressCacheTTL": -1}`, []string{`marsAddressCacheTTL=-1: below the minimum 0 (allowed: an integer 0..86400 seconds; 0 = no cache)`}},
		{"ttl-high", `{"marsAddressCacheTTL": 86401}`, []string{`marsAddressCacheTTL=86401: above the maximum 86400`}},
		{"sendInterval-5", `{"sendInterval": 5}`,
			[]string{`mesh.json:1:18: sendInterval=5: below the minimum 17 (allowed: 0 = no buffering, or an integer 17..60000 milliseconds)`}},
		{"sendInterval-16", `{"sendInterval": 16}`, []string{`sendInterval=16: below the minimum 17`}},
		{"sendInterval-negative", `{"sendInterval": -1}`, []string{`sendInterval=-1: negative`}},
		{"sendInterval-high", `{"sendInterval": 60001}`, []string{`sendInterval=60001: above the maximum 60000`}},
		{"port-high", `{"port": 65536}`, []string{`port="65536": above the maximum 65535 (allowed: an integer 0..65535; 0 = any free port)`}},
		{"port-negative", `{"port": -1}`, []string{`port="-1": not a decimal integer`}},
		{"port-text", `{"port": "http"}`, []string{`mesh.json:1:10: port="http": not a decimal integer`}},
		{"port-empty", `{"port": ""}`, []string{`port="": empty`}},
		{"marsPort-zero", `{"marsPort": 0}`, []string{`marsPort="0": below the minimum 1 (allowed: an integer 1..65535)`}},
		{"marsPort-high", `{"marsPort": "70000"}`, []string{`marsPort="70000": above the maximum 65535`}},
		{"address-empty", `{"address": ""}`, []string{`address="": empty while nic is not set (allowed: an IP address or a resolvable host name; empty only when nic is set)`}},
		{"address-bad", `{"address": "bad host!"}`, []string{`address="bad host!": not a valid IP address or host name`}},
		{"address-bad-ip", `{"address": "999.1.1.1"}`, []string{`address="999.1.1.1": not a valid IP address or host name`}},
		{"address-with-port", `{"address": "127.0.0.1:8000"}`, []string{`address="127.0.0.1:8000": includes a port; write the address alone and put the port in port`}},
		{"address-unresolvable", `{"address": "no-such-host.invalid"}`, []string{`address="no-such-host.invalid": the host name does not resolve: `}},
		{"marsAddress-empty", `{"marsAddress": ""}`, []string{`marsAddress="": empty (allowed: a non-empty IP address or host name, without a port)`}},
		{"marsAddress-with-port", `{"marsAddress": "mars:6789"}`, []string{`marsAddress="mars:6789": includes a port; write the address alone and put the port in marsPort`}},
		{"marsAddress-brackets", `{"marsAddress": "[::1]"}`, []string{`marsAddress="[::1]": an IPv6 address in brackets; write it without them`}},
		{"nic-unknown", `{"nic": "nosuchnic0"}`, []string{`mesh.json:1:9: nic="nosuchnic0": no such network interface (allowed: an interface of this host (`}},
		{"several", `{"retryInterval": 1, "sendInterval": 3}`, []string{`retryInterval=1: below the minimum 10`, `sendInterval=3: below the minimum 17`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			m, err := Load(writeFile(t, c.file))
			wantErr(t, err, c.want...)
			if m != (Mesh{}) {
				t.Errorf("Load returned %+v with the error", m)
			}
		})
	}
}

func TestBadEnv(t *testing.T) {
	for _, c := range []struct {
		name, env, value string
		want             []string
	}{
		{"int-text", "DIARKIS_RETRY_INTERVAL", "fast",
			[]string{`config: env DIARKIS_RETRY_INTERVAL="fast" (retryInterval): not an integer (allowed: an integer 10..60000 milliseconds)`}},
		{"int-hex", "DIARKIS_RETRY_TIMEOUT", "0x10", []string{`env DIARKIS_RETRY_TIMEOUT="0x10" (retryTimeout): not an integer`}},
		{"int-huge", "DIARKIS_MARS_ADDRESS_CACHE_TTL", "99999999999999999999",
			[]string{`env DIARKIS_MARS_ADDRESS_CACHE_TTL="99999999999999999999" (marsAddressCacheTTL): out of range`}},
		{"bool", "DIARKIS_STRICT_CHECK_FOR_EXTERNAL", "yes",
			[]string{`config: env DIARKIS_STRICT_CHECK_FOR_EXTERNAL="yes" (strictCheckForExternal): not a boolean (allowed: true or false)`}},
		{"sendInterval-5", "DIARKIS_SEND_INTERVAL", "5",
			[]string{`config: env DIARKIS_SEND_INTERVAL="5" (sendInterval): below the minimum 17 (allowed: 0 = no buffering, or an integer 17..60000 milliseconds)`}},
		{"port", "DIARKIS_PORT", "abc", []string{`config: env DIARKIS_PORT="abc" (port): not a decimal integer (allowed: an integer 0..65535; 0 = any free port)`}},
		{"marsPort", "DIARKIS_MARS_PORT", "0", []string{`config: env DIARKIS_MARS_PORT="0" (marsPort): below the minimum 1`}},
		{"nic", "DIARKIS_NIC", "nosuchnic0", []string{`config: env DIARKIS_NIC="nosuchnic0" (nic): no such network interface (allowed: an interface of this host (`}},
		{"marsAddress-empty", "DIARKIS_MARS_ADDR", "", []string{`config: env DIARKIS_MARS_ADDR="" (marsAddress): empty`}},
		{"address", "DIARKIS_ADDRESS", "bad host!", []string{`config: env DIARKIS_ADDRESS="bad host!" (address): not a valid IP address or host name`}},
		{"retryInterval-over-timeout", "DIARKIS_RETRY_INTERVAL", "5000",
			[]string{`config: retryTimeout=3000: must be greater than retryInterval 5000 (set by env DIARKIS_RETRY_INTERVAL)`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(c.env, c.value)
			m, err := Load("")
			wantErr(t, err, c.want...)
			if m != (Mesh{}) {
				t.Errorf("Load returned %+v with the error", m)
			}
		})
	}
}

func TestEnvErrorsAreJoined(t *testing.T) {
	clearEnv(t)
	t.Setenv("DIARKIS_RETRY_INTERVAL", "x")
	t.Setenv("DIARKIS_SEND_INTERVAL", "y")
	m := Default()
	err := LoadEnv(&m)
	wantErr(t, err, `DIARKIS_RETRY_INTERVAL="x"`, `DIARKIS_SEND_INTERVAL="y"`)
	if m != Default() {
		t.Errorf("LoadEnv changed m on error: %+v", m)
	}
}

func TestLoadFileLeavesMeshOnError(t *testing.T) {
	m := Default()
	err := LoadFile(writeFile(t, `{"port": 9000, "prot": 1}`), &m)
	wantErr(t, err, `unknown key "prot"`)
	if m != Default() {
		t.Errorf("LoadFile changed m on error: %+v", m)
	}
	// LoadFile checks types, not ranges.
	if err := LoadFile(writeFile(t, `{"sendInterval": 5}`), &m); err != nil || m.SendInterval != 5 {
		t.Errorf("LoadFile: %v, sendInterval %d", err, m.SendInterval)
	}
}

func TestBOMAndUnicodeColumns(t *testing.T) {
	clearEnv(t)
	m, err := Load(writeFile(t, "\xef\xbb\xbf{\"port\": 9000}"))
	if err != nil || m.Port != "9000" {
		t.Errorf("BOM: %+v, %v", m, err)
	}
	// Columns count characters, not bytes.
	_, err = Load(writeFile(t, `{"nic": "ü", "port": x}`))
	wantErr(t, err, "mesh.json:1:22: invalid JSON")
}

func TestUnmarshalJSONEmbedded(t *testing.T) {
	var doc struct {
		Mesh Mesh `json:"mesh"`
	}
	doc.Mesh = Default()
	if err := json.Unmarshal([]byte(`{"mesh": {"port": 9000, "sendInterval": 20}}`), &doc); err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Port, want.SendInterval = "9000", 20
	if doc.Mesh != want {
		t.Errorf("got %+v", doc.Mesh)
	}
	err := json.Unmarshal([]byte(`{"mesh": {"prot": 9000}}`), &doc)
	wantErr(t, err, `config: unknown key "prot"`)

	// Marshal and unmarshal round-trip.
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var back Mesh
	if err := json.Unmarshal(b, &back); err != nil || back != want {
		t.Errorf("round trip: %+v, %v", back, err)
	}
}

func TestReliableRetryTimeoutAlias(t *testing.T) {
	m := Default()
	if err := LoadFile(writeFile(t, `{"reliableRetryTimeout": 4500}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.RetryTimeout != 4500 {
		t.Fatalf("RetryTimeout = %d, want 4500 from the alias", m.RetryTimeout)
	}
}

func TestAdminAddress(t *testing.T) {
	t.Setenv("DIARKIS_ADMIN_ADDRESS", "127.0.0.1:9090")
	m, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if m.AdminAddress != "127.0.0.1:9090" {
		t.Fatalf("AdminAddress = %q", m.AdminAddress)
	}
	for _, bad := range []string{"9090", "127.0.0.1:70000", "host:port"} {
		m := Default()
		m.AdminAddress = bad
		if err := m.Validate(); err == nil || !strings.Contains(err.Error(), "adminAddress") {
			t.Errorf("%q: err = %v, want an adminAddress error", bad, err)
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{"DIARKIS_PORT=1", "DIARKIS_MARS_PROT=2", "DIARKIS_ZZZ=3", "DIARKIS_ZZZ=4", "HOME=/", "DIARKIS_MINE=5"}, "DIARKIS_MINE")
	want := []string{
		"unknown environment variable DIARKIS_MARS_PROT is ignored (did you mean DIARKIS_MARS_PORT?)",
		"unknown environment variable DIARKIS_ZZZ is ignored",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("UnknownEnv =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
