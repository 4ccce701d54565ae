package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procSnap is what the cross-process suites read before and after a
// measured slice: for a set of processes (the bench itself and one
// system's children), their context switches and CPU time, and the
// network namespace's UDP and TCP counters.
type procSnap struct {
	ctx     int64         // voluntary + nonvoluntary context switches, every thread of every process
	cpu     time.Duration // user + system CPU of the processes
	udpOut  int64         // /proc/net/snmp Udp OutDatagrams (the whole network namespace)
	tcpOut  int64         // /proc/net/snmp Tcp OutSegs (the whole network namespace)
	busy    time.Duration // CPU used by every process of the machine
	wall    time.Time
	invalid bool // some counter could not be read
}

func takeSnap(pids []int) procSnap {
	s := procSnap{wall: time.Now(), busy: machineBusy()}
	for _, pid := range pids {
		ctx, err := ctxSwitches(pid)
		cpu, err2 := procCPU(pid)
		if err != nil || err2 != nil {
			s.invalid = true
		}
		s.ctx += ctx
		s.cpu += cpu
	}
	var err error
	if s.udpOut, s.tcpOut, err = netSNMP(); err != nil || s.busy < 0 {
		s.invalid = true
	}
	return s
}

// xcost is the difference of two snapshots.
type xcost struct {
	Ctx, UDPOut, TCPOut int64
	CPU                 time.Duration
	OtherCores          float64 // CPU of the rest of the machine meanwhile, in cores
	Valid               bool
}

func (s procSnap) since(a procSnap) xcost {
	c := xcost{Ctx: s.ctx - a.ctx, UDPOut: s.udpOut - a.udpOut, TCPOut: s.tcpOut - a.tcpOut, CPU: s.cpu - a.cpu,
		Valid: !s.invalid && !a.invalid}
	if el := s.wall.Sub(a.wall).Seconds(); el > 0 {
		c.OtherCores = max((s.busy-a.busy-c.CPU).Seconds(), 0) / el
	}
	return c
}

// ctxSwitches sums voluntary_ctxt_switches and nonvoluntary_ctxt_switches
// over the threads of a process (/proc/PID/status alone counts only its
// main thread).
func ctxSwitches(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of process %d", pid)
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				sum += n
			}
		}
	}
	return sum, nil
}

// procCPU is a process's user + system CPU from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// netSNMP reads Udp OutDatagrams and Tcp OutSegs of this network namespace.
func netSNMP() (udpOut, tcpOut int64, err error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(string(b), "\n")
	get := func(proto, field string) (int64, error) {
		for i := 0; i+1 < len(lines); i++ {
			if !strings.HasPrefix(lines[i], proto+": ") || !strings.HasPrefix(lines[i+1], proto+": ") {
				continue
			}
			names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j, n := range names {
				if n == field && j < len(vals) {
					return strconv.ParseInt(vals[j], 10, 64)
				}
			}
		}
		return 0, fmt.Errorf("/proc/net/snmp: no %s %s", proto, field)
	}
	if udpOut, err = get("Udp", "OutDatagrams"); err != nil {
		return 0, 0, err
	}
	tcpOut, err = get("Tcp", "OutSegs")
	return udpOut, tcpOut, err
}
