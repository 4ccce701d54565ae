package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marsmesh/marsmesh/mars"
	"github.com/marsmesh/marsmesh/mesh"
)

// Child kinds (the arguments after -serve):
//
//	udp HOST                     UDP echo; READY host:port
//	kcp HOST                     kcp-go echo; READY host:port
//	grpc HOST                    gRPC server (Echo, Sink); READY host:port
//	nats-server HOST             nats-server; READY client URL
//	nats-responder URL           NATS echo responder and sink subscriber; READY ok
//	mars HOST                    MARS registry; READY host:port
//	mesh-node HOST MARSADDR      marsmesh node with the echo RPC and sink command; READY its mesh address
//	mesh-sinks HOST MARSADDR K   K marsmesh nodes counting fan-out rounds; READY their addresses, comma-separated
//	nats-subs URL K              K NATS connections subscribed to the fan-out subject; READY ok
//	mesh-topic-subs HOST MARS K  K marsmesh nodes subscribed to the pub-sub suite's topics (xpubsub.go); READY their addresses
//	nats-topic-subs URL K        K NATS connections subscribed to the same subjects; READY ok
//	ps-pub KEY HOST EP           a publisher of system KEY (lossy pub-sub suite); requests "pub ROUND PAYLOAD", "known"
//	driver KEY HOST PAYLOAD EP.. the client end of system KEY (lossy suite); READY ok
//	mars-etcd, nats-js           the xkv suite's servers (xkv.go)
//
// Requests on stdin, one per line, answered with one line on stdout:
//
//	count                 "<delivered> <last delivery, Unix ns>" (sinks)
//	run CONC COUNT MS     a closed loop of the driver; "RESULT <JSON driverResult>"
//
// Fan-out sinks print "GOT <round> <Unix ns>" unasked, once all K of their
// receivers have a round's message.
//
// The child shuts down and exits when stdin closes.

// driverResult is what a driver reports of one closed-loop run.
type driverResult struct {
	Done, Errors int64
	ElapsedNs    int64
	Lat          Latency
	LatUs        []float64        `json:",omitempty"` // every request's latency, µs
	ErrKinds     map[string]int64 `json:",omitempty"`
}

// serveMain runs a child; it returns the exit status.
func serveMain(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "bench -serve: want KIND ARGS...")
		return 2
	}
	var sink counter
	var target rpcTarget
	var node *mesh.Node    // a mesh-node child's, for its counters
	var psPub *psPublisher // a ps-pub child's (xpubsub_lossy.go)
	var stop func() error
	ready := "ok"
	var err error
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		err = fmt.Errorf("%s: argument %d missing", args[0], i)
		return ""
	}
	switch args[0] {
	case "udp":
		var wg sync.WaitGroup
		srv, e := listenUDPEcho(arg(1), &wg)
		if err = e; err == nil {
			ready = srv.LocalAddr().String()
			stop = func() error { err := srv.Close(); wg.Wait(); return err }
		}
	case "kcp":
		e, er := listenKCPEcho(arg(1))
		if err = er; err == nil {
			ready, stop = e.addr(), e.Close
		}
	case "grpc":
		srv, addr, er := listenGRPC(arg(1), &sink)
		if err = er; err == nil {
			ready = addr.String()
			stop = func() error { srv.Stop(); return nil }
		}
	case "nats-server":
		ns, er := startNATSServer(arg(1))
		if err = er; err == nil {
			ready = ns.ClientURL()
			stop = func() error { stopNATSServer(ns); return nil }
		}
	case "nats-responder":
		nc, er := natsResponder(arg(1), &sink)
		if err = er; err == nil {
			stop = func() error { nc.Close(); return nil }
		}
	case "mars":
		srv, er := mars.Listen(arg(1)+":0", mars.ServerOptions{Logger: quiet})
		if err = er; err == nil {
			ready, stop = srv.Addr().String(), srv.Close
		}
	case "mesh-node":
		var n *mesh.Node
		if n, err = newMeshNode(arg(1), arg(2)); err == nil {
			node = n
			n.HandleRPC(cmdEcho, func(data []byte, _ string) ([]byte, error) { return data, nil })
			n.SetCommandHandler(cmdSink, func([]byte, string) ([]byte, error) { sink.add(); return nil, nil })
			n.HandleStream(cmdStream, countStream(&sink))
			ready, stop = n.GetMyEndPoint(), n.Shutdown
		}
	case "mesh-sinks":
		var k int
		if k, err = strconv.Atoi(arg(3)); err == nil {
			ready, stop, err = meshSinks(arg(1), arg(2), k)
		}
	case "mesh-topic-subs":
		var k int
		if k, err = strconv.Atoi(arg(3)); err == nil {
			ready, stop, err = meshTopicSubs(arg(1), arg(2), k)
		}
	case "nats-topic-subs":
		var k int
		if k, err = strconv.Atoi(arg(2)); err == nil {
			stop, err = natsTopicSubs(arg(1), k)
		}
	case "ps-pub":
		if psPub, err = newPSPublisher(arg(1), arg(2), arg(3)); err == nil {
			stop = psPub.close
		}
	case "nats-subs":
		var k int
		if k, err = strconv.Atoi(arg(2)); err == nil {
			stop, err = natsSubs(arg(1), k)
		}
	case "driver":
		var payload int
		if payload, err = strconv.Atoi(arg(3)); err == nil && len(args) > 4 {
			target, err = dialRPC(args[1], args[2], args[4:], payload)
		} else if err == nil {
			err = errors.New("driver: no endpoints")
		}
		if err == nil {
			stop = target.Close
		}
	default:
		var ok bool
		if ready, stop, ok, err = serveKV(args[0], arg); !ok {
			err = fmt.Errorf("unknown kind %q", args[0])
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench -serve %s: %v\n", strings.Join(args, " "), err)
		return 1
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY", ready)
	out.Flush()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case psPub != nil:
			fmt.Fprintln(out, psPubRequest(psPub, f))
		case len(f) == 1 && f[0] == "count":
			n, last := sink.deliveries()
			fmt.Fprintf(out, "%d %d\n", n, last.UnixNano())
		case len(f) == 1 && f[0] == "retx" && node != nil:
			fmt.Fprintf(out, "%g\n", nodeRetransmits(node))
		case len(f) == 4 && f[0] == "run" && target != nil:
			fmt.Fprintf(out, "RESULT %s\n", driverRun(target, args[3], f[1:]))
		case len(f) == 4 && f[0] == "stream" && args[0] == "driver":
			fmt.Fprintf(out, "RESULT %s\n", driverStream(args[1], args[2], args[4:], f[1:]))
		default:
			fmt.Fprintf(out, "ERR bad request %q\n", sc.Text())
		}
		out.Flush()
	}
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "bench -serve %s: stop: %v\n", args[0], err)
	}
	return 0
}

