package fxkafka

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

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
// across retries and leader moves: Produce sends each partition's messages
// on one lane with one batch in flight at a time. With Idempotent the
// broker also stores each of them once. Without Idempotent a retried batch
// may be stored twice (a broker answered too late), but never after a batch
// that followed it.
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
// stack at error level and goes on with the next promise.
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
	if err := p.dispatch(ctx, []*record{r}, 0, nil); err != nil {
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

	mu    sync.Mutex // protects following
	msgs  int
	bytes int
	freed chan struct{} // closed and replaced when space frees
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
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return unavailable(fmt.Errorf("wait for buffer space (MaxBufferedMessages %d, MaxBufferedBytes %d): %w", b.maxMsgs, b.maxBytes, ctx.Err()))
		case <-closing:
			return closedErr
		}
	}
}

func (b *buffer) release(r *record) {
	b.mu.Lock()
	b.msgs--
	b.bytes -= r.size
	close(b.freed)
	b.freed = make(chan struct{})
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
// current epoch and waits until no message of it or an earlier one remains.
type flushTracker struct {
	mu      sync.Mutex // protects following
	epoch   uint64
	open    map[uint64]int
	changed chan struct{}
}

func (f *flushTracker) init() {
	f.open = make(map[uint64]int)
	f.changed = make(chan struct{})
}

func (f *flushTracker) add() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.open[f.epoch]++
	return f.epoch
}

func (f *flushTracker) done(e uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open[e]--; f.open[e] == 0 {
		delete(f.open, e)
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

func (f *flushTracker) cut() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.epoch
	f.epoch++
	return e
}

func (f *flushTracker) wait(ctx context.Context, e uint64) error {
	for {
		f.mu.Lock()
		pending := false
		for k := range f.open {
			if k <= e {
				pending = true
				break
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if !pending {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("fxkafka: flush: %w", ctx.Err())
		}
	}
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
	pr.mu.Lock()
	if pr.exited {
		// A Produce after Close: its promise still runs on a goroutine
		// of the pool's, which ends with it.
		pr.mu.Unlock()
		go pr.call(r)
		return
	}
	pr.q = append(pr.q, r)
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
		for i, r := range q {
			pr.call(r)
			q[i] = nil
		}
		pr.mu.Lock()
		pr.spare = q[:0]
		pr.mu.Unlock()
	}
}

func (pr *promiseRunner) call(r *record) {
	msg, err := r.own.msg, r.err
	if err == nil && msg != nil {
		msg.Partition, msg.Offset, msg.Timestamp = r.partition, r.offset, r.ts
	}
	func() {
		defer func() {
			if v := recover(); v != nil {
				pr.p.log.Error("promise panicked; the pool goes on", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			}
		}()
		r.own.promise(msg, err)
	}()
	pr.p.unbuffer(r)
	r.release()
}
