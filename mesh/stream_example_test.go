package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/marsmesh/marsmesh/mesh"
)

// A stream: the handler upper-cases every message until the opener's
// CloseSend, then returns, which ends the stream.
func ExampleNode_OpenStream() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	room, err := mesh.New(cfg, mesh.WithType("room"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer room.Shutdown()
	lobby, err := mesh.New(cfg, mesh.WithType("lobby"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lobby.Shutdown()
	<-lobby.Ready()

	const shout = 1
	room.HandleStream(shout, func(ctx context.Context, s *mesh.Stream) error {
		for {
			msg, err := s.Recv() // the opener's first message, then the rest
			if errors.Is(err, io.EOF) {
				return nil // the opener's Recv sees io.EOF
			}
			if err != nil {
				return err
			}
			if err := s.Send([]byte(strings.ToUpper(string(msg)))); err != nil {
				return err
			}
		}
	})

	s, err := lobby.OpenStream(context.Background(), shout, room.GetMyEndPoint(), []byte("hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	for _, m := range []string{"from", "the lobby"} {
		if err := s.Send([]byte(m)); err != nil {
			fmt.Println(err)
			return
		}
	}
	s.CloseSend()
	for {
		msg, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(string(msg))
	}
	// Output:
	// HELLO
	// FROM
	// THE LOBBY
}

type JoinReq struct {
	Player string `msgpack:"player"`
	Rating int    `msgpack:"rating"`
}

type JoinResp struct {
	Room string `msgpack:"room"`
}

// Join is defined once and used on both sides.
var Join = mesh.NewRPC[JoinReq, JoinResp](2)

// A typed RPC: the request and response travel msgpack-encoded.
func ExampleNewRPC() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	game, err := mesh.New(cfg, mesh.WithType("game"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer game.Shutdown()
	lobby, err := mesh.New(cfg, mesh.WithType("lobby"), mesh.WithLogger(quietLog))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lobby.Shutdown()
	<-lobby.Ready()

	Join.Handle(game, func(ctx context.Context, req JoinReq) (JoinResp, error) {
		if req.Rating < 1000 {
			return JoinResp{}, errors.New("rating too low")
		}
		return JoinResp{Room: "arena-" + req.Player}, nil
	})
	resp, err := Join.Call(context.Background(), lobby, game.GetMyEndPoint(), JoinReq{Player: "ada", Rating: 1500})
	fmt.Println(resp.Room, err)
	_, err = Join.Call(context.Background(), lobby, game.GetMyEndPoint(), JoinReq{Player: "bob", Rating: 10})
	fmt.Println(mesh.IsRequestError(err))
	// Output:
	// arena-ada <nil>
	// true
}
