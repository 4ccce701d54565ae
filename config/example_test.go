package config_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/marsmesh/marsmesh/config"
)

// Load a JSON file and let the environment override one of its keys.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "mesh")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mesh.json")
	file := `{
  "port": 8100,
  "marsAddress": "mars.internal",
  "marsPort": "6790",
  "sendInterval": 20
}`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		log.Fatal(err)
	}

	// A deployment moves the node's port without touching the file.
	os.Setenv("DIARKIS_PORT", "8200")
	defer os.Unsetenv("DIARKIS_PORT")

	cfg, err := config.Load(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("port:", cfg.Port)
	fmt.Println("mars:", cfg.MarsAddr())
	fmt.Println("send interval:", cfg.SendIntervalDuration())
	fmt.Println("retry timeout:", cfg.RetryTimeoutDuration(), "(default)")
	// Output:
	// port: 8200
	// mars: mars.internal:6790
	// send interval: 20ms
	// retry timeout: 3s (default)
}

// A value out of range names the source, the key, the value and what is
// allowed.
func ExampleLoad_error() {
	os.Setenv("DIARKIS_SEND_INTERVAL", "5")
	defer os.Unsetenv("DIARKIS_SEND_INTERVAL")

	_, err := config.Load("") // defaults plus environment
	fmt.Println(err)

	var e *config.Error
	if errors.As(err, &e) {
		fmt.Println(e.Var, e.Key, e.Value)
	}
	// Output:
	// config: env DIARKIS_SEND_INTERVAL="5" (sendInterval): below the minimum 17 (allowed: 0 = no buffering, or an integer 17..60000 milliseconds)
	// DIARKIS_SEND_INTERVAL sendInterval "5"
}

// Bind to a network interface instead of a fixed address.
func ExampleMesh_BindAddress() {
	cfg := config.Default()
	cfg.NIC = "lo"
	if err := cfg.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	ip, err := cfg.BindAddress()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ip)
}

// Cluster keys from a key file: the new key first, the old one still
// accepted (a rotation in progress).
func ExampleMesh_Keys() {
	dir, err := os.MkdirTemp("", "mesh")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mesh.keys")
	var k1, k2 [config.KeySize]byte
	k1[0], k2[0] = 1, 2 // real keys come from `node keygen`
	file := "# new key first, old key still accepted\n" + config.EncodeKey(k2) + "\n" + config.EncodeKey(k1) + "\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		log.Fatal(err)
	}

	cfg := config.Default()
	cfg.MeshKeyFile = path
	keys, err := cfg.Keys()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(keys), "keys; the first starts with", keys[0][0])

	// A bad key names its source and never shows the key.
	cfg.MeshKey = "c2hvcnQ="
	_, err = cfg.Keys()
	fmt.Println(err)
	// Output:
	// 2 keys; the first starts with 2
	// config: meshKey=<redacted, 8 characters>: decodes to 5 bytes, want 32 (allowed: empty (no key), or the base64 of 32 random bytes (44 characters, as `node keygen` prints))
}
