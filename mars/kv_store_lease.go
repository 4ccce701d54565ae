package mars

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Leases in store mode (replicas over a shared Store): claim, renew,
// release and revoke, each a transaction on the lease's record.

func (s *Server) kvRevoke(sid int64) {
	if sid == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(s.st.ctx, storeTimeout)
	defer cancel()
	s.kv.st.leaser.Revoke(ctx, sid)
}

// kvStoreClaim grants a lease if no other node holds it.
func (s *Server) kvStoreClaim(ctx context.Context, req *kvReq) (*kvReply, int64) {
	if s.kv.st.leaser == nil {
		return &kvReply{Code: kvUnavailable, Msg: "this store keeps no leases"}, 0
	}
	s.mu.Lock()
	live := s.kvLive(req.App, req.Addr, req.Inc)
	s.mu.Unlock()
	if !live {
		return &kvReply{Code: kvNotLive, Msg: fmt.Sprintf("node %s is not listed online (draining, offline or a guest): it may not claim", req.Addr)}, 0
	}
	if rep := s.kvStoreLimits(req); rep != nil {
		return rep, 0
	}
	ttl := time.Duration(req.TTL) * time.Millisecond
	sid, err := s.kv.st.leaser.Grant(ctx, ttl)
	if err != nil {
		return unavailable(err), 0
	}
	key := StoreKey{App: req.App, Kind: StoreLeaseRec, Name: req.Key}
	rec := EncodeStoredLease(&StoredLease{Holder: req.Addr, Inc: req.Inc, TTL: int64(req.TTL), SID: sid, At: time.Now().UnixMilli()})
	// One round trip when the lease is free and the claim new.
	expect := []StoreRecord{{StoreKey: resultKey(req)}, {StoreKey: key}}
	handled, ok, cur, rev, err := s.kvWriteIf(ctx, expect, func(res int64) []StoreWrite {
		return []StoreWrite{{StoreKey: key, Value: rec, Lease: sid},
			{StoreKey: expect[0].StoreKey, Value: EncodeStoredKVResult(&StoredKVResult{TTL: req.TTL}), Lease: res}}
	})
	switch {
	case !handled:
	case err != nil:
		s.kvRevoke(sid)
		return unavailable(err), 0
	case ok:
		return &kvReply{Rev: rev, TTL: req.TTL}, rev
	case cur[0].Rev != 0:
		return s.kvEarlier(cur[0], sid)
	default:
		if l, err := DecodeStoredLease(cur[1].Value); err == nil && (l.Holder != req.Addr || l.Inc != req.Inc) {
			s.kvRevoke(sid)
			return &kvReply{Code: kvHeld, Holder: l.Holder, Rev: cur[1].Rev, Msg: fmt.Sprintf("lease %q is held by %s", req.Key, l.Holder)}, 0
		}
		// This node's own earlier grant: replaced below.
	}
	var rep *kvReply
	var old int64 // the store lease of this node's earlier grant, replaced
	rev, err = s.kvUpdate(ctx, []StoreKey{resultKey(req), key}, func(cur []StoreRecord, res int64) ([]StoreWrite, error) {
		rep, old = nil, 0
		if cur[0].Rev != 0 {
			rep = earlier(cur[0])
			return nil, nil
		}
		if cur[1].Rev != 0 {
			l, err := DecodeStoredLease(cur[1].Value)
			if err == nil && (l.Holder != req.Addr || l.Inc != req.Inc) {
				rep = &kvReply{Code: kvHeld, Holder: l.Holder, Rev: cur[1].Rev, Msg: fmt.Sprintf("lease %q is held by %s", req.Key, l.Holder)}
				return nil, nil
			}
			if err == nil {
				old = l.SID
			}
		}
		return []StoreWrite{{StoreKey: key, Value: rec, Lease: sid},
			{StoreKey: cur[0].StoreKey, Value: EncodeStoredKVResult(&StoredKVResult{TTL: req.TTL}), Lease: res}}, nil
	})
	if err != nil {
		s.kvRevoke(sid)
		return unavailable(err), 0
	}
	if rep != nil {
		s.kvRevoke(sid)
		if rep.Code == kvOK {
			return rep, rep.Rev
		}
		return rep, 0
	}
	s.kvRevoke(old)
	return &kvReply{Rev: rev, TTL: req.TTL}, rev
}

// kvStoreRenew keeps a lease's store lease alive.
func (s *Server) kvStoreRenew(ctx context.Context, req *kvReq) *kvReply {
	s.mu.Lock()
	if req.KVID == s.kv.id && req.Rev > s.kv.rev {
		s.kvWaitRev(req.Rev)
	}
	var l leaseEntry
	if a := s.kv.apps[req.App]; a != nil && a.leases[req.Key] != nil {
		l = *a.leases[req.Key]
	}
	s.mu.Unlock()
	gone := &kvReply{Code: kvLeaseGone, Msg: fmt.Sprintf("lease %q with token %d is not held by %s", req.Key, req.Rev, req.Addr)}
	if l.token != req.Rev || l.holder != req.Addr || l.inc != req.Inc || s.kv.st.leaser == nil {
		return gone
	}
	switch err := s.kv.st.leaser.KeepAlive(ctx, l.sid); {
	case errors.Is(err, ErrStoreLeaseGone):
		return gone
	case err != nil:
		return unavailable(err)
	}
	return &kvReply{Rev: l.token, TTL: req.TTL}
}

// kvStoreRelease deletes a lease record held with the token and revokes
// its store lease.
func (s *Server) kvStoreRelease(ctx context.Context, req *kvReq) (*kvReply, int64) {
	key := StoreKey{App: req.App, Kind: StoreLeaseRec, Name: req.Key}
	var sid int64
	rev, err := s.st.store.Update(ctx, []StoreKey{key}, func(cur []StoreRecord) ([]StoreWrite, error) {
		sid = 0
		l, err := DecodeStoredLease(cur[0].Value)
		if cur[0].Rev != req.Rev || err != nil || l.Holder != req.Addr || l.Inc != req.Inc {
			return nil, nil
		}
		sid = l.SID
		return []StoreWrite{{StoreKey: key, Delete: true}}, nil
	})
	if err != nil {
		return unavailable(err), 0
	}
	if sid == 0 {
		return &kvReply{}, 0
	}
	s.kvRevoke(sid)
	return &kvReply{Rev: rev}, rev
}
