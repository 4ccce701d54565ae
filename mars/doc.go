// Package mars is the MARS registry: a server that knows every node of a
// cluster, and the client a node uses to stay registered and keep a local
// view of the others.
//
// # Model
//
// MARS keeps state per app name (namespace; "" is the default one). An app
// holds nodes and shared data. A node is listed by its mesh address
// ("host:port" of its one UDP port) with its incarnation, type, role,
// status (online, offline, taken), public endpoint and metadata values
// (a map of any msgpack-encodable values). Shared data maps keys of 1 to
// MaxKeyLen (54) bytes to int16 values; an app holds up to
// ServerOptions.MaxSharedKeys keys (default 100,000). Apps never see each
// other.
//
// # Protocol
//
// Nodes and MARS exchange msgpack-encoded messages of kinds KindMin..KindMax
// (0x40..0x4F) over the node's rudp transport, reliably. Every Interval (1 s)
// and a few milliseconds after a local change, a node reports; MARS answers
// with what changed since the version of the node's view (a delta), or a
// full snapshot on first contact or when the view is older than MARS's
// tombstones reach (5 minutes by default); after a MARS restart, the parts
// of the node's kept view that differ (see MARS restarts). Versions come
// from one counter per MARS, so they increase within each app; removed
// nodes and keys leave tombstones for the deltas. A heartbeat with nothing
// to say is about 50 bytes each way, so steady-state traffic is O(changes):
// MARS finds the changes since a version by binary search in its change log.
// After MARS was silent for a while, or answers from another replica, a
// report about two intervals later asks for the changes since the version
// the view held before (a look-back): a view that went past a change it
// never got, which no later delta would carry, gets it then.
// See clientsync.go for the node side and server.go for MARS's.
//
// # Liveness
//
// A node silent for OfflineAfter (3 s) is listed offline; silent for
// RemoveAfter (10 s) it is removed. A node that closes its Client sends a
// leave and is offline at once, then removed RemoveAfter after its last
// report. A node that restarts on the same address with a new incarnation
// replaces the old entry at its first report; reports still arriving from
// the old incarnation are refused.
//
// # MARS restarts
//
// Every sync carries MARS's random incarnation. A node that sees a new one
// re-registers within a random delay of up to 500 ms, sending its info, its
// pending changes, the changes MARS acknowledged in the last 2.5 intervals
// (other views may not hold them yet) and the shared data of its view.
// Changes apply as changes, so an acknowledged write beats any seed (an
// acknowledged add goes again as a set of the value the node's view shows
// after it, so it is not applied twice). A
// seeded key is added only when MARS has no value for it and has not
// removed it since it started, so the first seed to arrive wins; when MARS loaded shared data
// from ServerOptions.DataDir and the node's view was last synced before that
// file was saved, the file wins and the seed is ignored (this compares the
// node's wall clock with MARS's: keep them in sync, as NTP does). A key removed in
// the last moments before a crash, while some node had not yet synced the
// removal, may therefore come back; a removal sent to the new MARS before
// any seed of its key leaves a tombstone, so later seeds do not bring it
// back. With DataDir, MARS acknowledges a
// shared-data change only once the data file holds it (the reply waits for
// the write and fsync), so an acknowledged write survives a crash of MARS
// and of its writer. Two nodes writing one key within 2.5 intervals of a
// crash race again at the restart, as they did before it.
// The node keeps its view and reconciles it with the new MARS by digest
// (digest.go) rather than taking a full snapshot: its reports carry the
// digest of the view (a 16-bit sum per bucket of about 40 entries, and a
// 64-bit sum of all) until the new MARS answers with the contents of the
// buckets that differ (the view replaces those and keeps the rest) and
// MARS's 64-bit sum, which the view then checks itself against (a mismatch
// asks for a full snapshot). While registrations of other nodes still
// arrive (one within 500 ms, for up to 5 s after the start) and more than
// 1/16 (and more than 4) of the buckets differ, MARS asks the node to send
// its digest again half an interval later; when more than half of 8 or
// more buckets differ, it sends a full snapshot. A MARS of an earlier
// revision skips the digest and sends a full snapshot.
// Meanwhile the node's view keeps listing
// what it knew, for a grace period of 3 intervals + 500 ms, and drops what
// the new MARS has not confirmed by then (entries of differing buckets
// the new MARS does not list). While MARS is down, nodes answer
// lookups from their last view and Client.InTouch turns false after 3
// intervals.
//
// # Replicas over a Store
//
// With ServerOptions.Store, several servers over one store (etcd through
// package mars/etcdstore, or a MemoryStore in one process) are replicas of
// one registry (server_store.go). Their incarnation is the store's ID and
// their versions are the store's revisions, so a node that moves to another
// replica (ClientConfig.MarsAddr lists them) continues with a delta and
// does not re-register. Each replica keeps a copy of the state, loaded and
// then kept current by a watch, and answers from it; a heartbeat writes
// nothing. A replica hands out only versions its copy holds: the store's
// watch reports a revision only once it delivered every change up to it
// (etcdstore never trusts an etcd progress notification for that), and a
// change that arrives at or below a revision already reported makes the
// replica load its copy again, past every version it handed out, so every
// node gets a full snapshot. Registrations, info and shared-data changes
// are store transactions that also move the node's Ack, so each operation
// applies exactly once whichever replica receives it, also when it is sent
// again after a failover; Client.AddSharedData adds from many nodes never
// overwrite each other. A replica that fell behind (its store away) skips
// a node's reports that waited over 2 s with a newer one queued. A node's record lives in the session (etcd lease)
// of the replica that serves it: that replica lists it offline after
// OfflineAfter + min(2 s, OfflineAfter) of silence (time for another
// replica to take a moved node over) and removes it after RemoveAfter, and if the replica dies the
// record expires with its session unless the node moved. The node's Ack is
// also kept outside its record and any session (StoredAck): a node whose
// record vanished registers again with the changes it holds unacknowledged,
// and those applied already are not applied twice. A graceful leave deletes
// it; a crashed node's mark stays until its address registers anew.
//
// # Key-value store and leases
//
// MARS also holds, per app, a key-value store (keys of 1 to MaxKVKeyLen
// bytes, values up to MaxKVValueLen) and leases: Client.Put, Get, Delete,
// List, Watch, Claim, ListLeases. A node sends KindKV requests, each
// answered by one KindKVReply, only to a MARS whose syncs carry the syncKV
// flag; a MARS of an earlier revision answers KindKV with "unknown message
// kind", which the client takes as ErrKVUnsupported too. The client sends
// a request again after a second without an answer and at once when it
// moves to another MARS address; writes carry a write number, and MARS
// keeps the result of each write the node has not yet seen answered, so a
// resend is answered with the first result and never applied twice.
// Every change takes the next revision (the server's counter, starting at
// the wall clock in microseconds; with a Store, the store's revision); a
// lease's token is the revision of its grant. Watches are long polls from
// a revision, answered from each app's history of changes (the last
// 100,000 or 64 MiB); past it, the watch resyncs. See kv_server.go (no
// Store, and DataDir's kv.wal in kv_wal.go), kv_store.go (replicas) and
// lease_client.go (the lease timing and its clock bound).
//
// # Who may speak
//
// MARS takes only reliable messages, which arrive on an established rudp
// session; an unreliable datagram of a MARS kind (its source may be
// forged) is counted (ServerStats.Ignored) and dropped unanswered. A report
// or leave for a mesh address is taken only from that address's own
// session (ServerOptions.TrustReportedAddr turns this off, for load
// generators only): mesh nodes and guests list the address they send from.
// A node takes MARS messages only as reliable messages from the MARS
// addresses of its MarsAddr (Client.Dropped counts the rest). A node
// reaches every replica from the address it lists, so replicas on other
// IPs of one host (127.0.0.2) or of one subnet accept it; a multi-homed
// node whose route to some replica leaves from another IP is refused there.
//
// # Bad input
//
// Malformed, truncated or oversized messages, unknown kinds, bad keys and
// bad app names are refused: the sender gets a KindError reply (surfaced by
// Client.LastError), MARS logs each cause at most once per 10 s, and every
// other node keeps being served. The client checks keys, app names and node
// fields before it sends anything.
//
// # Scale
//
// Measured with TestScale (scale_test.go; it runs only when MARS_SCALE is
// set) on a 2-core AMD EPYC VM shared with other jobs (load average 2 to 6),
// Go 1.26, rudp at commit 03b516c, 2026-11-22:
//
//	MARS_SCALE=1000,10000 go test -run=TestScale -v -timeout=24m ./mars
//
// MARS ran as a separate mars-server process (CPU from /proc/PID/stat,
// memory from VmRSS); the simulated nodes ran in the test process, 200 per
// rudp transport, each reporting once a second. Steady state, over 10 s:
//
//	nodes   MARS CPU (cores)  µs per report  RSS (MB)  report  sync reply  UDP packets per exchange
//	1,000   0.07 - 0.10       65 - 100       13        48 B    36 B        3
//	10,000  0.31 - 0.36       31 - 36        31 - 60   48 B    36 B        3
//
// Report and reply sizes are msgpack payloads (rudp adds a 5-byte frame and
// a 24-byte KCP header per packet; the third packet is the node's
// acknowledgement, MARS's own acknowledgement rides on its reply). No
// version changed and no full snapshot was sent during the window:
// steady-state traffic is O(changes). Most of MARS's CPU is the transport's
// system calls. A change on one node (a shared key and its type) reached
// all others in p50 0.5 s, max 1.0 s: the report interval, since nodes pull.
//
// Registration is the expensive part: every new node gets the whole list
// (about 30 bytes per node here), so N nodes joining cost O(N²) bytes.
// Snapshot bodies are built once per version (reused for 200 ms, so
// joiners arriving together share one) and sent behind a per-node head,
// not copied per node. MARS paces bursts by skipping replies to peers with
// a backlog; nodes ask again each interval. A MARS restart no longer costs
// a snapshot per node: nodes reconcile their kept views by digest (see MARS
// restarts). The README's scale section has the current figures; on
// 2026-12-07, with 10,000 nodes started over 60 s
// (MARS_SCALE=10000 MARS_SCALE_RESTART=1 MARS_SCALE_RAMP=60s), all were
// listed 1.4 s after the last start (2.1 ms of MARS CPU and 376 KB per
// join), and after a SIGKILL and an immediate restart every view was
// reconciled 2.8 s after the new process listened (3.3 s with -data), with
// 50 MB of syncs down (one snapshot per node, before: 3.56 GB) and 0 full
// snapshots.
//
// Replicas over etcd (MARS_SCALE_ETCD=1: two mars-server -store etcd over
// a real etcd, every node on the first, which is SIGKILLed; the simulated
// nodes send their next report to the other): with 10,000 nodes
// (MARS_SCALE=10000 MARS_SCALE_ETCD=1 MARS_SCALE_RAMP=200s) all were
// served by the other replica 1.02 s after the kill (their next report),
// with 0 full snapshots and 0 re-registrations (they continue from their
// versions), 0.5 MB up and 0.4 MB down, 0.41 s of the replica's CPU and
// 0.21 s of etcd's (the record takeovers are written in batches of 50).
// Registration through etcd (MARS_SCALE_RAMP=60s): all 10,000 nodes listed
// 1.0 s after the last start, 2.4 ms of MARS CPU per join.
//
// # Use with the mesh layer
//
// A node has one rudp transport. The mesh layer owns its OnMessage and
// passes every message with IsMarsKind(kind) to Client.HandleMessage (with
// the transport's reliable flag), and
// may pass OnPeerDown to Client.HandlePeerDown. The client accepts MARS
// messages only from the address MarsAddr resolves to, so MARS must answer
// from that address (it does, unless a multi-homed host routes otherwise). Lookups go to Client.View;
// Client.InTouch backs IsPartOfCluster.
package mars
