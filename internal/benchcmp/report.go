package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// report prints the tables: synchronous throughput, ratios, latency and
// allocations, then the asynchronous throughput and peak heap.
func report(w io.Writer, m matrix, res results) {
	var syncRows, asyncRows []row
	seen := map[row]bool{}
	present := map[string]bool{} // impl names with at least one case
	for _, c := range m.cases() {
		if _, ok := res.samples[c.name()]; !ok && res.failed[c.name()] == 0 {
			continue
		}
		present[impl2key(c.async, c.impl.name)] = true
		if r := c.row(); !seen[r] {
			seen[r] = true
			if r.async {
				asyncRows = append(asyncRows, r)
			} else {
				syncRows = append(syncRows, r)
			}
		}
	}
	cols := func(async bool, all []impl) []impl {
		var out []impl
		for _, im := range all {
			if present[impl2key(async, im.name)] {
				out = append(out, im)
			}
		}
		return out
	}
	if len(syncRows) > 0 {
		syncTables(w, m, res, syncRows, cols(false, syncImpls))
	}
	if len(asyncRows) > 0 {
		asyncTables(w, m, res, asyncRows, cols(true, asyncImpls))
	}
}

func impl2key(async bool, name string) string { return fmt.Sprint(async, name) }

// caseAt is the case of impl im in row r.
func caseAt(m matrix, r row, im impl) benchCase {
	c := benchCase{async: r.async, broker: r.broker, rtt: r.rtt, impl: im, senders: r.senders, bin: binCore}
	if r.broker == "mock" || im.rdkafka {
		c.bin = binRdkafka
	}
	return c
}

// table is one group of rows of the report, and the columns of its clients.
type table struct {
	w       io.Writer
	m       matrix
	res     results
	rows    []row
	impls   []impl
	key     func(row) string // a row's first cells
	keyHead string           // their header
	keyRule string           // their rule
}

// rate is the median throughput of the client name in row r.
func (t table) rate(r row, name string) (float64, bool) {
	for _, im := range t.impls {
		if im.name == name {
			return t.res.median(caseAt(t.m, r, im), "msgs/s")
		}
	}
	return 0, false
}

// perClient prints a table of one metric per client, then the extra
// columns extra gives each row (nil for none).
func (t table) perClient(metric string, format func(float64) string, extraCols []string, extra func(row) []string) {
	head, rule := t.keyHead+labels(t.impls, ""), t.keyRule+rules(len(t.impls)+len(extraCols))
	if len(extraCols) > 0 {
		head += " " + strings.Join(extraCols, " | ") + " |"
	}
	fmt.Fprintln(t.w, head+"\n"+rule)
	for _, r := range t.rows {
		var b strings.Builder
		b.WriteString(t.key(r))
		for _, im := range t.impls {
			b.WriteString(" " + cell(t.res, caseAt(t.m, r, im), metric, format) + " |")
		}
		if extra != nil {
			b.WriteString(" " + strings.Join(extra(r), " | ") + " |")
		}
		fmt.Fprintln(t.w, b.String())
	}
}

// title prints a table's title, after a blank line unless it is the first.
func (t table) title(s string, first bool) {
	if !first {
		fmt.Fprintln(t.w)
	}
	fmt.Fprintln(t.w, s)
	fmt.Fprintln(t.w)
}

