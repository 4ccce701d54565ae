package mars

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The key-value data file of a server with DataDir: DataDir/kv.wal, a log
// of changes, each a frame [length u32][CRC-32C u32][msgpack record]. It
// starts with a header (the KV history's ID and the revision the records
// after it continue from), then the state at that revision, then every
// change since. The writer goroutine appends what handlers logged and
// syncs the file (one fsync for everything that came in meanwhile), then
// releases the replies that waited for it (kvDurable). When the file has
// grown past twice the state it holds (and walCompactMin), the writer
// writes the state alone to a new file and renames it over the old one.
// A torn frame at the end (a crash during a write) is cut off at load.

const (
	walFile       = "kv.wal"
	walMaxFrame   = MaxKVValueLen + 64<<10
	walCompactMin = 64 << 20
	walVersion    = 1
)

// Record types.
const (
	walHeader  = 'h'
	walPut     = 'p'
	walDel     = 'd'
	walGrant   = 'l'
	walRelease = 'r'
	walResult  = 's' // a write's result, in a compacted file
)

// walRec is one record of the data file.
type walRec struct {
	T       byte   `msgpack:"t"`
	App     string `msgpack:"a,omitempty"`
	Key     string `msgpack:"k,omitempty"`
	Val     []byte `msgpack:"v,omitempty"`
	Rev     int64  `msgpack:"r,omitempty"`
	TTL     int64  `msgpack:"ttl,omitempty"` // ms
	Wall    int64  `msgpack:"w,omitempty"`   // a key's TTL end, Unix ms
	Expired bool   `msgpack:"x,omitempty"`
	Addr    string `msgpack:"n,omitempty"` // the writer (a put, delete or claim), the holder (a grant)
	Inc     uint64 `msgpack:"i,omitempty"`
	Seq     uint64 `msgpack:"s,omitempty"`
	ID      uint64 `msgpack:"id,omitempty"` // header: the KV history
	Version int    `msgpack:"ver,omitempty"`
}

var walCRC = crc32.MakeTable(crc32.Castagnoli)

func appendFrame(b []byte, r *walRec) []byte {
	p, _ := msgpack.Marshal(r) // only plain fields: cannot fail
	b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(p, walCRC))
	return append(b, p...)
}

// readFrames decodes the frames of b; it returns the records and the
// length of the good prefix (a torn or corrupt frame ends it).
func readFrames(b []byte) ([]walRec, int) {
	var out []walRec
	off := 0
	for len(b)-off >= 8 {
		n := int(binary.BigEndian.Uint32(b[off:]))
		sum := binary.BigEndian.Uint32(b[off+4:])
		if n > walMaxFrame || n > len(b)-off-8 {
			break
		}
		p := b[off+8 : off+8+n]
		if crc32.Checksum(p, walCRC) != sum {
			break
		}
		var r walRec
		if err := msgpack.Unmarshal(p, &r); err != nil {
			break
		}
		out = append(out, r)
		off += 8 + n
	}
	return out, off
}

// kvWAL is the writer of the data file.
type kvWAL struct {
	path string
	log  *slog.Logger
	f    *os.File
	size int64 // bytes in the file

	mu   sync.Mutex
	buf  []byte
	top  int64 // the latest revision buf holds
	wake chan struct{}
}

func (w *kvWAL) add(r *walRec, rev int64) {
	w.mu.Lock()
	w.buf = appendFrame(w.buf, r)
	w.top = max(w.top, rev)
	w.mu.Unlock()
	w.kick()
}

func (w *kvWAL) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// kvLoad opens DataDir/kv.wal and installs what it holds (before the
// server starts), or starts a new file.
func (s *Server) kvLoad() error {
	path := filepath.Join(s.opts.DataDir, walFile)
	w := &kvWAL{path: path, log: s.log, wake: make(chan struct{}, 1)}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := w.replace(s.kvSnapshot()); err != nil {
			return err
		}
		s.kv.wal = w
		return nil
	case err != nil:
		return fmt.Errorf("mars: read %s: %w", path, err)
	}
	recs, good := readFrames(b)
	if len(recs) == 0 || recs[0].T != walHeader {
		return fmt.Errorf("mars: %s does not start with a header (move it away to start empty)", path)
	}
	if recs[0].Version != walVersion {
		return fmt.Errorf("mars: %s has format version %d, want %d", path, recs[0].Version, walVersion)
	}
	if good < len(b) {
		s.log.Warn("mars: the key-value data file ends in a torn record (a crash while writing); cutting it off",
			"file", path, "kept", good, "size", len(b))
	}
	s.kvReplay(recs)
	f, err := os.OpenFile(path, os.O_WRONLY, 0o644)
	if err == nil {
		err = f.Truncate(int64(good))
	}
	if err == nil {
		_, err = f.Seek(int64(good), io.SeekStart)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return fmt.Errorf("mars: open %s: %w", path, err)
	}
	w.f, w.size = f, int64(good)
	s.kv.wal = w
	return nil
}

