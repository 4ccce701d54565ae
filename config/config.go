package config

import (
	"net"
	"strings"
	"time"
)

// Mesh is the configuration of one mesh node (and of the MARS address it
// talks to). JSON keys follow the Diarkis mesh configuration; each field
// comment names its key, its environment variable, its default and what
// Validate accepts.
//
// Mesh deliberately carries no envconfig tags: read the environment with
// LoadEnv (or Load), not with envconfig.Process on a Mesh. See the package
// documentation for why.
type Mesh struct {
	// Address is the IP address or host name the node binds its UDP port
	// to. Key "address", env DIARKIS_ADDRESS, default "127.0.0.1".
	// Valid: an IP literal (IPv4 or IPv6, optionally with a zone) or a host
	// name that resolves. It may be empty only when NIC is set; when NIC is
	// set, NIC wins (see BindAddress), but a non-empty Address is still
	// checked.
	Address string `json:"address"`
	// NIC, when set, names a network interface whose first IPv4 address
	// replaces Address. Key "nic", env DIARKIS_NIC, default "" (not used).
	// Valid: empty, or the name of an interface that exists on this host.
	NIC string `json:"nic"`
	// Port is where the port scan starts ("0" = any free port). Key "port",
	// env DIARKIS_PORT, default "8000". JSON accepts a string or an integer
	// number. Valid: a decimal integer 0..65535.
	Port string `json:"port"`
	// MarsAddress locates the MARS registry server. Key "marsAddress", env
	// DIARKIS_MARS_ADDR, default "127.0.0.1". Valid: a non-empty IP literal
	// or host name, without a port (the port goes in MarsPort), or several
	// separated by commas (MARS replicas, all at MarsPort; a host name may
	// also resolve to several addresses): a node uses the first that
	// answers and moves to the next after retryTimeout of silence. It is
	// not resolved by Validate: MARS may not be resolvable yet when a node
	// starts.
	MarsAddress string `json:"marsAddress"`
	// MarsPort is the UDP port of the MARS registry server. Key "marsPort",
	// env DIARKIS_MARS_PORT, default "6789". JSON accepts a string or an
	// integer number. Valid: a decimal integer 1..65535.
	MarsPort string `json:"marsPort"`
	// MarsAddressCacheTTL is how long a resolved MARS address is reused, in
	// seconds. Key "marsAddressCacheTTL", env DIARKIS_MARS_ADDRESS_CACHE_TTL,
	// default 60. Valid: 0..86400 (0 = resolve every time, no cache).
	MarsAddressCacheTTL int `json:"marsAddressCacheTTL"`
	// MarsStore is where mars-server keeps the registry's state. Key
	// "marsStore", env DIARKIS_MARS_STORE, default "memory". Valid:
	// "memory" (this process; one MARS) or "etcd" (etcd at
	// MarsEtcdEndpoints: every mars-server over one etcd is a replica, and
	// nodes list them all in marsAddress). Nodes ignore it.
	MarsStore string `json:"marsStore"`
	// MarsEtcdEndpoints are the etcd client URLs of the "etcd" store,
	// comma-separated. Key "marsEtcdEndpoints", env
	// DIARKIS_MARS_ETCD_ENDPOINTS, default "". Valid: empty, or http:// or
	// https:// URLs with a host (e.g. "http://10.0.0.5:2379"); required
	// when marsStore is "etcd".
	MarsEtcdEndpoints string `json:"marsEtcdEndpoints"`
	// RetryInterval is the keepalive/retry interval in milliseconds. Key
	// "retryInterval", env DIARKIS_RETRY_INTERVAL, default 1000.
	// Valid: 10..60000.
	RetryInterval int `json:"retryInterval"`
	// RetryTimeout is how long a silent peer stays alive, in milliseconds.
	// Key "retryTimeout", env DIARKIS_RETRY_TIMEOUT, default 3000.
	// Valid: 100..600000 and greater than RetryInterval.
	RetryTimeout int `json:"retryTimeout"`
	// StrictCheckForExternal drops messages from senders MARS does not list.
	// Key "strictCheckForExternal", env DIARKIS_STRICT_CHECK_FOR_EXTERNAL,
	// default false.
	StrictCheckForExternal bool `json:"strictCheckForExternal"`
	// SendInterval buffers outgoing messages per peer for this many
	// milliseconds. Key "sendInterval", env DIARKIS_SEND_INTERVAL, default 0.
	// Valid: 0 (send at once, no buffering) or 17..60000; 1..8 is an error
	// (the minimum buffering interval is 17).
	SendInterval int `json:"sendInterval"`
	// AdminAddress is where mars-server and node run serve their admin HTTP
	// endpoint (metrics, probes, pprof, status). Key "adminAddress", env
	// DIARKIS_ADMIN_ADDRESS, default "" (off; the -admin flag overrides it).
	// Valid: empty, or host:port with a port 0..65535.
	AdminAddress string `json:"adminAddress"`
	// MeshKey is a cluster key: with a key, every datagram of the mesh and
	// of MARS is authenticated and encrypted, and peers without the key get
	// no answer. Key "meshKey", env DIARKIS_MESH_KEY, default "" (no key).
	// Valid: empty, or the base64 of KeySize (32) bytes, not all zero, as
	// `node keygen` prints it. DIARKIS_MESH_KEY set but empty is an error
	// (unset it to run without a key). See Keys for how it combines with
	// MeshKeyFile. Errors never repeat the key.
	MeshKey string `json:"meshKey"`
	// MeshKeyFile is the path of a file of cluster keys, one per line
	// (surrounding white space, blank lines and lines starting with '#'
	// are ignored): the process dials with each, the first first, and
	// accepts a peer holding any, so a key is rotated by editing the file
	// and restarting one process at a time. Key "meshKeyFile", env DIARKIS_MESH_KEY_FILE,
	// default "" (none; a relative path starts from the working directory,
	// not from the JSON file's). Valid: empty, or a readable file of at most 64 KiB
	// holding 1..MaxKeys keys, each valid as MeshKey. DIARKIS_MESH_KEY_FILE
	// set but empty is an error.
	MeshKeyFile string `json:"meshKeyFile"`
}

