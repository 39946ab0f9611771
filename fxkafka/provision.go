package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// slotState is where a producer of the pool is in its life. Every producer
// the pool holds, from the start of its provisioning until it is fully
// closed, is one slot in ProducerPool.slots; the cap counts slots.
type slotState int

const (
	slotOpening  slotState = iota // being provisioned
	slotShared                    // takes shared sends
	slotLeased                    // held by a Lease
	slotIdle                      // a lease producer no Lease holds
	slotRetiring                  // closing: broken, or closed by Close
)

type slot struct {
	state slotState
	lease bool // made for leases (set when reserved, never changed)
	txn   int  // transactional id suffix, or -1
	pr    *producer
}

// attempt is one provisioning attempt. err is written before done is closed.
type attempt struct {
	done chan struct{}
	err  error
}

// reserveLocked is the one place a provisioning attempt starts. It checks,
// in order: the pool is open; an attempt is already under way (the caller
// joins it: one attempt at a time, whoever asks); the cap, counting every
// slot (opening, open and closing); the backoff after a failure. Then it
// takes a slot and starts the attempt. For a shared send, errFull means
// every slot is a lease; for a lease, the caller waits for a release.
func (p *ProducerPool) reserveLocked(lease bool) (*attempt, error) {
	switch {
	case p.closed.Load():
		return nil, closedErr
	case p.attempt != nil:
		return p.attempt, nil
	case len(p.slots) >= p.cfg.MaxProducers:
		return nil, errFull
	case time.Now().Before(p.nextAttempt):
		return nil, unavailable(p.lastErr)
	}
	sl := &slot{state: slotOpening, lease: lease, txn: -1}
	if lease && p.cfg.TransactionalID != "" {
		sl.txn = p.freeTxnSlotLocked()
	}
	p.slots[sl] = struct{}{}
	p.peak = max(p.peak, len(p.slots))
	a := &attempt{done: make(chan struct{})}
	p.attempt = a
	p.provisionAttempts.Add(1)
	p.wg.Add(1)
	go p.provision(sl, a)
	return a, nil
}

// errFull is reserveLocked's "every slot is taken".
var errFull = errors.New("every producer MaxProducers allows exists")

func (p *ProducerPool) freeTxnSlotLocked() int {
	used := make(map[int]bool, len(p.slots))
	for sl := range p.slots {
		used[sl.txn] = true
	}
	for i := 0; ; i++ {
		if !used[i] {
			return i
		}
	}
}

// provisionMore starts an attempt to add a shared producer unless one is
// under way, the cap is reached or the pool is backing off. It does not wait.
func (p *ProducerPool) provisionMore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attempt == nil {
		_, _ = p.reserveLocked(false)
	}
}

// provision runs one attempt in its own goroutine (owned by the pool), so no
// caller's context cancels work that others wait for; ProvisionTimeout and
// Close bound it.
func (p *ProducerPool) provision(sl *slot, a *attempt) {
	defer p.wg.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProvisionTimeout)
	defer cancel()
	txnID := ""
	if sl.txn >= 0 {
		txnID = fmt.Sprintf("%s-%d", p.cfg.TransactionalID, sl.txn)
	}
	pr, err := p.newProducer(ctx, txnID)
	err = p.finishAttempt(sl, a, pr, err)
	p.hookProvision(pr, sl.lease, time.Since(start), err)
}

// finishAttempt is the one place an attempt ends: the slot becomes a
// producer (or is freed), the backoff and LastProvisionError follow the
// outcome, and the outage and recovery are logged once each. It returns
// the attempt's outcome: ErrPoolClosed for a producer made as Close began.
func (p *ProducerPool) finishAttempt(sl *slot, a *attempt, pr *producer, err error) error {
	p.mu.Lock()
	p.attempt = nil
	if err == nil && p.closed.Load() {
		err = closedErr
	}
	if err != nil {
		delete(p.slots, sl)
		p.provisionFailures.Add(1)
		if !errors.Is(err, ErrPoolClosed) {
			p.failures++
			p.nextAttempt = time.Now().Add(backoff(p.failures, p.cfg.ProvisionBackoffMax))
			if p.lastErr == nil {
				p.log.Warn("kafka unavailable", zap.Strings("brokers", p.cfg.Brokers), zap.Error(err))
			}
			p.lastErr = err
		}
	} else {
		if p.lastErr != nil {
			p.log.Info("kafka available again", zap.Int("failedAttempts", p.failures))
		}
		p.failures, p.lastErr, p.nextAttempt = 0, nil, time.Time{}
		p.nextID++
		pr.id = p.nextID
		sl.pr = pr
		if sl.lease {
			sl.state = slotIdle
		} else {
			sl.state = slotShared
			p.publishSharedLocked()
		}
		p.log.Debug("producer provisioned", zap.Int("producer", pr.id), zap.Bool("lease", sl.lease))
	}
	a.err = err
	close(a.done)
	// After done: a Lease the broadcast wakes sees how its attempt ended.
	p.broadcastLeaseLocked()
	p.mu.Unlock()

	if pr != nil && err != nil {
		pr.shutdown() // the pool closed while it was being made
	}
	return err
}

// publishSharedLocked replaces the routing snapshot from the slot table.
func (p *ProducerPool) publishSharedLocked() {
	var prods []*producer
	for sl := range p.slots {
		if sl.state == slotShared {
			prods = append(prods, sl.pr)
		}
	}
	slices.SortFunc(prods, func(a, b *producer) int { return a.id - b.id })
	p.shared.Store(&prods)
}

