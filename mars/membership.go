package mars

import "fmt"

// State is a node's membership state. Every node of a view has exactly one,
// and every node that sees it sees the same one (MARS decides it; a node's
// own drain notice and the transport's dead-peer detection only bring a
// change forward locally, see View). The life of a node incarnation:
//
//	joining -> online -> draining -> gone (left)
//	   any live state -> offline (silent) -> online again, or gone (removed)
//	   any state -> gone (replaced: a new incarnation registered on its address)
//
// Lists meant for sending (View.Online, OnlineByType, OnlineByRole) hold
// online nodes only.
type State uint8

// Membership states. The numbers are the wire values.
const (
	// StateNone: not listed. The Old state of a node's first event.
	StateNone State = 0
	// StateJoining: registered at MARS, not yet serving (it has not seen
	// itself in its own view).
	StateJoining State = 1
	// StateOnline: serving; the only state lists meant for sending hold.
	StateOnline State = 2
	// StateDraining: shutting down: it finishes what it has and refuses new
	// requests with a draining error. It does not come back.
	StateDraining State = 3
	// StateOffline: silent: MARS has not heard from it for OfflineAfter, or
	// this node's transport found it dead. It may come back online.
	StateOffline State = 4
	// StateGone: left, removed after RemoveAfter of silence, or replaced by
	// a new incarnation. The last event of an incarnation.
	StateGone State = 5
)

func (s State) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateJoining:
		return "joining"
	case StateOnline:
		return "online"
	case StateDraining:
		return "draining"
	case StateOffline:
		return "offline"
	case StateGone:
		return "gone"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// live reports whether a node in state s still runs as far as anyone knows.
func (s State) live() bool { return s == StateJoining || s == StateOnline || s == StateDraining }

// Reason says what caused a membership event.
type Reason string

// Reasons of membership events.
const (
	// ReasonCurrent: the node was already in this state when the view (or
	// the subscription) started.
	ReasonCurrent Reason = "current"
	// ReasonRegistered: the node registered at MARS (-> joining).
	ReasonRegistered Reason = "registered"
	// ReasonReady: the node finished joining (joining -> online).
	ReasonReady Reason = "ready"
	// ReasonDraining: MARS lists the node draining.
	ReasonDraining Reason = "draining"
	// ReasonDrainNotice: the node itself told this one it drains, ahead of
	// MARS.
	ReasonDrainNotice Reason = "drain-notice"
	// ReasonSilent: MARS has not heard from the node for OfflineAfter.
	ReasonSilent Reason = "silent"
	// ReasonUnreachable: this node's transport found the peer dead (silent
	// for retryTimeout), ahead of MARS.
	ReasonUnreachable Reason = "unreachable"
	// ReasonBack: an offline node is heard from again.
	ReasonBack Reason = "back"
	// ReasonLeft: the node left gracefully (after draining).
	ReasonLeft Reason = "left"
	// ReasonRemoved: MARS removed the node after RemoveAfter of silence (or a
	// restarted MARS never heard from it again).
	ReasonRemoved Reason = "removed"
	// ReasonReplaced: a new incarnation registered on the node's address.
	ReasonReplaced Reason = "replaced"
	// ReasonResync: a subscriber fell behind; the event jumps from the last
	// state it was given to the current one (intermediate states were
	// skipped, never the outcome).
	ReasonResync Reason = "resync"
)

// NodeEvent is one change of a node's membership state as a view saw it.
// Events of one node incarnation come in order, ending with StateGone.
type NodeEvent struct {
	Node     // the node as listed when the event happened (Values: a copy)
	Old, New State
	Reason   Reason
}

func (e NodeEvent) String() string {
	return fmt.Sprintf("%s (%d) %s -> %s (%s)", e.Addr, e.Incarnation, e.Old, e.New, e.Reason)
}

// Wire codes of why a node left the registry (sync body "gone why").
const (
	goneRemoved = 0
	goneLeft    = 1
)
