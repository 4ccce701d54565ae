package mesh

import "context"

// HandleStream sets the handler of streams opened with command ID cmd on
// the default node (see Node.HandleStream); it may be called before Setup.
func HandleStream(cmd uint16, handler func(ctx context.Context, s *Stream) error) {
	pre.addStream(cmd, handler)
}

// OpenStream opens a stream from the default node (see Node.OpenStream).
func OpenStream(ctx context.Context, cmd uint16, addr string, first []byte) (*Stream, error) {
	if n := Default(); n != nil {
		return n.OpenStream(ctx, cmd, addr, first)
	}
	return nil, errNotSetupSend
}
