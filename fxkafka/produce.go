package fxkafka

import (
	"context"

	"github.com/IBM/sarama"
)

// Produce hands msg to the pool and returns without waiting for the broker;
// promise is called exactly once with the outcome: msg with Partition,
// Offset and Timestamp set and a nil error, or msg and an error in the
// classes [ProducerPool.SendMessage] documents. A nil promise is allowed
// (the outcome then only reaches [Stats] and the hooks). The pool owns msg
// from the call until the promise runs: do not modify it meanwhile; its
// key, value and headers are copied before Produce returns, so the bytes
// they point to are the caller's again at once.
//
// Order: messages one goroutine produces to the same partition (the same
// key, with a key-hash partitioner) are stored in the order produced, also
// across retries, leader moves and the replacement of a broken producer:
// Produce sends each partition's messages on one lane with one batch in
// flight at a time, and moves to a new producer only once the one before
// has finished. A batch is retried only when it was not stored, or, with
// Idempotent, when the broker drops a stored copy; without Idempotent a
// batch that may have been stored (its answer lost) is failed as outcome
// unknown instead of sent again, so nothing is stored twice or out of
// order, but such a message may be missing while later ones are stored.
//
// Backpressure: when Config.MaxBufferedMessages messages (or
// Config.MaxBufferedBytes of them) wait for their promise, Produce blocks
// until space frees or ctx ends; then the promise gets an error matching
// [ErrUnavailable] (not sent). ctx bounds only that wait and the wait for a
// producer (and, on first use of a topic, its metadata): once the message
// is placed on a producer it completes normally whatever ctx does.
//
// During an outage Produce fails fast as SendMessage does. On a closed pool
// the promise gets [ErrPoolClosed].
//
// Promises run on one goroutine of the pool's, in the order outcomes
// arrive (for one partition, the order produced), never on the caller's: a
// slow promise delays the promises after it, and holds its message's buffer
// space until it returns, so it slows Produce too, but never a send already
// made. A promise that panics is recovered: the pool logs the panic and its
// stack at error level and goes on with the next promise. One that ends its
// goroutine instead (runtime.Goexit, as t.FailNow does) is logged too, and a
// new goroutine of the pool's goes on with the next promise. A promise must
// not call Flush or Close (they wait for the promises, this one included),
// nor Produce with a context that never ends (on a full buffer it would wait
// for space that only the promise goroutine frees).
func (p *ProducerPool) Produce(ctx context.Context, msg *sarama.ProducerMessage, promise func(*sarama.ProducerMessage, error)) {
	if promise == nil {
		promise = func(*sarama.ProducerMessage, error) {}
	}
	p.promises.start()
	r, err := p.accept(ctx, msg)
	if err != nil {
		p.count(err)
		p.promises.pushNow(msg, promise, err)
		return
	}
	p.inFlight.Add(1)
	r.own.promise, r.own.msg = promise, msg // the outcome goes to the promise: r.call stays nil
	fail := func(err error) {
		p.tell(r, err)
		r.offset, r.err = -1, err
		r.state.Store(stDone)
		if r.epoch == nil {
			r.epoch = p.buf.join() // it took no space, but Flush waits for its promise
		}
		p.promises.push(r)
	}
	// On a closed pool the outcome is ErrPoolClosed whatever ctx says, as
	// dispatch would give (reserve, woken by both, may report either).
	if err := p.buf.reserve(ctx, r, p.closing); err != nil {
		fail(p.closedOr(err))
		return
	}
	if err := ctx.Err(); err != nil {
		fail(p.closedOr(unavailable(err)))
		return
	}
	if err := p.dispatch(ctx, r.self(), 0, nil); err != nil {
		fail(plainRefusal(err))
	}
}

// closedOr is ErrPoolClosed's error for a send once Close has begun, else err.
func (p *ProducerPool) closedOr(err error) error {
	select {
	case <-p.closing:
		return closedErr
	default:
		return err
	}
}

// Flush waits until every message [ProducerPool.Produce] accepted before
// Flush was called has its outcome and its promise has returned, or ctx
// ends (it then returns ctx's error; the messages go on). Messages waiting
// for a batch to fill (Config.Linger) leave at once while Flush waits.
// Messages produced during Flush are not waited for. On a closed pool
// Flush waits like on an open one.
func (p *ProducerPool) Flush(ctx context.Context) error {
	e := p.buf.cut()
	// Pool-wide, so that a producer provisioned while Flush waits (for a
	// Produce still waiting for its first producer) does not linger either.
	p.flushing.Add(1)
	defer p.flushing.Add(-1)
	for _, pr := range p.allProducers() {
		pr.wakeAll()
	}
	return waitFlushed(ctx, e)
}

// allProducers returns every producer the pool holds now.
func (p *ProducerPool) allProducers() []*producer {
	p.mu.Lock()
	defer p.mu.Unlock()
	var prs []*producer
	for sl := range p.slots {
		if sl.pr != nil {
			prs = append(prs, sl.pr)
		}
	}
	return prs
}

// unbuffer frees the buffer space and flush count of a Produce record.
func (p *ProducerPool) unbuffer(r *record) {
	switch {
	case r.epoch == nil:
		return
	case r.spaced:
		p.buf.release(r)
	default:
		p.buf.leave(r.epoch)
	}
	r.epoch, r.spaced = nil, false
}
