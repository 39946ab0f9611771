package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

var (
	// ErrLeaseReleased is returned by a [Lease]'s methods after
	// [Lease.Release]. Nothing was sent.
	ErrLeaseReleased = errors.New("fxkafka: lease already released")

	// ErrNoTransaction is returned by a transactional [Lease]'s sends when no
	// transaction is open (call [Lease.BeginTxn] first), and by
	// BeginTxn/CommitTxn/AbortTxn on a lease that is not transactional
	// (Config.TransactionalID is empty) or has no transaction open to end.
	// Nothing was sent.
	ErrNoTransaction = errors.New("fxkafka: no transaction")
)

// Lease is one producer of the pool held by one caller until
// [Lease.Release]: no other send uses it meanwhile. With
// Config.TransactionalID set, its producer is transactional, with its own
// transactional id ("<TransactionalID>-<n>", n the lowest free slot, so a
// restarted service reuses its ids and fences its predecessor's), and its
// sends must happen inside [Lease.BeginTxn] and [Lease.CommitTxn] or
// [Lease.AbortTxn]. A Lease is meant for one goroutine at a time; it
// satisfies [Producer].
type Lease struct {
	pool     *ProducerPool
	pr       *producer
	released atomic.Bool
}

var _ Producer = (*Lease)(nil)

// Lease hands the caller a producer of its own until [Lease.Release]. It
// reuses a released one, or provisions a new one when fewer than
// Config.MaxProducers producers exist (leased and shared count alike, and
// provisioning runs one attempt at a time with the same backoff as sends),
// or waits for a release as long as ctx allows. Its errors:
//   - [ErrNoFreeProducer] (matching [ErrUnavailable]) at once when the cap is
//     taken by shared producers, which are never released;
//   - [ErrUnavailable] when a provisioning attempt failed, the pool is
//     backing off after one, or ctx ended first;
//   - [ErrPoolClosed] once the pool is closing.
//
// A provisioning attempt the caller stopped waiting for finishes and its
// producer is kept for the next Lease.
func (p *ProducerPool) Lease(ctx context.Context) (*Lease, error) {
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			return nil, forOp("lease", closedErr)
		}
		for sl := range p.slots {
			if sl.state == slotIdle {
				sl.state = slotLeased
				p.mu.Unlock()
				return &Lease{pool: p, pr: sl.pr}, nil
			}
		}
		a, err := p.reserveLocked(true)
		waitable := false
		shared := 0
		for sl := range p.slots {
			switch sl.state {
			case slotShared:
				shared++
			case slotLeased, slotRetiring, slotOpening:
				waitable = true // a release, a close or an attempt frees or makes one
			}
		}
		freed := p.leaseFreed
		p.mu.Unlock()
		switch {
		case errors.Is(err, errFull) && !waitable:
			return nil, &sendError{class: ErrUnavailable, also: ErrNoFreeProducer, op: "lease",
				what: fmt.Sprintf("all %d producers MaxProducers allows are shared", shared)}
		case errors.Is(err, errFull):
		case err != nil:
			return nil, forOp("lease", err)
		}
		var done chan struct{}
		if a != nil {
			done = a.done
		}
		select {
		case <-done:
		case <-freed:
		case <-ctx.Done():
			return nil, forOp("lease", unavailable(ctx.Err()))
		case <-p.closing:
			return nil, forOp("lease", closedErr)
		}
		// The attempt's end also broadcasts freed: whichever woke us, a
		// failed attempt is this Lease's answer, not a reason to start
		// another (which, past a short backoff, would loop).
		if a != nil {
			select {
			case <-a.done:
				if a.err != nil && !errors.Is(a.err, ErrPoolClosed) {
					return nil, forOp("lease", unavailable(a.err))
				}
			default:
			}
		}
	}
}

// producer is the lease's router: always its own producer.
func (l *Lease) producer() (*producer, error) {
	switch {
	case l.released.Load():
		return nil, ErrLeaseReleased
	case l.pool.closed.Load():
		return nil, closedErr
	case l.pr.retired.Load():
		return nil, errLeaseBroken
	}
	return l.pr, nil
}

