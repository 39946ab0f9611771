package fxkafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// buffer bounds what Produce has handed to the pool: messages and bytes
// whose promise has not yet returned.
type buffer struct {
	maxMsgs, maxBytes int

	// starving is called when a Produce starts waiting for space with no
	// other waiting: space frees only as outcomes arrive, so records held
	// back by Config.Linger must leave now (as Java's producer sends every
	// batch while its buffer is exhausted).
	starving func()

	mu      sync.Mutex // protects following
	msgs    int
	bytes   int
	waiters atomic.Int32  // Produce calls waiting for space (written under mu, read by the sinks)
	big     int           // Produce calls waiting with a message larger than maxBytes
	freed   chan struct{} // closed and replaced when space frees and someone waits
	epoch   *flushEpoch   // the flush epoch a message reserving space now joins
}

func (b *buffer) init(maxMsgs, maxBytes int, starving func()) {
	b.maxMsgs, b.maxBytes, b.starving = maxMsgs, maxBytes, starving
	b.freed = make(chan struct{})
	b.epoch = newFlushEpoch(nil)
}

// starved reports whether a Produce waits for space: then nothing lingers.
func (b *buffer) starved() bool { return b.waiters.Load() > 0 }

func (b *buffer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgs
}

// reserve takes space for r, waiting as long as ctx allows, and counts it
// in the current flush epoch (r.epoch). A message larger than the whole
// byte limit is let through alone, when the buffer is empty, rather than
// never; from the moment one waits until it is let in (or gives up), no
// other message is, so that the buffer does empty.
func (b *buffer) reserve(ctx context.Context, r *record, closing <-chan struct{}) error {
	isBig := r.size > b.maxBytes
	waitedBig := false
	defer func() {
		if waitedBig {
			b.mu.Lock()
			b.big--
			if b.big == 0 {
				b.wakeLocked() // the messages it held back may fit now
			}
			b.mu.Unlock()
		}
	}()
	for {
		b.mu.Lock()
		var fits bool
		if isBig {
			fits = b.msgs == 0
		} else {
			fits = b.big == 0 && b.msgs < b.maxMsgs && b.bytes+r.size <= b.maxBytes
		}
		if fits {
			b.msgs++
			b.bytes += r.size
			r.epoch, r.spaced = b.epoch, true
			r.epoch.n++
			b.mu.Unlock()
			return nil
		}
		if isBig && !waitedBig {
			waitedBig = true
			b.big++
		}
		freed := b.freed
		first := b.waiters.Add(1) == 1
		b.mu.Unlock()
		if first && b.starving != nil {
			b.starving()
		}
		var err error
		select {
		case <-freed:
		case <-ctx.Done():
			err = unavailable(fmt.Errorf("wait for buffer space (MaxBufferedMessages %d, MaxBufferedBytes %d): %w", b.maxMsgs, b.maxBytes, ctx.Err()))
		case <-closing:
			err = closedErr
		}
		b.mu.Lock()
		b.waiters.Add(-1)
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

func (b *buffer) release(r *record) { b.releaseN(r.epoch, 1, r.size) }

// join counts a Produce message that takes no buffer space (refused, or
// failed before it took any) in the current flush epoch, so that a Flush
// waits for its promise too; leave takes it off once its promise has run.
func (b *buffer) join() *flushEpoch {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.epoch.n++
	return b.epoch
}

func (b *buffer) leave(e *flushEpoch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e.doneLocked(1)
}

// releaseN frees the space of msgs messages of bytes, all of epoch e.
func (b *buffer) releaseN(e *flushEpoch, msgs, bytes int) {
	b.mu.Lock()
	b.msgs -= msgs
	b.bytes -= bytes
	e.doneLocked(msgs)
	if b.waiters.Load() > 0 {
		b.wakeLocked()
	}
	b.mu.Unlock()
}

// wakeLocked wakes every Produce waiting for space. b.mu is held.
func (b *buffer) wakeLocked() {
	close(b.freed)
	b.freed = make(chan struct{})
}

// wakeAll wakes every Produce waiting for space, so that it sees Close.
func (b *buffer) wakeAll() {
	b.mu.Lock()
	b.wakeLocked()
	b.mu.Unlock()
}

// flushEpoch is the messages Produce accepted between two Flush calls.
// Flush closes the current epoch and waits until no message of it or an
// earlier one remains. The epoch is counted under the buffer's lock, which
// a message takes anyway to reserve its space and to free it.
type flushEpoch struct {
	n    int                        // under buffer.mu: messages not yet done, plus 1 while the epoch is current
	done chan struct{}              // closed when n reaches 0
	prev atomic.Pointer[flushEpoch] // the epoch before; nil once everything before is done
}

func newFlushEpoch(prev *flushEpoch) *flushEpoch {
	e := &flushEpoch{n: 1, done: make(chan struct{})}
	e.prev.Store(prev)
	return e
}

// doneLocked takes n messages off e. b.mu is held.
func (e *flushEpoch) doneLocked(n int) {
	if e.n -= n; e.n == 0 {
		close(e.done)
	}
}

// cut starts a new flush epoch and returns the one it closed.
func (b *buffer) cut() *flushEpoch {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.epoch
	b.epoch = newFlushEpoch(old)
	old.doneLocked(1) // the reference it held while current
	return old
}

// waitFlushed waits until e and every epoch before it are done.
func waitFlushed(ctx context.Context, e *flushEpoch) error {
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
