package td

import (
	"fmt"
	"unsafe"
)

// slot holds the value of one property without boxing it in an interface, so
// setting, getting and packing allocate nothing. A scalar lives in bits; a
// string or slice is kept as a pointer to its first element and a length.
//
// The pointer is rebuilt into a typed value only by the accessor of the type the
// schema declares for the property, and every setter checks that type first, so
// a slot is always read back as the type it was written with.
type slot struct {
	ptr  unsafe.Pointer // first byte or element of a string or slice; nil if empty
	n    int            // length of a string or slice
	bits uint64         // bool as 0/1, integers sign-extended, floats as IEEE bits
	set  bool
}

func (s *slot) setString(v string) {
	*s = slot{n: len(v), set: true}
	if len(v) > 0 {
		s.ptr = unsafe.Pointer(unsafe.StringData(v))
	}
}

func (s *slot) str() string {
	return unsafe.String((*byte)(s.ptr), s.n)
}

func setSlot[E any](s *slot, v []E) {
	*s = slot{n: len(v), set: true}
	if len(v) > 0 {
		s.ptr = unsafe.Pointer(unsafe.SliceData(v))
	}
}

// slotSlice returns the slice stored in s, with its capacity cut to its length
// so that appending to it never writes over memory the slot still refers to.
func slotSlice[E any](s *slot) []E {
	if s.n == 0 {
		return nil
	}
	return unsafe.Slice((*E)(s.ptr), s.n)
}

// slotFor returns the slot of name after checking that its type is typ.
func (t *TransportData) slotFor(name string, typ Type) (*slot, error) {
	i := t.def.lookup(name)
	if i < 0 {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProperty, name)
	}
	if pt := t.def.props[i].Type; pt != typ {
		return nil, fmt.Errorf("%w: %q is %v, not %v", ErrTypeMismatch, name, pt, typ)
	}
	return &t.slots[i], nil
}

// setSlotFor returns the slot that is set under name and of type typ, or nil.
func (t *TransportData) setSlotFor(name string, typ Type) *slot {
	i := t.def.lookup(name)
	if i < 0 || t.def.props[i].Type != typ || !t.slots[i].set {
		return nil
	}
	return &t.slots[i]
}

func (t *TransportData) setBits(name string, typ Type, bits uint64) error {
	s, err := t.slotFor(name, typ)
	if err != nil {
		return err
	}
	*s = slot{bits: bits, set: true}
	return nil
}

func (t *TransportData) getBits(name string, typ Type) (uint64, bool) {
	if s := t.setSlotFor(name, typ); s != nil {
		return s.bits, true
	}
	return 0, false
}

func setSlice[E any](t *TransportData, name string, typ Type, v []E) error {
	s, err := t.slotFor(name, typ)
	if err != nil {
		return err
	}
	setSlot(s, v)
	return nil
}

func getSlice[E any](t *TransportData, name string, typ Type) ([]E, bool) {
	if s := t.setSlotFor(name, typ); s != nil {
		return slotSlice[E](s), true
	}
	return nil, false
}

func b2u(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
