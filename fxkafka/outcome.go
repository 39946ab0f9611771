package fxkafka

import (
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// finisher collects the records a response settled, their outcome set on
// them, so that their callers, hooks and promises hear of it after the
// partition's lock is released.
type finisher struct {
	groups  [][]*record  // the records of whole batches
	single  []*record    // and records one by one
	dropped []*record    // records their callers withdrew, only to forget
	lanes   []laneOf     // lanes whose outcomes these are (lanePart.finishing)
	ready   []*partState // partitions with something to send again
	lost    bool         // some partition lost its leader
	broken  error        // the producer must be replaced, for this cause
}

func (f *finisher) add(r *record, off int64, err error, n int) {
	r.offset, r.err, r.batchN = off, err, int32(n)
	f.single = append(f.single, r)
}

func (f *finisher) run(pr *producer) {
	for _, ps := range f.ready {
		ps.mu.Lock()
		s := ps.sink
		ps.mu.Unlock()
		if s != nil {
			s.markReady(ps)
		}
	}
	if f.lost {
		pr.askRefresh()
	}
	if f.broken != nil {
		pr.broken(f.broken)
	}
	n := 0
	aborted := pr.aborted.Load()
	finish := func(recs []*record) {
		for _, r := range recs {
			if r.err == nil {
				continue
			}
			if aborted {
				pr.pool.abandoned.Add(1) // Close (or a retirement) gave up on it
			}
			if pr.txn != nil {
				pr.txnFailed(r.err)
			}
		}
		pr.pool.completeAll(recs)
		n += len(recs)
	}
	for _, g := range f.groups {
		finish(g)
	}
	if len(f.single) > 0 {
		finish(f.single)
	}
	if n > 0 {
		pr.unload(int64(n))
	}
	pr.dropWithdrawn(f.dropped)
	for _, l := range f.lanes {
		pr.finished(l)
	}
}

// settle applies the outcome of one batch's attempt: block is the broker's
// answer for its partition, or reqErr the failure of the whole request
// (sent tells whether the request left). It runs on the broker's receiving
// goroutine, or on the sink's for a request that could not be sent.
func (pr *producer) settle(b *batch, block *sarama.ProduceResponseBlock, reqErr error, sent bool, fin *finisher) {
	ps := b.ps
	ps.mu.Lock()
	defer ps.mu.Unlock()
	lp := ps.lanes[b.lane]
	lp.inflight = nil
	ps.flying.Add(-1)
	// Until fin has delivered this outcome, records of the lane given up
	// on wait behind it (takeAllLocked): theirs must follow. So do those
	// given up on while b was in flight, unless b is to be sent again.
	lp.finishing++
	fin.lanes = append(fin.lanes, laneOf{ps, lp})
	defer func() {
		if lp.retry != b {
			lp.behind = append(lp.behind, b.behind...)
			b.behind = nil
		}
	}()

	if reqErr != nil {
		if sent {
			b.maybeWritten = true
		}
		stale := !sent && errors.Is(reqErr, errStaleConnection)
		if stale {
			b.attempts-- // nothing of it left: the attempt does not count
		}
		ps.setSinkLocked(nil) // look the leader up again: the broker may be gone
		fin.lost = true
		pr.retryLocked(lp, b, reqErr, fin)
		if stale && lp.retry == b {
			lp.notBefore = time.Time{} // no pause: a fresh connection takes it now
		}
		return
	}
	if block.Err == sarama.ErrNoError || block.Err == sarama.ErrDuplicateSequenceNumber {
		// A duplicate is a retry of a batch the broker had stored.
		n := len(b.recs)
		for i, r := range b.recs {
			r.offset, r.err, r.batchN = -1, nil, int32(n)
			if block.Offset >= 0 {
				r.offset = block.Offset + int64(i)
			}
		}
		fin.groups = append(fin.groups, b.recs)
		b.recycle()
		if lp.retry != nil || len(lp.pending) > 0 {
			fin.ready = append(fin.ready, ps)
		}
		return
	}
	cause := error(block.Err)
	if block.ErrorMessage != nil && *block.ErrorMessage != "" {
		cause = fmt.Errorf("%w: %s", block.Err, *block.ErrorMessage)
	}
	switch verdictOf(block.Err) {
	case verdictLeader:
		ps.setSinkLocked(nil)
		fin.lost = true
		pr.retryLocked(lp, b, cause, fin)
	case verdictRetry:
		pr.retryLocked(lp, b, cause, fin)
	case verdictRetryMaybeWritten:
		b.maybeWritten = true
		pr.retryLocked(lp, b, cause, fin)
	case verdictRejected:
		pr.rejectLocked(lp, b, block, cause, fin)
	case verdictBroken:
		pr.failBatchLocked(lp, b, cause, fin)
		fin.broken = cause
	}
}

// retryLocked schedules b to be sent again after a pause, or fails it once
// its retries are spent (or Close gave up waiting).
//
// A batch that may have been stored is sent again only by an idempotent
// producer, whose broker drops the copy: without idempotence the pool never
// sends a message twice, and reports it as outcome unknown instead. A
// broken producer retries nothing (its successor takes new records; its own
// must end, so that a stream's order holds across the replacement).
func (pr *producer) retryLocked(lp *lanePart, b *batch, cause error, fin *finisher) {
	if b.attempts > pr.set.retries || pr.aborted.Load() || pr.dead.Load() || (b.maybeWritten && !pr.idempotent) {
		if pr.aborted.Load() && !b.maybeWritten {
			cause = errGaveUp
		}
		pr.failBatchLocked(lp, b, cause, fin)
		return
	}
	lp.retry = b
	lp.notBefore = time.Now().Add(pr.retryPause())
	fin.ready = append(fin.ready, b.ps)
}

// failBatchLocked fails every record of b: "may have been written" if an
// attempt's outcome is unknown, else not sent. A lane whose batch may or may
// not be stored no longer knows its sequence: with idempotence the producer
// is then replaced.
func (pr *producer) failBatchLocked(lp *lanePart, b *batch, cause error, fin *finisher) {
	var err error
	switch {
	case b.maybeWritten:
		err = &DeliveryError{Topic: b.ps.topic.name, Err: cause}
		if pr.idempotent && fin.broken == nil {
			fin.broken = fmt.Errorf("sequence of %s/%d unknown after: %w", b.ps.topic.name, b.ps.id, cause)
		}
	default:
		err = pr.notSent(cause)
		if lp != nil && pr.idempotent {
			lp.seq = b.seq // never written: the next batch takes its numbers
		}
	}
	for _, r := range b.recs {
		fin.add(r, -1, err, 0)
	}
	if lp != nil && (lp.retry != nil || len(lp.pending) > 0) {
		fin.ready = append(fin.ready, b.ps)
	}
}

// rejectLocked handles a batch the broker refused without writing it. A
// batch of one record fails that record as invalid. A larger one may have
// failed for one record, or for its size: the records the broker named go,
// and the rest go back to the front of the lane to be sent again in halves,
// so other callers' records are not failed with it.
func (pr *producer) rejectLocked(lp *lanePart, b *batch, block *sarama.ProduceResponseBlock, cause error, fin *finisher) {
	if b.maybeWritten {
		// An earlier attempt may be stored; splitting could write twice.
		pr.failBatchLocked(lp, b, cause, fin)
		return
	}
	refuse := func(r *record) {
		fin.add(r, -1, &sendError{class: ErrInvalidMessage, what: "the broker refused it", cause: cause}, 0)
	}
	if len(b.recs) == 1 || !splittable(block.Err) {
		for _, r := range b.recs {
			refuse(r)
		}
		if pr.idempotent {
			lp.seq = b.seq
		}
		if lp.retry != nil || len(lp.pending) > 0 {
			fin.ready = append(fin.ready, b.ps)
		}
		return
	}
	bad := make(map[int]bool, len(block.RecordErrors))
	for _, re := range block.RecordErrors {
		bad[int(re.BatchIndex)] = true
	}
	back := make([]*record, 0, len(b.recs))
	for i, r := range b.recs {
		if bad[i] {
			refuse(r)
			continue
		}
		back = append(back, r)
	}
	switch {
	case len(bad) > 0:
	case block.Err == sarama.ErrMessageSizeTooLarge || block.Err == sarama.ErrMessageSetSizeTooLarge:
		// The topic takes smaller batches than the pool builds: remember
		// it for the partition, so later batches are not refused first.
		b.ps.maxBatch = max(1, b.bytes/2)
	default:
		lp.splitLimit = max(1, len(b.recs)/2)
	}
	bytes := 0
	for _, r := range back {
		r.state.Store(stQueued) // never written: its caller may still withdraw it
		bytes += r.size
	}
	lp.pending = append(back, lp.pending...)
	lp.pendingBytes += bytes
	if pr.idempotent {
		lp.seq = b.seq
	}
	fin.ready = append(fin.ready, b.ps)
}

// failBatch fails a batch no longer in flight and off its lane.
func (pr *producer) failBatch(b *batch, cause error) {
	var fin finisher
	pr.failBatchLocked(nil, b, cause, &fin)
	fin.run(pr)
}

// errGaveUp is the cause given to what an aborted producer gave up on:
// never sent ones fail with ErrPoolClosed if the pool is closing (else
// ErrUnavailable: a broken producer that ran out of time), sent ones as
// outcome unknown.
var errGaveUp = errors.New("the producer was given up before an answer came")

// notSent is the error of a record that was never written, for cause.
func (pr *producer) notSent(cause error) error {
	if cause == errGaveUp && pr.pool.closed.Load() {
		return closedErr
	}
	return unavailable(cause)
}

// laneOf is a lane of a partition.
type laneOf struct {
	ps *partState
	lp *lanePart
}

// finished ends l's part in a finisher that has delivered its outcomes;
// once no finisher of the lane is at work, the records given up on behind
// them (lanePart.behind) fail.
func (pr *producer) finished(l laneOf) {
	l.ps.mu.Lock()
	lp := l.lp
	lp.finishing--
	var behind []given
	if lp.finishing == 0 {
		behind, lp.behind = lp.behind, nil
	}
	l.ps.mu.Unlock()
	for _, g := range behind {
		pr.failUnsent(g.recs, g.err)
	}
}

// failUnsent fails records that were never sent with err (nothing of them
// is written), except those their callers withdrew, which are only dropped.
func (pr *producer) failUnsent(recs []*record, err error) {
	var fin finisher
	for _, r := range recs {
		if r.state.CompareAndSwap(stQueued, stSent) {
			fin.add(r, -1, err, 0)
		} else {
			fin.dropped = append(fin.dropped, r)
		}
	}
	fin.run(pr)
}

// dropWithdrawn forgets records their callers withdrew: their callers were
// told already; only the producer's load and the pool's buffer remember them.
func (pr *producer) dropWithdrawn(recs []*record) {
	if len(recs) == 0 {
		return
	}
	for _, r := range recs {
		pr.pool.unbuffer(r)
	}
	pr.unload(int64(len(recs)))
}
