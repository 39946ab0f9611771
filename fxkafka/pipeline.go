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
//
// While pipelining it also sets how many requests a connection carries at
// once (depth), as TCP Vegas sets a window: a broker works through one
// connection's requests one at a time (Kafka answers a connection's
// requests in order, and kfake likewise), so requests beyond what it keeps
// up with wait in its queue, and each carries fewer records than if they
// had waited in the pool and left together. When the smoothed round trip
// is more than an eighth above the floor the broker is queueing: depth
// drops by one when more than vegasBeta requests wait there (the depth
// times the share of the smoothed round trip above the floor), and grows
// by one when fewer than vegasAlpha do, at most once per floor round trip,
// between minDepth and the connection's limit. Measured on kfake 1 ms away
// with 256 senders: a fixed depth of 16 gave p50 1.92 ms and 121k sends/s,
// 4 gave 1.60 ms and 143k, this gauge 1.63-1.66 ms and 136-142k; 5 ms away
// 16 was best (45k against 42k at 4), and the gauge keeps it (45k).
type pipeGauge struct {
	rtt      windowMin // nanoseconds from a request's hand-off to its answer
	cost     windowMin // nanoseconds to build and write a request
	piped    atomic.Bool
	srtt     atomic.Int64 // smoothed round trip, nanoseconds
	depth    atomic.Int32 // requests in flight a connection may carry; 0: its limit
	adjusted atomic.Int64 // unix nanoseconds depth was last considered
}

// minDepth is the fewest requests a pipelining connection carries;
// vegasAlpha and vegasBeta bound the requests it keeps queued at the broker.
const (
	minDepth   = 2
	vegasAlpha = 1
	vegasBeta  = 2
)

// pipelineRatio is how many times a request's cost the round trip must be
// for pipelining to pay. A request's cost here is 5-20 µs; a loopback
// broker answers in 30-100 µs (ratio under 10), a broker 1 ms away in over
// 50 times the cost.
const pipelineRatio = 10

// observe takes the round trip and cost of one request on a connection
// that may carry up to limit requests at once.
func (g *pipeGauge) observe(rtt, cost time.Duration, limit int) {
	g.observeAt(time.Now().UnixNano(), rtt, cost, limit)
}

// observeAt is observe at now, in unix nanoseconds.
func (g *pipeGauge) observeAt(now int64, rtt, cost time.Duration, limit int) {
	r, c := g.rtt.add(now, int64(rtt)), g.cost.add(now, int64(cost))
	piped := c > 0 && r >= pipelineRatio*c
	g.piped.Store(piped)
	s := g.srtt.Load()
	if s == 0 {
		s = int64(rtt)
	} else {
		s += (int64(rtt) - s) / 8
	}
	g.srtt.Store(s) // a lost update between connections only delays the average
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

// pipelining reports whether requests should be pipelined now.
func (g *pipeGauge) pipelining() bool { return g.piped.Load() }

// limit is how many requests a connection of at most max may carry now:
// one when requests do not pipeline, else the depth the gauge set.
func (g *pipeGauge) limit(max int) int {
	if !g.piped.Load() {
		return 1
	}
	if d := int(g.depth.Load()); d > 0 && d < max {
		return d
	}
	return max
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
