package config

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testKey returns a key whose bytes are all b (b != 0) and its text.
func testKey(b byte) ([KeySize]byte, string) {
	var k [KeySize]byte
	for i := range k {
		k[i] = b
	}
	return k, EncodeKey(k)
}

// keyFile writes content to a key file in a fresh directory.
func keyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mesh.keys")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeysNoneByDefault(t *testing.T) {
	keys, err := Default().Keys()
	if err != nil || keys != nil {
		t.Fatalf("Default().Keys() = %v, %v; want nil, nil", keys, err)
	}
}

func TestParseKeyForms(t *testing.T) {
	k, std := testKey(0xfb) // 0xfb bytes give '+' and '/' in standard base64
	raw := k[:]
	for _, s := range []string{
		std,
		"  " + std + "\n",
		base64.RawStdEncoding.EncodeToString(raw),
		base64.URLEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw),
	} {
		got, err := ParseKey(s)
		if err != nil || got != k {
			t.Errorf("ParseKey(%q) = %x, %v; want %x", s, got, err, k)
		}
	}
	if len(std) != 44 {
		t.Errorf("EncodeKey gives %d characters, want 44", len(std))
	}
}

func TestParseKeyErrorsDoNotShowTheKey(t *testing.T) {
	short := base64.StdEncoding.EncodeToString([]byte("sixteen bytes!!!"))
	hexKey := strings.Repeat("ab", KeySize)
	for _, tc := range []struct{ in, want string }{
		{short, "decodes to 16 bytes, want 32"},
		{"not*base64*at*all", "not base64"},
		{`"` + EncodeKey([KeySize]byte{9}) + `"`, "not base64 (it holds quote marks; write the key without them)"},
		{hexKey, "decodes to 48 bytes, want 32 (it looks like hex; write the key in base64)"},
		{EncodeKey([KeySize]byte{}), "all 32 bytes are zero"},
		{"   ", "empty"},
	} {
		_, err := ParseKey(tc.in)
		var e *Error
		if !errors.As(err, &e) || e.Key != keyMeshKey || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKey(%q) = %v; want an *Error for meshKey with %q", tc.in, err, tc.want)
			continue
		}
		if strings.TrimSpace(tc.in) != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) {
			t.Errorf("the error repeats the key: %v", err)
		}
	}
}

func TestKeysOrderAndDuplicates(t *testing.T) {
	k1, s1 := testKey(1)
	k2, s2 := testKey(2)
	k3, s3 := testKey(3)
	path := keyFile(t, "# rotation: the new key first\n\n  "+s2+"  \r\n"+s1+"\n# old\n"+s3+"\n"+s2+"\n")

	m := Default()
	m.MeshKeyFile = path
	keys, err := m.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if want := [][KeySize]byte{k2, k1, k3}; !reflect.DeepEqual(keys, want) {
		t.Errorf("file keys = %x\nwant %x", keys, want)
	}
	// meshKey comes first; a key also in the file is kept once.
	m.MeshKey = s3
	keys, err = m.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if want := [][KeySize]byte{k3, k2, k1}; !reflect.DeepEqual(keys, want) {
		t.Errorf("meshKey+file keys = %x\nwant %x", keys, want)
	}
	m.MeshKeyFile = ""
	if keys, err = m.Keys(); err != nil || !reflect.DeepEqual(keys, [][KeySize]byte{k3}) {
		t.Errorf("meshKey alone: %x, %v", keys, err)
	}
}

func TestKeyFileErrors(t *testing.T) {
	_, good := testKey(7)
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	var many strings.Builder
	for i := 1; i <= MaxKeys+1; i++ {
		_, s := testKey(byte(i))
		many.WriteString(s + "\n")
	}
	missing := filepath.Join(t.TempDir(), "nope.keys")
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", missing, "cannot read the key file: open " + missing},
		{"directory", t.TempDir(), "cannot read the key file"},
		{"empty", keyFile(t, ""), "holds no key"},
		{"comments only", keyFile(t, "# nothing yet\n\n"), "holds no key"},
		{"bad line", keyFile(t, good+"\n\n"+short+"\n"), "line 3 of the key file: decodes to 31 bytes, want 32"},
		{"not base64", keyFile(t, "# k\nhello world\n"), "line 2 of the key file: not base64"},
		{"too many", keyFile(t, many.String()), "9 different keys, more than 8"},
		{"too large", keyFile(t, strings.Repeat("#\n", 40000)), "larger than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			m := Default()
			m.MeshKeyFile = tc.path
			_, err := m.Keys()
			var e *Error
			if !errors.As(err, &e) || e.Key != keyMeshKeyFile || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Keys() = %v; want an *Error for meshKeyFile with %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), `meshKeyFile="`+tc.path+`"`) {
				t.Errorf("the error does not name the file: %v", err)
			}
			if verr := m.Validate(); verr == nil || !strings.Contains(verr.Error(), tc.want) {
				t.Errorf("Validate() = %v; want the same problem", verr)
			}
		})
	}
	// An unreadable file (permissions; root reads anything).
	if os.Geteuid() != 0 {
		path := keyFile(t, good+"\n")
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		m := Default()
		m.MeshKeyFile = path
		if _, err := m.Keys(); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("unreadable file: %v", err)
		}
	}
}

