package mesh_test

import (
	"context"
	"fmt"
	"time"

	"github.com/marsmesh/marsmesh/mesh"
)

// A lobby subscribes to chat in every region, two match servers form a
// queue group for "match found" jobs, and a game node publishes to both
// and asks the group a question with Request.
func ExampleNode_Publish() {
	srv, cfg, err := startMARS()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	var nodes []*mesh.Node
	for range 4 {
		n, err := mesh.New(cfg, mesh.WithLogger(quietLog))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer n.Shutdown()
		if err := n.WaitReady(context.Background()); err != nil {
			fmt.Println(err)
			return
		}
		nodes = append(nodes, n)
	}
	game, lobby, matches := nodes[0], nodes[1], nodes[2:]

	chat := make(chan string, 1)
	if _, err := lobby.Subscribe("chat.*.lobby", func(m *mesh.Message) {
		chat <- m.Topic + ": " + string(m.Payload)
	}); err != nil {
		fmt.Println(err)
		return
	}
	jobs := make(chan string, 2)
	for _, n := range matches {
		me := n.GetMyEndPoint()
		if _, err := n.QueueSubscribe("match.>", "matchers", func(m *mesh.Message) {
			if m.IsRequest() { // Request: the reply goes back when the handler returns
				m.Respond([]byte("queue length 0"))
				return
			}
			jobs <- me
		}); err != nil {
			fmt.Println(err)
			return
		}
	}
	// Each Subscribe returned once every node it knows acknowledged it:
	// the game node already routes these topics.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := game.Publish(ctx, "chat.eu.lobby", []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(<-chat)
	for _, p := range []string{"player 1", "player 2"} {
		if err := game.Publish(ctx, "match.found", []byte(p)); err != nil {
			fmt.Println(err)
			return
		}
	}
	a, b := <-jobs, <-jobs // one member each, round robin
	fmt.Println("one job on each member:", a != b)
	reply, err := game.Request(ctx, "match.status", nil)
	fmt.Println(string(reply), err)
	// Output:
	// chat.eu.lobby: hello
	// one job on each member: true
	// queue length 0 <nil>
}
