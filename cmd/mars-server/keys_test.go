package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

func TestKeygenFlag(t *testing.T) {
	var out, errb syncbuf.Buffer
	old := stdout
	stdout = &out
	defer func() { stdout = old }()
	if code := run(context.Background(), []string{"-keygen"}, &errb); code != 0 || errb.String() != "" {
		t.Fatalf("-keygen: exit %d, stderr %q", code, errb.String())
	}
	line := out.String()
	if len(line) != 45 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("-keygen printed %q, want one 44-character line", line)
	}
	if _, err := config.ParseKey(line); err != nil {
		t.Fatalf("-keygen's key does not parse: %v", err)
	}
}

func TestBadKeyExits2(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(bad, []byte("\n\nnot a key\n"), 0o600)
	for _, tc := range []struct{ env, value, want string }{
		{"DIARKIS_MESH_KEY", "c2hvcnQ=", "env DIARKIS_MESH_KEY=<redacted, 8 characters> (meshKey): decodes to 5 bytes, want 32"},
		{"DIARKIS_MESH_KEY_FILE", bad, `(meshKeyFile): line 3 of the key file: not base64`},
		{"DIARKIS_MESH_KEY_FILE", filepath.Join(t.TempDir(), "missing"), `(meshKeyFile): cannot read the key file`},
	} {
		t.Setenv(tc.env, tc.value)
		var errb syncbuf.Buffer
		code := run(context.Background(), []string{"-config", ""}, &errb)
		text := strings.TrimRight(errb.String(), "\n")
		if code != 2 || strings.Contains(text, "\n") || !strings.Contains(text, tc.want) || strings.Contains(text, "c2hvcnQ") {
			t.Errorf("%s=%s: exit %d, stderr %q; want exit 2 and one line with %q", tc.env, tc.value, code, text, tc.want)
		}
		os.Unsetenv(tc.env)
	}
}
