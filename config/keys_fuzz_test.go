package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzKeyFile feeds arbitrary bytes to the key-file reader (and each line
// to ParseKey): no panic; keys come back only for text that holds valid
// keys; an error never repeats a line of the file that was long enough to
// be a key.
func FuzzKeyFile(f *testing.F) {
	_, k1 := testKey(1)
	_, k2 := testKey(0xfb)
	for _, seed := range []string{
		"", "\n", "# only a comment\n", k1, k1 + "\n" + k2 + "\r\n", "\xef\xbb\xbf" + k1,
		"  " + k1 + "  \n\n# old\n" + k2, "c2hvcnQ=", strings.Repeat("ab", 32), "not base64!",
		k1[:43], k1 + "=", strings.Repeat(k1+"\n", 9),
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "keys")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		m := Default()
		m.MeshKeyFile = path
		keys, err := m.Keys()
		if err != nil {
			if keys != nil {
				t.Fatalf("keys and an error: %v", err)
			}
			for _, line := range strings.Split(string(data), "\n") {
				if line = strings.TrimSpace(line); len(line) >= 16 && strings.Contains(err.Error(), line) {
					t.Fatalf("the error repeats a line of the key file: %v", err)
				}
			}
			return
		}
		if len(keys) == 0 || len(keys) > MaxKeys {
			t.Fatalf("%d keys and no error", len(keys))
		}
		for _, k := range keys {
			if k == ([KeySize]byte{}) {
				t.Fatal("an all-zero key was accepted")
			}
			if back, err := ParseKey(EncodeKey(k)); err != nil || back != k {
				t.Fatalf("EncodeKey/ParseKey round trip: %v", err)
			}
		}
		for _, line := range strings.Split(strings.TrimPrefix(string(data), "\xef\xbb\xbf"), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				if _, err := ParseKey(line); err != nil {
					t.Fatalf("the file was accepted but line %q does not parse: %v", line, err)
				}
			}
		}
	})
}
