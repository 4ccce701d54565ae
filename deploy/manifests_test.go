package deploy

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/marsmesh/marsmesh/config"
)

// TestVariants renders both variants and checks what they share: the
// Service nodes find MARS through, the nodes, MARS, the cluster key, and
// the network policies.
func TestVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			k := render(t, v)
			for id, pod := range k.workloads() {
				checkPod(t, v+": "+id, pod)
				checkKeyVolume(t, v+": "+id, pod)
				checkConfig(t, v+": "+id, &pod.Spec.Containers[0])
			}
			checkSelectors(t, k)
			checkMarsService(t, k)
			checkNodes(t, k)
			checkMars(t, k)
			checkPolicies(t, k)
		})
	}
}

func TestSingleVariant(t *testing.T) {
	k := render(t, "single")
	ss := k.statefulSets["mars"]
	if ss == nil || *ss.Spec.Replicas != 1 || ss.Spec.ServiceName != "mars" {
		t.Fatalf("want a one-replica StatefulSet mars behind the Service mars: %s", describe(ss))
	}
	c := &ss.Spec.Template.Spec.Containers[0]
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "-data /data") {
		t.Errorf("mars-server args %q lack -data /data", args)
	}
	if len(ss.Spec.VolumeClaimTemplates) != 1 || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == ss.Spec.VolumeClaimTemplates[0].Name && m.MountPath == "/data"
	}) {
		t.Error("the data volume claim is not mounted at /data")
	}
	if len(k.deployments) != 1 {
		t.Errorf("deployments %v, want the nodes only", keys(k.deployments))
	}
}

func TestEtcdVariant(t *testing.T) {
	k := render(t, "etcd")
	d := k.deployments["mars"]
	if d == nil || *d.Spec.Replicas != 3 {
		t.Fatalf("want a Deployment mars of 3 replicas: %s", describe(d))
	}
	e := env(&d.Spec.Template.Spec.Containers[0])
	etcd := k.statefulSets["etcd"]
	if etcd == nil || etcd.Spec.ServiceName != "etcd" || k.services["etcd"] == nil || k.services["etcd"].Spec.ClusterIP != "None" {
		t.Fatalf("want a StatefulSet etcd behind a headless Service etcd: %s", describe(etcd))
	}
	if etcd.Spec.PodManagementPolicy != "Parallel" {
		t.Error("etcd members must start in parallel: the first cannot become ready without the others")
	}
	members := int(*etcd.Spec.Replicas)
	var endpoints, peers []string
	for i := range members {
		endpoints = append(endpoints, fmt.Sprintf("http://etcd-%d.etcd:2379", i))
		peers = append(peers, fmt.Sprintf("etcd-%d=http://etcd-%d.etcd:2380", i, i))
	}
	if e["DIARKIS_MARS_STORE"] != "etcd" || e["DIARKIS_MARS_ETCD_ENDPOINTS"] != strings.Join(endpoints, ",") {
		t.Errorf("MARS env %v: want the etcd store and every member's client URL %v", e, endpoints)
	}
	args := etcd.Spec.Template.Spec.Containers[0].Args
	if !slices.Contains(args, "--initial-cluster="+strings.Join(peers, ",")) || !slices.Contains(args, "--name=$(POD_NAME)") {
		t.Errorf("etcd args %v: want --name=$(POD_NAME) and --initial-cluster=%s", args, strings.Join(peers, ","))
	}
	for _, name := range []string{"mars", "etcd"} {
		if k.budgets[name] == nil {
			t.Errorf("no PodDisruptionBudget %s", name)
		}
	}
	if p := k.policies["etcd"]; p == nil || !allows(p, 2379, "TCP", podsNamed("mars")) || allows(p, 2379, "TCP", podsNamed("marsmesh-node")) {
		t.Errorf("the etcd policy must let MARS, and only MARS and members, reach the client port: %s", describe(p))
	}
}

// checkSelectors: every workload's selector matches its pod labels, and
// the Services select pods that exist.
func checkSelectors(t *testing.T, k *kit) {
	t.Helper()
	labels := map[string]map[string]string{}
	for n, d := range k.deployments {
		labels[n] = d.Spec.Template.Labels
		for key, v := range d.Spec.Selector.MatchLabels {
			if d.Spec.Template.Labels[key] != v {
				t.Errorf("Deployment %s: selector %s=%s does not match its pods", n, key, v)
			}
		}
	}
	for n, s := range k.statefulSets {
		labels[n] = s.Spec.Template.Labels
		for key, v := range s.Spec.Selector.MatchLabels {
			if s.Spec.Template.Labels[key] != v {
				t.Errorf("StatefulSet %s: selector %s=%s does not match its pods", n, key, v)
			}
		}
	}
	for n, svc := range k.services {
		if !slices.ContainsFunc(slices.Collect(maps.Values(labels)), func(l map[string]string) bool { return matches(svc.Spec.Selector, l) }) {
			t.Errorf("Service %s selects no pods: %v", n, svc.Spec.Selector)
		}
	}
}

