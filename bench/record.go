package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
)

var nan = math.NaN()

// Record is one measured case.
type Record struct {
	Suite   string `json:"suite"` // rpc, oneway, fanout, cost-rpc, cost-oneway, memory
	System  string `json:"system"`
	Name    string `json:"name"`
	Payload int    `json:"payload,omitempty"`
	Conc    int    `json:"conc,omitempty"`  // concurrent requests (rpc)
	Nodes   int    `json:"nodes,omitempty"` // receivers (fanout) or sessions (memory)
	Limit   int    `json:"limit,omitempty"` // SendMany limit

	Count    int64            `json:"count"` // requests done, messages delivered, rounds
	Sent     int64            `json:"sent,omitempty"`
	Errors   int64            `json:"errors,omitempty"`
	Seconds  float64          `json:"seconds"`
	Rate     float64          `json:"rate"` // per second
	MBps     float64          `json:"mbps,omitempty"`
	LossPct  float64          `json:"loss_pct,omitempty"`
	Lat      *Latency         `json:"latency,omitempty"`
	CPUPerM  float64          `json:"cpu_s_per_million"`
	Allocs   float64          `json:"allocs_per_msg"`
	HeapPer  float64          `json:"heap_bytes_per_session,omitempty"`
	GorPer   float64          `json:"goroutines_per_session,omitempty"`
	Other    float64          `json:"other_cores"` // CPU other processes used meanwhile, in cores
	TimedOut bool             `json:"timed_out,omitempty"`
	Err      string           `json:"error,omitempty"`
	ErrKinds map[string]int64 `json:"failed_requests,omitempty"` // by error text
	FailedIn []string         `json:"failed_in,omitempty"`       // merged: the runs with failed requests
	Runs     int              `json:"runs,omitempty"`            // runs merged into this record

	// Cross-process suites: medians over the rounds of figures per request
	// (or delivered message) of every process of the system.
	CtxPer    float64    `json:"ctx_switches_per_msg,omitempty"`
	DgramsPer float64    `json:"udp_datagrams_per_msg,omitempty"` // /proc/net/snmp Udp OutDatagrams
	SegsPer   float64    `json:"tcp_segments_per_msg,omitempty"`  // /proc/net/snmp Tcp OutSegs
	RetxPerK  float64    `json:"retransmits_per_k,omitempty"`     // reliable segments sent again per 1,000 (both ends; marsmesh)
	Procs     int        `json:"processes,omitempty"`             // processes of the system, this one included
	Loss      float64    `json:"loss_pct_each_way,omitempty"`     // lossy suite: packet loss on each direction of the link
	Impair    string     `json:"impairment,omitempty"`            // lossy suite: how delay and loss were made
	Rounds    []RoundFig `json:"rounds,omitempty"`
}

func (r Record) key() string {
	return fmt.Sprintf("%s|%s|%d|%d|%d|%d|%g", r.Suite, r.System, r.Payload, r.Conc, r.Nodes, r.Limit, r.Loss)
}

// Run is one invocation's records and the machine it ran on.
type Run struct {
	Env      Env      `json:"env"`
	Command  string   `json:"command"`
	Quick    bool     `json:"quick"`
	Duration string   `json:"duration"`
	Elapsed  float64  `json:"elapsed_s"`
	Records  []Record `json:"records"`
	Sources  []string `json:"sources,omitempty"` // merged runs' commands/files
	// GoalRatios holds, for a merged run, each goal's ratio in every source
	// run (key: goal and case).
	GoalRatios map[string][]float64 `json:"goal_ratios,omitempty"`
}

func (r *Run) find(suite, system string, payload, conc, nodes, limit int) *Record {
	for i := range r.Records {
		x := &r.Records[i]
		if x.Suite == suite && x.System == system && x.Payload == payload && x.Conc == conc && x.Nodes == nodes && x.Limit == limit {
			return x
		}
	}
	return nil
}

func loadRun(path string) (Run, error) {
	var r Run
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(b, &r)
	return r, err
}

