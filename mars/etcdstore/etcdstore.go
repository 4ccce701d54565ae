// Package etcdstore keeps the state of MARS replicas in etcd: a mars.Store
// over go.etcd.io/etcd/client/v3. Every mars-server started with
// `-store etcd -etcd-endpoints URL[,URL...]` over one etcd is a replica of
// one registry, and any of them serves any node.
//
// Layout, under Options.Prefix (default "/marsmesh/"):
//
//	id                 the state's random ID (the MARS incarnation nodes see)
//	n/<app>/<address>  a node record (mars.EncodeStoredNode), on its replica's lease
//	g/<app>/<address>  a guest record, likewise
//	k/<app>/<key>      a shared-data value (decimal int16)
//	a/<app>/<n|g><address>  a node's or guest's Ack (mars.EncodeStoredAck), on no lease;
//	                   read and written only inside transactions (Load and Watch skip it)
//	v/<app>/<key>      a key of the key-value store (its value as is); with a TTL, on a lease of its own
//	L/<app>/<name>     a lease (mars.EncodeStoredLease), on an etcd lease of the lease's TTL
//	r/<app>/<address>#<inc>#<seq>  the result of a node's write, on a lease of about 6 minutes;
//	                   read only inside transactions (Load and Watch skip it)
//	sync               the progress marker: Progress writes it (empty), so
//	                   every watch sees an event at the revision it took
//
// with <app>, <address> and <key> path-escaped. Each replica holds one lease
// (Options.SessionTTL, default 10 s) and keeps it alive; the records of the
// nodes it serves are written with it, so they expire when the replica dies
// and no other replica took them over. Writes are transactions that compare
// the mod revisions of every record they read and retry on a conflict;
// versions sent to nodes are etcd revisions.
//
// A replica serves nodes the versions its copy holds, so Watch reports only
// revisions whose changes it delivered: those of the events it received,
// which etcd sends in revision order. It never trusts a progress
// notification: on an etcd without the fix of etcd-io/etcd issue 15220
// (Debian's 3.4.23 among them) a requested one carries the server's
// revision at once, while events before it are still on their way (a watch
// resumed after a reconnect, catching up), and the client library would
// resume a broken watch after that revision too. Progress writes the marker
// key instead, whose event reaches the watch after every earlier change on
// every etcd version.
//
// Package mars does not import this package: a program that imports only
// mesh or mars does not compile the etcd client.
package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/marsmesh/marsmesh/mars"
)

// reconnectMax bounds the wait between attempts to reconnect to etcd.
const reconnectMax = time.Second

// ErrUnreachable is wrapped by New when etcd does not answer in time.
var ErrUnreachable = errors.New("etcdstore: etcd unreachable")

// Options configures a Store. Zero values mean the defaults.
type Options struct {
	// Endpoints are etcd client URLs ("http://127.0.0.1:2379"); required.
	Endpoints []string
	// Prefix is the key prefix of the registry. Default "/marsmesh/".
	Prefix string
	// DialTimeout bounds how long New waits for etcd. Default 5 s.
	DialTimeout time.Duration
	// SessionTTL is the lease TTL: how long the records of a replica that
	// died stay listed (its nodes move to other replicas well before).
	// Default 10 s; at least 2 s.
	SessionTTL time.Duration
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
}

// Store is a mars.Store in etcd. Create it with New; Close it after the
// mars.Server that uses it.
type Store struct {
	opts   Options
	cli    *clientv3.Client
	id     uint64
	log    *slog.Logger
	lease  atomic.Int64
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

var (
	_ mars.Store       = (*Store)(nil)
	_ mars.StoreLeaser = (*Store)(nil)
	_ mars.StoreCAS    = (*Store)(nil)
)

// CheckEndpoints checks etcd client URLs: http or https, with a host.
func CheckEndpoints(eps []string) error {
	if len(eps) == 0 {
		return errors.New("etcdstore: no etcd endpoints")
	}
	for _, e := range eps {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("etcdstore: etcd endpoint %q: want a URL such as http://127.0.0.1:2379", e)
		}
	}
	return nil
}

