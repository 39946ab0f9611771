package fxkafka

import (
	"math"
	"sync/atomic"
	"time"
)

// pipeGauge decides, from what a producer measures, whether a further
// produce request should leave while one is in flight on the connection.
//
// A request costs the client a fixed amount of work (sarama encodes it, a
// write and a read on the socket) and the broker as much again. When the
// round trip to the broker is mostly that work (an in-process or local
// broker), a second request in flight only splits the records in two and
// doubles the work: waiting for the answer and sending one larger request
// is faster. When the round trip is mostly distance (a real cluster, 1 ms
// and more), waiting costs a round trip per send: requests should be
// pipelined. The gauge compares the two it can measure — the shortest
// round trip seen lately (its floor, without queueing) and the shortest
// time a send took to build and write a request — and pipelines when the
// round trip is pipelineRatio times the cost or more.
type pipeGauge struct {
	rtt   windowMin // nanoseconds from a request's hand-off to its answer
	cost  windowMin // nanoseconds to build and write a request
	piped atomic.Bool
	ratio int64 // pipelineRatio or wirePipelineRatio, set before the first request; 0 reads as pipelineRatio
}

// pipelineRatio is how many times a request's cost the round trip must be
// for pipelining to pay, when sarama's Broker writes the requests. A
// request's cost there is 10-20 µs; a loopback broker answers in 30-100 µs
// (ratio under 10), a broker 1 ms away in over 50 times the cost.
const pipelineRatio = 10

// wirePipelineRatio is pipelineRatio for requests the pool writes itself
// (wire.go), which cost the client half as much (synchronous sends to
// kfake: 4-5 µs against 9 µs with 16 senders, 9-10 against 20-21 with 256)
// and the broker the same: the round trip at which pipelining pays stays where it was (about
// 200 µs). With pipelineRatio instead, a loopback broker's round trips
// (26-55 µs) passed the bar often enough to split requests up: 3-28
// records a request where sarama's path carried 8-81, and 140-590k sends/s
// where it made 190-630k (16 and 256 senders, one run each).
const wirePipelineRatio = 20

// observeAt takes the round trip and cost of one request, answered at now
// (unix nanoseconds).
func (g *pipeGauge) observeAt(now int64, rtt, cost time.Duration) {
	ratio := g.ratio
	if ratio == 0 {
		ratio = pipelineRatio
	}
	r, c := g.rtt.add(now, int64(rtt)), g.cost.add(now, int64(cost))
	g.piped.Store(c > 0 && r >= ratio*c)

}

// pipelining reports whether requests should be pipelined now.
func (g *pipeGauge) pipelining() bool { return g.piped.Load() }

// depthGauge sets how many requests one connection carries at once while
// requests pipeline, as TCP Vegas sets a window. A broker works through
// one connection's requests one at a time (Kafka answers a connection's
// requests in order, and kfake likewise), so requests beyond what it keeps
// up with wait in its queue, and each carries fewer records than if they
// had waited in the pool and left together. The smoothed round trip (an
// average with gain 1/8) above the connection's floor is queueing: depth
// drops by one when more than vegasBeta requests wait at the broker (the
// depth times the share of the smoothed round trip above the floor), and
// grows by one when fewer than vegasAlpha do, at most once per floor round
// trip, between minDepth and the connection's limit. Each connection has
// its own, so a far broker is not taken for a queueing near one. Measured
// on kfake (the delay line on a timerfd) with 256 senders, single runs of
// BenchmarkSend: 1 ms away a fixed depth of 16 gave p50 1.80 ms and 129k
// sends/s, 4 gave 1.60 ms and 143k, the gauge 1.63-1.66 ms and 136-142k;
// 5 ms away 16 was best (45k against 42k at 4), and the gauge keeps it.
type depthGauge struct {
	floor    windowMin    // the connection's shortest round trip lately
	srtt     atomic.Int64 // smoothed round trip, nanoseconds
	depth    atomic.Int32 // requests in flight the connection may carry; 0: its limit
	adjusted atomic.Int64 // unix nanoseconds depth was last considered
}

// minDepth is the fewest requests a pipelining connection carries;
// vegasAlpha and vegasBeta bound the requests it keeps queued at the broker.
const (
	minDepth   = 2
	vegasAlpha = 1
	vegasBeta  = 2
)

// observeAt takes the round trip of one of the connection's requests,
// answered at now (unix nanoseconds); piped tells whether requests
// pipeline, limit is the most the connection may carry.
func (g *depthGauge) observeAt(now int64, rtt time.Duration, piped bool, limit int) {
	r := g.floor.add(now, int64(rtt))
	s := g.srtt.Load()
	if s == 0 {
		s = int64(rtt)
	} else {
		s += (int64(rtt) - s) / 8
	}
	g.srtt.Store(s) // a lost update between two answers only delays the average
	last := g.adjusted.Load()
	if !piped || now-last < r || !g.adjusted.CompareAndSwap(last, now) {
		return
	}
	d := int(g.depth.Load())
	if d == 0 || d > limit {
		d = limit
	}
	// Requests waiting in the broker's queue, as Vegas estimates them: the
	// share of the smoothed round trip above the floor, times the depth.
	queued := float64(d) * float64(s-r) / float64(s)
	switch {
	case queued > vegasBeta && d > minDepth:
		d--
	case queued < vegasAlpha && d < limit:
		d++
	}
	g.depth.Store(int32(d))
}

// limit is how many requests the connection may carry now, at most
// maxInFlight: one when requests do not pipeline, else the depth the gauge
// set.
func (g *depthGauge) limit(piped bool, maxInFlight int) int {
	if !piped {
		return 1
	}
	if d := int(g.depth.Load()); d > 0 && d < maxInFlight {
		return d
	}
	return maxInFlight
}

// windowMin is the minimum of what was added over the last two windows of
// minWindow: a floor that forgets a changed network within seconds.
type windowMin struct {
	start atomic.Int64 // unix nanoseconds the current window began
	cur   atomic.Int64
	prev  atomic.Int64
}

const minWindow = 2 * time.Second

// add records v, seen at now (unix nanoseconds), and returns the minimum
// of the two windows.
func (w *windowMin) add(now, v int64) int64 {
	if s := w.start.Load(); now-s > int64(minWindow) && w.start.CompareAndSwap(s, now) {
		w.prev.Store(w.cur.Swap(math.MaxInt64))
	}
	for {
		c := w.cur.Load()
		if c != 0 && c <= v || w.cur.CompareAndSwap(c, v) {
			break
		}
	}
	m := w.cur.Load()
	if p := w.prev.Load(); p != 0 && p < m {
		m = p
	}
	return m
}
