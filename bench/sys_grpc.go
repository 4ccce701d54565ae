package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
)

// rawCodec carries []byte messages as they are: no protobuf, no code
// generation. Clients select it with the "raw" content subtype.
type rawCodec struct{}

func (rawCodec) Name() string { return "raw" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*p = data.Materialize() // data is freed when Unmarshal returns
	return nil
}

func init() { encoding.RegisterCodecV2(rawCodec{}) }

// benchService is registered by hand: a unary Echo, a client-streaming
// Sink that counts what it receives, and a bidirectional Bidi that counts
// what it receives and ends at the client's CloseSend.
type benchService struct {
	cnt *counter
}

var benchServiceDesc = grpc.ServiceDesc{
	ServiceName: "bench.Bench",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Echo",
		Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			return &in, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Sink",
		ClientStreams: true,
		Handler: func(srv any, st grpc.ServerStream) error {
			s := srv.(*benchService)
			var m []byte
			for {
				if err := st.RecvMsg(&m); err == io.EOF {
					ack := []byte{}
					return st.SendMsg(&ack)
				} else if err != nil {
					return err
				}
				s.cnt.add()
			}
		},
	}, {
		StreamName:    "Bidi",
		ClientStreams: true,
		ServerStreams: true,
		Handler: func(srv any, st grpc.ServerStream) error {
			s := srv.(*benchService)
			var m []byte
			for {
				if err := st.RecvMsg(&m); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
				s.cnt.add()
			}
		},
	}},
}

// grpcPair is a gRPC server on loopback TCP and one client connection to
// it, both with gRPC's defaults, plaintext.
type grpcPair struct {
	srv *grpc.Server
	svc *benchService
	cc  *grpc.ClientConn
}

// listenGRPC starts a gRPC server with the bench service on host; Sink
// counts into sink.
func listenGRPC(host string, sink *counter) (*grpc.Server, net.Addr, error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, nil, err
	}
	srv := grpc.NewServer()
	srv.RegisterService(&benchServiceDesc, &benchService{cnt: sink})
	go srv.Serve(lis) // returns when srv.Stop is called
	return srv, lis.Addr(), nil
}

func newGRPCPair() (*grpcPair, error) {
	svc := &benchService{cnt: &counter{}}
	srv, addr, err := listenGRPC("127.0.0.1", svc.cnt)
	if err != nil {
		return nil, err
	}
	p, err := dialGRPC(addr.String())
	if err != nil {
		srv.Stop()
		return nil, err
	}
	p.srv, p.svc = srv, svc
	return p, nil
}

// dialGRPC is a client connection to a bench server at addr (srv and svc
// left nil).
func dialGRPC(addr string) (*grpcPair, error) {
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype("raw")))
	if err != nil {
		return nil, err
	}
	cc.Connect()
	return &grpcPair{cc: cc}, nil
}

func (p *grpcPair) Close() error {
	err := p.cc.Close()
	if p.srv != nil {
		p.srv.Stop()
	}
	return err
}

type grpcRPC struct{ *grpcPair }

func startGRPCRPC(int) (rpcTarget, error) {
	p, err := newGRPCPair()
	if err != nil {
		return nil, err
	}
	return grpcRPC{p}, nil
}

func (g grpcRPC) Prepare(int) error { return nil }

func (g grpcRPC) Call(req []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var resp []byte
	if err := g.cc.Invoke(ctx, "/bench.Bench/Echo", &req, &resp); err != nil {
		return err
	}
	return checkEcho(len(resp), len(req))
}