func saveRun(path string, r Run) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// MergeRuns returns a run whose every figure is the median of that figure
// over the runs that measured the case (failed cases excluded).
func MergeRuns(runs []Run) Run {
	if len(runs) == 0 {
		return Run{}
	}
	out := runs[0]
	out.Records = nil
	groups := map[string][]Record{}
	failedIn := map[string][]string{}
	var order []string
	for i, run := range runs {
		for _, r := range run.Records {
			r.Rounds = slices.Clone(r.Rounds)
			for j := range r.Rounds {
				r.Rounds[j].Run = i + 1
			}
			k := r.key()
			if _, ok := groups[k]; !ok {
				order = append(order, k)
			}
			groups[k] = append(groups[k], r)
			if r.Errors > 0 && r.Err == "" {
				failedIn[k] = append(failedIn[k], fmt.Sprintf("run %d: %s of %s, other processes using %.2f cores",
					i+1, thousands(r.Errors), thousands(r.Errors+r.Count), r.Other))
			}
		}
	}
	for _, k := range order {
		m := mergeRecords(groups[k])
		m.FailedIn = failedIn[k]
		out.Records = append(out.Records, m)
	}
	var el []float64
	for _, run := range runs {
		el = append(el, run.Elapsed)
	}
	out.Elapsed = Median(el)
	if len(runs) > 1 {
		out.GoalRatios = map[string][]float64{}
		for _, run := range runs {
			for _, g := range Goals(run) {
				out.GoalRatios[g.key()] = append(out.GoalRatios[g.key()], g.ratio())
			}
		}
	}
	return out
}

func mergeRecords(rs []Record) Record {
	ok := slices.DeleteFunc(slices.Clone(rs), func(r Record) bool { return r.Err != "" })
	if len(ok) == 0 {
		r := rs[0]
		r.Runs = len(rs)
		return r
	}
	m := ok[0]
	med := func(f func(Record) float64) float64 {
		xs := make([]float64, len(ok))
		for i, r := range ok {
			xs[i] = f(r)
		}
		return Median(xs)
	}
	m.Count = int64(med(func(r Record) float64 { return float64(r.Count) }))
	m.Sent = int64(med(func(r Record) float64 { return float64(r.Sent) }))
	m.Errors = int64(med(func(r Record) float64 { return float64(r.Errors) }))
	m.Seconds = med(func(r Record) float64 { return r.Seconds })
	m.Rate = med(func(r Record) float64 { return r.Rate })
	m.MBps = med(func(r Record) float64 { return r.MBps })
	m.LossPct = med(func(r Record) float64 { return r.LossPct })
	m.CPUPerM = med(func(r Record) float64 { return r.CPUPerM })
	m.Allocs = med(func(r Record) float64 { return r.Allocs })
	m.HeapPer = med(func(r Record) float64 { return r.HeapPer })
	m.GorPer = med(func(r Record) float64 { return r.GorPer })
	m.Other = med(func(r Record) float64 { return r.Other })
	if m.Lat != nil {
		lat := func(f func(Latency) float64) float64 {
			return med(func(r Record) float64 {
				if r.Lat == nil {
					return nan
				}
				return f(*r.Lat)
			})
		}
		m.Lat = &Latency{
			N:    int(lat(func(l Latency) float64 { return float64(l.N) })),
			P50:  lat(func(l Latency) float64 { return l.P50 }),
			P99:  lat(func(l Latency) float64 { return l.P99 }),
			P999: lat(func(l Latency) float64 { return l.P999 }),
			Max:  lat(func(l Latency) float64 { return l.Max }),
		}
	}
	m.ErrKinds = nil
	for _, r := range ok {
		for k, v := range r.ErrKinds {
			if m.ErrKinds == nil {
				m.ErrKinds = map[string]int64{}
			}
			m.ErrKinds[k] += v // summed over the runs
		}
	}
	m.Rounds = nil // every run's rounds, told apart by RoundFig.Run
	for _, r := range ok {
		m.Rounds = append(m.Rounds, r.Rounds...)
	}
	m.Runs = len(ok)
	return m
}
