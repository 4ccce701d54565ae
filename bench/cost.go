package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cost is what a case consumed in the whole process: CPU time (user +
// system, both ends of every connection run here) and heap allocations.
type cost struct {
	CPU        time.Duration
	Mallocs    uint64
	AllocBytes uint64
	// OtherCores is the CPU the rest of the machine (other processes) used
	// meanwhile, in cores on average; -1 when unknown.
	OtherCores float64
}

type costMeter struct {
	cpu0             time.Duration
	mallocs0, bytes0 uint64
	busy0            time.Duration
	wall0            time.Time
}

// machineBusy is the CPU time all processes used since boot, from the
// first line of /proc/stat (user+nice+system+irq+softirq+steal), or -1.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return -1
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux platform Go supports.
const clockTicks = 100

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (m *costMeter) start() {
	runtime.GC() // no debt from setup or warm-up lands in the case
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs0, m.bytes0 = ms.Mallocs, ms.TotalAlloc
	m.cpu0 = processCPU()
	m.busy0 = machineBusy()
	m.wall0 = time.Now()
}

func (m *costMeter) stop() cost {
	cpu := processCPU()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	c := cost{CPU: cpu - m.cpu0, Mallocs: ms.Mallocs - m.mallocs0, AllocBytes: ms.TotalAlloc - m.bytes0, OtherCores: -1}
	if busy := machineBusy(); busy >= 0 && m.busy0 >= 0 {
		other := busy - m.busy0 - c.CPU
		c.OtherCores = max(other.Seconds(), 0) / time.Since(m.wall0).Seconds()
	}
	return c
}

// perMillion is CPU seconds per million messages.
func (c cost) perMillion(msgs int64) float64 {
	if msgs <= 0 {
		return 0
	}
	return c.CPU.Seconds() / float64(msgs) * 1e6
}

// allocsPer is heap allocations per message.
func (c cost) allocsPer(msgs int64) float64 {
	if msgs <= 0 {
		return 0
	}
	return float64(c.Mallocs) / float64(msgs)
}
