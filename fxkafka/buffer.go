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
}

func (b *buffer) init(maxMsgs, maxBytes int, starving func()) {
	b.maxMsgs, b.maxBytes, b.starving = maxMsgs, maxBytes, starving
	b.freed = make(chan struct{})
}

// starved reports whether a Produce waits for space: then nothing lingers.
func (b *buffer) starved() bool { return b.waiters.Load() > 0 }

func (b *buffer) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgs
}

// reserve takes space for r, waiting as long as ctx allows. A message
// larger than the whole byte limit is let through alone, when the buffer is
// empty, rather than never; from the moment one waits until it is let in
// (or gives up), no other message is, so that the buffer does empty.
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

func (b *buffer) release(r *record) { b.releaseN(1, r.size) }

func (b *buffer) releaseN(msgs, bytes int) {
	b.mu.Lock()
	b.msgs -= msgs
	b.bytes -= bytes
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
