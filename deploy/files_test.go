package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(text, -1)); n < 2 {
		t.Errorf("the Dockerfile has %d stages, want a multi-stage build", n)
	}
	for _, want := range []string{"-o /out/mars-server ./cmd/mars-server", "-o /out/marsmesh-node ./cmd/node", "COPY --from=build"} {
		if !strings.Contains(text, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	if strings.Contains(text, "/out/node ") {
		t.Error("the node binary must not be named plain 'node'")
	}
}

func TestSystemdUnits(t *testing.T) {
	for file, bin := range map[string]string{"mars-server.service": "/usr/local/bin/mars-server", "marsmesh-node.service": "/usr/local/bin/marsmesh-node"} {
		data, err := os.ReadFile(filepath.Join("systemd", file))
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{}
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				keys[k] = v
			}
		}
		if !strings.HasPrefix(keys["ExecStart"], bin+" ") {
			t.Errorf("%s: ExecStart %q, want %s ...", file, keys["ExecStart"], bin)
		}
		if keys["RestartPreventExitStatus"] != "2" || keys["Restart"] != "on-failure" {
			t.Errorf("%s: Restart=%q RestartPreventExitStatus=%q, want on-failure and 2 (usage errors)", file, keys["Restart"], keys["RestartPreventExitStatus"])
		}
		if cred, _, _ := strings.Cut(keys["LoadCredential"], ":"); cred == "" || keys["Environment"] != "DIARKIS_MESH_KEY_FILE=%d/"+cred {
			t.Errorf("%s: LoadCredential=%q Environment=%q, want the cluster key as a credential in DIARKIS_MESH_KEY_FILE", file, keys["LoadCredential"], keys["Environment"])
		}
		for _, section := range []string{"[Unit]", "[Service]", "[Install]"} {
			if !strings.Contains(string(data), section) {
				t.Errorf("%s lacks %s", file, section)
			}
		}
	}
}