func (p *ProducerPool) slotOfLocked(pr *producer) *slot {
	for sl := range p.slots {
		if sl.pr == pr {
			return sl
		}
	}
	return nil
}

// broadcastLeaseLocked wakes every caller waiting in Lease.
func (p *ProducerPool) broadcastLeaseLocked() {
	close(p.leaseFreed)
	p.leaseFreed = make(chan struct{})
}

// backoff returns the pause after the n-th consecutive failure: a tenth of
// limit, doubling, capped at limit, with "equal jitter" (half fixed, half
// random) so a fleet does not retry in step.
func backoff(n int, limit time.Duration) time.Duration {
	d := limit / 10
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

// newProducer dials the brokers, fetches metadata and, with idempotence or a
// transactional id, a producer id, and starts a producer. It returns within
// ctx: when ctx ends, the dialer closes the connections sarama is blocked on,
// and whatever was made is closed before it returns.
func (p *ProducerPool) newProducer(ctx context.Context, txnID string) (*producer, error) {
	d := newDialer(dialTimeout, keepAlive, p.sec.tls)
	stop := context.AfterFunc(ctx, d.abort)
	conf := p.saramaConfig(d)
	client, err := sarama.NewClient(p.cfg.Brokers, conf)
	l0 := &lane{pid: -1, epoch: -1}
	if err == nil && (p.set.idempotent || txnID != "") {
		l0, err = initProducerID(ctx, client, conf, txnID)
	}
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		d.abort()
		if client != nil {
			_ = client.Close()
		}
		switch {
		case p.ctx.Err() != nil:
			return nil, closedErr
		case ctx.Err() != nil:
			return nil, fmt.Errorf("provision producer: no answer from %v within %v: %w", p.cfg.Brokers, p.cfg.ProvisionTimeout, ctx.Err())
		}
		return nil, fmt.Errorf("provision producer: %w", err)
	}
	d.ready.Store(true)
	return p.newProducerOn(client, conf, d, txnID, l0), nil
}

// initProducerID fetches a producer id (from the transaction coordinator
// for a transactional id), retrying what the brokers say will pass, until
// ctx ends.
func initProducerID(ctx context.Context, client sarama.Client, conf *sarama.Config, txnID string) (*lane, error) {
	req := &sarama.InitProducerIDRequest{TransactionTimeout: txnTimeout, ProducerID: -1, ProducerEpoch: -1}
	switch v := conf.Version; {
	case v.IsAtLeast(sarama.V2_7_0_0):
		req.Version = 4
	case v.IsAtLeast(sarama.V2_5_0_0):
		req.Version = 3
	case v.IsAtLeast(sarama.V2_4_0_0):
		req.Version = 2
	case v.IsAtLeast(sarama.V2_0_0_0):
		req.Version = 1
	}
	if txnID != "" {
		req.TransactionalID = &txnID
	}
	for {
		var b *sarama.Broker
		var err error
		if txnID != "" {
			b, err = client.TransactionCoordinator(txnID)
		} else if b = client.LeastLoadedBroker(); b == nil {
			err = sarama.ErrOutOfBrokers
		}
		if err == nil {
			var resp *sarama.InitProducerIDResponse
			resp, err = b.InitProducerID(req)
			switch {
			case err != nil:
			case resp.Err == sarama.ErrNoError:
				return &lane{pid: resp.ProducerID, epoch: resp.ProducerEpoch}, nil
			default:
				err = resp.Err
			}
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, sarama.ErrNotCoordinatorForConsumer), errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable):
			_ = client.RefreshTransactionCoordinator(txnID)
		case errors.Is(err, sarama.ErrConcurrentTransactions), errors.Is(err, sarama.ErrOffsetsLoadInProgress),
			isConnectionError(err):
		default:
			return nil, fmt.Errorf("init producer id: %w", err)
		}
		select {
		case <-time.After(txnRetryPause):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// newLane fetches a producer id for one more lane of pr.
func (pr *producer) newLane() (*lane, error) {
	ctx, cancel := context.WithTimeout(pr.ctx, pr.pool.cfg.ProvisionTimeout)
	defer cancel()
	return initProducerID(ctx, pr.client, pr.conf, pr.txnID)
}

// reclaimIdleLocked frees cap for shared sends when it is all taken and
// some of it by producers no Lease holds: an idle plain lease producer
// becomes a shared one (reclaimed); an idle transactional one is closed, and
// a slot frees when it is gone, as it does when a closing producer is (wait).
func (p *ProducerPool) reclaimIdleLocked() (reclaimed, wait bool) {
	for sl := range p.slots {
		switch {
		case sl.state == slotIdle && sl.pr.txn == nil:
			sl.state = slotShared
			p.publishSharedLocked()
			return true, false
		case sl.state == slotIdle:
			sl.state = slotRetiring
			p.nRetired++
			p.wg.Add(1)
			pr := sl.pr
			go func() { // owned by the pool
				defer p.wg.Done()
				p.closeProducer(pr, errors.New("its slot was needed for shared sends"))
			}()
			return false, true // one slot is enough
		case sl.state == slotRetiring, sl.state == slotOpening:
			wait = true
		}
	}
	return false, wait
}
