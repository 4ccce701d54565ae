package mars

import (
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/rudp"
	"github.com/marsmesh/marsmesh/rudp/faultnet"
)

// Issue 13 item 5: no acknowledged write is lost. A shared-data value that
// MARS acknowledged shortly before it crashed survives the restart, even
// when every other node re-seeds the value it replaced first.

// crash stops s as a kill -9 would: no save, no goodbye on the wire.
func (s *Server) crash() {
	s.closeOnce.Do(func() {
		close(s.done)
		if s.st != nil {
			s.st.cancel()
		}
		s.wg.Wait()
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.tr.Abort()
	})
}

// acked reports whether MARS has acknowledged every change of key.
func acked(c *Client, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, pending := c.ops[key]
	return !pending
}

func sharedIs(v *View, key string, want int16) bool {
	got, ok := v.SharedData(key)
	return ok && got == want
}

// memServerAt is memServer on a given address with given options.
func memServerAt(t *testing.T, n *faultnet.Network, addr string, opts ServerOptions) *Server {
	t.Helper()
	conn, err := n.Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	opts.Transport = rudp.Config{RetryInterval: 100 * time.Millisecond, RetryTimeout: 500 * time.Millisecond}
	s, err := NewServer(conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestAcknowledgedWriteSurvivesRestart runs over faultnet so the order is
// certain: the other nodes' views miss the write (they are cut off from
// MARS from just before it), and they re-seed the new MARS with the old
// value before the writer gets through.
func TestAcknowledgedWriteSurvivesRestart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dataDir    bool
		killWriter bool // the writer dies with MARS: only the data file holds the write
	}{
		{"in memory, the writer re-sends it", false, false},
		{"data dir, persisted before the ack", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			net := faultnet.New(5)
			opts := fastOpts()
			if tc.dataDir {
				opts.DataDir = t.TempDir()
				opts.PersistInterval = time.Hour // only persist-before-ack writes the file in time
			}
			s1 := memServerAt(t, net, "127.0.0.1:0", opts)
			addr := s1.Addr().String()
			writer := memNode(t, net, addr, ClientConfig{Interval: fastInterval})
			others := []*testNode{
				memNode(t, net, addr, ClientConfig{Interval: fastInterval}),
				memNode(t, net, addr, ClientConfig{Interval: fastInterval}),
			}
			writer.c.SetSharedData("k", 1)
			waitFor(t, 5*time.Second, "k=1 everywhere", func() bool {
				return sharedIs(others[0].c.View(), "k", 1) && sharedIs(others[1].c.View(), "k", 1)
			})
			if tc.dataDir {
				s1.mu.Lock()
				s1.persist.save(s1.snapshotData()) // the file holds k=1
				s1.mu.Unlock()
			}
			for _, o := range others {
				net.Partition(o.tr.LocalAddr(), s1.Addr())
			}

			writer.c.SetSharedData("k", 2)
			waitFor(t, 5*time.Second, "the write acknowledged", func() bool { return acked(writer.c, "k") })
			time.Sleep(150 * time.Millisecond)
			s1.crash()
			if tc.killWriter {
				writer.kill()
			} else {
				net.Partition(writer.tr.LocalAddr(), s1.Addr())
			}
			for _, o := range others {
				net.Heal(o.tr.LocalAddr(), s1.Addr())
			}
			s2 := memServerAt(t, net, addr, opts)
			waitFor(t, 10*time.Second, "the others re-seeded the new MARS", func() bool {
				s2.mu.Lock()
				defer s2.mu.Unlock()
				a := s2.apps[""]
				if a == nil {
					return false
				}
				_, ok := a.keys["k"]
				return ok && a.nodes[others[0].c.Addr()] != nil && a.nodes[others[1].c.Addr()] != nil
			})
			nodes := others
			if !tc.killWriter {
				net.Heal(writer.tr.LocalAddr(), s1.Addr())
				nodes = append(nodes, writer)
			}
			waitFor(t, 10*time.Second, "k=2 at MARS and in every view", func() bool {
				s2.mu.Lock()
				got := s2.apps[""].keys["k"].val
				s2.mu.Unlock()
				for _, n := range nodes {
					if !sharedIs(n.c.View(), "k", 2) {
						return false
					}
				}
				return got == 2
			})
		})
	}
}

func TestOlderSnapshotNeverOverwritesNewer(t *testing.T) {
	dir := t.TempDir()
	p, err := newPersister(dir, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	older := &savedData{Version: dataVersion, Apps: map[string]map[string]int16{"": {"k": 1}}, seq: 1}
	newer := &savedData{Version: dataVersion, Apps: map[string]map[string]int16{"": {"k": 2}}, seq: 2}
	if err := p.save(newer); err != nil {
		t.Fatal(err)
	}
	if err := p.save(older); err != nil {
		t.Fatal(err)
	}
	if d := readDataFile(t, dir); d == nil || d.Apps[""]["k"] != 2 {
		t.Fatalf("file holds %+v, want the newer snapshot", d)
	}
}
