package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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
	// (Config.TransactionalID is empty). Nothing was sent.
	ErrNoTransaction = errors.New("fxkafka: no transaction")
)

// errLeaseBroken is the cause reported to OnRetire hooks for a leased
// producer replaced on Release: it broke, or its transaction state is unknown.
var errLeaseBroken = errors.New("fxkafka: leased producer broken or in an unknown transaction state")

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
// Config.MaxProducers producers exist (leased and shared count alike), or
// waits for a release. It returns an error wrapping [ErrUnavailable] if no
// producer can be had before ctx ends (a provisioning attempt failed, or none
// was released), and [ErrPoolClosed] once the pool is closing. A provisioning
// attempt the caller stopped waiting for finishes and its producer is kept
// for the next Lease.
func (p *ProducerPool) Lease(ctx context.Context) (*Lease, error) {
	for {
		p.mu.Lock()
		if p.closed.Load() {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if n := len(p.leaseIdle); n > 0 {
			pr := p.leaseIdle[n-1]
			p.leaseIdle = p.leaseIdle[:n-1]
			p.leasesHeld++
			p.mu.Unlock()
			return &Lease{pool: p, pr: pr}, nil
		}
		var a *attempt
		if len(*p.producers.Load())+p.leaseCount < p.cfg.MaxProducers {
			a = &attempt{done: make(chan struct{})}
			p.leaseCount++
			slot := p.freeSlotLocked()
			p.provisionAttempts.Add(1)
			p.wg.Add(1)
			go p.provisionLease(a, slot)
		}
		freed := p.leaseFreed
		p.mu.Unlock()

		var done chan struct{}
		if a != nil {
			done = a.done
		}
		select {
		case <-done:
			if a.err != nil {
				return nil, unavailable(a.err)
			}
		case <-freed:
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		case <-p.closing:
			return nil, ErrPoolClosed
		}
	}
}

// freeSlotLocked reserves the lowest slot no lease producer holds.
func (p *ProducerPool) freeSlotLocked() int {
	for i := 0; ; i++ {
		if !p.slots[i] {
			p.slots[i] = true
			return i
		}
	}
}

// provisionLease makes a lease producer in its own goroutine (owned by the
// pool) and puts it in the idle set, waking the callers waiting in Lease.
func (p *ProducerPool) provisionLease(a *attempt, slot int) {
	defer p.wg.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProvisionTimeout)
	defer cancel()
	txnID := ""
	if p.cfg.TransactionalID != "" {
		txnID = fmt.Sprintf("%s-%d", p.cfg.TransactionalID, slot)
	}
	pr, err := p.newProducer(ctx, txnID)

	p.mu.Lock()
	closed := p.closed.Load()
	switch {
	case err != nil:
		if !closed { // Close zeroed leaseCount, this attempt included
			p.leaseCount--
		}
		delete(p.slots, slot)
		p.provisionFailures.Add(1)
		p.lastErr = err
	case closed:
		pr.slot = slot
		err = ErrPoolClosed
	default:
		pr.slot = slot
		p.leases[pr] = struct{}{}
		p.leaseIdle = append(p.leaseIdle, pr)
		p.broadcastLeaseLocked()
	}
	a.err = err
	close(a.done)
	p.mu.Unlock()
	if pr != nil && closed {
		pr.retire()
	}
	p.provisioned(pr, true, start, err)
}

// broadcastLeaseLocked wakes every caller waiting in Lease.
func (p *ProducerPool) broadcastLeaseLocked() {
	close(p.leaseFreed)
	p.leaseFreed = make(chan struct{})
}

// route is the lease's router: always its own producer.
func (l *Lease) route(_ context.Context, n int) (*producer, error) {
	switch {
	case l.released.Load():
		return nil, ErrLeaseReleased
	case l.pool.closed.Load() || l.pr.isRetired.Load():
		return nil, ErrPoolClosed
	case l.transactional() && l.pr.async.TxnStatus()&sarama.ProducerTxnFlagInTransaction == 0:
		return nil, fmt.Errorf("%w open: call BeginTxn before sending", ErrNoTransaction)
	}
	l.pr.load.Add(int64(n))
	return l.pr, nil
}

func (l *Lease) transactional() bool { return l.pool.cfg.TransactionalID != "" }

// SendMessage sends msg on the leased producer, as
// [ProducerPool.SendMessage] does on the pool.
func (l *Lease) SendMessage(ctx context.Context, msg *sarama.ProducerMessage) (partition int32, offset int64, err error) {
	return l.pool.sendOne(ctx, msg, l.route)
}

// SendMessages sends msgs on the leased producer, as
// [ProducerPool.SendMessages] does on the pool.
func (l *Lease) SendMessages(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	return l.pool.sendBatch(ctx, msgs, l.route)
}