func checkMarsService(t *testing.T, k *kit) {
	t.Helper()
	svc := k.services["mars"]
	if svc == nil || svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Fatalf("want a headless Service mars listing pods before they are ready: %s", describe(svc))
	}
	ports := map[string]string{}
	for _, p := range svc.Spec.Ports {
		ports[string(p.Protocol)] = p.Name + ":" + strconv.Itoa(int(p.Port))
	}
	if ports["UDP"] != "mars:6789" || ports["TCP"] != "admin:9090" {
		t.Errorf("Service mars ports %v, want UDP mars:6789 and TCP admin:9090", ports)
	}
}

func checkNodes(t *testing.T, k *kit) {
	t.Helper()
	d := k.deployments["marsmesh-node"]
	if d == nil {
		t.Fatal("no Deployment marsmesh-node")
	}
	c := &d.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	if !slices.Equal(c.Command, []string{"marsmesh-node"}) || !strings.HasPrefix(args, "run ") || !strings.Contains(args, "-admin 0.0.0.0:9090") || strings.Contains(args, "-pprof") {
		t.Errorf("nodes run %v %q; want marsmesh-node run ... -admin 0.0.0.0:9090, without -pprof", c.Command, args)
	}
	e := env(c)
	if e["DIARKIS_MARS_ADDR"] != "mars" || e["DIARKIS_MARS_PORT"] != "6789" || e["DIARKIS_PORT"] != "8000" || e["DIARKIS_ADDRESS"] != "0.0.0.0" {
		t.Errorf("node env %v", e)
	}
	if ttl, err := strconv.Atoi(e["DIARKIS_MARS_ADDRESS_CACHE_TTL"]); err != nil || ttl > 10 {
		t.Errorf("DIARKIS_MARS_ADDRESS_CACHE_TTL %q: want at most 10 s, so a moved MARS pod is found quickly", e["DIARKIS_MARS_ADDRESS_CACHE_TTL"])
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.Exec == nil {
			t.Errorf("%s probe: want marsmesh-node healthcheck, got %s", name, describe(p))
			continue
		}
		cmd := p.Exec.Command
		if len(cmd) < 4 || cmd[0] != "marsmesh-node" || cmd[1] != "healthcheck" || !slices.Contains(cmd, "127.0.0.1:8000") {
			t.Errorf("%s probe %v, want marsmesh-node healthcheck -addr 127.0.0.1:8000", name, cmd)
		}
		if ready := slices.Contains(cmd, "-ready"); ready != (name == "readiness") {
			t.Errorf("%s probe %v: -ready (serving: synced once and not draining) belongs to readiness only", name, cmd)
		}
		if p.TimeoutSeconds < 2 {
			t.Errorf("%s probe: timeoutSeconds %d is shorter than the healthcheck's own -timeout", name, p.TimeoutSeconds)
		}
	}
}

func checkMars(t *testing.T, k *kit) {
	t.Helper()
	var pod *corev1.PodTemplateSpec
	if d := k.deployments["mars"]; d != nil {
		pod = &d.Spec.Template
	} else if s := k.statefulSets["mars"]; s != nil {
		pod = &s.Spec.Template
	} else {
		t.Fatal("no MARS workload")
	}
	c := &pod.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	if !slices.Equal(c.Command, []string{"mars-server"}) || !strings.Contains(args, "-admin 0.0.0.0:9090") || strings.Contains(args, "-pprof") {
		t.Errorf("MARS runs %v %q; want mars-server ... -admin 0.0.0.0:9090, without -pprof", c.Command, args)
	}
	if e := env(c); e["DIARKIS_MARS_ADDR"] != "0.0.0.0" || e["DIARKIS_MARS_PORT"] != "6789" {
		t.Errorf("MARS env %v", e)
	}
	if c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("MARS probes: liveness %s readiness %s", describe(c.LivenessProbe), describe(c.ReadinessProbe))
	}
}