// New connects to etcd, waiting at most DialTimeout for an answer, reads
// (or creates) the state's ID and takes this replica's lease.
func New(opts Options) (*Store, error) {
	if err := CheckEndpoints(opts.Endpoints); err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = "/marsmesh/"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 10 * time.Second
	}
	opts.SessionTTL = max(opts.SessionTTL, 2*time.Second)
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		Logger:      zap.NewNop(),
		// gRPC's default reconnect backoff grows to 2 minutes: after an
		// etcd restart the replicas would stay away that long.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
			MinConnectTimeout: opts.DialTimeout,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, strings.Join(opts.Endpoints, ","), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{opts: opts, cli: cli, log: opts.Logger, ctx: ctx, cancel: cancel}
	if err := s.init(); err != nil {
		cancel()
		cli.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.keepAlive()
	return s, nil
}

func (s *Store) init() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	defer cancel()
	idKey := s.opts.Prefix + "id"
	fresh := strconv.FormatUint(newID(), 16)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(idKey), "=", 0)).
		Then(clientv3.OpPut(idKey, fresh)).
		Else(clientv3.OpGet(idKey)).
		Commit()
	if err != nil {
		return fmt.Errorf("%w at %s (waited %v): %v", ErrUnreachable, strings.Join(s.opts.Endpoints, ","), s.opts.DialTimeout, err)
	}
	v := fresh
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 {
			return fmt.Errorf("etcdstore: %s vanished while being read", idKey)
		}
		v = string(kvs[0].Value)
	}
	if s.id, err = strconv.ParseUint(v, 16, 64); err != nil || s.id == 0 {
		return fmt.Errorf("etcdstore: %s holds %q, not a hex ID (delete it to start over)", idKey, v)
	}
	return s.grant(ctx)
}

func newID() uint64 {
	for {
		if v := rand.Uint64(); v != 0 {
			return v
		}
	}
}

func (s *Store) grant(ctx context.Context) error {
	l, err := s.cli.Grant(ctx, int64((s.opts.SessionTTL+time.Second-1)/time.Second))
	if err != nil {
		return fmt.Errorf("%w at %s: lease: %v", ErrUnreachable, strings.Join(s.opts.Endpoints, ","), err)
	}
	s.lease.Store(int64(l.ID))
	return nil
}

// keepAlive keeps the lease alive; when it is lost (etcd unreachable for
// longer than SessionTTL) it takes a new one, and moves the records still
// on the lost one to it (moveRecords). Records already expired with the
// lost one are gone: their nodes register again at their next report.
func (s *Store) keepAlive() {
	defer s.wg.Done()
	for {
		lost := clientv3.LeaseID(s.lease.Load())
		ch, err := s.cli.KeepAlive(s.ctx, lost)
		if err == nil {
			for range ch {
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("etcdstore: lease lost; taking a new one", "err", err)
		for s.ctx.Err() == nil {
			ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
			err := s.grant(ctx)
			cancel()
			if err == nil {
				break
			}
			s.log.Warn("etcdstore: cannot take a lease", "err", err)
			select {
			case <-s.ctx.Done():
			case <-time.After(time.Second):
			}
		}
		if s.ctx.Err() == nil {
			s.moveRecords(lost)
		}
	}
}

// moveRecords attaches the records still on the lost lease to the current
// one. The client gives a lease up when etcd does not answer for its TTL,
// but etcd may still hold it (a restarted etcd renews every lease): with
// nobody keeping it alive, its records would expire a TTL after etcd is
// back, and idle nodes of this replica would drop out of every view until
// they register again. Each record moves only if it is still on the lost
// lease (a nested transaction per record), keeping its value.
func (s *Store) moveRecords(lost clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.DialTimeout)
	defer cancel()
	ttl, err := s.cli.TimeToLive(ctx, lost, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 {
		return // expired, with its records
	}
	cur := clientv3.LeaseID(s.lease.Load())
	for keys := ttl.Keys; len(keys) > 0; {
		n := min(len(keys), storeTxnChunk)
		ops := make([]clientv3.Op, 0, n)
		for _, k := range keys[:n] {
			ops = append(ops, clientv3.OpTxn(
				[]clientv3.Cmp{clientv3.Compare(clientv3.LeaseValue(string(k)), "=", lost)},
				[]clientv3.Op{clientv3.OpPut(string(k), "", clientv3.WithIgnoreValue(), clientv3.WithLease(cur))}, nil))
		}
		keys = keys[n:]
		if _, err := s.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			s.log.Warn("etcdstore: cannot move the records of a lost lease (they expire with it)", "err", err)
			return
		}
	}
}

// storeTxnChunk bounds the operations of one transaction (etcd allows 128).
const storeTxnChunk = 64

// ID is the state's ID.
func (s *Store) ID() uint64 { return s.id }

// Close stops keeping the lease alive (the records expire after
// SessionTTL unless other replicas take them over) and closes the client.
// It is idempotent.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		err = s.cli.Close()
	})
	return err
}

