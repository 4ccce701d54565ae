package mesh

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/config"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/rudp"
)

// The configuration's bound on keys is the transport's.
func TestMaxKeysMatchesTransport(t *testing.T) {
	if config.MaxKeys != rudp.MaxKeys || config.KeySize != len([32]byte{}) {
		t.Fatalf("config.MaxKeys %d, rudp.MaxKeys %d", config.MaxKeys, rudp.MaxKeys)
	}
}

func TestUnauthenticated(t *testing.T) {
	key := [][config.KeySize]byte{{1}}
	for _, tc := range []struct {
		addr string
		keys [][config.KeySize]byte
		want bool
	}{
		{"127.0.0.1:8000", nil, false},
		{"127.0.0.2:8000", nil, false},
		{"[::1]:8000", nil, false},
		{"[::ffff:127.0.0.1]:8000", nil, false},
		{"0.0.0.0:8000", nil, true},
		{"[::]:8000", nil, true},
		{"10.1.2.3:8000", nil, true},
		{"0.0.0.0:8000", key, false},
		{"10.1.2.3:8000", key, false},
	} {
		if got := unauthenticated(tc.keys, netip.MustParseAddrPort(tc.addr)); got != tc.want {
			t.Errorf("unauthenticated(%d keys, %s) = %v, want %v", len(tc.keys), tc.addr, got, tc.want)
		}
	}
}

// TestNewKeys: New hands the configured keys to the transport (a keyed
// cluster talks), refuses a bad key file naming it, and a keyless node on
// loopback logs no warning.
func TestNewKeys(t *testing.T) {
	k, err := rudp.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := mars.Listen("127.0.0.1:0", mars.ServerOptions{Logger: quiet, Transport: rudp.Config{Keys: [][32]byte{k}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys")
	if err := os.WriteFile(keyFile, []byte("# cluster key\n"+config.EncodeKey(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(srv.Addr().Port())
	cfg.MeshKeyFile = keyFile

	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := New(cfg, WithLogger(logger), WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	cfg.MeshKeyFile = ""
	cfg.MeshKey = config.EncodeKey(k)
	b, err := New(cfg, WithLogger(logger), WithSyncInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	for _, n := range []*Node{a, b} {
		select {
		case <-n.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("a keyed node did not sync with the keyed MARS")
		}
	}
	b.HandleRPC(7, func(p []byte, _ string) ([]byte, error) { return bytes.ToUpper(p), nil })
	if resp, err := a.SendRPC(7, b.Addr, []byte("sealed")); err != nil || string(resp) != "SEALED" {
		t.Fatalf("RPC between keyed nodes: %q, %v", resp, err)
	}
	if strings.Contains(logs.String(), "neither authenticated nor encrypted") {
		t.Errorf("a loopback node warned:\n%s", logs.String())
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte(config.EncodeKey(k)+"\nshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.MeshKey, cfg.MeshKeyFile = "", bad
	_, err = New(cfg, WithLogger(quiet))
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), `meshKeyFile="`+bad+`": line 2 of the key file`) {
		t.Errorf("New with a bad key file: %v", err)
	}
}

// TestStartAsMARSKeyed: StartAsMARS and Setup read the same key
// (DIARKIS_MESH_KEY); a keyless node's health check gets no answer.
func TestStartAsMARSKeyed(t *testing.T) {
	requireNoDefault(t)
	k, err := rudp.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	port := freeUDPPort(t)
	useMarsEnv(t, strconv.Itoa(int(port)))
	t.Setenv("DIARKIS_MESH_KEY", config.EncodeKey(k))
	if err := StartAsMARS(""); err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			t.Skipf("MARS port %d taken meanwhile: %v", port, err)
		}
		t.Fatal(err)
	}
	if err := Setup(""); err != nil {
		Shutdown()
		t.Fatal(err)
	}
	defer Shutdown()
	eventually(t, 5*time.Second, func() bool { return IsPartOfCluster() && len(GetNodeAddresses(nil)) == 1 },
		"the keyed node syncs with the keyed in-process MARS")

	cfg := testConfig(port) // no key
	stranger, err := New(cfg, WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := stranger.HealthCheck(ctx, GetMyEndPoint()); err == nil {
		t.Error("a keyless node's health check of a keyed node was answered")
	}
}
