package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

// The etcd variant on one machine: every pod of kubernetes/etcd becomes a
// process with its own loopback address (127.a.b.N), started with the
// container's own command, args and env, and waited for with its own
// readiness probe. What Kubernetes provides is mapped, nothing else is
// changed:
//   - a pod's 0.0.0.0 and 127.0.0.1 are its own address;
//   - DNS: etcd-N.etcd is member N's address, and "mars" (the headless
//     Service) every MARS pod's address, comma-separated (what the name
//     resolves to);
//   - $(VAR) in args expands from the container's env, POD_NAME from the
//     pod's name (fieldRef);
//   - volume mounts become directories (the key Secret: a fresh key file).

// loopbackCluster is the variant's processes.
type loopbackCluster struct {
	t       *testing.T
	bin     map[string]string // container command -> local binary
	net     string            // "127.a.b."
	dir     string
	keyFile string
	pods    map[string]*pod
	marsIPs []string // the MARS pods' addresses, known before they start
}

// pod is one process of the variant.
type pod struct {
	name, ip string
	c        *corev1.Container
	env      []string
	cmd      *exec.Cmd
	out      *syncbuf.Buffer
}

// TestEtcdVariantOnLoopback runs the etcd variant's processes on loopback,
// then does what an operator would: reads the replica in use, kills it and
// an etcd member, and reads again.
func TestEtcdVariantOnLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the loopback run of the etcd variant builds and starts 9 processes")
	}
	etcdBin := os.Getenv("ETCD_BIN")
	if etcdBin == "" {
		etcdBin, _ = exec.LookPath("etcd")
	}
	if etcdBin == "" {
		t.Skip("etcd binary not found (apt-get install etcd-server, or set ETCD_BIN): the loopback run of the etcd variant skipped")
	}
	k := render(t, "etcd")
	lc := newLoopbackCluster(t, etcdBin)

	etcdSet := k.statefulSets["etcd"]
	for i := range int(*etcdSet.Spec.Replicas) {
		lc.start(fmt.Sprintf("etcd-%d", i), &etcdSet.Spec.Template)
	}
	marsDep := k.deployments["mars"]
	for i := range int(*marsDep.Spec.Replicas) { // addresses first: nodes and MARS need them all
		lc.marsIPs = append(lc.marsIPs, lc.net+fmt.Sprint(21+i))
	}
	for i := range int(*marsDep.Spec.Replicas) {
		lc.start(fmt.Sprintf("mars-%d", i), &marsDep.Spec.Template)
	}
	nodeDep := k.deployments["marsmesh-node"]
	var nodes []string
	for i := range int(*nodeDep.Spec.Replicas) {
		nodes = append(nodes, lc.start(fmt.Sprintf("node-%d", i), &nodeDep.Spec.Template).name)
	}
	for _, name := range append([]string{"etcd-0", "etcd-1", "etcd-2", "mars-0", "mars-1", "mars-2"}, nodes...) {
		lc.waitReady(name)
	}
	lc.eventually("every MARS replica lists the 3 nodes online", func() bool {
		for i := range lc.marsIPs {
			if lc.onlineAt(fmt.Sprintf("mars-%d", i)) != 3 {
				return false
			}
		}
		return true
	})
	first := lc.marsIPs[0] + ":6789"
	out := lc.status("node-0")
	if !strings.Contains(out, "MARS "+first+" (replica 1 of 3)") || !strings.Contains(out, "3 nodes") {
		t.Fatalf("node status before the kill:\n%s", out)
	}
	if code, _ := lc.get("node-0", "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("node admin /debug/pprof/: HTTP %d, want 404 (the profiler is off unless asked)", code)
	}

	lc.kill("mars-0")
	for _, n := range nodes {
		lc.eventually(n+" served by another replica, mars-0 failed", func() bool {
			st := lc.nodeStatus(n)
			return st.Mars.InTouch && st.Mars.InUse != first && len(st.Mars.Replicas) == 3 && st.Mars.Replicas[0].State == "failed"
		})
	}
	out = lc.status("node-1")
	if regexp.MustCompile(`MARS `+regexp.QuoteMeta(first)+` \(`).MatchString(out) ||
		!regexp.MustCompile(regexp.QuoteMeta(first)+` +failed`).MatchString(out) || !strings.Contains(out, "3 nodes") {
		t.Errorf("node status after mars-0 died: want another replica in use and mars-0 failed:\n%s", out)
	}
	// The dashboard of a live replica names, for the nodes it serves, the
	// replica in use and the failed one.
	inUse := lc.nodeStatus("node-0").Mars.InUse
	serving := fmt.Sprintf("mars-%d", indexOf(lc.marsIPs, strings.TrimSuffix(inUse, ":6789")))
	lc.eventually("the dashboard of "+serving+" names the replica in use", func() bool {
		for _, n := range lc.nodesAt(serving) {
			if n.Addr == lc.pods["node-0"].ip+":8000" && n.Stats != nil && n.Stats.Mars == inUse &&
				len(n.Stats.Replicas) == 3 && n.Stats.Replicas[0].State == "failed" {
				return true
			}
		}
		return false
	})

	lc.kill("etcd-2")
	joiner := lc.start("node-3", &nodeDep.Spec.Template)
	lc.waitReady(joiner.name)
	lc.eventually("both live replicas list a node that joined with an etcd member down", func() bool {
		return lc.onlineAt("mars-1") == 4 && lc.onlineAt("mars-2") == 4
	})
	if out := lc.status("node-3"); !strings.Contains(out, "4 nodes") || !regexp.MustCompile(regexp.QuoteMeta(first)+` +failed`).MatchString(out) {
		t.Errorf("node status with mars-0 and etcd-2 dead:\n%s", out)
	}
}

