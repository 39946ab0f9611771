package fxkafka

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
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
// stack at error level and goes on with the next promise. A promise must
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
	r.call = &r.own
	r.own.promise, r.own.msg = promise, msg
	r.own.pending.Store(1)
	fail := func(err error) {
		p.tell(r, err)
		r.offset, r.err = -1, err
		r.state.Store(stDone)
		p.promises.push(r)
	}
	if err := p.buf.reserve(ctx, r, p.closing); err != nil {
		fail(err)
		return
	}
	r.buffered = true
	r.epoch = p.flushes.add()
	if err := ctx.Err(); err != nil {
		fail(unavailable(err))
		return
	}
	if err := p.dispatch(ctx, r.self(), 0, nil); err != nil {
		fail(err)
	}
}

// Flush waits until every message [ProducerPool.Produce] accepted before
// Flush was called has its outcome and its promise has returned, or ctx
// ends (it then returns ctx's error; the messages go on). Messages waiting
// for a batch to fill (Config.Linger) leave at once while Flush waits.
// Messages produced during Flush are not waited for. On a closed pool
// Flush waits like on an open one.
func (p *ProducerPool) Flush(ctx context.Context) error {
	e := p.flushes.cut()
	prods := p.allProducers()
	for _, pr := range prods {
		pr.flushing.Add(1)
		pr.wakeAll()
	}
	defer func() {
		for _, pr := range prods {
			pr.flushing.Add(-1)
		}
	}()
	return p.flushes.wait(ctx, e)
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

// unbuffer frees the buffer space of a Produce record.
func (p *ProducerPool) unbuffer(r *record) {
	if r.buffered {
		r.buffered = false
		p.buf.release(r)
		p.flushes.done(r.epoch)
	}
}

// buffer bounds what Produce has handed to the pool: messages and bytes
// whose promise has not yet returned.
type buffer struct {
	maxMsgs, maxBytes int

	mu      sync.Mutex // protects following
	msgs    int
	bytes   int
	waiters int           // Produce calls waiting for space
	freed   chan struct{} // closed and replaced when space frees and someone waits
}

func (b *buffer) init(maxMsgs, maxBytes int) {
	b.maxMsgs, b.maxBytes = maxMsgs, maxBytes
	b.freed = make(chan struct{})
}

func (b *buffer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgs
}

// reserve takes space for r, waiting as long as ctx allows. A message
// larger than the whole byte limit is let through alone, when the buffer is
// empty, rather than never.
func (b *buffer) reserve(ctx context.Context, r *record, closing <-chan struct{}) error {
	for {
		b.mu.Lock()
		fits := b.msgs < b.maxMsgs && (b.bytes+r.size <= b.maxBytes || b.msgs == 0)
		if fits {
			b.msgs++
			b.bytes += r.size
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.waiters++
		b.mu.Unlock()
		var err error
		select {
		case <-freed:
		case <-ctx.Done():
			err = unavailable(fmt.Errorf("wait for buffer space (MaxBufferedMessages %d, MaxBufferedBytes %d): %w", b.maxMsgs, b.maxBytes, ctx.Err()))
		case <-closing:
			err = closedErr
		}
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (b *buffer) release(r *record) { b.releaseN(1, r.size) }

func (b *buffer) releaseN(msgs, bytes int) {
	b.mu.Lock()
	b.msgs -= msgs
	b.bytes -= bytes
	if b.waiters > 0 {
		close(b.freed)
		b.freed = make(chan struct{})
	}
	b.mu.Unlock()
}

// wakeAll wakes every Produce waiting for space, so that it sees Close.
func (b *buffer) wakeAll() {
	b.mu.Lock()
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

// flushTracker counts Produce's messages by flush epoch: Flush closes the
// current epoch and waits until no message of it or an earlier one
// remains. A message costs one atomic add on its epoch each way.
type flushTracker struct {
	mu  sync.Mutex // serialises cut
	cur atomic.Pointer[flushEpoch]
}

// flushEpoch is the messages Produce accepted between two Flush calls.
type flushEpoch struct {
	n    atomic.Int64               // messages not yet done, plus 1 while the epoch is current
	done chan struct{}              // closed when n reaches 0
	prev atomic.Pointer[flushEpoch] // the epoch before; nil once everything before is done
}

func newFlushEpoch(prev *flushEpoch) *flushEpoch {
	e := &flushEpoch{done: make(chan struct{})}
	e.n.Store(1)
	e.prev.Store(prev)
	return e
}

func (f *flushTracker) init() { f.cur.Store(newFlushEpoch(nil)) }

// add counts a message in the current epoch.
func (f *flushTracker) add() *flushEpoch {
	for {
		e := f.cur.Load()
		// An epoch at 0 is closed and done; cut has made another current.
		if v := e.n.Load(); v > 0 && e.n.CompareAndSwap(v, v+1) {
			return e
		}
	}
}

func (f *flushTracker) done(e *flushEpoch) { f.doneN(e, 1) }

func (f *flushTracker) doneN(e *flushEpoch, n int64) {
	if e.n.Add(-n) == 0 {
		close(e.done)
	}
}

// cut starts a new epoch and returns the one it closed.
func (f *flushTracker) cut() *flushEpoch {
	f.mu.Lock()
	old := f.cur.Load()
	f.cur.Store(newFlushEpoch(old))
	f.mu.Unlock()
	f.done(old) // the reference it held while current
	return old
}

// wait waits until e and every epoch before it are done.
func (f *flushTracker) wait(ctx context.Context, e *flushEpoch) error {
	for ep := e; ep != nil; ep = ep.prev.Load() {
		select {
		case <-ep.done:
			continue // done wins over a context that ended too
		default:
		}
		select {
		case <-ep.done:
		case <-ctx.Done():
			return fmt.Errorf("fxkafka: flush: %w", ctx.Err())
		}
	}
	e.prev.Store(nil) // all done: drop the chain
	return nil
}

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
	var inEpoch int64
	for _, r := range recs {
		if !r.buffered {
			r.release()
			continue
		}
		msgs++
		bytes += r.size
		if r.epoch != epoch {
			if epoch != nil {
				p.flushes.doneN(epoch, inEpoch)
			}
			epoch, inEpoch = r.epoch, 0
		}
		inEpoch++
		r.release()
	}
	if msgs > 0 {
		p.buf.releaseN(msgs, bytes)
	}
	if epoch != nil {
		p.flushes.doneN(epoch, inEpoch)
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
