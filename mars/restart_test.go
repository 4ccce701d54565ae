package mars

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestMarsRestartLosesNothingNodesHold(t *testing.T) {
	s1 := startServer(t, "", fastOpts())
	addr := s1.Addr().String()
	a := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "A"})
	b := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "B"})
	doomed := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "doomed"})
	a.c.SetSharedData("from-a", 1)
	b.c.SetSharedData("from-b", 2)
	waitFor(t, 2*time.Second, "settled", func() bool {
		return a.c.View().Len() == 3 && len(a.c.View().AllSharedData()) == 2
	})
	var removals atomic.Int32
	a.c.OnSharedDataRemove(func(string) { removals.Add(1) })

	s1.Close()
	waitFor(t, 3*fastInterval+time.Second, "out of touch", func() bool { return !a.c.InTouch() })
	doomed.kill() // dies while MARS is down: it must not come back
	if a.c.View().Len() != 3 || len(a.c.View().AllSharedData()) != 2 {
		t.Fatal("the view changed while MARS was down")
	}

	s2 := startServer(t, addr, fastOpts())
	restarted := time.Now()
	fresh := startNode(t, addr, ClientConfig{Interval: fastInterval, Type: "fresh"})
	waitFor(t, 3*time.Second, "nodes and shared data back", func() bool {
		v := fresh.c.View()
		return hasNode(v, a.c.Addr(), online) && hasNode(v, b.c.Addr(), online) && len(v.AllSharedData()) == 2
	})
	t.Logf("back %v after the restart", time.Since(restarted))
	waitFor(t, 3*time.Second, "a in touch, doomed dropped after the grace period", func() bool {
		return a.c.InTouch() && a.c.View().Len() == 3 && !hasNode(a.c.View(), doomed.c.Addr(), nil) &&
			hasNode(a.c.View(), fresh.c.Addr(), nil)
	})
	if n := removals.Load(); n != 0 {
		t.Fatalf("%d shared-data removal events during the restart, want none", n)
	}
	if s2.Incarnation() == s1.Incarnation() {
		t.Fatal("same incarnation after a restart")
	}
}

func TestDataDirKeepsSharedData(t *testing.T) {
	dir := t.TempDir()
	opts := fastOpts()
	opts.DataDir = dir
	opts.PersistInterval = 50 * time.Millisecond
	s1 := startServer(t, "", opts)
	n := startNode(t, s1.Addr().String(), ClientConfig{Interval: fastInterval, App: "game"})
	n.c.SetSharedData("kept", 5)
	n.c.SetSharedData("gone", 6)
	waitFor(t, 2*time.Second, "synced", func() bool { return len(n.c.View().AllSharedData()) == 2 })
	n.c.RemoveSharedData("gone")
	waitFor(t, 2*time.Second, "removed", func() bool { return len(n.c.View().AllSharedData()) == 1 })
	waitFor(t, 2*time.Second, "written by the background writer", func() bool {
		d := readDataFile(t, dir)
		return d != nil && len(d.Apps["game"]) == 1
	})
	n.close()
	s1.Close()
	if err := s1.Close(); err != nil {
		t.Fatal("second Close:", err)
	}

	s2 := startServer(t, "", opts) // another port: no node can re-seed it
	late := startNode(t, s2.Addr().String(), ClientConfig{Interval: fastInterval, App: "game"})
	<-late.c.Ready()
	if got := late.c.View().AllSharedData(); len(got) != 1 || got["kept"] != 5 {
		t.Fatalf("after restart: %v", got)
	}
}

func readDataFile(t *testing.T, dir string) *savedData {
	b, err := os.ReadFile(filepath.Join(dir, dataFile))
	if err != nil {
		return nil
	}
	var d savedData
	if err := msgpack.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func writeDataFile(t *testing.T, dir string, d savedData) {
	d.Version = dataVersion
	b, err := msgpack.Marshal(&d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, dataFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSeedRule checks which shared data wins when MARS restarts with a data
// file and nodes re-seed: the file, when it is newer than the node's view;
// otherwise the seed fills in what the file lacks.
func TestSeedRule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fileAge  time.Duration // negative: the file is newer than any view
		wantKeys int
	}{
		{"file newer than the view wins", -time.Hour, 1},
		{"view newer than the file re-seeds", time.Hour, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := fastOpts()
			opts.DataDir = dir
			s1 := startServer(t, "", opts)
			addr := s1.Addr().String()
			a := startNode(t, addr, ClientConfig{Interval: fastInterval})
			a.c.SetSharedData("k1", 1)
			a.c.SetSharedData("k2", 2)
			waitFor(t, 20*time.Second, "synced", func() bool { return len(a.c.View().AllSharedData()) == 2 })
			// Let the writes age past the writer's recent span (acknowledged
			// writes that recent go again as changes after a restart, and win).
			for range 3 {
				a.c.WaitForLatestNodeData()
			}
			s1.Close()
			writeDataFile(t, dir, savedData{
				SavedAt: time.Now().Add(-tc.fileAge).UnixNano(),
				Apps:    map[string]map[string]int16{"": {"k1": 1}},
			})
			startServer(t, addr, opts)
			fresh := startNode(t, addr, ClientConfig{Interval: fastInterval})
			waitFor(t, 20*time.Second, "a re-registered", func() bool { return hasNode(fresh.c.View(), a.c.Addr(), online) })
			waitFor(t, 20*time.Second, "views agree", func() bool {
				return len(fresh.c.View().AllSharedData()) == tc.wantKeys && len(a.c.View().AllSharedData()) == tc.wantKeys
			})
		})
	}
}

func TestCorruptDataFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, dataFile), []byte("not msgpack at all"), 0o644)
	opts := fastOpts()
	opts.DataDir = dir
	if s, err := Listen("127.0.0.1:0", opts); err == nil {
		s.Close()
		t.Fatal("a corrupt data file was accepted")
	}
}
