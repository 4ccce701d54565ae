package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
)

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		var out, errOut bytes.Buffer
		if code := realMain(context.Background(), []string{"keygen"}, &out, &errOut); code != 0 || errOut.Len() != 0 {
			t.Fatalf("keygen: exit %d, stderr %q", code, errOut.String())
		}
		line := out.String()
		if !strings.HasSuffix(line, "\n") || strings.Count(line, "\n") != 1 || len(line) != 45 {
			t.Fatalf("keygen printed %q, want one 44-character line", line)
		}
		if _, err := config.ParseKey(line); err != nil {
			t.Fatalf("keygen's key does not parse: %v", err)
		}
		if seen[line] {
			t.Fatalf("keygen printed %q twice", line)
		}
		seen[line] = true
	}
	var out, errOut bytes.Buffer
	if code := realMain(context.Background(), []string{"keygen", "extra"}, &out, &errOut); code != exitUsage {
		t.Errorf("keygen extra: exit %d, want %d", code, exitUsage)
	}
}

// TestBadKeyExits2: every subcommand that reads the configuration refuses
// a bad key with exit 2 and one line naming the source, without the key.
func TestBadKeyExits2(t *testing.T) {
	const shortKey = "c2hvcnQ="
	badFile := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(badFile, []byte("# keys\n"+shortKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sub := range [][]string{{"run"}, {"status"}, {"healthcheck", "-addr", "127.0.0.1:8000"}} {
		for _, tc := range []struct{ env, value, want string }{
			{"DIARKIS_MESH_KEY", shortKey, "env DIARKIS_MESH_KEY=<redacted, 8 characters> (meshKey): decodes to 5 bytes, want 32"},
			{"DIARKIS_MESH_KEY_FILE", badFile, `env DIARKIS_MESH_KEY_FILE="` + badFile + `" (meshKeyFile): line 2 of the key file: decodes to 5 bytes`},
			{"DIARKIS_MESH_KEY", "", "env DIARKIS_MESH_KEY=\"\" (meshKey): set but empty"},
		} {
			t.Run(sub[0]+"/"+tc.env, func(t *testing.T) {
				t.Setenv(tc.env, tc.value)
				var out, errOut bytes.Buffer
				code := realMain(context.Background(), sub, &out, &errOut)
				text := errOut.String()
				if code != exitUsage || strings.Count(text, "\n") != 1 || !strings.Contains(text, tc.want) {
					t.Errorf("exit %d, stderr %q; want exit 2 and one line with %q", code, text, tc.want)
				}
				if strings.Contains(text, shortKey) {
					t.Errorf("the error shows the key: %q", text)
				}
			})
		}
	}
}

// TestDemoKeyed runs every demo step on a keyed cluster (the child node
// process included).
func TestDemoKeyed(t *testing.T) {
	// A bad DIARKIS_MESH_KEY too: the demo ignores DIARKIS_* variables.
	code, out, errOut := runNode(t, 90*time.Second, []string{"DIARKIS_MESH_KEY=c2hvcnQ="}, "demo", "-key")
	if code != 0 || !strings.Contains(out, "Cluster key: a fresh random one") || !strings.Contains(out, "PASS: 13 of 13 steps passed") {
		t.Fatalf("demo -key: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