// errLeaseBroken is a lease's send error once its producer broke while the
// pool is open: nothing was sent; release the lease and take another.
var errLeaseBroken = &sendError{class: ErrUnavailable, what: "the lease's producer broke: Release it and Lease again"}

func (l *Lease) transactional() bool { return l.pr.txn != nil }

// SendMessage sends msg on the leased producer, as
// [ProducerPool.SendMessage] does on the pool.
func (l *Lease) SendMessage(ctx context.Context, msg *sarama.ProducerMessage) (partition int32, offset int64, err error) {
	return l.pool.sendOne(ctx, msg, l)
}

// SendMessages sends msgs on the leased producer, as
// [ProducerPool.SendMessages] does on the pool.
func (l *Lease) SendMessages(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	return l.pool.sendBatch(ctx, msgs, l)
}

// BeginTxn opens a transaction on a transactional lease.
func (l *Lease) BeginTxn() error {
	if err := l.txnCheck(); err != nil {
		return err
	}
	t := l.pr.txn
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.open {
		return errors.New("fxkafka: begin transaction: a transaction is open already")
	}
	t.open, t.failed = true, nil
	return nil
}

// CommitTxn waits for every message sent in the open transaction, then
// commits it: they become visible to read-committed consumers at once. It
// waits as long as ctx allows; if ctx ends first the outcome is unknown,
// the error wraps ctx's, and the lease's producer is replaced on Release.
// If a message of the transaction failed, nothing is committed: the error
// says so, and the transaction must be aborted. Once the pool is closing it
// returns [ErrPoolClosed] (Close aborts open transactions).
func (l *Lease) CommitTxn(ctx context.Context) error {
	return l.end(ctx, true)
}

// AbortTxn waits for the messages sent in the open transaction, then
// aborts it: read-committed consumers never see them. ctx bounds the wait
// as for CommitTxn.
func (l *Lease) AbortTxn(ctx context.Context) error {
	return l.end(ctx, false)
}

func (l *Lease) txnCheck() error {
	switch {
	case !l.transactional():
		return fmt.Errorf("%w: Config.TransactionalID is not set", ErrNoTransaction)
	case l.released.Load():
		return ErrLeaseReleased
	case l.pool.closed.Load():
		return forOp("transaction", closedErr)
	case l.pr.retired.Load():
		return forOp("transaction", errLeaseBroken)
	}
	return nil
}

func (l *Lease) end(ctx context.Context, commit bool) error {
	what := "abort"
	if commit {
		what = "commit"
	}
	if err := l.txnCheck(); err != nil {
		return err
	}
	err := l.pr.endTxn(ctx, commit)
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrPoolClosed) || l.pool.closed.Load() {
		return forOp("transaction", closedErr)
	}
	return fmt.Errorf("fxkafka: %s transaction: %w", what, err)
}

// Release gives the producer back to the pool for the next Lease. An open
// transaction is aborted first (bounded by Config.ProvisionTimeout). A
// producer that broke, or whose transaction state is unknown, is closed and
// replaced instead. Release is safe to call more than once; after it the
// lease's methods return ErrLeaseReleased.
func (l *Lease) Release() {
	if !l.released.CompareAndSwap(false, true) {
		return
	}
	p, pr := l.pool, l.pr
	if pr.txn != nil && !p.closed.Load() {
		pr.abortOpenTxn()
	}
	reuse := !pr.isBroken()
	if pr.txn != nil {
		pr.txn.mu.Lock()
		reuse = reuse && !pr.txn.unknown && !pr.txn.open
		pr.txn.mu.Unlock()
	}
	p.mu.Lock()
	sl := p.slotOfLocked(pr)
	if sl == nil || sl.state != slotLeased || p.closed.Load() {
		p.mu.Unlock() // Close (or a retirement) has it
		return
	}
	if reuse {
		sl.state = slotIdle
		p.broadcastLeaseLocked()
		p.mu.Unlock()
		return
	}
	sl.state = slotRetiring
	p.nRetired++
	p.wg.Add(1)
	p.mu.Unlock()
	p.log.Warn("leased producer broken, replacing it", zap.Int("producer", pr.id))
	go func() { // owned by the pool
		defer p.wg.Done()
		p.closeProducer(pr, errors.New("leased producer broken"))
	}()
}
