// Package deploy holds the deployment kit's tests: the Kubernetes
// manifests (kubernetes/, two kustomize variants over a shared base) are
// rendered with kustomize and decoded strictly into the Kubernetes API
// types, and the etcd variant's processes are run on loopback with the
// manifests' own flags and environment. The Dockerfile (at the module
// root) and the systemd units are checked for what the README promises.
// This is a module of its own, so that the library's go.mod does not carry
// the Kubernetes modules.
package deploy
