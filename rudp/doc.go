// Package rudp carries reliable and unreliable messages between processes
// over one UDP port each, on the KCP state machine of kcp-go (a fork of it
// in internal/kcp, with segments sized to the path).
//
// # Reliable messages
//
// Send (and SendWithHeader, SendTracked) queue one message to a peer
// address. The transport keeps one session per peer, used in both
// directions: the first message dials it with a three-way handshake that
// exchanges the two transports' incarnations (random 64-bit identities)
// and a fresh random token per dial from each side, so every dial gets a
// new conversation, and a peer restarted on the same address is a new
// peer that nothing meant for the old one reaches. The responder keeps no
// state until the dialer proves it receives packets at its address; a SYN,
// even with a new incarnation, never displaces a live session without that
// proof. When both sides dial at once they end with one session.
// Keepalives, close and reset frames carry tags derived from the session's
// tokens, which are never published (see handshake.go). Messages are framed ([length u32][kind]) on
// the KCP stream, so boundaries are kept; one peer's messages arrive in
// order, each exactly once. A message is 0 to MaxMessageSize bytes (plus
// up to MaxHeaderSize of header for SendWithHeader); a larger one is
// refused before anything is sent, and a frame announcing more is a
// protocol error that resets the session.
//
// # Unreliable messages
//
// USend sends a message as datagrams, never retransmitted and, without
// cluster keys, with no session (with keys, see below). Above MaxSize
// bytes it is split into parts of at most MaxPacketSize bytes on the
// wire; the receiver reassembles it, or drops
// it whole when a part is missing after Config.ReassemblyTTL, holding at
// most Config.ReassemblyLimit bytes. Messages of at most MaxSize bytes
// sent to one address in quick succession share datagrams, and the
// datagrams share system calls (sendmmsg); the datagrams are as large as
// the peer reads and the path carries when a session with it knows (its
// CAPS: on loopback 63 KiB), else at most MaxPacketSize (ubatch.go).
//
// # Liveness
//
// KCP has no close and no heartbeat; rudp adds both. An idle session sends
// a keepalive every min(RetryInterval, RetryTimeout/4); a peer silent for
// RetryTimeout is dead, and so is a session whose data in flight gets no
// acknowledgement for RetryTimeout while the peer's window is open; a side
// that ends a session tells the other (a tagged reset); Close flushes and
// sends a close frame. A packet for a session the receiver does not know
// draws a hint that makes the sender probe with a new handshake (with
// cluster keys: the receiver dials the sender back), so a peer restarted
// on the same address replaces its predecessor's sessions at once; an
// idle session finds it by its next keepalive, or sooner by Probe (mesh
// probes the peers of calls that wait for a reply). A
// handshake unanswered for RetryTimeout fails (ErrUnreachable); one
// answered but not proven by the peer within RetryTimeout of the answer
// (its cookie may have expired while the answer waited in this side's
// socket) starts again once with what it queued, then fails so. Silence, of a peer or of a handshake, is judged from the read
// loop's point of view: not while it is behind (it has not yet handled
// what reached the socket by the limit, judged by the kernel's arrival
// stamp of the last datagram it read, or datagrams wait unread in its
// socket) nor in a check that itself ran late (the process was short of
// CPU); the verdict waits for the next check. A node whose socket stays
// seconds deep therefore calls nobody silent until it has caught up
// (meanwhile mesh learns of a dead node from MARS, and calls to it end at
// their deadline). A slow batch of
// packets sends the acknowledgements owed so far without waiting for its
// end. A session busy delivering a large message still speaks: the
// deliverer lets go of the session every 256 KiB it decodes (a large body
// is kept in pieces, joined outside the session's lock), and a check that
// finds the session busy sends its keepalive without waiting.
//
// These checks run every min(max(RetryTimeout/30, 10 ms), 100 ms) while a
// handshake, data in flight or a partial unreliable message needs
// watching; an idle transport wakes only when a keepalive or the silence
// limit is due (keepalives due within that period go out together, a
// little early), since in a sleeping process each wake-up costs far more
// than the checks.
//
// # Retransmission
//
// A lost segment is sent again on the first acknowledgement of a later
// one (fast retransmission), by a tail-loss probe when it is the last in
// flight, or when its timer expires. The timeout follows the measured
// round trip (in µs) above a floor that adapts between 2 and 40 ms: it
// starts at the top, doubles whenever an acknowledgement shows that a
// segment sent again had arrived the first time, and halves whenever the
// second transmission was the one that arrived. So a clean path sends
// nothing twice that a stalled process did not make it send (and a timer
// that finds the read loop with datagrams unread lets it go first, once),
// while on a path that loses packets a loss costs little more than a
// round trip: with 1 ms each way and 1 % or 5 % loss, RPC p99 about 8 ms
// (internal/kcp rto.go, bench/analysis.md).
//
// # Flow control
//
// SendMsg waits while a peer's queue is over Config.MaxQueued, or returns
// ErrWouldBlock with NoWait. Pause stops delivering one peer's reliable
// messages: they stay in KCP, the receive window closes and the peer's
// sender waits; Resume delivers them in order on the event goroutine. When a session
// ends, OnPeerDown hears why (a *PeerError wrapping ErrPeerDown and one
// reason) and how many messages were never acknowledged; Drain and
// SendTracked callers learn it too, and the next Send dials again.
//
// # Batching
//
// The read loop takes packets with recvmmsg and acknowledges per batch;
// a pure acknowledgement waits briefly (ackDelay, 200 µs) for outgoing
// data to carry it: KCP's Input sends nothing by itself (internal/kcp),
// and the session flushes at once only when data is due or a packet's
// worth of acknowledgements is owed. A session in a
// conversation (it owed a delayed ack within the last millisecond) arms
// the delayed-ack timer when it sends data, so that arming it when the
// answer arrives, which wakes a second OS thread in an idle process, is
// not on the answer's path. Senders to one peer share
// flushes, and a stream of small sends is packed into full datagrams by a
// flusher goroutine, written with sendmmsg; the small messages that wait
// for such a flush (or for the one after a burst of replies, or for the
// next round of a flush under way) also share KCP segments, so one
// segment, its acknowledgement and its bookkeeping serve many messages. A
// lone message still goes out at once, in its own segment, unless sent
// with SendOptions.Later: then the flusher sends it (a sender that goes on
// to other peers, such as a publish to many nodes, lets each session's
// messages gather meanwhile). Where the interface towards
// the peer has a large MTU (loopback, jumbo frames), a session's KCP
// segments are up to 16 KiB and its datagrams up to 63 KiB (a 64 KiB
// message is 5 segments in 2 datagrams on loopback instead of 48 and 48)
// once the peer's CAPS, sent during the handshake, says it takes them (a
// transport from before CAPS keeps getting the standard sizes; caps.go);
// a session's receive side holds at most about Config.RecvWindow x 1,536
// bytes whatever its segment size. On Linux (amd64, arm64)
// these socket calls are raw system calls on the non-blocking socket
// (syscall.RawSyscall6 inside its RawConn), which spares an idle process
// the wake-up of the runtime's sysmon thread that an ordinary system call
// costs, and the read loop runs inside one RawConn.Read, so that after a
// batch that emptied the socket it waits for the poller at once instead
// of first reading EAGAIN; elsewhere they go through x/net (IPv4) or the
// net package.
//
// # Readers
//
// One goroutine at a time reads the socket and never runs code that may
// block. For the kinds Config.MayBlock claims, it hands the socket (and
// its buffers) to a parked follower before delivering, so OnMessage for
// them may block without stopping the transport (leader/follower).
//
// # Cluster keys
//
// With Config.Keys set, every datagram is authenticated and encrypted
// with AES-256-GCM, and one that does not open is dropped before anything
// parses it, counted in Stats.AuthFailures and never answered in a way a
// process without a key can use: no SYN-ACK, no reset hint, no state; at
// most, for a datagram that looks like a session packet, a sealed SYN
// (the dial back below, rate-limited). Nothing is logged per packet, and a
// failed datagram costs no allocation.
//
// Handshake packets (SYN, SYN-ACK, ACK) are sealed with a key derived
// from a cluster key (HKDF-SHA256) under a random nonce, and carry an
// ephemeral X25519 public key and a timestamp. A dialer sends one SYN per
// cluster key, Keys[0] first; the responder answers with the key that
// opened it. So two transports connect when their lists share any key,
// which is how keys rotate without downtime: add the new key everywhere
// (second), then make it first everywhere, then remove the old one.
// The responder still keeps no state before the ACK: when it is not
// dialing itself, its ephemeral key is derived from the SYN and its
// cookie secret, a random one per cookie bucket (a few seconds) that is
// forgotten two buckets later. Each session gets its own pair of keys (one per direction),
// derived with HKDF from the X25519 shared secret and the handshake
// transcript, so recorded traffic stays secret even if a cluster key
// leaks later (forward secrecy).
//
// Every other datagram travels in a session packet, [0x30][counter u64]
// [ciphertext][16-byte tag]: SealOverhead (25) bytes more, which KCP
// segments and unreliable datagrams leave room for, so a sealed packet
// never exceeds MaxPacketSize. The counter is the nonce; the receiver
// drops a counter it has seen, or one more than about 2,000 behind the
// newest (Stats.Replays). A handshake packet is dropped when its
// timestamp is more than 60 s from the receiver's clock (clocks of a
// cluster must agree that well) or when it was seen before; an ACK is
// also bound to the responder's cookie, valid a few seconds. So replayed
// datagrams, of this session or an earlier one, deliver nothing and
// create, reset or end no session.
//
// Unreliable messages need the session's keys: USend to a peer without a
// session dials it, and up to 256 datagrams (256 KiB) wait for the
// handshake; they are dropped, counted in Stats.HeldDrops, if it fails or
// more wait. Both ends see OnPeerUp as for reliable traffic.
//
// What changes with keys: a packet for a session the receiver does not
// know cannot be told from garbage, so it draws no hint. Instead the
// receiver dials the sender back (a sealed SYN, keeping no state until a
// holder of a cluster key answers; at most once per address per 100 ms
// and 256 per second): a peer that crashed and restarted on the same
// address is found by the first packet its peers' stale sessions send
// there (data or a keepalive), which replace those sessions at once
// (ErrPeerReset, failing what was pending on them).
//
// # Testing
//
// New takes any net.PacketConn; package faultnet provides an in-memory
// one with loss, duplication, reordering, delay and partitions.
package rudp