func newLoopbackCluster(t *testing.T, etcdBin string) *loopbackCluster {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	for out, pkg := range map[string]string{"mars-server": "./cmd/mars-server", "marsmesh-node": "./cmd/node"} {
		build := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		build.Dir = ".."
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	var key [config.KeySize]byte
	for i := range key {
		key[i] = byte(rand.IntN(256))
	}
	keyFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keyFile, []byte(config.EncodeKey(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A /24 of loopback of its own, so that the manifests' fixed ports
	// (2379, 6789, 8000, 9090) are free.
	lc := &loopbackCluster{t: t, dir: dir, keyFile: keyFile, pods: map[string]*pod{},
		net: fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(256)),
		bin: map[string]string{"mars-server": filepath.Join(bin, "mars-server"), "marsmesh-node": filepath.Join(bin, "marsmesh-node"), "etcd": etcdBin}}
	if l, err := net.Listen("tcp", lc.net+"1:0"); err != nil {
		t.Skipf("cannot bind %s1 (%v): this test needs the whole 127.0.0.0/8 on loopback", lc.net, err)
	} else {
		l.Close()
	}
	return lc
}

// resolve maps what Kubernetes would resolve in s, for a pod at ip.
func (lc *loopbackCluster) resolve(s, ip string) string {
	s = regexp.MustCompile(`etcd-(\d+)\.etcd\b`).ReplaceAllStringFunc(s, func(h string) string {
		var i int
		fmt.Sscanf(h, "etcd-%d.etcd", &i)
		return lc.net + fmt.Sprint(11+i)
	})
	s = strings.ReplaceAll(s, "0.0.0.0", ip)
	return strings.ReplaceAll(s, "127.0.0.1", ip)
}

// start runs one pod of tmpl as a process: the container's command, its
// args with $(VAR) expanded, and its env, mapped as described above.
func (lc *loopbackCluster) start(name string, tmpl *corev1.PodTemplateSpec) *pod {
	t := lc.t
	ip := lc.ipFor(name)
	c := &tmpl.Spec.Containers[0]
	p := &pod{name: name, ip: ip, c: c, out: &syncbuf.Buffer{}}
	vars := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			v = name
		case e.ValueFrom != nil:
			t.Fatalf("%s: env %s: a source this test does not map", name, e.Name)
		case e.Name == "DIARKIS_MESH_KEY_FILE":
			v = lc.keyFile
		case v == "mars": // the headless Service: every MARS pod
			v = strings.Join(lc.marsIPs, ",")
		}
		v = lc.resolve(v, ip)
		vars[e.Name] = v
		p.env = append(p.env, e.Name+"="+v)
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		a = regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllStringFunc(a, func(ref string) string { return vars[ref[2:len(ref)-1]] })
		for _, m := range c.VolumeMounts {
			a = strings.ReplaceAll(a, m.MountPath, filepath.Join(lc.dir, name, m.Name))
		}
		args[i] = lc.resolve(a, ip)
	}
	p.cmd = lc.command(p, c.Command, args)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	lc.pods[name] = p
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("%s (%s) %v output:\n%s", name, ip, p.cmd.Args, p.out.String())
		}
	})
	return p
}

// ipFor gives each pod its address: etcd-N .11+N, mars-N .21+N, nodes
// .31 on.
func (lc *loopbackCluster) ipFor(name string) string {
	var i int
	switch {
	case strings.HasPrefix(name, "etcd-"):
		fmt.Sscanf(name, "etcd-%d", &i)
		return lc.net + fmt.Sprint(11+i)
	case strings.HasPrefix(name, "mars-"):
		fmt.Sscanf(name, "mars-%d", &i)
		return lc.marsIPs[i]
	}
	n := 31
	for _, p := range lc.pods {
		if !strings.HasPrefix(p.name, "etcd-") && !strings.HasPrefix(p.name, "mars-") {
			n++
		}
	}
	return lc.net + fmt.Sprint(n)
}

