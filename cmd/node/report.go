package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// report prints the demo's steps as they finish and a summary at the end.
type report struct {
	w     io.Writer
	start time.Time
	steps []stepResult
}

type stepResult struct {
	name    string
	took    time.Duration
	passed  bool
	skipped bool
	detail  string
}

func newReport(w io.Writer) *report { return &report{w: w, start: time.Now()} }

// header prints free text above the step table.
func (r *report) header(lines ...string) {
	for _, l := range lines {
		fmt.Fprintln(r.w, l)
	}
	fmt.Fprintln(r.w)
}

// step runs f as the next step, times it and prints its line. f returns
// the numbers worth reporting, and an error if the step failed (detail is
// still printed then, before the error).
func (r *report) step(name string, f func() (detail string, err error)) bool {
	start := time.Now()
	detail, err := f()
	s := stepResult{name: name, took: time.Since(start), passed: err == nil, detail: detail}
	if err != nil {
		s.detail = strings.TrimSpace(strings.TrimSuffix(detail, ".") + "; " + oneLine(err))
		s.detail = strings.TrimPrefix(s.detail, "; ")
	}
	r.add(s)
	return s.passed
}

// skip records a step that could not run.
func (r *report) skip(name, why string) { r.add(stepResult{name: name, skipped: true, detail: why}) }

func (r *report) add(s stepResult) {
	r.steps = append(r.steps, s)
	verdict := "PASS"
	switch {
	case s.skipped:
		verdict = "SKIP"
	case !s.passed:
		verdict = "FAIL"
	}
	took := fmtDur(s.took)
	if s.skipped {
		took = "-"
	}
	fmt.Fprintf(r.w, "%2d  %-22s %8s  %s  %s\n", len(r.steps), s.name, took, verdict, s.detail)
}

// finish prints the summary line and reports whether every step passed.
func (r *report) finish() bool {
	passed := 0
	for _, s := range r.steps {
		if s.passed && !s.skipped {
			passed++
		}
	}
	ok := passed == len(r.steps) && passed > 0
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
	}
	fmt.Fprintf(r.w, "\n%s: %d of %d steps passed in %s\n", verdict, passed, len(r.steps), fmtDur(time.Since(r.start)))
	return ok
}

// fmtDur prints a duration with about three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// percentile returns the p-th percentile (0..100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
