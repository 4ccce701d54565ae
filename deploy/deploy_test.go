// Package deploy holds the deployment kit (Dockerfile at the module root,
// Kubernetes manifests, systemd units); its test checks the promises the
// README makes about them. Nothing here is run against a real cluster or
// container runtime.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// object is one Kubernetes manifest, decoded loosely.
type object map[string]any

func (o object) path(keys ...any) any {
	var cur any = map[string]any(o)
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			cur = l[k]
		}
	}
	return cur
}

func (o object) str(keys ...any) string { s, _ := o.path(keys...).(string); return s }

func load(t *testing.T, file string) map[string]object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("kubernetes", file))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	out := map[string]object{}
	for {
		var m map[string]any // nested maps then decode as map[string]any too
		err := dec.Decode(&m)
		o := object(m)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if o == nil {
			continue
		}
		for _, k := range []string{"apiVersion", "kind"} {
			if o.str(k) == "" {
				t.Fatalf("%s: a document without %s", file, k)
			}
		}
		if o.str("metadata", "name") == "" {
			t.Fatalf("%s: a %s without metadata.name", file, o.str("kind"))
		}
		out[o.str("kind")+"/"+o.str("metadata", "name")] = o
	}
	return out
}

func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func env(c object) map[string]string {
	out := map[string]string{}
	l, _ := c["env"].([]any)
	for _, e := range l {
		m, _ := e.(map[string]any)
		name, _ := m["name"].(string)
		val, _ := m["value"].(string)
		out[name] = val
	}
	return out
}

// checkPodSpec checks what both workloads share: selector matches the
// template labels, the image, the command, and a hardened container.
func checkPodSpec(t *testing.T, o object, binary string) object {
	t.Helper()
	kind := o.str("kind")
	sel, _ := o.path("spec", "selector", "matchLabels").(map[string]any)
	labels, _ := o.path("spec", "template", "metadata", "labels").(map[string]any)
	if len(sel) == 0 {
		t.Errorf("%s: no selector", kind)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%v does not match the template labels %v", kind, k, v, labels)
		}
	}
	c := object(o.path("spec", "template", "spec", "containers", 0).(map[string]any))
	if c.str("image") == "" {
		t.Errorf("%s: no image", kind)
	}
	if cmd := strs(c["command"]); len(cmd) != 1 || cmd[0] != binary {
		t.Errorf("%s: command %v, want [%s]", kind, cmd, binary)
	}
	if c.path("securityContext", "allowPrivilegeEscalation") != false || c.path("securityContext", "readOnlyRootFilesystem") != true {
		t.Errorf("%s: container not hardened: %v", kind, c["securityContext"])
	}
	if c.path("resources", "requests") == nil {
		t.Errorf("%s: no resource requests", kind)
	}
	return c
}

// checkKey checks that a workload's container reads the cluster key from
// the Secret marsmesh-key, mounted read-only.
func checkKey(t *testing.T, o object, c object) {
	t.Helper()
	kind := o.str("kind")
	file := env(c)["DIARKIS_MESH_KEY_FILE"]
	var vol string
	for i := 0; c.path("volumeMounts", i) != nil; i++ {
		dir := c.str("volumeMounts", i, "mountPath")
		if file != "" && strings.HasPrefix(file, dir+"/") && c.path("volumeMounts", i, "readOnly") == true {
			vol = c.str("volumeMounts", i, "name")
		}
	}
	if vol == "" {
		t.Fatalf("%s: DIARKIS_MESH_KEY_FILE %q is not in a read-only volume mount", kind, file)
	}
	for i := 0; o.path("spec", "template", "spec", "volumes", i) != nil; i++ {
		if o.str("spec", "template", "spec", "volumes", i, "name") == vol {
			if name := o.str("spec", "template", "spec", "volumes", i, "secret", "secretName"); name != "marsmesh-key" {
				t.Errorf("%s: key volume %s comes from secret %q, want marsmesh-key", kind, vol, name)
			}
			if o.path("spec", "template", "spec", "securityContext", "fsGroup") == nil {
				t.Errorf("%s: no fsGroup: the non-root user cannot read the key", kind)
			}
			return
		}
	}
	t.Errorf("%s: no volume %s", kind, vol)
}

