package mars

import (
	"os/exec"
	"strings"
	"testing"
)

// Issue 13 item 4: a game server that imports mesh (or mars) does not
// compile the etcd client; only mars/etcdstore and cmd/mars-server do.
func TestNoEtcdInMeshDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	for _, pkg := range []string{"github.com/marsmesh/marsmesh/mesh", "github.com/marsmesh/marsmesh/mars"} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "go.etcd.io/") || strings.HasPrefix(dep, "google.golang.org/grpc") {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/marsmesh/marsmesh/mars/etcdstore").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "go.etcd.io/etcd/client/v3") {
		t.Fatalf("the check is blind: etcdstore's deps lack the etcd client (%v)", err)
	}
}
