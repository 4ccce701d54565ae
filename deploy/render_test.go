package deploy

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// variants are the directories `kubectl apply -k` takes.
var variants = []string{"single", "etcd"}

// kit is one variant rendered by kustomize and decoded strictly.
type kit struct {
	services     map[string]*corev1.Service
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	policies     map[string]*networkingv1.NetworkPolicy
	budgets      map[string]*policyv1.PodDisruptionBudget
}

// render runs kustomize on kubernetes/<variant> as `kubectl apply -k`
// would, and decodes every object into its API type, refusing unknown
// fields.
func render(t *testing.T, variant string) *kit {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join("kubernetes", variant))
	if err != nil {
		t.Fatalf("kustomize %s: %v", variant, err)
	}
	k := &kit{services: map[string]*corev1.Service{}, deployments: map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{}, policies: map[string]*networkingv1.NetworkPolicy{},
		budgets: map[string]*policyv1.PodDisruptionBudget{}}
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		id := variant + ": " + r.GetKind() + "/" + r.GetName()
		var into any
		switch r.GetKind() {
		case "Service":
			into = put(k.services, r.GetName(), &corev1.Service{})
		case "Deployment":
			into = put(k.deployments, r.GetName(), &appsv1.Deployment{})
		case "StatefulSet":
			into = put(k.statefulSets, r.GetName(), &appsv1.StatefulSet{})
		case "NetworkPolicy":
			into = put(k.policies, r.GetName(), &networkingv1.NetworkPolicy{})
		case "PodDisruptionBudget":
			into = put(k.budgets, r.GetName(), &policyv1.PodDisruptionBudget{})
		default:
			t.Fatalf("%s: a kind this test does not know", id)
		}
		if err := yaml.UnmarshalStrict(b, into); err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", id, err, b)
		}
		for _, p := range validation.IsDNS1123Subdomain(r.GetName()) {
			t.Errorf("%s: name: %s", id, p)
		}
		for key, v := range r.GetLabels() {
			for _, p := range append(validation.IsQualifiedName(key), validation.IsValidLabelValue(v)...) {
				t.Errorf("%s: label %s=%s: %s", id, key, v, p)
			}
		}
	}
	return k
}

func put[T any](m map[string]*T, name string, v *T) *T {
	m[name] = v
	return v
}

// workloads returns every pod template of the kit, by workload name.
func (k *kit) workloads() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for n, d := range k.deployments {
		out["Deployment/"+n] = &d.Spec.Template
	}
	for n, s := range k.statefulSets {
		out["StatefulSet/"+n] = &s.Spec.Template
	}
	return out
}

// checkPod checks what every workload shares: the container's ports,
// probes and environment are well formed, probes name ports that exist,
// and the container is hardened.
func checkPod(t *testing.T, id string, pod *corev1.PodTemplateSpec) {
	t.Helper()
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", id, len(pod.Spec.Containers))
	}
	c := &pod.Spec.Containers[0]
	ports := map[string]bool{}
	for _, p := range c.Ports {
		for _, e := range validation.IsValidPortName(p.Name) {
			t.Errorf("%s: port name %q: %s", id, p.Name, e)
		}
		ports[p.Name] = true
	}
	for _, e := range c.Env {
		for _, p := range validation.IsEnvVarName(e.Name) {
			t.Errorf("%s: env %s: %s", id, e.Name, p)
		}
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil {
			continue
		}
		var port string
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port.String()
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port.String()
		case p.Exec != nil && strings.Contains(strings.Join(p.Exec.Command, " "), "$("):
			t.Errorf("%s: %s probe %v: Kubernetes does not expand $(VAR) in probe commands", id, name, p.Exec.Command)
		}
		if port != "" && !ports[port] {
			t.Errorf("%s: %s probe on port %q, which the container does not declare", id, name, port)
		}
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Errorf("%s: want liveness and readiness probes", id)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: container not hardened: %+v", id, sc)
	}
	if c.Resources.Requests == nil {
		t.Errorf("%s: no resource requests", id)
	}
	if c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("%s: imagePullPolicy %q, want IfNotPresent (a :latest image is pulled Always otherwise, and a locally built one fails)", id, c.ImagePullPolicy)
	}
}

func env(c *corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		out[e.Name] = e.Value
	}
	return out
}

func describe(v any) string { return fmt.Sprintf("%+v", v) }
