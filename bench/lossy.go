package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The lossy suite: the client end of each system in network namespace A,
// its server end in namespace B, both created by the bench, joined by a
// link that delays every packet by lossDelay and drops a share of them in
// each direction. With tc's netem in the kernel the link is a veth pair
// with netem on both ends; without it, a TUN device in each namespace and
// a relay goroutine pair in this process that delays and drops. Both
// namespaces are deleted when the suite ends, on failure, and on signals.

const (
	lossDelay = time.Millisecond
	lossIPA   = "10.213.0.1"
	lossIPB   = "10.213.0.2"
)

var lossSystems = []string{sysMarsmesh, sysGRPC, sysNATS}

// lossyUnavailable says why the lossy suite cannot run here ("" if it can).
func lossyUnavailable() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs the ip command (iproute2)"
	}
	return ""
}

// sh runs a command, bounded in time, and returns its error with its output.
func sh(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lossLink is the namespace pair and the link between them.
type lossLink struct {
	nsA, nsB string
	method   string
	devA     string // interface in A (veth or TUN); its twin in B is devB
	devB     string
	relay    *tunRelay // nil with netem
	once     sync.Once
}

// removeStaleNamespaces deletes the namespaces of earlier bench runs
// whose process no longer exists (killed before it could clean up).
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		var pid int
		var side string
		if n, _ := fmt.Sscanf(name, "mmbench-%d-%s", &pid, &side); n != 2 || pid == os.Getpid() {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			logf("lossy: deleting namespace %s of a bench run that no longer exists", name)
			sh("ip", "netns", "del", name)
		}
	}
}

