package mars

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// dataFile is the name of the shared-data file inside ServerOptions.DataDir.
const dataFile = "shared-data.msgpack"

// savedData is the content of the data file. Only shared data is kept:
// nodes re-register on their own after a restart, shared data may outlive
// every node that set it.
type savedData struct {
	Version int                         `msgpack:"v"`
	SavedAt int64                       `msgpack:"at"` // wall clock, Unix ns
	Apps    map[string]map[string]int16 `msgpack:"apps"`

	seq uint64 // snapshot order (not saved): an older snapshot never overwrites a newer one
}

const dataVersion = 1

// persister writes snapshots of the shared data on its own goroutine, so
// message handling never waits for the disk.
type persister struct {
	path string
	log  *slog.Logger
	ch   chan *savedData
	mu   sync.Mutex // serialises writes (the goroutine, held replies, Close)
	last uint64     // seq of the last snapshot written
}

func newPersister(dir string, log *slog.Logger) (*persister, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("mars: data dir: %w", err)
	}
	return &persister{path: filepath.Join(dir, dataFile), log: log, ch: make(chan *savedData, 1)}, nil
}

// load reads the data file; a missing file is an empty start.
func (p *persister) load() (map[string]map[string]int16, int64, error) {
	b, err := os.ReadFile(p.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("mars: read %s: %w", p.path, err)
	}
	var d savedData
	if err := msgpack.Unmarshal(b, &d); err != nil {
		return nil, 0, fmt.Errorf("mars: %s is corrupt (move it away to start empty): %w", p.path, err)
	}
	if d.Version != dataVersion {
		return nil, 0, fmt.Errorf("mars: %s has format version %d, want %d", p.path, d.Version, dataVersion)
	}
	return d.Apps, d.SavedAt, nil
}

// offer hands a snapshot to the writer goroutine unless it is busy.
func (p *persister) offer(d *savedData) bool {
	select {
	case p.ch <- d:
		return true
	default:
		return false
	}
}

func (p *persister) run(done <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-done:
			return
		case d := <-p.ch:
			if err := p.save(d); err != nil {
				p.log.Error("mars: cannot save shared data", "err", err)
			}
		}
	}
}

// save writes d atomically: a temporary file, synced, renamed over the old one.
func (p *persister) save(d *savedData) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d.seq != 0 && d.seq < p.last {
		return nil // a newer snapshot is on disk already
	}
	p.last = d.seq
	b, err := msgpack.Marshal(d)
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mars: save %s: %w", p.path, err)
	}
	if dir, err := os.Open(filepath.Dir(p.path)); err == nil {
		dir.Sync()
		dir.Close()
	}
	return nil
}

// snapshotData copies the shared data of every app.
func (s *Server) snapshotData() *savedData {
	s.snapSeq++
	d := &savedData{Version: dataVersion, SavedAt: time.Now().UnixNano(), Apps: make(map[string]map[string]int16), seq: s.snapSeq}
	for name, a := range s.apps {
		if len(a.keys) == 0 {
			continue
		}
		m := make(map[string]int16, len(a.keys))
		for k, e := range a.keys {
			m[k] = e.val
		}
		d.Apps[name] = m
	}
	return d
}

// restore installs loaded shared data, skipping what is not valid.
func (s *Server) restore(apps map[string]map[string]int16) {
	skipped := 0
	for name, keys := range apps {
		if CheckApp(name) != nil || len(s.apps) >= s.opts.MaxApps {
			skipped += len(keys)
			continue
		}
		a := s.app(name)
		for k, v := range keys {
			if CheckKey(k) != nil || len(a.keys) >= s.opts.MaxSharedKeys {
				skipped++
				continue
			}
			a.setKey(k, v)
		}
	}
	if skipped > 0 {
		s.log.Warn("mars: skipped invalid shared data in the data file", "entries", skipped)
	}
}
