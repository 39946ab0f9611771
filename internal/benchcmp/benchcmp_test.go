package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSampleReadsEveryMetricOfTheNamedBenchmark(t *testing.T) {
	out := []byte(`goos: linux
cpu: Intel(R) Xeon(R) Processor
BenchmarkSend/Broker=kfake/RTT=5ms/Impl=pool/Senders=1-2  	  163	  718607 ns/op	  1392 msgs/s	  10.58 p50-ms	  10.95 p99-ms	  1666 B/op	  18 allocs/op
BenchmarkSend/Broker=kfake/RTT=5ms/Impl=pool/Senders=16-2  	  163	  718607 ns/op	  1392 msgs/s	  10.58 p50-ms	  10.95 p99-ms	  1666 B/op	  18 allocs/op
PASS
`)
	s, ok := parseSample(out, "BenchmarkSend/Broker=kfake/RTT=5ms/Impl=pool/Senders=16")
	require.True(t, ok)
	assert.Equal(t, sample{"ns/op": 718607, "msgs/s": 1392, "p50-ms": 10.58, "p99-ms": 10.95, "B/op": 1666, "allocs/op": 18}, s)
	assert.Equal(t, "Intel(R) Xeon(R) Processor", cpuLine(out))

	_, ok = parseSample(out, "BenchmarkSend/Broker=kfake/RTT=5ms/Impl=pool/Senders=256")
	assert.False(t, ok, "a case that did not run has no sample")
}

func TestEveryCasePatternRunsThatCaseAlone(t *testing.T) {
	m := matrix{kfakeRTT: []int{0, 5}, mockRTT: []int{1}, asyncRTT: []int{0}, senders: []int{1, 16}, produce: true, rdkafka: true}
	cases := m.cases()
	require.NotEmpty(t, cases)
	for _, c := range cases {
		levels := strings.Split(c.pattern(), "/")
		names := strings.Split(c.name(), "/")
		require.Len(t, levels, len(names))
		for _, other := range cases {
			otherNames := strings.Split(other.name(), "/")
			all := len(otherNames) == len(levels)
			for i := 0; all && i < len(levels); i++ {
				all = regexp.MustCompile(levels[i]).MatchString(otherNames[i])
			}
			assert.Equal(t, c.name() == other.name(), all, "%s's pattern %s and %s", c.name(), c.pattern(), other.name())
		}
	}
}

func TestTheMatrixPutsEachClientInTheBinaryThatHasIt(t *testing.T) {
	m := matrix{kfakeRTT: []int{0}, mockRTT: []int{5}, asyncRTT: []int{5}, senders: []int{16}, rdkafka: true}
	bins := map[string]string{}
	for _, c := range m.cases() {
		bins[c.name()] = c.bin
	}
	assert.Equal(t, binCore, bins["BenchmarkSend/Broker=kfake/RTT=0ms/Impl=pool/Senders=16"])
	assert.Equal(t, binRdkafka, bins["BenchmarkSend/Broker=kfake/RTT=0ms/Impl=librdkafka/Senders=16"])
	assert.Equal(t, binRdkafka, bins["BenchmarkSend/Broker=mock/RTT=5ms/Impl=pool/Senders=16"])
	assert.Equal(t, binCore, bins["BenchmarkProduce/Broker=kfake/RTT=5ms/Impl=franz-go"])
	assert.NotContains(t, bins, "BenchmarkProducePool/Broker=kfake/RTT=5ms/Impl=pool", "the pool's Produce only with -produce")

	m.produce, m.rdkafka = true, false
	bins = map[string]string{}
	for _, c := range m.cases() {
		bins[c.name()] = c.bin
	}
	assert.Equal(t, binCore, bins["BenchmarkProducePool/Broker=kfake/RTT=5ms/Impl=pool"])
	for name, bin := range bins {
		assert.Equal(t, binCore, bin, "%s without internal/rdkafka", name)
	}
}

func TestRotateRunsEveryCaseOnceARoundFromAMovingStart(t *testing.T) {
	m := matrix{kfakeRTT: []int{0, 1, 5}, senders: []int{1, 16, 256}}
	cases := m.cases()
	firsts := map[string]bool{}
	for r := range 5 {
		order := rotate(cases, r, 5)
		require.Len(t, order, len(cases))
		seen := map[string]bool{}
		for _, c := range order {
			seen[c.name()] = true
		}
		assert.Len(t, seen, len(cases), "round %d", r)
		firsts[order[0].name()] = true
	}
	assert.Len(t, firsts, 5, "each round starts elsewhere")
}

func TestMedianOfOddAndEvenCounts(t *testing.T) {
	assert.Equal(t, 2.0, median([]float64{3, 1, 2}))
	assert.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
}

func TestTheReportRatesThePoolAgainstTheBestPeerAndTheSyncProducer(t *testing.T) {
	m := matrix{kfakeRTT: []int{5}, senders: []int{16}, rdkafka: true}
	var res results
	rates := map[string]float64{"pool": 1500, "pool-idempotent": 1400, "syncproducer": 1800, "franz-go": 1400, "franz-go-idempotent": 2000, "librdkafka": 3000, "librdkafka-idempotent": 2800}
	for _, c := range m.cases() {
		res.add(c, sample{"msgs/s": rates[c.impl.name], "p50-ms": 10.5, "p99-ms": 11, "allocs/op": 18})
	}
	var out bytes.Buffer
	report(&out, m, res)
	assert.Contains(t, out.String(), "| kfake | 5 ms | 16 | 1.50k | 1.40k | 1.80k | 1.40k | 2.00k | 3.00k | 2.80k |")
	assert.Contains(t, out.String(), "| kfake | 5 ms | 16 | 0.50 (librdkafka) | 0.47 (librdkafka) | 0.50 (librdkafka idem) | 1.07 | 0.70 | 0.83 | 0.78 |")
	assert.Contains(t, out.String(), "| kfake | 5 ms | 16 | ≤ 6.5 | 10.5 / 11 |")
}

func TestFormats(t *testing.T) {
	for give, want := range map[float64]string{190: "190", 1523: "1.52k", 24_420: "24.4k", 195_123: "195k", 2_061_000: "2.06M"} {
		assert.Equal(t, want, fmtRate(give))
	}
	for give, want := range map[float64]string{0.06017: "0.0602", 5.446: "5.45", 10.69: "10.7", 123.4: "123"} {
		assert.Equal(t, want, fmtMs(give))
	}
}