// checkKeyVolume: DIARKIS_MESH_KEY_FILE (marsmesh pods) is in a read-only
// mount of the Secret marsmesh-key, readable through fsGroup.
func checkKeyVolume(t *testing.T, id string, pod *corev1.PodTemplateSpec) {
	t.Helper()
	c := &pod.Spec.Containers[0]
	file, ok := env(c)["DIARKIS_MESH_KEY_FILE"]
	if !ok {
		if pod.Labels["app.kubernetes.io/name"] != "etcd" {
			t.Errorf("%s: no DIARKIS_MESH_KEY_FILE: the cluster runs without a key", id)
		}
		return
	}
	var vol string
	for _, m := range c.VolumeMounts {
		if strings.HasPrefix(file, m.MountPath+"/") && m.ReadOnly {
			vol = m.Name
		}
	}
	i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vol })
	if vol == "" || i < 0 || pod.Spec.Volumes[i].Secret == nil || pod.Spec.Volumes[i].Secret.SecretName != "marsmesh-key" {
		t.Errorf("%s: DIARKIS_MESH_KEY_FILE %q is not in a read-only mount of the Secret marsmesh-key", id, file)
	}
	if pod.Spec.SecurityContext == nil || pod.Spec.SecurityContext.FSGroup == nil {
		t.Errorf("%s: no fsGroup: the non-root user cannot read the key", id)
	}
}

// checkConfig: a marsmesh container's DIARKIS_* environment is a valid
// configuration (each name known, each value in range), as config.Load
// reads it, with the key file replaced by a local one.
func checkConfig(t *testing.T, id string, c *corev1.Container) {
	t.Helper()
	e := env(c)
	if _, ok := e["DIARKIS_MESH_KEY_FILE"]; !ok {
		return // etcd
	}
	var environ []string
	for name, v := range e {
		environ = append(environ, name+"="+v)
	}
	if w := config.UnknownEnv(environ); len(w) > 0 {
		t.Errorf("%s: %v", id, w)
	}
	key := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(key, []byte(config.EncodeKey([config.KeySize]byte{1, 2, 3})+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, "DIARKIS_") {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	for name, v := range e {
		if name == "DIARKIS_MESH_KEY_FILE" {
			v = key
		}
		t.Setenv(name, v)
	}
	if _, err := config.Load(""); err != nil {
		t.Errorf("%s: the environment is not a valid configuration: %v", id, err)
	}
	for name := range e {
		os.Unsetenv(name)
	}
}

// checkPolicies: every marsmesh pod is selected by a policy that lets the
// monitoring namespace, and only it, reach the admin port, and marsmesh
// pods reach the mesh ports.
func checkPolicies(t *testing.T, k *kit) {
	t.Helper()
	for id, pod := range k.workloads() {
		name := pod.Labels["app.kubernetes.io/name"]
		if name == "etcd" {
			continue
		}
		var selected []*networkingv1.NetworkPolicy
		for _, p := range k.policies {
			if matches(p.Spec.PodSelector.MatchLabels, pod.Labels) {
				selected = append(selected, p)
			}
		}
		if len(selected) != 1 {
			t.Errorf("%s: %d network policies select its pods, want 1", id, len(selected))
			continue
		}
		p := selected[0]
		mesh := 8000
		if name == "mars" {
			mesh = 6789
		}
		if !allows(p, 9090, "TCP", monitoring) || allows(p, 9090, "TCP", podsNamed("marsmesh-node")) {
			t.Errorf("%s: the admin port must be open to the monitoring namespace only: %s", id, describe(p.Spec.Ingress))
		}
		if !allows(p, mesh, "UDP", podsNamed("marsmesh-node")) || allows(p, mesh, "UDP", monitoring) {
			t.Errorf("%s: the mesh port %d must be open to marsmesh pods only: %s", id, mesh, describe(p.Spec.Ingress))
		}
	}
}

// peer is a source of traffic: pod labels and its namespace's labels.
type peer struct{ pod, ns map[string]string }

var monitoring = peer{pod: map[string]string{"app.kubernetes.io/name": "prometheus"},
	ns: map[string]string{"kubernetes.io/metadata.name": "monitoring"}}

// podsNamed is a marsmesh pod of the policy's own namespace.
func podsNamed(name string) peer {
	return peer{pod: map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "marsmesh"}}
}

// allows reports whether p lets from reach port/protocol (match labels
// only, as these manifests use).
func allows(p *networkingv1.NetworkPolicy, port int, protocol string, from peer) bool {
	for _, rule := range p.Spec.Ingress {
		portOK := len(rule.Ports) == 0
		for _, rp := range rule.Ports {
			if rp.Port != nil && rp.Port.IntValue() == port && rp.Protocol != nil && string(*rp.Protocol) == protocol {
				portOK = true
			}
		}
		if !portOK {
			continue
		}
		for _, f := range rule.From {
			switch {
			case f.NamespaceSelector != nil && from.ns != nil && matches(f.NamespaceSelector.MatchLabels, from.ns) &&
				(f.PodSelector == nil || matches(f.PodSelector.MatchLabels, from.pod)):
				return true
			case f.NamespaceSelector == nil && f.PodSelector != nil && from.ns == nil && matches(f.PodSelector.MatchLabels, from.pod):
				return true
			}
		}
	}
	return false
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func keys[T any](m map[string]T) []string { return slices.Sorted(maps.Keys(m)) }
