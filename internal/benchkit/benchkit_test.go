package benchkit

import (
	"flag"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPercentileIsTheNearestRank(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		give []time.Duration
		p    float64
		want time.Duration
	}{
		{give: nil, p: 50, want: 0},
		{give: ms(7), p: 99, want: 7 * time.Millisecond},
		{give: ms(4, 1, 3, 2), p: 50, want: 2 * time.Millisecond},
		{give: ms(4, 1, 3, 2), p: 99, want: 4 * time.Millisecond},
		{give: ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), p: 90, want: 9 * time.Millisecond},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Percentile(tt.give, tt.p), "p%v of %v", tt.p, tt.give)
	}
}

// TestEveryPeerSendsToTheBenchmarkCluster runs each peer's calls a few times
// against kfake with and without the delay line: what the benchmarks do,
// briefly, so that a broken peer fails CI rather than a benchmark run.
func TestEveryPeerSendsToTheBenchmarkCluster(t *testing.T) {
	for _, rtt := range []time.Duration{0, time.Millisecond} {
		tgt := Kfake(t, rtt)
		for _, impl := range []SendImpl{SyncProducer(), FranzSync(false), FranzSync(true)} {
			t.Run(rttName(rtt)+"/"+impl.Name, func(t *testing.T) {
				send := impl.New(t, tgt)
				for range 3 {
					require.NoError(t, send())
				}
			})
		}
		for _, impl := range []ProduceImpl{FranzAsync(false), FranzAsync(true), SaramaAsync(false), SaramaAsync(true)} {
			t.Run(rttName(rtt)+"/"+impl.Name+"/async", func(t *testing.T) {
				p := impl.New(t, tgt)
				for range 100 {
					p.Produce()
				}
				require.NoError(t, p.Flush())
			})
		}
	}
}

func TestPeakHeapSeesAnAllocationMadeWhileSampling(t *testing.T) {
	stop := PeakHeap()
	big := make([]byte, 64<<20)
	big[len(big)-1] = 1
	peak := stop()
	assert.GreaterOrEqual(t, peak, uint64(len(big)))
	assert.Equal(t, byte(1), big[len(big)-1])
}

func TestSendMakesOneClientPerCaseAndClosesItWhenTheCaseIsOver(t *testing.T) {
	restore := flag.Lookup("test.benchtime").Value.String()
	require.NoError(t, flag.Set("test.benchtime", "20ms"))
	defer flag.Set("test.benchtime", restore)

	var (
		mu     sync.Mutex
		events []string
		sends  atomic.Int64
	)
	record := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	impl := SendImpl{Name: "counting", New: func(tb testing.TB, _ Target) func() error {
		record("new")
		tb.Cleanup(func() { record("close") })
		return func() error { sends.Add(1); return nil }
	}}
	start := func(testing.TB, time.Duration) Target { return Target{} }
	res := testing.Benchmark(func(b *testing.B) {
		Send(b, "none", start, []time.Duration{0}, []int{1, 4}, impl)
	})
	assert.Equal(t, []string{"new", "close", "new", "close"}, events,
		"one client per case, kept over go test's runs of it, closed before the next case")
	assert.Greater(t, sends.Load(), int64(2*2*warmUpSenders), "warm-up and runs")
	assert.Positive(t, res.N)
}
