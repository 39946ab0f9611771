package main

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// sample is one run's figures: each benchmark metric by its unit
// (msgs/s, p50-ms, p99-ms, allocs/op, peak-heap-MiB, ...).
type sample map[string]float64

func (s sample) String() string {
	var b strings.Builder
	for _, u := range []string{"msgs/s", "p50-ms", "p99-ms", "allocs/op", "peak-heap-MiB"} {
		if v, ok := s[u]; ok {
			fmt.Fprintf(&b, " %s %s", u, strconv.FormatFloat(v, 'g', 4, 64))
		}
	}
	return strings.TrimSpace(b.String())
}

// parseSample finds the result line of benchmark name in a test binary's
// output: the name with a -GOMAXPROCS suffix, the iteration count, then
// value and unit pairs.
func parseSample(out []byte, name string) (sample, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || len(f)%2 != 0 || trimProcs(f[0]) != name {
			continue
		}
		s := sample{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, false
			}
			s[f[i+1]] = v
		}
		return s, true
	}
	return nil, false
}

// trimProcs drops the -N that go test appends to a benchmark's name.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// cpuLine is the "cpu: ..." line go test prints, or "".
func cpuLine(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "cpu: "); ok {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// results holds every round's sample of every case.
type results struct {
	samples map[string][]sample
	failed  map[string]int
}

func (r *results) add(c benchCase, s sample) {
	if r.samples == nil {
		r.samples = map[string][]sample{}
	}
	r.samples[c.name()] = append(r.samples[c.name()], s)
}

func (r *results) fail(c benchCase) {
	if r.failed == nil {
		r.failed = map[string]int{}
	}
	r.failed[c.name()]++
}

// median returns the median of unit over c's samples, and false if there
// is none.
func (r results) median(c benchCase, unit string) (float64, bool) {
	var xs []float64
	for _, s := range r.samples[c.name()] {
		if v, ok := s[unit]; ok {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return 0, false
	}
	return median(xs), true
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}
