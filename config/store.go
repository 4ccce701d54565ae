package config

import (
	"net/url"
	"strings"
)

// Values of MarsStore.
const (
	StoreMemory = "memory" // the registry's state in the mars-server process
	StoreEtcd   = "etcd"   // the state in etcd; several mars-server replicas
)

// MarsEtcdEndpointList returns the entries of MarsEtcdEndpoints, trimmed,
// without empty ones.
func (m Mesh) MarsEtcdEndpointList() []string {
	var out []string
	for _, e := range strings.Split(m.MarsEtcdEndpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// validateStore checks marsStore and marsEtcdEndpoints.
func (m Mesh) validateStore(bad func(key, value, problem string)) {
	switch m.MarsStore {
	case StoreMemory, StoreEtcd:
	default:
		bad(keyMarsStore, quote(m.MarsStore), `not "memory" or "etcd"`)
	}
	eps := m.MarsEtcdEndpointList()
	if m.MarsStore == StoreEtcd && len(eps) == 0 {
		bad(keyMarsEtcdEndpoints, quote(m.MarsEtcdEndpoints), `empty while marsStore is "etcd"`)
	}
	for _, e := range eps {
		if problem := checkEndpoint(e); problem != "" {
			bad(keyMarsEtcdEndpoints, quote(m.MarsEtcdEndpoints), "entry "+quote(e)+": "+problem)
			return
		}
	}
}

func checkEndpoint(e string) string {
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "not an http:// or https:// URL"
	case u.Host == "" || u.Hostname() == "":
		return "no host"
	case u.Path != "" && u.Path != "/", u.RawQuery != "":
		return "a path or query (give scheme://host:port only)"
	}
	if p := u.Port(); p != "" {
		if _, problem := parsePort(p, 1); problem != "" {
			return "port " + problem
		}
	}
	return ""
}
