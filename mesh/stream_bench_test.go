package mesh

import (
	"context"
	"io"
	"testing"
)

// BenchmarkStream measures one stream between two nodes on loopback: the
// one-way message rate (64 B and 1 KiB: ns/op is per message) and bulk
// throughput with 64 KiB messages (MB/s), beside BenchmarkRPC in the same
// run:
//
//	go test -run '^$' -bench 'Stream|RPC$' -benchmem ./mesh
func BenchmarkStream(b *testing.B) {
	for _, c := range []struct {
		name string
		size int
	}{{"msgs/64B", 64}, {"msgs/1KiB", 1024}, {"bulk/64KiB", 64 << 10}} {
		b.Run(c.name, func(b *testing.B) { benchStream(b, c.size) })
	}
}

// benchStream sends b.N messages of size bytes on one stream; the time
// ends when the handler has received them all (it returns at the opener's
// CloseSend, and the opener's Recv sees io.EOF).
func benchStream(b *testing.B, size int) {
	c := newCluster(b, 2)
	a, srv := c.nodes[0], c.nodes[1]
	srv.HandleStream(1, func(ctx context.Context, s *Stream) error {
		for {
			if _, err := s.Recv(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
	s, err := a.OpenStream(context.Background(), 1, srv.GetMyEndPoint(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := s.Send(msg); err != nil {
			b.Fatal(err)
		}
	}
	s.CloseSend()
	if _, err := s.Recv(); err != io.EOF {
		b.Fatal(err)
	}
	b.StopTimer()
}
