// Package config holds the mesh configuration: the Diarkis mesh keys, their
// defaults, JSON loading, DIARKIS_* environment overrides and validation.
//
// # Load order
//
// Load(path) builds a Mesh in four steps, each overriding the one before:
//
//  1. Default() (the only place defaults live; there are no default: tags),
//  2. the JSON file at path (skipped when path is ""),
//  3. the DIARKIS_* environment variables (LoadEnv),
//  4. Validate.
//
// LoadFile, LoadEnv and Mesh.Validate are exported for callers that build a
// Mesh some other way (from flags, or a Mesh embedded in a larger JSON
// document: Mesh implements json.Unmarshaler with the same strict rules).
//
// # Keys
//
//	key                     default      environment                        allowed
//	address                 "127.0.0.1"  DIARKIS_ADDRESS                    IP literal or resolvable host name; "" only with nic
//	nic                     ""           DIARKIS_NIC                        "" or an existing interface (its first IPv4 is used)
//	port                    "8000"       DIARKIS_PORT                       0..65535 (string or number; scan starts here; 0 = any)
//	marsAddress             "127.0.0.1"  DIARKIS_MARS_ADDR                  non-empty IP literal or host name, no port; or several, comma-separated
//	marsPort                "6789"       DIARKIS_MARS_PORT                  1..65535 (string or number)
//	marsAddressCacheTTL     60           DIARKIS_MARS_ADDRESS_CACHE_TTL     0..86400 seconds (0 = no cache)
//	marsStore               "memory"     DIARKIS_MARS_STORE                 "memory" or "etcd" (mars-server only)
//	marsEtcdEndpoints       ""           DIARKIS_MARS_ETCD_ENDPOINTS        comma-separated etcd URLs; required with "etcd"
//	retryInterval           1000         DIARKIS_RETRY_INTERVAL             10..60000 ms
//	retryTimeout            3000         DIARKIS_RETRY_TIMEOUT              100..600000 ms, > retryInterval
//	strictCheckForExternal  false        DIARKIS_STRICT_CHECK_FOR_EXTERNAL  true or false
//	sendInterval            0            DIARKIS_SEND_INTERVAL              0 (no buffering) or 17..60000 ms
//	adminAddress            ""           DIARKIS_ADMIN_ADDRESS              "" (off) or host:port of the admin HTTP endpoint
//	meshKey                 ""           DIARKIS_MESH_KEY                   "" (no key) or base64 of 32 random bytes (secret)
//	meshKeyFile             ""           DIARKIS_MESH_KEY_FILE              "" or a file of 1..8 such keys, one per line
//
// "reliableRetryTimeout", the name the Diarkis mesh documentation uses, is
// accepted in JSON as an alias of "retryTimeout" (giving both is a
// duplicate key).
//
// # Cluster keys
//
// meshKey and meshKeyFile give the cluster key(s) that authenticate and
// encrypt all mesh and MARS traffic; Mesh.Keys returns them, meshKey first,
// then the file's keys in order (a key given twice counts once). A process
// dials with each key, the first first, and accepts a peer holding any of
// them (rudp.Config.Keys). A key file holds one
// base64 key per line; surrounding white space, blank lines and lines
// starting with '#' are ignored. A key that is not base64 of 32 bytes (or
// is all zero), a file that cannot be read or holds no key, and
// DIARKIS_MESH_KEY or DIARKIS_MESH_KEY_FILE set but empty are errors that
// name the source (file position or variable, and the key file's line);
// no error ever shows a key. EncodeKey and ParseKey convert the text form.
//
// # JSON
//
// The file must hold one JSON object. Unknown keys (keys are
// case-sensitive; a key within edit distance 2 of a known one gets a
// "did you mean"), duplicate keys, values of the wrong type and syntax
// errors are rejected with the file name, line and column. Keys absent from
// the file keep their defaults. port and marsPort may be strings or integer
// numbers; other numbers must be integer literals (1000, not 1e3 or 1000.0);
// null is a wrong type, not "use the default".
//
// # Environment
//
// An unset variable leaves the value from the file (or the default) alone.
// A variable that is set but empty (after trimming white space) is treated
// as unset for numbers and booleans; for the strings address, nic and
// marsAddress it sets the empty string, which Validate accepts only where
// empty is valid (nic; address when nic is set); adminAddress set but empty
// turns the endpoint off; DIARKIS_MESH_KEY and DIARKIS_MESH_KEY_FILE set
// but empty are errors (an unset shell variable must not silently turn the
// cluster key off). Numbers are decimal; booleans take true/false, 1/0, t/f.
//
// Each key's variable is DIARKIS_ and the key in upper snake case, except
// marsAddress (DIARKIS_MARS_ADDR, the Diarkis name). The name derived from
// the JSON key is accepted as an alias where it differs: DIARKIS_MARS_ADDRESS
// for marsAddress and DIARKIS_RELIABLE_RETRY_TIMEOUT for retryTimeout; a
// variable and its alias set to different values are an error.
//
// Load ignores DIARKIS_* variables it does not know; UnknownEnv lists them
// (with a did-you-mean that ignores case and underscores) so programs can
// warn once at start-up, as mars-server, node and mesh.Setup do.
//
// The variables are read with envconfig and the prefix "DIARKIS", but Mesh
// itself has no envconfig tags: envconfig v1.4.0 turns a tag such as
// `envconfig:"PORT"` into DIARKIS_PORT and, when that is unset, falls back
// to a bare PORT variable, so any PORT or ADDRESS in a container's
// environment would silently reconfigure the mesh. Do not pass a Mesh to
// envconfig.Process; use LoadEnv.
//
// # Errors
//
// Every problem is an *Error naming where the value came from, the key, the
// value and what is allowed; several problems are joined with errors.Join.
// For example:
//
//	config: mesh.json:3:19: sendInterval=5: below the minimum 17 (allowed: 0 = no buffering, or an integer 17..60000 milliseconds)
//	config: mesh.json:1:19: retryInterval="fast": wrong type: want an integer, got a string (allowed: an integer 10..60000 milliseconds)
//	config: mesh.json:2:3: unknown key "prot" (did you mean "port"?)
//	config: mesh.json:2:3: unknown key "zzz" (allowed: the keys address, nic, port, marsAddress, ...)
//	config: mesh.json:3:1: invalid JSON: invalid character '}' looking for beginning of object key string
//	config: env DIARKIS_RETRY_INTERVAL="fast" (retryInterval): not an integer (allowed: an integer 10..60000 milliseconds)
//	config: env DIARKIS_NIC="eth9" (nic): no such network interface (allowed: an interface of this host (lo, eth0), or empty)
//	config: env DIARKIS_MESH_KEY=<redacted, 8 characters> (meshKey): decodes to 5 bytes, want 32 (allowed: ...)
//	config: env DIARKIS_MESH_KEY_FILE="/etc/marsmesh/keys" (meshKeyFile): line 2 of the key file: not base64 (allowed: ...)
package config