func newLossLink() (*lossLink, error) {
	removeStaleNamespaces()
	id := os.Getpid()
	l := &lossLink{nsA: fmt.Sprintf("mmbench-%d-a", id), nsB: fmt.Sprintf("mmbench-%d-b", id),
		devA: fmt.Sprintf("mmb%da", id), devB: fmt.Sprintf("mmb%db", id)}
	addCleanup(l.Close)
	for _, ns := range []string{l.nsA, l.nsB} {
		if err := sh("ip", "netns", "add", ns); err != nil {
			l.Close()
			return nil, err
		}
		if err := sh("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err := l.netem(); err == nil {
		return l, nil
	} else {
		logf("lossy: tc netem unavailable (%v); using a userspace relay between TUN devices", err)
	}
	sh("ip", "-n", l.nsA, "link", "del", l.devA) // a veth of the failed attempt (deleting one end deletes both)
	var err error
	if l.relay, err = newTunRelay(l); err != nil {
		l.Close()
		return nil, err
	}
	l.method = fmt.Sprintf("a relay in the bench process between a TUN device in each namespace; %v delay each way", lossDelay)
	return l, nil
}

// netem joins the namespaces with a veth pair carrying netem.
func (l *lossLink) netem() error {
	if _, err := exec.LookPath("tc"); err != nil {
		return errors.New("no tc command")
	}
	steps := [][]string{
		{"ip", "link", "add", l.devA, "type", "veth", "peer", "name", l.devB},
		{"ip", "link", "set", l.devA, "netns", l.nsA},
		{"ip", "link", "set", l.devB, "netns", l.nsB},
		{"ip", "-n", l.nsA, "addr", "add", lossIPA + "/24", "dev", l.devA},
		{"ip", "-n", l.nsB, "addr", "add", lossIPB + "/24", "dev", l.devB},
		{"ip", "-n", l.nsA, "link", "set", l.devA, "up"},
		{"ip", "-n", l.nsB, "link", "set", l.devB, "up"},
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	l.method = fmt.Sprintf("tc netem on a veth pair: delay %v, loss on each end", lossDelay)
	return l.setLoss(0)
}

// setLoss sets the share of packets dropped in each direction, in percent.
func (l *lossLink) setLoss(pct float64) error {
	if l.relay != nil {
		l.relay.loss.Store(math.Float64bits(pct))
		return nil
	}
	for _, nd := range [][2]string{{l.nsA, l.devA}, {l.nsB, l.devB}} {
		if err := sh("ip", "netns", "exec", nd[0], "tc", "qdisc", "replace", "dev", nd[1], "root", "netem",
			"delay", fmt.Sprintf("%dus", lossDelay.Microseconds()), "loss", fmt.Sprintf("%g%%", pct)); err != nil {
			return err
		}
	}
	return nil
}

// Close deletes both namespaces (and with them the link) and stops the
// relay; it is idempotent.
func (l *lossLink) Close() {
	l.once.Do(func() {
		for _, ns := range []string{l.nsA, l.nsB} {
			if err := sh("ip", "netns", "del", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
				logf("lossy: %v", err)
			}
		}
		if l.relay != nil {
			l.relay.Close()
		}
	})
}

// tunRelay moves IP packets between a TUN device in each namespace,
// delaying each by lossDelay and dropping a share of them.
type tunRelay struct {
	a, b *os.File
	loss atomic.Uint64 // float64 bits, percent
	wg   sync.WaitGroup
}

func newTunRelay(l *lossLink) (*tunRelay, error) {
	r := &tunRelay{}
	var err error
	if r.a, err = openTun(l.nsA, l.devA); err != nil {
		return nil, err
	}
	if r.b, err = openTun(l.nsB, l.devB); err != nil {
		r.a.Close()
		return nil, err
	}
	for _, s := range [][]string{
		{"ip", "-n", l.nsA, "addr", "add", lossIPA, "peer", lossIPB, "dev", l.devA},
		{"ip", "-n", l.nsB, "addr", "add", lossIPB, "peer", lossIPA, "dev", l.devB},
		{"ip", "-n", l.nsA, "link", "set", l.devA, "up"},
		{"ip", "-n", l.nsB, "link", "set", l.devB, "up"},
	} {
		if err := sh(s...); err != nil {
			r.Close()
			return nil, err
		}
	}
	r.wg.Add(2)
	go r.pump(r.a, r.b)
	go r.pump(r.b, r.a)
	return r, nil
}

// openTun creates TUN device name in network namespace ns. The work is
// done on an OS thread that enters ns and is never given back to other
// goroutines (it ends with its goroutine).
func openTun(ns, name string) (*os.File, error) {
	type res struct {
		f   *os.File
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread is discarded
		nsf, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer nsf.Close()
		if _, _, e := syscall.RawSyscall(sysSetns, nsf.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
			ch <- res{err: fmt.Errorf("setns %s: %v", ns, e)}
			return
		}
		fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{err: fmt.Errorf("/dev/net/tun: %v", err)}
			return
		}
		var ifr [40]byte
		copy(ifr[:15], name)
		*(*uint16)(unsafe.Pointer(&ifr[16])) = syscall.IFF_TUN | syscall.IFF_NO_PI
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
			syscall.Close(fd)
			ch <- res{err: fmt.Errorf("TUNSETIFF %s: %v", name, e)}
			return
		}
		ch <- res{f: os.NewFile(uintptr(fd), name)}
	}()
	r := <-ch
	return r.f, r.err
}

// pump forwards packets from one device to the other until from is closed.
func (r *tunRelay) pump(from, to *os.File) {
	defer r.wg.Done()
	type pkt struct {
		at time.Time
		b  []byte
	}
	q := make(chan pkt, 4096) // a full queue drops, as a full link would
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range q {
			if d := time.Until(p.at); d > 0 {
				time.Sleep(d)
			}
			to.Write(p.b)
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := from.Read(buf)
		if err != nil {
			break
		}
		if rand.Float64()*100 < math.Float64frombits(r.loss.Load()) {
			continue
		}
		select {
		case q <- pkt{time.Now().Add(lossDelay), append([]byte(nil), buf[:n]...)}:
		default:
		}
	}
	close(q)
	wg.Wait()
}

func (r *tunRelay) Close() {
	if r.a != nil {
		r.a.Close()
	}
	if r.b != nil {
		r.b.Close()
	}
	r.wg.Wait()
}

