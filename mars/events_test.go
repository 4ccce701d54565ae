package mars

import (
	"slices"
	"testing"
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