// kvReplay installs the records of a data file.
func (s *Server) kvReplay(recs []walRec) {
	k := &s.kv
	h := recs[0]
	k.id = h.ID
	base := h.Rev
	k.floor = base
	now := s.now()
	nowWall := time.Now()
	app := func(name string) *kvApp {
		a := k.apps[name]
		if a == nil {
			a = newKVApp(name, base)
			k.apps[name] = a
		}
		return a
	}
	note := func(r *walRec) {
		if r.Addr == "" || r.Seq == 0 {
			return
		}
		key := kvSessKey{r.App, r.Addr}
		sess := k.sessions[key]
		if sess == nil || sess.inc != r.Inc {
			sess = &kvSession{inc: r.Inc, results: make(map[uint64]kvResult), seen: now}
			k.sessions[key] = sess
		}
		res := kvResult{Rev: r.Rev}
		if r.T == walGrant {
			res.TTL = uint64(r.TTL)
		}
		sess.results[r.Seq] = res
		if len(sess.results) > kvMaxResults {
			for seq := range sess.results {
				if seq+kvMaxResults < r.Seq {
					delete(sess.results, seq)
				}
			}
		}
	}
	maxRev := base
	for i := 1; i < len(recs); i++ {
		r := &recs[i]
		if CheckApp(r.App) != nil || (r.T != walResult && CheckKVKey(r.Key) != nil) {
			continue
		}
		snap := r.Rev <= base // part of the state at the header's revision: no history
		a := app(r.App)
		switch r.T {
		case walPut:
			it := &kvItem{key: r.Key, value: r.Val, rev: r.Rev, ttl: r.TTL, wall: r.Wall}
			if r.Wall != 0 {
				it.expires = now + max(int64(time.UnixMilli(r.Wall).Sub(nowWall)), 0)
				k.deadlines.add(kvDeadline{at: it.expires, app: r.App, key: r.Key, rev: r.Rev})
			}
			a.put(it, snap)
		case walDel:
			a.del(r.Key, r.Rev, r.Expired)
		case walGrant:
			// The lease's remaining time is unknown: it runs a whole TTL
			// from now (longer than it would have, never shorter).
			s.kvGrant(a, r.Key, r.Addr, r.Inc, r.Rev, time.Duration(r.TTL)*time.Millisecond, now)
		case walRelease:
			delete(a.leases, r.Key)
			a.bump(r.Rev)
		}
		if r.T == walResult {
			note(r)
		} else if r.T != walRelease {
			note(r)
		}
		maxRev = max(maxRev, r.Rev)
	}
	// Revisions go on past the file's, and past the wall clock in µs.
	k.rev = max(maxRev, time.Now().UnixMicro())
	k.durable = k.rev
}

// kvSnapshot encodes the whole state as a data file (under s.mu).
func (s *Server) kvSnapshot() []byte {
	k := &s.kv
	b := appendFrame(nil, &walRec{T: walHeader, ID: k.id, Rev: k.rev, Version: walVersion})
	for name, a := range k.apps {
		a.keys.Ascend(func(it *kvItem) bool {
			b = appendFrame(b, &walRec{T: walPut, App: name, Key: it.key, Val: it.value, Rev: it.rev, TTL: it.ttl, Wall: it.wall})
			return true
		})
		for _, l := range a.leases {
			b = appendFrame(b, &walRec{T: walGrant, App: name, Key: l.key, Rev: l.token, TTL: int64(l.ttl / time.Millisecond), Addr: l.holder, Inc: l.inc})
		}
	}
	for key, sess := range k.sessions {
		for seq, res := range sess.results {
			if res.Code == kvOK {
				b = appendFrame(b, &walRec{T: walResult, App: key.app, Addr: key.addr, Inc: sess.inc, Seq: seq, Rev: res.Rev, TTL: int64(res.TTL)})
			}
		}
	}
	return b
}

// replace writes b to a new data file and renames it over the old one
// (w.f then appends to the new file).
func (w *kvWAL) replace(b []byte) error {
	tmp := w.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("mars: write %s: %w", tmp, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, w.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("mars: write %s: %w", w.path, err)
	}
	syncDir(filepath.Dir(w.path))
	if w.f != nil {
		w.f.Close()
	}
	w.f, w.size = f, int64(len(b))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// kvWriter appends and syncs the data file, then releases what waited
// for it. It runs on its own goroutine until the server closes.
func (s *Server) kvWriter() {
	defer s.wg.Done()
	w := s.kv.wal
	for {
		select {
		case <-s.done:
			w.flush(s)
			return
		case <-w.wake:
		}
		w.flush(s)
	}
}

func (w *kvWAL) flush(s *Server) {
	w.mu.Lock()
	buf, top := w.buf, w.top
	w.buf = nil
	w.mu.Unlock()
	if len(buf) > 0 {
		_, err := w.f.Write(buf)
		if err == nil {
			err = w.f.Sync()
		}
		if err != nil {
			// Acknowledging would break the promise; holding back forever
			// would stall every writer. Say so loudly and go on.
			w.log.Error("mars: cannot write the key-value data file; changes are acknowledged without it", "err", err)
		}
		w.size += int64(len(buf))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var snap []byte
	if w.size > walCompactMin && w.size > 2*int64(s.kvStateBytes()) {
		// The snapshot holds every change so far, logged or not.
		w.mu.Lock()
		w.buf = nil
		top = max(top, w.top)
		w.mu.Unlock()
		snap = s.kvSnapshot()
	}
	s.mu.Unlock()
	if snap != nil {
		if err := w.replace(snap); err != nil {
			w.log.Error("mars: cannot compact the key-value data file", "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.kvDurable(top)
	}
}

// kvStateBytes is about what the state takes in a data file.
func (s *Server) kvStateBytes() int {
	n := 0
	for _, a := range s.kv.apps {
		n += a.bytes + 32*a.keys.Len() + 64*len(a.leases)
	}
	return n
}

// kvClose flushes and closes the data file (after the server stopped).
func (s *Server) kvClose() {
	if w := s.kv.wal; w != nil && w.f != nil {
		w.mu.Lock()
		buf := w.buf
		w.buf = nil
		w.mu.Unlock()
		if len(buf) > 0 {
			w.f.Write(buf)
		}
		w.f.Sync()
		w.f.Close()
		w.f = nil
	}
}