func TestMarsManifest(t *testing.T) {
	objs := load(t, "mars.yaml")
	svc, ok := objs["Service/mars"]
	if !ok {
		t.Fatalf("no Service mars in %v", slices.Collect(mapsKeys(objs)))
	}
	if svc.str("spec", "clusterIP") != "None" {
		t.Errorf("Service mars is not headless: clusterIP %q", svc.str("spec", "clusterIP"))
	}
	ports := map[string]string{}
	for i := 0; svc.path("spec", "ports", i) != nil; i++ {
		ports[svc.str("spec", "ports", i, "protocol")] = svc.str("spec", "ports", i, "name")
		if p, _ := svc.path("spec", "ports", i, "port").(int); p != 6789 && p != 9090 {
			t.Errorf("Service mars: unexpected port %d", p)
		}
	}
	if ports["UDP"] != "mars" || ports["TCP"] != "admin" {
		t.Errorf("Service mars ports %v, want UDP mars (6789) and TCP admin (9090)", ports)
	}
	ss, ok := objs["StatefulSet/mars"]
	if !ok {
		t.Fatal("no StatefulSet mars")
	}
	if ss.str("spec", "serviceName") != "mars" || ss.path("spec", "replicas") != 1 {
		t.Errorf("StatefulSet mars: serviceName %q replicas %v", ss.str("spec", "serviceName"), ss.path("spec", "replicas"))
	}
	c := checkPodSpec(t, ss, "mars-server")
	args := strings.Join(strs(c["args"]), " ")
	for _, want := range []string{"-data /data", "-admin 0.0.0.0:9090", "-log-format json"} {
		if !strings.Contains(args, want) {
			t.Errorf("mars-server args %q lack %q", args, want)
		}
	}
	if e := env(c); e["DIARKIS_MARS_ADDR"] != "0.0.0.0" || e["DIARKIS_MARS_PORT"] != "6789" {
		t.Errorf("mars-server env %v", e)
	}
	checkKey(t, ss, c)
	if c.str("livenessProbe", "httpGet", "path") != "/healthz" || c.str("readinessProbe", "httpGet", "path") != "/readyz" {
		t.Errorf("mars-server probes: liveness %v readiness %v", c["livenessProbe"], c["readinessProbe"])
	}
	if ss.str("spec", "volumeClaimTemplates", 0, "metadata", "name") != c.str("volumeMounts", 0, "name") ||
		c.str("volumeMounts", 0, "mountPath") != "/data" {
		t.Error("the data volume claim is not mounted at /data")
	}
}

func TestNodeManifest(t *testing.T) {
	objs := load(t, "node.yaml")
	d, ok := objs["Deployment/marsmesh-node"]
	if !ok {
		t.Fatal("no Deployment marsmesh-node")
	}
	c := checkPodSpec(t, d, "marsmesh-node")
	args := strs(c["args"])
	if len(args) == 0 || args[0] != "run" || !strings.Contains(strings.Join(args, " "), "-admin 0.0.0.0:9090") {
		t.Errorf("marsmesh-node args %v, want run ... -admin 0.0.0.0:9090", args)
	}
	e := env(c)
	if e["DIARKIS_MARS_ADDR"] != "mars" || e["DIARKIS_MARS_PORT"] != "6789" || e["DIARKIS_PORT"] != "8000" || e["DIARKIS_ADDRESS"] != "0.0.0.0" {
		t.Errorf("marsmesh-node env %v", e)
	}
	checkKey(t, d, c)
	for _, probe := range []string{"startupProbe", "livenessProbe"} {
		cmd := strs(c.path(probe, "exec", "command"))
		if len(cmd) < 4 || cmd[0] != "marsmesh-node" || cmd[1] != "healthcheck" || !slices.Contains(cmd, "127.0.0.1:8000") {
			t.Errorf("%s: %v, want marsmesh-node healthcheck -addr 127.0.0.1:8000", probe, cmd)
		}
		if strings.Contains(strings.Join(cmd, " "), "$(") {
			t.Errorf("%s: Kubernetes does not expand $(VAR) in probe commands: %v", probe, cmd)
		}
	}
	if c.str("readinessProbe", "httpGet", "path") != "/readyz" || c.path("readinessProbe", "httpGet", "port") != "admin" {
		t.Errorf("readinessProbe %v, want GET /readyz on the admin port", c["readinessProbe"])
	}
	names := map[string]bool{}
	for i := 0; c.path("ports", i) != nil; i++ {
		names[c.str("ports", i, "name")+"/"+c.str("ports", i, "protocol")] = true
	}
	if !names["mesh/UDP"] || !names["admin/TCP"] {
		t.Errorf("container ports %v, want mesh/UDP and admin/TCP", names)
	}
}

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

func mapsKeys(m map[string]object) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
