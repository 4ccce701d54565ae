package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/etcdtest"
	"github.com/marsmesh/marsmesh/internal/syncbuf"
)

func TestStoreFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-store", "etc"}, 2, `marsStore="etc"`},
		{[]string{"-store", "etcd"}, 2, `marsEtcdEndpoints="": empty while marsStore is "etcd"`},
		{[]string{"-store", "etcd", "-etcd-endpoints", "127.0.0.1:2379"}, 2, `entry "127.0.0.1:2379"`},
		{[]string{"-store", "etcd", "-etcd-endpoints", "http://127.0.0.1:2379", "-data", "/tmp/x"}, 2, "-data"},
	} {
		var out syncbuf.Buffer
		code := run(context.Background(), tc.args, &out)
		text := strings.TrimRight(out.String(), "\n")
		if code != tc.code || strings.Contains(text, "\n") || !strings.Contains(text, tc.want) {
			t.Errorf("%v: exit %d, stderr %q (want exit %d, one line with %q)", tc.args, code, text, tc.code, tc.want)
		}
	}
}

// etcd down at start: exit 1 within the dial timeout, naming the endpoints.
func TestStoreEtcdUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := "http://" + l.Addr().String()
	l.Close()
	t.Setenv("DIARKIS_MARS_ADDR", "127.0.0.1")
	t.Setenv("DIARKIS_MARS_PORT", fmt.Sprint(freePort(t)))
	t.Setenv("DIARKIS_MARS_STORE", "etcd")
	t.Setenv("DIARKIS_MARS_ETCD_ENDPOINTS", ep)
	var out syncbuf.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"-etcd-dial-timeout", "500ms"}, &out)
	text := strings.TrimRight(out.String(), "\n")
	if code != 1 || !strings.Contains(text, "etcd unreachable") || !strings.Contains(text, ep) {
		t.Fatalf("exit %d, stderr %q", code, text)
	}
	t.Logf("failed after %v: %s", time.Since(start).Round(time.Millisecond), text)
}

// With a real etcd: mars-server -store etcd serves, and stops cleanly.
func TestStoreEtcdServes(t *testing.T) {
	e := etcdtest.Start(t)
	port := freePort(t)
	t.Setenv("DIARKIS_MARS_ADDR", "127.0.0.1")
	t.Setenv("DIARKIS_MARS_PORT", fmt.Sprint(port))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-store", "etcd", "-etcd-endpoints", e.Endpoint}, &out) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "mars-server listening") {
		if time.Now().After(deadline) {
			t.Fatalf("no listening log line:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "store=etcd") {
		t.Fatalf("listening line does not name the store:\n%s", out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d:\n%s", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}