// stdout is a child's answer channel; fan-out sinks write to it from
// their own goroutines.
var stdout sync.Mutex

func say(format string, args ...any) {
	stdout.Lock()
	fmt.Fprintf(os.Stdout, format, args...)
	stdout.Unlock()
}

// driverRun runs one closed loop of a driver and returns its result as JSON.
func driverRun(t rpcTarget, payloadArg string, f []string) string {
	payload, _ := strconv.Atoi(payloadArg)
	conc, err1 := strconv.Atoi(f[0])
	count, err2 := strconv.ParseInt(f[1], 10, 64)
	ms, err3 := strconv.Atoi(f[2])
	var res driverResult
	if err := errors.Join(err1, err2, err3); err != nil || conc < 1 {
		res.ErrKinds = map[string]int64{fmt.Sprint("bad run request: ", err): 1}
	} else if err := t.Prepare(conc); err != nil {
		res.ErrKinds = map[string]int64{err.Error(): 1}
	} else {
		r := runClosedLoop(t, payload, conc, count, time.Duration(ms)*time.Millisecond, false)
		res = driverResult{Done: r.Done, Errors: r.Errors, ElapsedNs: r.Elapsed.Nanoseconds(), Lat: Summarize(r.Lat), ErrKinds: r.ErrKinds}
		for _, d := range r.Lat {
			res.LatUs = append(res.LatUs, math.Round(float64(d.Nanoseconds())/100)/10)
		}
	}
	b, _ := json.Marshal(res)
	return string(b)
}

// driverStream opens a stream to the fleet at eps (system key, this end
// at host), sends f = [payload count ms] messages on it, closes it and
// waits for the receiver to end it, which it does once it has read them
// all; the result's time is from the first send to that end.
func driverStream(key, host string, eps, f []string) string {
	var res driverResult
	payload, err1 := strconv.Atoi(f[0])
	count, err2 := strconv.ParseInt(f[1], 10, 64)
	ms, err3 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		res.ErrKinds = map[string]int64{fmt.Sprint("bad stream request: ", err): 1}
	} else if t, err := dialStream(key, host, eps); err != nil {
		res.ErrKinds = map[string]int64{"open: " + err.Error(): 1}
	} else {
		msg := make([]byte, payload)
		start := time.Now()
		deadline := start.Add(time.Duration(ms) * time.Millisecond)
		for res.Done < count && time.Now().Before(deadline) {
			if err := t.Send(msg); err != nil {
				res.Errors++
				res.ErrKinds = addKind(res.ErrKinds, err.Error(), 1)
				break
			}
			res.Done++
		}
		if err := t.Close(); err != nil { // waits for the receiver's end
			res.ErrKinds = addKind(res.ErrKinds, "close: "+err.Error(), 1)
		}
		res.ElapsedNs = time.Since(start).Nanoseconds()
	}
	b, _ := json.Marshal(res)
	return string(b)
}

// remoteSink asks a child for its delivery count.
func remoteSink(c *child) func() (int64, time.Time) {
	return func() (int64, time.Time) {
		line, err := c.ask("count", childReplyWait)
		var n, ns int64
		if err == nil {
			_, err = fmt.Sscan(line, &n, &ns)
		}
		if err != nil {
			logf("delivery count of %q: %v", c.name, err)
			return 0, time.Time{}
		}
		return n, time.Unix(0, ns)
	}
}