func (s *Store) key(k mars.StoreKey) string {
	return s.opts.Prefix + string(rune(k.Kind)) + "/" + url.PathEscape(k.App) + "/" + url.PathEscape(k.Name)
}

// parse reads a key of the layout; ok is false for anything else.
func (s *Store) parse(key []byte) (mars.StoreKey, bool) {
	rest, ok := strings.CutPrefix(string(key), s.opts.Prefix)
	if !ok || len(rest) < 2 || rest[1] != '/' {
		return mars.StoreKey{}, false
	}
	kind := mars.StoreKind(rest[0])
	switch kind {
	case mars.StoreNode, mars.StoreGuest, mars.StoreShared, mars.StoreKVValue, mars.StoreLeaseRec:
	default:
		return mars.StoreKey{}, false
	}
	appEsc, nameEsc, ok := strings.Cut(rest[2:], "/")
	if !ok {
		return mars.StoreKey{}, false
	}
	app, err1 := url.PathUnescape(appEsc)
	name, err2 := url.PathUnescape(nameEsc)
	if err1 != nil || err2 != nil {
		return mars.StoreKey{}, false
	}
	return mars.StoreKey{App: app, Kind: kind, Name: name}, true
}

// Load returns every record of the registry.
func (s *Store) Load(ctx context.Context) ([]mars.StoreRecord, int64, error) {
	resp, err := s.cli.Get(ctx, s.opts.Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	out := make([]mars.StoreRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if k, ok := s.parse(kv.Key); ok {
			out = append(out, mars.StoreRecord{StoreKey: k, Value: kv.Value, Rev: kv.ModRevision})
		}
	}
	return out, resp.Header.Revision, nil
}

// Watch delivers every change after rev. The revision it reports is that
// of the last event received (see the package doc: never a progress
// notification's).
func (s *Store) Watch(ctx context.Context, rev int64, fn func([]mars.StoreRecord, int64)) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(ctx, s.opts.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w: revision %d compacted", mars.ErrStoreCompacted, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if resp.IsProgressNotify() {
			continue // none is asked for; and one may run ahead of the events
		}
		recs := make([]mars.StoreRecord, 0, len(resp.Events))
		last := int64(0)
		for _, ev := range resp.Events {
			last = max(last, ev.Kv.ModRevision)
			k, ok := s.parse(ev.Kv.Key)
			if !ok {
				continue
			}
			r := mars.StoreRecord{StoreKey: k, Value: ev.Kv.Value, Rev: ev.Kv.ModRevision}
			if ev.Type == clientv3.EventTypeDelete {
				r.Value, r.Deleted = nil, true
			}
			recs = append(recs, r)
		}
		if last > 0 {
			fn(recs, last)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("etcdstore: watch closed")
}

// Progress writes the progress marker: its event reaches every watch of
// the prefix after every change committed before it, so a watch reports a
// revision at least etcd's current one soon.
func (s *Store) Progress(ctx context.Context) error {
	_, err := s.cli.Put(ctx, s.opts.Prefix+"sync", "")
	return err
}

// maxAttempts bounds the retries of one Update under contention.
const maxAttempts = 64

// Update reads keys, calls fn and writes its result if none of the keys
// changed meanwhile, retrying otherwise.
func (s *Store) Update(ctx context.Context, keys []mars.StoreKey, fn func([]mars.StoreRecord) ([]mars.StoreWrite, error)) (int64, error) {
	names := make([]string, len(keys))
	gets := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		names[i] = s.key(k)
		gets[i] = clientv3.OpGet(names[i])
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return 0, err
		}
		cur := make([]mars.StoreRecord, len(keys))
		cmps := make([]clientv3.Cmp, len(keys))
		for i, k := range keys {
			cur[i].StoreKey = k
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
				cur[i].Value, cur[i].Rev = kvs[0].Value, kvs[0].ModRevision
			}
			cmps[i] = clientv3.Compare(clientv3.ModRevision(names[i]), "=", cur[i].Rev)
		}
		writes, err := fn(cur)
		if err != nil {
			return 0, err
		}
		if len(writes) == 0 {
			return resp.Header.Revision, nil
		}
		ops := s.ops(writes)
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return 0, err
		}
		if tr.Succeeded {
			return tr.Header.Revision, nil
		}
	}
	return 0, fmt.Errorf("etcdstore: %d conflicting attempts to update %d keys", maxAttempts, len(keys))
}

