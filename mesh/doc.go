// Package mesh is the server-to-server API of marsmesh: nodes find each
// other through a MARS registry and message each other over reliable UDP.
// It follows the Diarkis mesh API, so code written against it reads the
// same here.
//
// # Nodes
//
// Setup (or Guest) makes the default node that the package-level functions
// use; New makes independent nodes, so tests and tools can run many in one
// process. A node binds one UDP port (scanning upwards from the configured
// port), keeps a local view of the cluster in sync with MARS about every
// second, and answers every lookup (GetNodeAddressesByType, GetNodeValue,
// GetSharedData, ...) from that view without a network call.
//
// # Membership
//
// Every node of the view has one membership state (NodeState), the same on
// every node that sees it: joining (registered, not yet serving), online,
// draining (shutting down), offline (silent), gone (left, removed or
// replaced by a new incarnation on its address). MARS decides it; a
// draining node's own notice and this node's transport (a peer silent for
// retryTimeout) bring a change forward locally. Lists meant for sending
// (GetNodeAddresses, GetNodeAddressesByType and ByRole, and the random
// pickers) hold online nodes only, so SendMany(cmd,
// GetNodeAddressesByType("game"), ...) never waits on a node that left;
// GetAllNodeAddresses and its variants list every state. OnNodeEvent and
// WatchNodes follow the changes (per node incarnation, in order, ending
// with StateGone; a subscriber that falls behind gets coalesced events,
// ReasonResync, never a gap). WaitReady returns once the node sees itself
// online in its own view. Shutdown drains first: new requests and streams
// get ErrDraining at once (the caller goes elsewhere), peers and MARS hear
// of it before the node leaves. Node values read back with one Go type per
// kind (every integer as int64), whoever set them.
//
// After Shutdown, Default returns nil and the package-level functions act
// as before Setup (sends fail with ErrNotSetup, lookups are empty) until
// Setup is called again.
//
// # Messages
//
//   - Send: reliable one-way message to the HandleCommand (decoded map) or
//     SetCommandHandler (raw bytes) handler of a command ID. Messages from
//     one sender are handled in order.
//   - USend: the same, unreliable: it arrives whole or not at all.
//   - SendMany, USendMany: fan-out along a tree; the sender reaches at most
//     limit nodes and each relays to its share of the rest (limit <= 0: the
//     sender reaches every node itself, which measured fastest for 64 node
//     processes on 2 cores: each relay adds a process wake-up to the path).
//     Every node gets the message exactly once; when a relay is unreachable
//     its share is still delivered and a *FanoutError names the nodes that
//     failed.
//   - SendRPC, SendRPCWithContext: bytes in, bytes out, to a HandleRPC
//     handler; default timeout 3 s. The deadline travels with the request
//     (HandleRPCWithContext handlers see it), and cancelling the context
//     returns at once and cancels the handler's context.
//   - SendRequest: a map or struct in, a map out through a callback (always
//     on a goroutine of its own).
//   - OpenStream, HandleStream: a two-way stream of messages, see Streams.
//   - NewRPC: a typed RPC (request and response types, msgpack-encoded),
//     defined once and used on both sides with Handle and Call.
//
// Data for Send, USend, SendMany, USendMany and SendRequest is a
// map[string]interface{}, a struct (pointer; json tags name its fields), a
// *Parcel (all encoded with msgpack), or []byte sent as it is. Payloads are
// up to MaxMessageSize (10,000,000) bytes.
//
// Internal traffic (RPC responses, fan-out relays and acks, health checks,
// streams, MARS) uses message kinds of its own, so every uint16 command ID
// is free for the application; RPC, command and stream handlers are
// separate tables.
//
// # Several handlers per ID
//
// As the Diarkis reference allows, an ID may have several handlers;
// registering one more adds it after the others. Command handlers
// (HandleCommand, SetCommandHandler) of a one-way message all run, in
// registration order (one that fails or panics does not stop the rest).
// RPC handlers (HandleRPC, HandleRPCWithContext), and command handlers
// reached by SendRequest, run in order until one returns a non-nil
// response or an error, which answers the caller. IsCommandDuplicate
// reports IDs with more than one handler, or with both an RPC and a
// command handler. A stream ID has one handler: a second is refused.
//
// # Streams
//
// OpenStream opens a stream to the HandleStream handler of an ID on
// another node (or this one), with an optional first message; both sides
// then Send and Recv messages (0 bytes up to MaxMessageSize) that arrive in
// order, exactly once, with their boundaries, on the one reliable session
// of the node pair, beside every other stream and request. CloseSend ends
// one direction (the other side's Recv returns io.EOF); the handler's
// return ends the stream (the opener's Recv returns io.EOF after the last
// message, or the handler's error as a *RemoteError). Each direction has a
// window of StreamWindowMessages messages (256 with a node of an earlier
// revision, which takes no more) and StreamWindowBytes bytes sent
// and not yet received by Recv; a writer past it waits, so a slow reader
// slows only its own stream's writer, and the messages a node holds for a
// stream stay bounded. All streams with one peer together may hold at most
// 256 MiB unread at a node (a message past it resets its stream), and one
// peer may have at most 8192 streams open at a node (more are refused). Cancelling the opener's context, or Close on either
// side, ends the stream on both sides: the other side sees IsRequestError
// and the handler's context is cancelled. A dead peer ends it within about
// the retry timeout (IsSendError).
//
// # Bounds on inbound work
//
// A node never lets one peer, packet or slow handler stall it:
//
//   - The transport's read goroutine only parses and queues: handlers and
//     fan-out relays run on goroutines of the node, and every user callback
//     (OnSendFailure, OnReady, OnInitialSync, OnUpdate, OnUpdated,
//     OnSharedDataUpdate/Remove, OnNodeEvent) runs on the node's
//     dispatcher, never on a transport goroutine or the MARS sync loop.
//     Each registration runs its callbacks one at a time, in order, on a
//     goroutine of its own while it has any (OnUpdate and OnUpdated share
//     one, so they alternate); one that blocks delays only itself. One
//     that falls behind 4,096 events gets them coalesced, the latest per
//     peer, node or key (Node.MergedEvents counts them): never dropped.
//     Answers sent from the read goroutine (no handler, shutting
//     down, fan-out acks) never wait on a full peer queue: a bounded
//     hand-off (256 at once) sends them by the request's deadline.
//   - Work from one peer (requests, one-way commands, relays) accepted and
//     not yet handled is bounded by InboundLimits: PeerCount (default
//     4,096 messages) and PeerBytes (default 64 MiB). At a bound the node
//     stops reading that peer's session (its window fills and its sender
//     slows down; other peers are untouched), counts a slow-consumer event
//     (Node.SlowConsumerEvents) and logs it once per peer per period; it
//     reads again below half of both bounds. Unreliable messages past a
//     bound are dropped (Node.InboundDrops).
//   - At most MaxHandlers (default 4,096; WithMaxHandlers) handlers run at
//     once, and one peer's at most a quarter of them, so one peer whose
//     handlers never return cannot take every slot; the rest wait, in
//     arrival order per peer, peers served in turn. One-way commands from
//     one peer still run one at a time, in order. With WithInlineHandlers
//     (opt-in, for handlers that return quickly) a request's handler runs
//     on the goroutine that received it, after that goroutine handed the
//     socket on, and one peer's requests run one after another.
//   - Hand-offs that would wake a second OS thread in an idle process use
//     the runtime's network poller instead (internal/pollwake, Linux): a
//     request that arrives while no handler runs goes to a parked worker
//     (at most 2 park), and a call (SendRPC, SendRequest, HealthCheck)
//     that is the node's only one and has no context that can end waits
//     for its response the same way. Under load both use goroutines and channels as before.
//   - A fan-out relay relays only to the nodes its MARS view lists (it
//     hands the others back to its parent, which delivers them itself),
//     to shares of at most 16,384 nodes, sharing one payload buffer, and
//     waits at most 10 s (fanoutTimeout) whatever deadline a frame claims.
//   - Send waits for room in a full peer queue until Shutdown,
//     SendRPCWithContext until its context ends, SendRPC and SendRequest
//     until their deadline.
//
// # Errors
//
// Every error wraps at most one of ErrSend (IsSendError: bad address, too
// large, unreachable or dead node, shut down), ErrRequest (IsRequestError:
// the remote handler failed, with its message in a *RemoteError, had no
// handler, or the caller cancelled), ErrRequestTimeout
// (IsRequestTimeoutError), ErrUnhealthy (IsUnhealthyError: this node has
// not synced with MARS yet, or is shut down, so it refuses to start
// requests; a MARS outage after the first sync does not make it unhealthy)
// and ErrDraining (IsDraining: the remote node is shutting down and did not
// run the request; another node may). OnSendFailure hears every peer a
// send could not reach. A call waiting on a node that dies fails with a
// send error after about the retry timeout of silence, or, if a new
// process starts on the node's address, as soon as it answers: the peer
// of a call waiting longer than 50 ms is probed whenever the session is
// quiet that long.
//
// # Tracing
//
// With a tracer provider (go.opentelemetry.io/otel/trace: WithTracerProvider
// on New, SetTracerProvider for the default node, before or after Setup, or
// Node.SetTracerProvider), a node makes OpenTelemetry spans and carries the
// W3C trace context in what it sends, so a request that crosses several
// nodes is one trace:
//
//   - SendRPC, SendRPCWithContext, SendRequest: a client span "RPC <cmd>"
//     ("Request <cmd>" for SendRequest), the child of the span in ctx
//     (SendRPCWithContext; the others start a trace);
//     the handler's server span on the receiving node is its child, and a
//     context-aware handler (HandleRPCWithContext) gets it in its ctx, so
//     the calls it makes with that ctx continue the trace.
//   - Send, USend: a producer span "Send <cmd>" (a trace of its own: they
//     take no context); the command handler's consumer span
//     "Command <cmd>" is its child.
//   - SendMany, USendMany: a producer span "SendMany <cmd>" (a trace of
//     its own); a relay makes "SendMany relay <cmd>" for its share, the
//     child of the span that sent it the hop, and every delivery is a
//     "Command <cmd>" span, the child of the same span.
//   - OpenStream: a client span "Stream <cmd>", the child of the span in
//     ctx, until the stream ends; the handler's server span, in its ctx,
//     while it runs.
//
// Spans have the attributes rpc.system=marsmesh, rpc.method and
// marsmesh.command (the command ID), network.peer.address and
// network.peer.port, and an error status when the call, handler or
// stream failed. Health checks are not traced. Tracing is off by default
// and with a nil or no-op provider; it then costs one atomic load and a
// nil check per call, and messages are sent exactly as without tracing.
// The global otel provider is used only if passed
// (WithTracerProvider(otel.GetTracerProvider())). A node with tracing off
// ignores the trace context it receives. Baggage is not carried.
//
// On the wire, a traced message is a batch of a trace entry (trace ID,
// span ID, flags, tracestate) and the message as sent untraced: 36 bytes
// more without tracestate. Nodes older than tracing drop the entry as an
// unknown kind (logging one rate-limited warning) and handle the message
// untraced, so revisions mix during a rolling upgrade. A traced request
// does not run inline (WithInlineHandlers) on the receiving node.
//
// # Key-value store and leases
//
// KV (or Node.KV) is the cluster key-value store MARS holds per app: Put
// (with a TTL, and a compare-and-swap on the key's revision), Get, Delete,
// List and Watch/WatchFrom (every change under a prefix once, in revision
// order, across MARS failovers and restarts; a KVResync event when the
// history is gone). Writes apply exactly once, also through a failover or
// a store that stalls (the client sends them again until the deadline);
// once one returns, every node's Get sees it. Claim grants a key to one
// node at a time, renewed in the background; Lease.Token grows with every
// grant of the key (fence the writes the lease protects with it) and
// Lease.Lost fires before MARS can grant the key to another node (see
// mars.Lease for the clock bound).
// Shutdown releases the node's leases first. Errors wrap ErrKVNotFound,
// ErrKVConflict, ErrKVBadKey, ErrKVLimit, ErrLeaseHeld, ErrLeaseLost,
// ErrNotLive, ErrKVUnavailable or ErrKVUnsupported (predicates
// IsKVNotFound, IsKVConflict, IsLeaseHeld, IsLeaseLost), ErrRequestTimeout
// when MARS does not answer in time, or ErrClosed.
//
// # Ownership
//
// Owner(nodeType, key) names the node that owns a key (a room, a match, a
// player) among the online nodes of a type in this node's view, by
// rendezvous (highest-random-weight) hashing: no network call, no
// allocation, about 150 ns with 50 candidates. WeightedBy(valueName)
// weighs nodes by a metadata value (a node of weight 2 owns about twice
// the keys). Every node with the same view names the same owner, and when
// a node joins or leaves only the keys it takes or gives move (about 1/N).
// Owners lists the next in line. SendRPCToOwner (and RPC.CallOwner) send
// a call to the owner, and to the next owner when the owner refuses with
// ErrDraining; OpenStreamToOwner opens a stream to it; with no node of the
// type online they fail with a send error wrapping ErrNoOwner. Hold
// records a key this node hosts: its onLoss callback runs once, on the
// dispatcher, when a change of the view makes another node the owner (a
// node joined, this node drains, a weight changed), naming the new owner,
// so the node can hand the key off (push its state over a stream: a
// draining node still opens streams, it only refuses new ones).
//
// The view-based owner is fast and needs no coordination, but it is only
// as current as the view: while a change spreads (up to a sync interval,
// or retryTimeout for a node that died without a word) two nodes may each
// believe they own a key, and a call may reach a node that has just lost
// it. Use it where that is harmless or detected: routing requests to where
// a room most likely is, sharding caches and matchmaking queues, handing
// rooms off on Hold's callback. Where two owners at once must never act
// (writes to a shared store, a singleton job, money), take a lease on the
// key (Claim): exclusive, with a fencing token for the writes, at the cost
// of a round trip to MARS per claim. A common pattern uses both: route by
// Owner, and have the owner Claim the key before it acts.
//
// # Pub-sub
//
// Subscribe(pattern, handler) subscribes to NATS-style topics: tokens
// separated by '.', "*" for one token, ">" for one or more at the end
// ("chat.*.lobby", "chat.>"); at most MaxTopicLen (255) bytes, no empty
// token, no white space, a wildcard only as a whole token (ErrBadTopic).
// Publish(ctx, topic, payload) sends to every matching subscription in the
// cluster, this node's included. QueueSubscribe(pattern, group, handler)
// joins a queue group: each message goes to one member of each group with
// a matching subscription. Request(ctx, topic, payload) sends to one node
// with any matching subscription (round robin) and returns the reply its
// handler set with Message.Respond (sent when the handler returns).
//
// Interest (patterns and groups) travels two ways: Subscribe and
// Unsubscribe push it to every node the view lists as online or joining,
// acknowledged, and return once those answered (at most the retry
// timeout); it is also in the node's MARS record (the node value
// "_mesh.topics", text), so a node that joins later learns it within the
// sync bound. A publisher matches a topic against the interest of the
// online nodes of its view (and of nodes that told it directly before
// MARS lists them), cached per view generation, and sends only to nodes
// that match, directly (the measured fastest way up to 64 receivers).
//
// Guarantees:
//
//   - Plain subscriptions get every message published after Subscribe
//     returned, exactly once and in publish order per publisher, while
//     both nodes live: one reliable session per node pair carries them.
//     Publish returns once the message is queued to every subscriber node
//     (waiting for room in a full peer queue until ctx ends).
//   - A queue group's message goes to one member (round robin over the
//     members, one node at a time), as an acknowledged delivery in the
//     background (Publish does not wait; at most 4,096 under way per
//     node), answered once the member's handler returned. A member that
//     has no matching subscription any more, is at its pending limit,
//     drains, or dies before answering is skipped and the next tried, for
//     up to twice the retry timeout plus 10 s. So each message is handled
//     exactly once, unless the member dies after its handler ran and
//     before its answer arrived: then another member handles it too
//     (at least once on a member's death). A delivery no member took is
//     counted (TopicStats.QueueFailed) and logged. Queue deliveries are not
//     ordered.
//   - A node that drains (Shutdown) takes no new message from the moment it
//     begins: plain publishes are dropped on arrival and queue deliveries
//     and requests are answered ErrDraining (the publisher tries another
//     member); its peers drop it from their routes at once (the drain
//     notice), the rest within a sync. Messages it had taken are handled.
//     A node that dies leaves the routes when its peers find it dead
//     (retryTimeout); what was sent to it meanwhile is lost with it. So
//     does a live node that a publisher's transport finds dead (a process
//     stalled for retryTimeout): it misses what that publisher sends until
//     their session is back (at most twice retryTimeout, or its next sign
//     of life), and the messages lost with the old session.
//   - Each subscription hands messages to its handler one at a time, in
//     order, on a goroutine of its own while it has any. Messages waiting
//     are bounded (SetPendingLimits; default DefaultPendingMsgs 65,536
//     and DefaultPendingBytes 64 MiB, as NATS): past either, new messages
//     are dropped and counted (Subscription.Dropped, TopicStats,
//     marsmesh_topic_dropped_total), never waited for: neither the
//     publisher nor the transport ever waits on a handler.
//   - A node has at most 128 distinct (pattern, group) entries; a guest
//     cannot subscribe (it is never listed) but can publish.
//
// TopicStats, the node admin endpoint's /v1/topics and the marsmesh_topic_*
// metrics count what was published, delivered, dropped and retried; the
// MARS dashboard shows every app's patterns, subscriber nodes, queue
// groups and rates.
//
// # Configuration
//
// See package config: the Diarkis keys (address, nic, port, marsAddress,
// marsPort, marsAddressCacheTTL, retryInterval, retryTimeout,
// strictCheckForExternal, sendInterval) from a JSON file and DIARKIS_*
// environment variables. retryTimeout is how long a silent peer stays
// alive; with sendInterval >= 17 ms one-way messages (Send, USend) are
// held per peer and sent together every interval, while RPCs and fan-out
// are never held; with strictCheckForExternal, messages from senders MARS
// does not list are dropped (health checks excepted). With a cluster key
// (meshKey, meshKeyFile; see config.Mesh.Keys) every datagram of the node
// and of its MARS is authenticated and encrypted, and processes without
// the key get no answer; every node, guest and MARS of a cluster needs it.
// Without a key, a node bound to a non-loopback address logs one warning.
//
// # Deviations from the Diarkis mesh API
//
//   - Setup, Guest and StartAsMARS return an error instead of nothing.
//   - Shutdown (new) drains first (ErrDraining for new requests, peers and
//     MARS told; its status also becomes StatusOffline), then waits for the
//     readiness check and running handlers (bounded: OfflineWait,
//     ReadinessWait, the retry timeout), then leaves and closes; it is safe
//     to call twice. ShutdownContext takes a context that cuts the waits
//     short; ShutdownOnSignal shuts down on SIGTERM.
//   - GetNodeAddresses, GetNodeAddressesByType and GetNodeAddressesByRole
//     list online nodes only (the reference lists every node);
//     GetAllNodeAddresses* list every state. Node values read back with one
//     Go type per kind (integers as int64).
//   - OnUpdate runs after the sync was applied, on the node's dispatcher
//     (the reference runs it before): no callback runs on the sync loop.
//   - Several handlers per command ID run as described above; HandleRPC
//     always returns true.
//   - New, Default, Options (WithType, AsGuest, ...) and Node methods (new)
//     give independent nodes. Node is both a live node (from New, Setup)
//     and a node record (from GetNode, GetNodeByEndPoint), because the
//     reference uses the one name for both.
//   - CreateRequestData returns a *Parcel defined in this package (the
//     reference's util.Parcel).
//   - GetInt, GetString and the other getters return the zero value on a
//     missing field or a wrong type instead of panicking; numbers convert
//     between widths when the value fits.
//   - StatusOnline (1), StatusOffline (2), StatusTaken (3) for SetStatus.
//   - Membership (NodeState, OnNodeEvent, WatchNodes, Serving, IsDraining),
//     HandleRPCWithContext, OnSendFailure, Node.HealthCheck, CreateResponseBytes,
//     FanoutError, streams (HandleStream, OpenStream, Stream) and typed RPCs
//     (NewRPC), AddSharedData (an atomic add to a shared counter),
//     ownership (Owner, SendRPCToOwner, Hold, ...) and pub-sub (Subscribe,
//     QueueSubscribe, Publish, Request, Message) are additions. SendRequest's callback always runs on a
//     goroutine of its own. SetCommandHandler and HandleCommand share one
//     table.
//   - TestPackPacket is left out; Msg, SendData and Shrink exist for
//     compatibility only (splitting happens inside the transport).
package mesh