// suiteLossy measures request/response at concurrency 1 over the lossy
// link for marsmesh, gRPC and NATS, at every loss rate of the plan.
func (b *bench) suiteLossy() {
	var keys []string
	for _, k := range lossSystems {
		if !b.skipSystem(k) {
			keys = append(keys, k)
		}
	}
	names := map[string]string{}
	for _, s := range rpcSystems() {
		names[s.key] = s.name
	}
	const payload = 64
	failAll := func(msg string) {
		for _, loss := range b.lossRates {
			for _, k := range keys {
				b.add(Record{Suite: "lossy", System: k, Name: names[k], Payload: payload, Conc: 1, Loss: loss, Err: msg})
			}
		}
	}
	if why := lossyUnavailable(); why != "" {
		logf("lossy suite skipped: %s", why)
		failAll("skipped: " + why)
		return
	}
	if b.overBudget("lossy suite") {
		failAll("skipped: time budget spent")
		return
	}
	link, err := newLossLink()
	if err != nil {
		logf("lossy suite: %v", err)
		failAll("setup: " + err.Error())
		return
	}
	defer link.Close()
	type live struct {
		key    string
		f      *fleet
		drv    *child
		err    string
		rounds []RoundFig
		lat    []float64
		errs   int64
		kinds  map[string]int64
	}
	var lives []*live
	for _, k := range keys {
		l := &live{key: k}
		lives = append(lives, l)
		if l.f, err = spawnFleet(k, link.nsB, lossIPB); err == nil {
			args := append([]string{"driver", k, lossIPA, fmt.Sprint(payload)}, l.f.eps...)
			l.drv, err = startChild(link.nsA, args...)
		}
		if err != nil {
			l.err = "setup: " + err.Error()
		}
	}
	defer func() {
		for _, l := range lives {
			if l.drv != nil {
				l.drv.Close()
			}
			if l.f != nil {
				l.f.Close()
			}
		}
	}()
	n := b.xrounds
	perRound := (b.lossCount + int64(n) - 1) / int64(n)
	// A lost TCP segment costs at least 200 ms (the minimum RTO): bound
	// each round by time, not only by count.
	roundDur := max(4*b.duration/time.Duration(n), time.Second)
	run := func(l *live, count int64, d time.Duration) (driverResult, error) {
		var res driverResult
		line, err := l.drv.ask(fmt.Sprintf("run 1 %d %d", count, d.Milliseconds()), d+childReplyWait)
		if err != nil {
			return res, err
		}
		if !strings.HasPrefix(line, "RESULT ") {
			return res, fmt.Errorf("driver said %q", line)
		}
		err = json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &res)
		return res, err
	}
	for _, loss := range b.lossRates {
		if err := link.setLoss(loss); err != nil {
			logf("lossy: %v", err)
			for _, l := range lives {
				b.add(Record{Suite: "lossy", System: l.key, Name: names[l.key], Payload: payload, Conc: 1, Loss: loss, Err: "setup: " + err.Error()})
			}
			continue
		}
		over := b.overBudget(fmt.Sprintf("lossy %g%%", loss))
		for _, l := range lives {
			l.rounds, l.lat, l.errs, l.kinds = nil, nil, 0, nil
			if l.err == "" && !over {
				run(l, 50, 2*time.Second) // warm-up
			}
		}
		turns(len(lives), n, func(i, _ int) {
			l := lives[i]
			if l.err != "" || over {
				return
			}
			res, err := run(l, perRound, roundDur)
			if err != nil {
				l.errs++
				l.kinds = addKind(l.kinds, err.Error(), 1)
				return
			}
			el := time.Duration(res.ElapsedNs)
			f := RoundFig{Done: res.Done, Errors: res.Errors, Seconds: el.Seconds(), P50: res.Lat.P50, P99: res.Lat.P99,
				P999: res.Lat.P999, Max: res.Lat.Max}
			if el > 0 {
				f.Rate = float64(res.Done) / el.Seconds()
			}
			l.rounds = append(l.rounds, f)
			l.lat = append(l.lat, res.LatUs...)
			l.errs += res.Errors
			for k, v := range res.ErrKinds {
				l.kinds = addKind(l.kinds, k, v)
			}
		})
		b.lossyStreams(lives2streams(lives, func(l *live) (string, *child, string) { return l.key, l.drv, l.err }), loss, link.method, over)
		for _, l := range lives {
			rec := Record{Suite: "lossy", System: l.key, Name: names[l.key], Payload: payload, Conc: 1, Loss: loss,
				Impair: link.method, Err: l.err}
			if over && rec.Err == "" {
				rec.Err = "skipped: time budget spent"
			}
			if rec.Err == "" {
				rec.fromRounds(l.rounds)
				rec.Errors, rec.ErrKinds = l.errs, l.kinds
				if len(l.lat) > 0 { // tails over every request, not medians of rounds
					d := make([]time.Duration, len(l.lat))
					for i, us := range l.lat {
						d[i] = time.Duration(us * 1e3)
					}
					lat := Summarize(d)
					rec.Lat = &lat
				}
			}
			b.add(rec)
		}
	}
}

