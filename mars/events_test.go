package mars

import (
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/marsmesh/marsmesh/internal/dispatch"
)

type roomWatcher struct{ name string }

func (r *roomWatcher) onUpdate(string, int16) {}

func plainCallback(string, int16) {}

// handlerIDs lists the ids of the registrations left.
func handlerIDs(hs []handler[func(string, int16)]) []uint64 {
	var ids []uint64
	for _, h := range hs {
		ids = append(ids, h.id)
	}
	return ids
}

func TestRemoveFuncMatchesTheExactClosure(t *testing.T) {
	var hs []handler[func(string, int16)]
	var cbs []func(string, int16)
	for i, room := range []string{"room1", "room2", "room3"} {
		cb := func(string, int16) { _ = room }
		cbs = append(cbs, cb)
		hs = append(hs, handler[func(string, int16)]{id: uint64(i + 1), f: cb, stop: func() {}})
	}
	hs = removeFunc(hs, cbs[0])
	if got := handlerIDs(hs); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("removing the first closure left %v", got)
	}
	hs = removeFunc(hs, cbs[2])
	if got := handlerIDs(hs); !slices.Equal(got, []uint64{2}) {
		t.Fatalf("removing the third closure left %v", got)
	}

	// A method value is a new func value each time: it matches by code.
	w := &roomWatcher{"a"}
	hs = append(hs[:0], handler[func(string, int16)]{id: 10, f: w.onUpdate, stop: func() {}},
		handler[func(string, int16)]{id: 11, f: plainCallback, stop: func() {}})
	hs = removeFunc(hs, w.onUpdate)
	if got := handlerIDs(hs); !slices.Equal(got, []uint64{11}) {
		t.Fatalf("removing a method value left %v", got)
	}
	hs = removeFunc(hs, plainCallback)
	if len(hs) != 0 {
		t.Fatalf("removing a plain function left %v", handlerIDs(hs))
	}
	if hs = removeFunc(hs, plainCallback); len(hs) != 0 {
		t.Fatal("removing from an empty list")
	}
}

// TestSyncLaneAlternates: OnUpdate and OnUpdated callbacks alternate and
// the last sync posted is the last delivered, however far behind the lane
// is and whatever was merged.
func TestSyncLaneAlternates(t *testing.T) {
	for posts := 1; posts <= 7; posts++ {
		d := dispatch.New(slog.New(slog.DiscardHandler))
		c := &Client{disp: d}
		var got []bool // written by the lane's callbacks, one at a time
		gate := make(chan struct{})
		record := func(after bool) func() {
			return func() {
				got = append(got, after)
				if len(got) == 1 {
					<-gate // behind from the first sync on
				}
			}
		}
		c.cb.update = []func(){record(false)}
		c.cb.updated = []func(){record(true)}
		c.cb.syncs = c.syncLane()
		for i := range posts {
			c.cb.syncs.Post(syncTick{after: i%2 == 1})
		}
		close(gate)
		if !d.Close(time.Minute) {
			t.Fatal("the lane did not finish")
		}
		for i := 1; i < len(got); i++ {
			if got[i] == got[i-1] {
				t.Fatalf("%d posts: callbacks do not alternate: %v", posts, got)
			}
		}
		if last := (posts-1)%2 == 1; got[len(got)-1] != last {
			t.Fatalf("%d posts: the last sync posted was not the last delivered: %v", posts, got)
		}
	}
}