// TestKeysFromJSONAndEnv: errors name the source (file position or
// variable), the environment overrides the file, and set-but-empty key
// variables are errors.
func TestKeysFromJSONAndEnv(t *testing.T) {
	k1, s1 := testKey(1)
	k2, s2 := testKey(2)
	k3, s3 := testKey(3)
	kf := keyFile(t, s3+"\n")

	t.Run("json", func(t *testing.T) {
		clearEnv(t)
		m, err := Load(writeFile(t, `{"meshKey": "`+s1+`", "meshKeyFile": "`+kf+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		if keys, _ := m.Keys(); !reflect.DeepEqual(keys, [][KeySize]byte{k1, k3}) {
			t.Errorf("keys %x", keys)
		}
	})
	t.Run("env overrides json", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("DIARKIS_MESH_KEY", s2)
		m, err := Load(writeFile(t, `{"meshKey": "`+s1+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		if keys, _ := m.Keys(); !reflect.DeepEqual(keys, [][KeySize]byte{k2}) {
			t.Errorf("keys %x", keys)
		}
	})
	t.Run("env file", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("DIARKIS_MESH_KEY_FILE", kf)
		m, err := Load("")
		if err != nil {
			t.Fatal(err)
		}
		if keys, _ := m.Keys(); !reflect.DeepEqual(keys, [][KeySize]byte{k3}) {
			t.Errorf("keys %x", keys)
		}
	})
	t.Run("bad key in json names the position", func(t *testing.T) {
		clearEnv(t)
		_, err := Load(writeFile(t, "{\n  \"meshKey\": \"c2hvcnQ=\"\n}"))
		want := "meshKey=<redacted, 8 characters>: decodes to 5 bytes, want 32"
		if err == nil || !strings.Contains(err.Error(), "mesh.json:2:14: "+want) {
			t.Errorf("Load = %v; want %q at mesh.json:2:14", err, want)
		}
	})
	t.Run("wrong type in json is redacted", func(t *testing.T) {
		clearEnv(t)
		_, err := Load(writeFile(t, `{"meshKey": ["`+s1+`"]}`))
		if err == nil || strings.Contains(err.Error(), s1) || !strings.Contains(err.Error(), "want a string") {
			t.Errorf("Load = %v", err)
		}
	})
	t.Run("bad key in env names the variable", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("DIARKIS_MESH_KEY", "c2hvcnQ=")
		_, err := Load("")
		if err == nil || !strings.Contains(err.Error(), "env DIARKIS_MESH_KEY=<redacted, 8 characters> (meshKey): decodes to 5 bytes") {
			t.Errorf("Load = %v", err)
		}
	})
	t.Run("bad file in env names the variable and line", func(t *testing.T) {
		clearEnv(t)
		bad := keyFile(t, s1+"\nxx\n")
		t.Setenv("DIARKIS_MESH_KEY_FILE", bad)
		_, err := Load("")
		want := `env DIARKIS_MESH_KEY_FILE="` + bad + `" (meshKeyFile): line 2 of the key file: decodes to 1 byte, want 32`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load = %v\nwant %s", err, want)
		}
	})
	for _, v := range []string{"DIARKIS_MESH_KEY", "DIARKIS_MESH_KEY_FILE"} {
		t.Run(v+" set but empty", func(t *testing.T) {
			clearEnv(t)
			t.Setenv(v, " ")
			_, err := Load(writeFile(t, `{"meshKey": "`+s1+`"}`))
			if err == nil || !strings.Contains(err.Error(), "env "+v+`=" "`) || !strings.Contains(err.Error(), "set but empty") {
				t.Errorf("Load = %v", err)
			}
		})
	}
}

func TestKeyDidYouMean(t *testing.T) {
	clearEnv(t)
	_, err := Load(writeFile(t, `{"meshkey": "x"}`))
	if err == nil || !strings.Contains(err.Error(), `did you mean "meshKey"?`) {
		t.Errorf("meshkey: %v", err)
	}
	_, err = Load(writeFile(t, `{"meshKeyFiles": "x"}`))
	if err == nil || !strings.Contains(err.Error(), `did you mean "meshKeyFile"?`) {
		t.Errorf("meshKeyFiles: %v", err)
	}
	w := UnknownEnv([]string{"DIARKIS_MESHKEY=x", "DIARKIS_MESH_KEYFILE=y"})
	want := []string{
		"unknown environment variable DIARKIS_MESHKEY is ignored (did you mean DIARKIS_MESH_KEY?)",
		"unknown environment variable DIARKIS_MESH_KEYFILE is ignored (did you mean DIARKIS_MESH_KEY_FILE?)",
	}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("UnknownEnv = %q", w)
	}
}