// ops turns writes into etcd operations, the last write of a key winning
// (a transaction may touch a key once).
func (s *Store) ops(writes []mars.StoreWrite) []clientv3.Op {
	last := make(map[mars.StoreKey]int, len(writes))
	for i, w := range writes {
		last[w.StoreKey] = i
	}
	lease := clientv3.LeaseID(s.lease.Load())
	ops := make([]clientv3.Op, 0, len(last))
	for i, w := range writes {
		if last[w.StoreKey] != i {
			continue
		}
		k := s.key(w.StoreKey)
		switch {
		case w.Delete:
			ops = append(ops, clientv3.OpDelete(k))
		case w.Lease != 0:
			ops = append(ops, clientv3.OpPut(k, string(w.Value), clientv3.WithLease(clientv3.LeaseID(w.Lease))))
		case w.Session:
			ops = append(ops, clientv3.OpPut(k, string(w.Value), clientv3.WithLease(lease)))
		default:
			ops = append(ops, clientv3.OpPut(k, string(w.Value)))
		}
	}
	return ops
}

// Grant makes an etcd lease of at least ttl (etcd counts whole seconds,
// and at least its minimum TTL).
func (s *Store) Grant(ctx context.Context, ttl time.Duration) (int64, error) {
	l, err := s.cli.Grant(ctx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, err
	}
	return int64(l.ID), nil
}

// KeepAlive renews an etcd lease once; mars.ErrStoreLeaseGone when it
// expired or was revoked.
func (s *Store) KeepAlive(ctx context.Context, id int64) error {
	_, err := s.cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("%w: %x", mars.ErrStoreLeaseGone, id)
	}
	return err
}

// Revoke ends an etcd lease, deleting its keys.
func (s *Store) Revoke(ctx context.Context, id int64) error {
	_, err := s.cli.Revoke(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil
	}
	return err
}

// WriteIf applies writes in one transaction if every record of expect is
// at its revision (0: absent); otherwise it returns them as they are.
func (s *Store) WriteIf(ctx context.Context, expect []mars.StoreRecord, writes []mars.StoreWrite) (bool, []mars.StoreRecord, int64, error) {
	cmps := make([]clientv3.Cmp, len(expect))
	gets := make([]clientv3.Op, len(expect))
	for i, e := range expect {
		name := s.key(e.StoreKey)
		cmps[i] = clientv3.Compare(clientv3.ModRevision(name), "=", e.Rev)
		gets[i] = clientv3.OpGet(name)
	}
	tr, err := s.cli.Txn(ctx).If(cmps...).Then(s.ops(writes)...).Else(gets...).Commit()
	if err != nil {
		return false, nil, 0, err
	}
	if tr.Succeeded {
		return true, nil, tr.Header.Revision, nil
	}
	cur := make([]mars.StoreRecord, len(expect))
	for i, e := range expect {
		cur[i].StoreKey = e.StoreKey
		if kvs := tr.Responses[i].GetResponseRange().Kvs; len(kvs) == 1 {
			cur[i].Value, cur[i].Rev = kvs[0].Value, kvs[0].ModRevision
		}
	}
	return false, cur, tr.Header.Revision, nil
}
