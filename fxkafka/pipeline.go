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
}

// pipelineRatio is how many times a request's cost the round trip must be
// for pipelining to pay. A request's cost here is 5-20 µs; a loopback
// broker answers in 30-100 µs (ratio under 10), a broker 1 ms away in over
// 50 times the cost.
const pipelineRatio = 10

func (g *pipeGauge) observe(rtt, cost time.Duration) {
	r, c := g.rtt.add(int64(rtt)), g.cost.add(int64(cost))
	g.piped.Store(c > 0 && r >= pipelineRatio*c)
}

// pipelining reports whether requests should be pipelined now.
func (g *pipeGauge) pipelining() bool { return g.piped.Load() }

// windowMin is the minimum of what was added over the last two windows of
// minWindow: a floor that forgets a changed network within seconds.
type windowMin struct {
	start atomic.Int64 // unix nanoseconds the current window began
	cur   atomic.Int64
	prev  atomic.Int64
}

const minWindow = 2 * time.Second

// add records v and returns the minimum of the two windows.
func (w *windowMin) add(v int64) int64 {
	now := time.Now().UnixNano()
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