// command builds a process of pod p running the container command cmd.
func (lc *loopbackCluster) command(p *pod, cmd, args []string) *exec.Cmd {
	bin, ok := lc.bin[cmd[0]]
	if !ok {
		lc.t.Fatalf("%s: command %v: no local binary", p.name, cmd)
	}
	x := exec.Command(bin, append(cmd[1:len(cmd):len(cmd)], args...)...)
	x.Env = append(cleanEnv(), p.env...)
	x.Stdout, x.Stderr = p.out, p.out
	return x
}

// cleanEnv is this process's environment without DIARKIS_* and ETCD_*.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DIARKIS_") && !strings.HasPrefix(kv, "ETCD_") {
			out = append(out, kv)
		}
	}
	return out
}

// waitReady polls the pod's own readiness probe until it passes.
func (lc *loopbackCluster) waitReady(name string) {
	p := lc.pods[name]
	probe := p.c.ReadinessProbe
	lc.eventually(name+" ready (its readiness probe)", func() bool {
		switch {
		case probe.HTTPGet != nil:
			code, _ := lc.get(name, probe.HTTPGet.Path)
			return code == http.StatusOK
		case probe.Exec != nil:
			x := lc.command(p, []string{probe.Exec.Command[0]}, lc.mapArgs(p, probe.Exec.Command[1:]))
			x.Stdout, x.Stderr = nil, nil
			return x.Run() == nil
		}
		lc.t.Fatalf("%s: a readiness probe this test does not run", name)
		return false
	})
}

func (lc *loopbackCluster) mapArgs(p *pod, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = lc.resolve(a, p.ip)
	}
	return out
}

// port returns the container port named name (or given as a number).
func port(c *corev1.Container, name string) string {
	for _, p := range c.Ports {
		if p.Name == name {
			return fmt.Sprint(p.ContainerPort)
		}
	}
	return name
}

// get fetches path from the pod's admin (or, for etcd, metrics) port.
func (lc *loopbackCluster) get(name, path string) (int, []byte) {
	p := lc.pods[name]
	pt := port(p.c, "admin")
	if p.c.ReadinessProbe.HTTPGet != nil && !strings.HasPrefix(name, "mars-") {
		pt = port(p.c, p.c.ReadinessProbe.HTTPGet.Port.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+net.JoinHostPort(p.ip, pt)+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, []byte(b.String())
}

type nodeStatus struct {
	Mars struct {
		InUse    string `json:"inUse"`
		InTouch  bool   `json:"inTouch"`
		Replicas []struct {
			Addr  string `json:"addr"`
			State string `json:"state"`
		} `json:"replicas"`
	} `json:"mars"`
}

func (lc *loopbackCluster) nodeStatus(name string) nodeStatus {
	var st nodeStatus
	if code, b := lc.get(name, "/v1/status"); code == http.StatusOK {
		json.Unmarshal(b, &st)
	}
	return st
}

type listedNode struct {
	Addr   string `json:"addr"`
	Status string `json:"status"`
	Stats  *struct {
		Mars     string `json:"mars"`
		Replicas []struct {
			Addr  string `json:"addr"`
			State string `json:"state"`
		} `json:"replicas"`
	} `json:"stats"`
}

// nodesAt is what a MARS replica's /v1/nodes (the dashboard's source)
// lists in the default app.
func (lc *loopbackCluster) nodesAt(mars string) []listedNode {
	var out struct {
		Apps []struct {
			App   string       `json:"app"`
			Nodes []listedNode `json:"nodes"`
		} `json:"apps"`
	}
	if code, b := lc.get(mars, "/v1/nodes"); code != http.StatusOK || json.Unmarshal(b, &out) != nil {
		return nil
	}
	for _, a := range out.Apps {
		if a.App == "" {
			return a.Nodes
		}
	}
	return nil
}

func (lc *loopbackCluster) onlineAt(mars string) int {
	n := 0
	for _, x := range lc.nodesAt(mars) {
		if x.Status == "online" {
			n++
		}
	}
	return n
}

// status runs `marsmesh-node status` in a node's pod, as kubectl exec
// would: the container's env, the pod's address.
func (lc *loopbackCluster) status(node string) string {
	p := lc.pods[node]
	x := lc.command(p, []string{"marsmesh-node"}, []string{"status", "-timeout", "20s"})
	var out syncbuf.Buffer
	x.Stdout, x.Stderr = &out, &out
	if err := x.Run(); err != nil {
		lc.t.Errorf("marsmesh-node status in %s: %v\n%s", node, err, out.String())
	}
	return out.String()
}

// kill ends a pod as a crash would (SIGKILL).
func (lc *loopbackCluster) kill(name string) {
	p := lc.pods[name]
	p.cmd.Process.Kill()
	p.cmd.Wait()
	lc.t.Logf("killed %s (%s)", name, p.ip)
}

// eventually polls cond every 50 ms for up to a minute (a loaded 2-core
// machine runs 9 processes here).
func (lc *loopbackCluster) eventually(what string, cond func() bool) {
	lc.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			lc.t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func indexOf(l []string, s string) int {
	for i, x := range l {
		if x == s {
			return i
		}
	}
	return -1
}