// Default returns the configuration with every default filled in. It is
// the only place defaults live.
func Default() Mesh {
	return Mesh{
		Address:             "127.0.0.1",
		Port:                "8000",
		MarsAddress:         "127.0.0.1",
		MarsPort:            "6789",
		MarsAddressCacheTTL: 60,
		MarsStore:           StoreMemory,
		RetryInterval:       1000,
		RetryTimeout:        3000,
	}
}

// MarsAddr returns the (first) MARS server address as "host:port" (IPv6
// hosts in brackets), ready for net.Dial or net.ResolveUDPAddr; a
// mars-server listens there.
func (m Mesh) MarsAddr() string {
	return m.MarsAddrs()[0]
}

// MarsAddrs returns every MARS address of MarsAddress (a comma-separated
// list) as "host:port", in order.
func (m Mesh) MarsAddrs() []string {
	hosts := marsHosts(m.MarsAddress)
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, net.JoinHostPort(h, m.MarsPort))
	}
	if len(out) == 0 {
		out = append(out, net.JoinHostPort("", m.MarsPort))
	}
	return out
}

// marsHosts splits a marsAddress value at commas, trimming spaces.
func marsHosts(v string) []string {
	var out []string
	for _, h := range strings.Split(v, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// PortNumber returns Port as an int in 0..65535 (0 = any free port), or an
// *Error if Port is not such a number.
func (m Mesh) PortNumber() (int, error) {
	n, msg := parsePort(m.Port, 0)
	if msg != "" {
		return 0, newError(keyPort, quote(m.Port), msg)
	}
	return n, nil
}

// MarsPortNumber returns MarsPort as an int in 1..65535, or an *Error if
// MarsPort is not such a number.
func (m Mesh) MarsPortNumber() (int, error) {
	n, msg := parsePort(m.MarsPort, 1)
	if msg != "" {
		return 0, newError(keyMarsPort, quote(m.MarsPort), msg)
	}
	return n, nil
}

// RetryIntervalDuration returns RetryInterval as a time.Duration.
func (m Mesh) RetryIntervalDuration() time.Duration {
	return time.Duration(m.RetryInterval) * time.Millisecond
}

// RetryTimeoutDuration returns RetryTimeout as a time.Duration.
func (m Mesh) RetryTimeoutDuration() time.Duration {
	return time.Duration(m.RetryTimeout) * time.Millisecond
}

// SendIntervalDuration returns SendInterval as a time.Duration.
func (m Mesh) SendIntervalDuration() time.Duration {
	return time.Duration(m.SendInterval) * time.Millisecond
}

// MarsAddressCacheTTLDuration returns MarsAddressCacheTTL as a time.Duration.
func (m Mesh) MarsAddressCacheTTLDuration() time.Duration {
	return time.Duration(m.MarsAddressCacheTTL) * time.Second
}

// JSON keys.
const (
	keyAddress                = "address"
	keyNIC                    = "nic"
	keyPort                   = "port"
	keyMarsAddress            = "marsAddress"
	keyMarsPort               = "marsPort"
	keyMarsAddressCacheTTL    = "marsAddressCacheTTL"
	keyMarsStore              = "marsStore"
	keyMarsEtcdEndpoints      = "marsEtcdEndpoints"
	keyRetryInterval          = "retryInterval"
	keyRetryTimeout           = "retryTimeout"
	keyStrictCheckForExternal = "strictCheckForExternal"
	keySendInterval           = "sendInterval"
	keyAdminAddress           = "adminAddress"
	keyMeshKey                = "meshKey"
	keyMeshKeyFile            = "meshKeyFile"
)

// Validation bounds (inclusive).
const (
	minMarsAddressCacheTTL = 0
	maxMarsAddressCacheTTL = 86400
	minRetryInterval       = 10
	maxRetryInterval       = 60000
	minRetryTimeout        = 100
	maxRetryTimeout        = 600000
	minSendInterval        = 17
	maxSendInterval        = 60000
)

// kind is how a key is written in JSON and in the environment.
type kind int

const (
	kindString kind = iota // JSON string
	kindPort               // JSON string or integer number, stored as a decimal string
	kindInt                // JSON integer number
	kindBool               // JSON true or false
)

// field describes one configuration key: its JSON name, its environment
// variable, how it is written, what Validate allows, and where it lives.
type field struct {
	key     string
	env     string
	kind    kind
	allowed string
	str     func(*Mesh) *string // kindString, kindPort
	num     func(*Mesh) *int    // kindInt
	flag    func(*Mesh) *bool   // kindBool
	fromEnv func(*envVars) *string
	// secret: the value never appears in an error.
	secret bool
	// noEmptyEnv: the variable set but empty is an error, not "no value"
	// (an unset shell variable must not turn the cluster key off).
	noEmptyEnv bool
}

// fields lists every key in documentation order.
var fields = []field{
	{
		key: keyAddress, env: "DIARKIS_ADDRESS", kind: kindString,
		allowed: "an IP address or a resolvable host name; empty only when nic is set",
		str:     func(m *Mesh) *string { return &m.Address },
		fromEnv: func(e *envVars) *string { return e.Address },
	},
	{
		key: keyNIC, env: "DIARKIS_NIC", kind: kindString,
		allowed: "the name of a network interface of this host, or empty",
		str:     func(m *Mesh) *string { return &m.NIC },
		fromEnv: func(e *envVars) *string { return e.NIC },
	},
	{
		key: keyPort, env: "DIARKIS_PORT", kind: kindPort,
		allowed: "an integer 0..65535; 0 = any free port",
		str:     func(m *Mesh) *string { return &m.Port },
		fromEnv: func(e *envVars) *string { return e.Port },
	},
	{
		key: keyMarsAddress, env: "DIARKIS_MARS_ADDR", kind: kindString,
		allowed: "a non-empty IP address or host name, without a port",
		str:     func(m *Mesh) *string { return &m.MarsAddress },
		fromEnv: func(e *envVars) *string { return e.MarsAddr },
	},
	{
		key: keyMarsPort, env: "DIARKIS_MARS_PORT", kind: kindPort,
		allowed: "an integer 1..65535",
		str:     func(m *Mesh) *string { return &m.MarsPort },
		fromEnv: func(e *envVars) *string { return e.MarsPort },
	},
	{
		key: keyMarsAddressCacheTTL, env: "DIARKIS_MARS_ADDRESS_CACHE_TTL", kind: kindInt,
		allowed: "an integer 0..86400 seconds; 0 = no cache",
		num:     func(m *Mesh) *int { return &m.MarsAddressCacheTTL },
		fromEnv: func(e *envVars) *string { return e.MarsAddressCacheTTL },
	},
	{
		key: keyMarsStore, env: "DIARKIS_MARS_STORE", kind: kindString,
		allowed: `"memory" or "etcd"`,
		str:     func(m *Mesh) *string { return &m.MarsStore },
		fromEnv: func(e *envVars) *string { return e.MarsStore },
	},
	{
		key: keyMarsEtcdEndpoints, env: "DIARKIS_MARS_ETCD_ENDPOINTS", kind: kindString,
		allowed: "comma-separated etcd client URLs such as http://127.0.0.1:2379; required when marsStore is etcd",
		str:     func(m *Mesh) *string { return &m.MarsEtcdEndpoints },
		fromEnv: func(e *envVars) *string { return e.MarsEtcdEndpoints },
	},
	{
		key: keyRetryInterval, env: "DIARKIS_RETRY_INTERVAL", kind: kindInt,
		allowed: "an integer 10..60000 milliseconds",
		num:     func(m *Mesh) *int { return &m.RetryInterval },
		fromEnv: func(e *envVars) *string { return e.RetryInterval },
	},
	{
		key: keyRetryTimeout, env: "DIARKIS_RETRY_TIMEOUT", kind: kindInt,
		allowed: "an integer 100..600000 milliseconds, greater than retryInterval",
		num:     func(m *Mesh) *int { return &m.RetryTimeout },
		fromEnv: func(e *envVars) *string { return e.RetryTimeout },
	},
	{
		key: keyStrictCheckForExternal, env: "DIARKIS_STRICT_CHECK_FOR_EXTERNAL", kind: kindBool,
		allowed: "true or false",
		flag:    func(m *Mesh) *bool { return &m.StrictCheckForExternal },
		fromEnv: func(e *envVars) *string { return e.StrictCheckForExternal },
	},
	{
		key: keySendInterval, env: "DIARKIS_SEND_INTERVAL", kind: kindInt,
		allowed: "0 = no buffering, or an integer 17..60000 milliseconds",
		num:     func(m *Mesh) *int { return &m.SendInterval },
		fromEnv: func(e *envVars) *string { return e.SendInterval },
	},
	{
		key: keyAdminAddress, env: "DIARKIS_ADMIN_ADDRESS", kind: kindString,
		allowed: "empty (off), or host:port of the admin HTTP endpoint, e.g. 127.0.0.1:9090",
		str:     func(m *Mesh) *string { return &m.AdminAddress },
		fromEnv: func(e *envVars) *string { return e.AdminAddress },
	},
	{
		key: keyMeshKey, env: "DIARKIS_MESH_KEY", kind: kindString,
		allowed: "empty (no key), or the base64 of 32 random bytes (44 characters, as `node keygen` prints)",
		str:     func(m *Mesh) *string { return &m.MeshKey },
		fromEnv: func(e *envVars) *string { return e.MeshKey },
		secret:  true, noEmptyEnv: true,
	},
	{
		key: keyMeshKeyFile, env: "DIARKIS_MESH_KEY_FILE", kind: kindString,
		allowed:    "empty (no file), or a readable file of 1..8 base64 keys, one per line (blank lines and # comments ignored)",
		str:        func(m *Mesh) *string { return &m.MeshKeyFile },
		fromEnv:    func(e *envVars) *string { return e.MeshKeyFile },
		noEmptyEnv: true,
	},
}

// fieldByKey returns the field with JSON key key (case-sensitive), or nil.
func fieldByKey(key string) *field {
	for i := range fields {
		if fields[i].key == key {
			return &fields[i]
		}
	}
	return nil
}
