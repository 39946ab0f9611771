package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The test binaries benchcmp builds.
const (
	binCore    = "fxkafka" // go.fxkafka.dev/fxkafka: kfake rows of every client but librdkafka
	binRdkafka = "rdkafka" // go.fxkafka.dev/internal/rdkafka: the mock cluster's rows, and librdkafka on kfake
)

// impl is a client as the benchmarks name it (Impl=<name>).
type impl struct {
	name, label string
	idempotent  bool
	pool        bool // the pool itself, not a peer
	rdkafka     bool // librdkafka: in the rdkafka binary
}

var (
	syncImpls = []impl{
		{name: "pool", label: "pool", pool: true},
		{name: "pool-idempotent", label: "pool idem", pool: true, idempotent: true},
		{name: "syncproducer", label: "SyncProducer"},
		{name: "franz-go", label: "franz-go"},
		{name: "franz-go-idempotent", label: "franz-go idem", idempotent: true},
		{name: "librdkafka", label: "librdkafka", rdkafka: true},
		{name: "librdkafka-idempotent", label: "librdkafka idem", idempotent: true, rdkafka: true},
	}
	asyncImpls = []impl{
		{name: "pool", label: "pool", pool: true},
		{name: "pool-idempotent", label: "pool idem", pool: true, idempotent: true},
		{name: "franz-go", label: "franz-go snappy"},
		{name: "franz-go-idempotent", label: "franz-go idem snappy", idempotent: true},
		{name: "franz-go-uncompressed", label: "franz-go uncompressed"},
		{name: "franz-go-idempotent-uncompressed", label: "franz-go idem uncompressed", idempotent: true},
		{name: "sarama-async", label: "AsyncProducer"},
		{name: "sarama-async-idempotent", label: "AsyncProducer idem", idempotent: true},
	}
)

// benchCase is one benchmark run: a leaf of BenchmarkSend, BenchmarkProduce
// or BenchmarkProducePool.
type benchCase struct {
	async   bool
	broker  string // "kfake" or "mock"
	rtt     int    // ms
	impl    impl
	senders int // synchronous only
	bin     string
}

// row is what a table row is keyed by.
type row struct {
	async   bool
	broker  string
	rtt     int
	senders int
}

func (c benchCase) row() row { return row{c.async, c.broker, c.rtt, c.senders} }

func (c benchCase) benchmark() string {
	switch {
	case !c.async:
		return "BenchmarkSend"
	case c.impl.pool:
		return "BenchmarkProducePool"
	}
	return "BenchmarkProduce"
}

func (c benchCase) levels() []string {
	l := []string{"Broker=" + c.broker, fmt.Sprintf("RTT=%dms", c.rtt), "Impl=" + c.impl.name}
	if !c.async {
		l = append(l, fmt.Sprintf("Senders=%d", c.senders))
	}
	return l
}

// name is the case's benchmark name, as the binary prints it (without the
// -GOMAXPROCS suffix).
func (c benchCase) name() string {
	return c.benchmark() + "/" + strings.Join(c.levels(), "/")
}

// pattern is the -test.bench pattern that runs this case alone.
func (c benchCase) pattern() string {
	parts := []string{"^" + c.benchmark() + "$"}
	for _, l := range c.levels() {
		parts = append(parts, "^"+regexp.QuoteMeta(l)+"$")
	}
	return strings.Join(parts, "/")
}

func (c benchCase) pkgDir() string {
	if c.bin == binRdkafka {
		return "internal/rdkafka"
	}
	return "fxkafka"
}

// matrix is what to run.
type matrix struct {
	kfakeRTT, mockRTT, asyncRTT []int
	senders                     []int
	produce                     bool // the pool's Produce is built in
	rdkafka                     bool // the rdkafka binary is built
}

func (m matrix) cases() []benchCase {
	var out []benchCase
	sync := func(broker string, rtts []int) {
		for _, rtt := range rtts {
			for _, n := range m.senders {
				for _, im := range syncImpls {
					bin := binCore
					if broker == "mock" || im.rdkafka {
						bin = binRdkafka
					}
					if bin == binRdkafka && !m.rdkafka {
						continue
					}
					out = append(out, benchCase{broker: broker, rtt: rtt, impl: im, senders: n, bin: bin})
				}
			}
		}
	}
	sync("kfake", m.kfakeRTT)
	sync("mock", m.mockRTT)
	for _, rtt := range m.asyncRTT {
		for _, im := range asyncImpls {
			if im.pool && !m.produce {
				continue
			}
			out = append(out, benchCase{async: true, broker: "kfake", rtt: rtt, impl: im, bin: binCore})
		}
	}
	return out
}

func filterCases(cs []benchCase, re *regexp.Regexp) []benchCase {
	var out []benchCase
	for _, c := range cs {
		if re.MatchString(c.name()) {
			out = append(out, c)
		}
	}
	return out
}

// rotate returns the cases in round r's order: the list started at a point
// that moves by len/rounds each round, so that every case runs early, late
// and between different neighbours across the rounds.
func rotate(cs []benchCase, r, rounds int) []benchCase {
	if len(cs) == 0 {
		return nil
	}
	off := (r * max(1, len(cs)/max(1, rounds))) % len(cs)
	return append(append([]benchCase(nil), cs[off:]...), cs[:off]...)
}

// ints parses "0,1,5".
func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		check(err)
		out = append(out, n)
	}
	return out
}