func addKind(m map[string]int64, k string, v int64) map[string]int64 {
	if m == nil {
		m = map[string]int64{}
	}
	if _, ok := m[k]; ok || len(m) < 8 {
		m[k] += v
	}
	return m
}

// sysSetns is setns(2) on linux/amd64 (the syscall package lacks the name).
const sysSetns = 308

// lossyStreamPayload and lossyStreamCount size the lossy suite's stream
// case: a 1 KiB message stream of 2 MB per round.
const (
	lossyStreamPayload = 1024
	lossyStreamCount   = 2000
)

// streamDriver is a lossy-suite driver that can run the stream case.
type streamDriver struct {
	key string
	drv *child
	err string
}

func lives2streams[L any](lives []L, f func(L) (string, *child, string)) []streamDriver {
	var out []streamDriver
	for _, l := range lives {
		k, d, e := f(l)
		if k == sysMarsmesh || k == sysGRPC { // the systems with a stream
			out = append(out, streamDriver{k, d, e})
		}
	}
	return out
}

// lossyStreams runs the stream case over the lossy link at one loss rate:
// each driver opens a stream to its fleet, sends lossyStreamCount
// messages and waits until the receiver has read them all, in rounds.
func (b *bench) lossyStreams(ds []streamDriver, loss float64, method string, over bool) {
	names := map[string]string{}
	for _, s := range streamSystems() {
		names[s.key] = s.name
	}
	n := b.xrounds
	d := max(4*b.duration/time.Duration(n), 2*time.Second)
	rounds := make([][]RoundFig, len(ds))
	kinds := make([]map[string]int64, len(ds))
	turns(len(ds), n, func(i, _ int) {
		s := ds[i]
		if s.err != "" || over {
			return
		}
		line, err := s.drv.ask(fmt.Sprintf("stream %d %d %d", lossyStreamPayload, lossyStreamCount, d.Milliseconds()), d+streamClose+childReplyWait)
		var res driverResult
		if err == nil && !strings.HasPrefix(line, "RESULT ") {
			err = fmt.Errorf("driver said %q", line)
		}
		if err == nil {
			err = json.Unmarshal([]byte(strings.TrimPrefix(line, "RESULT ")), &res)
		}
		if err != nil {
			kinds[i] = addKind(kinds[i], err.Error(), 1)
			return
		}
		for k, v := range res.ErrKinds {
			kinds[i] = addKind(kinds[i], k, v)
		}
		if len(res.ErrKinds) > 0 {
			return // the stream did not end cleanly: its time is not a transfer's
		}
		el := time.Duration(res.ElapsedNs)
		f := RoundFig{Done: res.Done, Seconds: el.Seconds()}
		if el > 0 {
			f.Rate = float64(res.Done) / el.Seconds()
		}
		rounds[i] = append(rounds[i], f)
	})
	for i, s := range ds {
		rec := Record{Suite: "lossy-stream", System: s.key, Name: names[s.key], Payload: lossyStreamPayload, Loss: loss,
			Impair: method, Err: s.err, ErrKinds: kinds[i]}
		if over && rec.Err == "" {
			rec.Err = "skipped: time budget spent"
		}
		if rec.Err == "" {
			rec.fromRounds(rounds[i])
		}
		b.add(rec)
	}
}