func syncTables(w io.Writer, m matrix, res results, rows []row, impls []impl) {
	t := table{w: w, m: m, res: res, rows: rows, impls: impls,
		key:     func(r row) string { return fmt.Sprintf("| %s | %d ms | %d |", r.broker, r.rtt, r.senders) },
		keyHead: "| broker | RTT | senders |", keyRule: "|---|---:|---:|"}
	key, keyHead, keyRule, rate := t.key, t.keyHead, t.keyRule, t.rate

	t.title("Synchronous senders, each waiting for its acknowledgement: throughput, messages/s", true)
	t.perClient("msgs/s", fmtRate, nil, nil)

	t.title("Ratios of throughput (best peer: the fastest of SyncProducer, franz-go and librdkafka, idempotent or not; best idem peer: of the idempotent ones)", false)
	ratioCols := []string{"pool ÷ best peer", "idem ÷ best peer", "idem ÷ best idem peer", "pool ÷ franz-go", "idem ÷ franz-go idem", "pool ÷ SyncProducer", "idem ÷ SyncProducer"}
	fmt.Fprintln(w, keyHead+" "+strings.Join(ratioCols, " | ")+" |\n"+keyRule+rules(len(ratioCols)))
	for _, r := range rows {
		pool, okP := rate(r, "pool")
		idem, okI := rate(r, "pool-idempotent")
		best, bestName := bestOf(impls, func(im impl) bool { return !im.pool }, func(im impl) (float64, bool) { return rate(r, im.name) })
		bestIdem, bestIdemName := bestOf(impls, func(im impl) bool { return !im.pool && im.idempotent }, func(im impl) (float64, bool) { return rate(r, im.name) })
		fr, okF := rate(r, "franz-go")
		frI, okFI := rate(r, "franz-go-idempotent")
		sp, okS := rate(r, "syncproducer")
		cells := []string{
			ratio(pool, okP, best, best > 0, bestName),
			ratio(idem, okI, best, best > 0, bestName),
			ratio(idem, okI, bestIdem, bestIdem > 0, bestIdemName),
			ratio(pool, okP, fr, okF, ""),
			ratio(idem, okI, frI, okFI, ""),
			ratio(pool, okP, sp, okS, ""),
			ratio(idem, okI, sp, okS, ""),
		}
		fmt.Fprintln(w, key(r)+" "+strings.Join(cells, " | ")+" |")
	}

	t.title("Send latency, p50 / p99, ms (the goal for the pool under latency: p50 within 1.2 × RTT + 0.5 ms)", false)
	fmt.Fprintln(w, keyHead+" goal p50 |"+labels(impls, "")+"\n"+keyRule+"---:|"+rules(len(impls)))
	for _, r := range rows {
		var b strings.Builder
		b.WriteString(key(r))
		if r.rtt > 0 {
			fmt.Fprintf(&b, " ≤ %s |", fmtMs(1.2*float64(r.rtt)+0.5))
		} else {
			b.WriteString(" |")
		}
		for _, im := range impls {
			c := caseAt(m, r, im)
			p50, ok50 := res.median(c, "p50-ms")
			p99, ok99 := res.median(c, "p99-ms")
			switch {
			case ok50 && ok99:
				fmt.Fprintf(&b, " %s / %s |", fmtMs(p50), fmtMs(p99))
			default:
				b.WriteString(" " + missing(res, c) + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}

	t.title("Allocations per message, of the whole process: the client's and, on kfake, the in-process broker's and the delay line's (librdkafka: Go's only)", false)
	t.perClient("allocs/op", func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }, nil, nil)
}

func asyncTables(w io.Writer, m matrix, res results, rows []row, impls []impl) {
	t := table{w: w, m: m, res: res, rows: rows, impls: impls,
		key:     func(r row) string { return fmt.Sprintf("| %s | %d ms |", r.broker, r.rtt) },
		keyHead: "| broker | RTT |", keyRule: "|---|---:|"}
	t.title("One producing goroutine, then Flush: throughput, messages/s. The pool's default codec is none, so its like-for-like peers are franz-go uncompressed; franz-go's own default is snappy, under which benchkit.Value's zeros shrink to almost nothing", false)
	t.perClient("msgs/s", fmtRate, []string{"pool ÷ franz-go uncompressed", "idem ÷ franz-go idem uncompressed", "pool ÷ franz-go snappy", "idem ÷ franz-go idem snappy", "pool ÷ AsyncProducer"}, func(r row) []string {
		pool, okP := t.rate(r, "pool")
		idem, okI := t.rate(r, "pool-idempotent")
		fr, okF := t.rate(r, "franz-go")
		frI, okFI := t.rate(r, "franz-go-idempotent")
		frU, okFU := t.rate(r, "franz-go-uncompressed")
		frIU, okFIU := t.rate(r, "franz-go-idempotent-uncompressed")
		ap, okA := t.rate(r, "sarama-async")
		return []string{ratio(pool, okP, frU, okFU, ""), ratio(idem, okI, frIU, okFIU, ""), ratio(pool, okP, fr, okF, ""), ratio(idem, okI, frI, okFI, ""), ratio(pool, okP, ap, okA, "")}
	})
	t.title("Peak heap during the run (live objects and garbage not yet swept), MiB", false)
	t.perClient("peak-heap-MiB", func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }, nil, nil)
}

// bestOf returns the largest value among the impls that keep selects, and
// that impl's label.
func bestOf(impls []impl, keep func(impl) bool, value func(impl) (float64, bool)) (float64, string) {
	var best float64
	var label string
	for _, im := range impls {
		if !keep(im) {
			continue
		}
		if v, ok := value(im); ok && v > best {
			best, label = v, im.label
		}
	}
	return best, label
}

func labels(impls []impl, suffix string) string {
	var b strings.Builder
	for _, im := range impls {
		b.WriteString(" " + im.label + suffix + " |")
	}
	return b.String()
}

func rules(n int) string { return strings.Repeat("---:|", n) }

func cell(res results, c benchCase, unit string, f func(float64) string) string {
	if v, ok := res.median(c, unit); ok {
		return f(v)
	}
	return missing(res, c)
}

func missing(res results, c benchCase) string {
	if res.failed[c.name()] > 0 {
		return "failed"
	}
	return "–"
}

func ratio(a float64, okA bool, b float64, okB bool, of string) string {
	if !okA || !okB || b == 0 {
		return "–"
	}
	s := strconv.FormatFloat(a/b, 'f', 2, 64)
	if of != "" {
		s += " (" + of + ")"
	}
	return s
}

// fmtRate writes a rate with three significant digits: 190, 1.52k, 24.4k, 195k, 2.06M.
func fmtRate(v float64) string {
	switch {
	case v >= 1_000_000:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 100_000:
		return strconv.FormatFloat(v/1000, 'f', 0, 64) + "k"
	case v >= 10_000:
		return strconv.FormatFloat(v/1000, 'f', 1, 64) + "k"
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', 2, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// fmtMs writes milliseconds with three significant digits.
func fmtMs(v float64) string {
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