// BeginTxn opens a transaction on a transactional lease.
func (l *Lease) BeginTxn() error {
	return l.txn(context.Background(), "begin", (*producer).beginTxn)
}

// CommitTxn commits the open transaction: every message sent in it becomes
// visible to read-committed consumers at once. It waits for the brokers as
// long as ctx allows; if ctx ends first the outcome is unknown, the error
// wraps ctx's, and the lease's producer is replaced on Release.
func (l *Lease) CommitTxn(ctx context.Context) error {
	return l.txn(ctx, "commit", (*producer).commitTxn)
}

// AbortTxn aborts the open transaction: read-committed consumers never see
// its messages. ctx bounds the wait as for CommitTxn.
func (l *Lease) AbortTxn(ctx context.Context) error {
	return l.txn(ctx, "abort", (*producer).abortTxn)
}

func (pr *producer) beginTxn() error  { return pr.async.BeginTxn() }
func (pr *producer) commitTxn() error { return pr.async.CommitTxn() }
func (pr *producer) abortTxn() error  { return pr.async.AbortTxn() }

// txn runs a transaction step on the lease's producer in a goroutine of the
// pool's, holding the producer's gate (sarama writes the step to the input
// it closes on shutdown), and waits for it as long as ctx allows.
func (l *Lease) txn(ctx context.Context, what string, step func(*producer) error) error {
	if !l.transactional() {
		return fmt.Errorf("%w: Config.TransactionalID is not set", ErrNoTransaction)
	}
	if l.released.Load() {
		return ErrLeaseReleased
	}
	err := l.pool.runTxnStep(ctx, l.pr, step)
	if err != nil {
		return fmt.Errorf("fxkafka: %s transaction: %w", what, err)
	}
	return nil
}

// runTxnStep runs step on pr in a pool-owned goroutine and waits for it
// within ctx. A step cut short by ctx leaves the producer in an unknown
// transaction state: it is marked broken, so it is replaced, not reused.
func (p *ProducerPool) runTxnStep(ctx context.Context, pr *producer, step func(*producer) error) error {
	p.mu.Lock()
	if p.closed.Load() && !pr.closingTxn {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	p.wg.Add(1) // under mu, before Close's Wait can start
	p.mu.Unlock()
	result := make(chan error, 1)
	go func() {
		defer p.wg.Done()
		pr.gate.RLock()
		defer pr.gate.RUnlock()
		if pr.isRetired.Load() {
			result <- ErrPoolClosed
			return
		}
		result <- step(pr)
	}()
	select {
	case err := <-result:
		if err != nil && pr.async.TxnStatus()&sarama.ProducerTxnFlagFatalError != 0 {
			pr.broken.Store(true)
		}
		return err
	case <-ctx.Done():
		pr.broken.Store(true)
		return ctx.Err()
	}
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
	if l.transactional() && !p.closed.Load() && pr.async.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ProvisionTimeout)
		if err := p.runTxnStep(ctx, pr, (*producer).abortTxn); err != nil {
			pr.broken.Store(true)
		}
		cancel()
	}
	p.mu.Lock()
	p.leasesHeld--
	if p.closed.Load() { // Close has retired it
		p.mu.Unlock()
		return
	}
	if pr.broken.Load() || pr.isRetired.Load() {
		delete(p.leases, pr)
		p.leaseCount--
		p.nRetired++
		p.broadcastLeaseLocked() // a slot is free for a new producer
		p.mu.Unlock()
		p.log.Warn("leased producer broken, replacing it", zap.Int("producer", pr.id))
		p.retired(pr, errLeaseBroken)
		pr.retire()
		return
	}
	p.leaseIdle = append(p.leaseIdle, pr)
	p.broadcastLeaseLocked()
	p.mu.Unlock()
}

// closeLeasesLocked takes every lease producer (held or idle) out of the
// pool for Close, which aborts their open transactions and closes them with
// closeLease.
func (p *ProducerPool) closeLeasesLocked() []*producer {
	var prs []*producer
	for pr := range p.leases {
		pr.closingTxn = true
		prs = append(prs, pr)
	}
	clear(p.leases)
	p.leaseIdle = nil
	p.nRetired += int64(p.leaseCount)
	p.leaseCount = 0
	return prs
}

func (p *ProducerPool) closeLease(ctx context.Context, pr *producer) {
	if p.cfg.TransactionalID != "" && pr.async.TxnStatus()&sarama.ProducerTxnFlagInTransaction != 0 {
		if err := p.runTxnStep(ctx, pr, (*producer).abortTxn); err != nil {
			p.log.Warn("abort transaction of an unreleased lease", zap.Int("producer", pr.id), zap.Error(err))
		}
	}
	pr.retire()
}
