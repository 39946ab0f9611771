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
	pr.once.Do(func() { go pr.run() })
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

// pushNow queues the promise of a message refused before it became a record.
func (pr *promiseRunner) pushNow(msg *sarama.ProducerMessage, promise func(*sarama.ProducerMessage, error), err error) {
	r := &record{offset: -1, err: err}
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

func (pr *promiseRunner) run() {
	defer close(pr.done)
	for {
		pr.runQueued()
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

func (pr *promiseRunner) runQueued() {
	for {
		pr.mu.Lock()
		q := pr.q
		pr.q, pr.spare = pr.spare[:0], nil
		pr.mu.Unlock()
		if len(q) == 0 {
			return
		}
		pr.callAll(q)
		clear(q)
		pr.mu.Lock()
		pr.spare = q[:0]
		pr.mu.Unlock()
	}
}

func (pr *promiseRunner) callOne(r *record) { pr.callAll(r.self()) }

// callAll runs the promises of recs in order, then frees their buffer space
// and flush counts, once per run of records where it can.
func (pr *promiseRunner) callAll(recs []*record) {
	for i := 0; i < len(recs); {
		i = pr.callFrom(recs, i)
	}
	p := pr.p
	var msgs, bytes int
	var epoch *flushEpoch
	for _, r := range recs {
		if r.epoch == nil {
			r.release()
			continue
		}
		if r.epoch != epoch {
			if msgs > 0 {
				p.buf.releaseN(epoch, msgs, bytes)
			}
			epoch, msgs, bytes = r.epoch, 0, 0
		}
		msgs++
		bytes += r.size
		r.release()
	}
	if msgs > 0 {
		p.buf.releaseN(epoch, msgs, bytes)
	}
}

// callFrom runs the promises of recs from i on, until one panics (it is
// recovered and logged); it returns where to go on.
func (pr *promiseRunner) callFrom(recs []*record, i int) (next int) {
	defer func() {
		if v := recover(); v != nil {
			pr.p.log.Error("promise panicked; the pool goes on", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			next = i + 1
		}
	}()
	for ; i < len(recs); i++ {
		r := recs[i]
		msg, err := r.own.msg, r.err
		if err == nil && msg != nil {
			msg.Partition, msg.Offset, msg.Timestamp = r.partition, r.offset, r.ts
		}
		r.own.promise(msg, err)
	}
	return i
}
