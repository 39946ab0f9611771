package fxkafka

import (
	"runtime/debug"
	"sync"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// promiseRunner calls Produce's promises on one goroutine of the pool's,
// started by the first Produce and stopped by Close once every promise due
// has run.
type promiseRunner struct {
	p *ProducerPool

	once   sync.Once
	wake   chan struct{} // size 1
	done   chan struct{} // closed when the goroutine has exited
	mu     sync.Mutex    // protects following
	q      []*record
	spare  []*record
	fin    bool // Close: exit once the queue is empty
	exited bool // the goroutine is gone: a late promise gets one of its own
}

func (pr *promiseRunner) init(p *ProducerPool) {
	pr.p = p
	pr.wake = make(chan struct{}, 1)
	pr.done = make(chan struct{})
}

// start launches the goroutine on first use. It belongs to the pool: Close
// waits for it after the producers have closed.
func (pr *promiseRunner) start() {
	pr.once.Do(func() { go pr.run(nil) })
}

func (pr *promiseRunner) push(r *record) {
	pr.pushAll(r.self())
}

// pushAll queues the promises of recs, in order.
func (pr *promiseRunner) pushAll(recs []*record) {
	pr.mu.Lock()
	if pr.exited {
		// A Produce after Close: its promise still runs on a goroutine
		// of the pool's, which ends with it.
		pr.mu.Unlock()
		for _, r := range recs {
			go pr.callOne(r)
		}
		return
	}
	pr.q = append(pr.q, recs...)
	pr.mu.Unlock()
	select {
	case pr.wake <- struct{}{}:
	default:
	}
}

// pushNow queues the promise of a message refused before it became a
// record. It counts in the current flush epoch (not in the buffer's
// space), so that a Flush called after Produce returned waits for it.
func (pr *promiseRunner) pushNow(msg *sarama.ProducerMessage, promise func(*sarama.ProducerMessage, error), err error) {
	r := &record{offset: -1, err: err, epoch: pr.p.buf.join()}
	r.own.promise, r.own.msg = promise, msg
	pr.push(r)
}

// finish lets the goroutine exit once the queue is empty and waits for it.
func (pr *promiseRunner) finish() {
	pr.start()
	pr.mu.Lock()
	pr.fin = true
	pr.mu.Unlock()
	select {
	case pr.wake <- struct{}{}:
	default:
	}
	<-pr.done
}

// run is the promise goroutine: the promises of recs (none for the first
// goroutine), then the queue. A promise that ends it (runtime.Goexit, as
// t.FailNow does, which no recover stops) hands the rest to a new one
// (callAll); handed then keeps this one from closing done.
func (pr *promiseRunner) run(recs []*record) {
	handed := false
	defer func() {
		if !handed {
			close(pr.done)
		}
	}()
	pr.callAll(recs, &handed)
	for {
		pr.runQueued(&handed)
		pr.mu.Lock()
		fin := pr.fin && len(pr.q) == 0
		pr.exited = fin
		pr.mu.Unlock()
		if fin {
			return
		}
		<-pr.wake
	}
}

func (pr *promiseRunner) runQueued(handed *bool) {
	for {
		pr.mu.Lock()
		q := pr.q
		pr.q, pr.spare = pr.spare[:0], nil
		pr.mu.Unlock()
		if len(q) == 0 {
			return
		}
		pr.callAll(q, handed)
		clear(q)
		pr.mu.Lock()
		pr.spare = q[:0]
		pr.mu.Unlock()
	}
}

// callOne runs the promise of a record queued after the promise goroutine
// exited, on a goroutine of its own.
func (pr *promiseRunner) callOne(r *record) { pr.callAll(r.self(), nil) }

// callAll runs the promises of recs in order, then frees their buffer space
// and flush counts, once per run of records where it can. A promise that
// panics is recovered (callFrom); one that ends the goroutine instead
// (runtime.Goexit) cannot be: the records up to it are freed on the way
// out and, on the promise goroutine (handed is its flag; nil for callOne's
// single record), a new goroutine takes the promises after it and the
// queue.
func (pr *promiseRunner) callAll(recs []*record, handed *bool) {
	at, returned := 0, false
	defer func() {
		if returned {
			return
		}
		pr.p.log.Error("promise ended its goroutine (runtime.Goexit); the pool goes on with the next promise")
		pr.free(recs[:at+1])
		if handed != nil {
			*handed = true
			go pr.run(recs[at+1:])
		}
	}()
	for at < len(recs) {
		pr.callFrom(recs, &at)
	}
	returned = true
	pr.free(recs)
}

// free frees the buffer space and flush counts of recs, whose promises
// have run, once per run of records where it can, and recycles them.
func (pr *promiseRunner) free(recs []*record) {
	p := pr.p
	var msgs, bytes int
	var epoch *flushEpoch
	for _, r := range recs {
		switch {
		case r.epoch == nil:
		case !r.spaced:
			p.buf.leave(r.epoch) // refused before it took any space
		default:
			if r.epoch != epoch {
				if msgs > 0 {
					p.buf.releaseN(epoch, msgs, bytes)
				}
				epoch, msgs, bytes = r.epoch, 0, 0
			}
			msgs++
			bytes += r.size
		}
		r.release()
	}
	if msgs > 0 {
		p.buf.releaseN(epoch, msgs, bytes)
	}
}

// callFrom runs the promises of recs from *at on, keeping *at at the one
// running, until one panics (it is recovered and logged, and *at moves
// past it) or all have run.
func (pr *promiseRunner) callFrom(recs []*record, at *int) {
	defer func() {
		if v := recover(); v != nil {
			pr.p.log.Error("promise panicked; the pool goes on", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			*at++
		}
	}()
	for ; *at < len(recs); *at++ {
		r := recs[*at]
		msg, err := r.own.msg, r.err
		if err == nil && msg != nil {
			msg.Partition, msg.Offset, msg.Timestamp = r.partition, r.offset, r.ts
		}
		r.own.promise(msg, err)
	}
}
