package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// errCapLeased: every producer the cap allows is leased.
var errCapLeased = errors.New("every producer MaxProducers allows is leased")

// attempt is one provisioning attempt. err is written before done is closed.
type attempt struct {
	done chan struct{}
	err  error
}

// attemptForWaiter returns the attempt a caller with no producer should wait
// for, starting one if none is under way. It returns (nil, nil) if a producer
// is open now, and ErrUnavailable (with the last cause) while backing off.
func (p *ProducerPool) attemptForWaiter() (*attempt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed.Load():
		return nil, ErrPoolClosed
	case len(*p.producers.Load()) > 0:
		return nil, nil
	case p.attempt != nil:
		return p.attempt, nil
	case p.leaseCount >= p.cfg.MaxProducers:
		return nil, unavailable(errCapLeased)
	case time.Now().Before(p.nextAttempt):
		return nil, unavailable(p.lastErr)
	}
	return p.startAttemptLocked(), nil
}

// provisionMore starts an attempt to add a producer, unless one is under way,
// the cap is reached, or the pool is backing off. It does not wait.
func (p *ProducerPool) provisionMore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Load() || p.attempt != nil || len(*p.producers.Load())+p.leaseCount >= p.cfg.MaxProducers ||
		time.Now().Before(p.nextAttempt) {
		return
	}
	p.startAttemptLocked()
}

func (p *ProducerPool) startAttemptLocked() *attempt {
	a := &attempt{done: make(chan struct{})}
	p.attempt = a
	p.provisionAttempts.Add(1)
	p.wg.Add(1)
	go p.provision(a)
	return a
}

// provision runs one attempt in its own goroutine (owned by the pool), so no
// caller's context cancels work that others wait for; ProvisionTimeout and
// Close bound it.
func (p *ProducerPool) provision(a *attempt) {
	defer p.wg.Done()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProvisionTimeout)
	defer cancel()
	pr, err := p.newProducer(ctx, "")

	p.mu.Lock()
	p.attempt = nil
	if err == nil && p.closed.Load() {
		err = ErrPoolClosed
	}
	if err != nil {
		p.failures++
		p.provisionFailures.Add(1)
		p.nextAttempt = time.Now().Add(backoff(p.failures, p.cfg.ProvisionBackoffMax))
		if p.lastErr == nil && err != ErrPoolClosed {
			p.log.Warn("kafka unavailable", zap.Strings("brokers", p.cfg.Brokers), zap.Error(err))
		}
		p.lastErr = err
	} else {
		if p.lastErr != nil {
			p.log.Info("kafka available again", zap.Int("failedAttempts", p.failures))
		}
		p.failures, p.lastErr, p.nextAttempt = 0, nil, time.Time{}
		prods := append(append([]*producer(nil), *p.producers.Load()...), pr)
		p.producers.Store(&prods)
		p.peak = max(p.peak, len(prods))
		p.log.Debug("producer provisioned", zap.Int("producer", pr.id), zap.Int("producers", len(prods)))
	}
	a.err = err
	close(a.done)
	p.mu.Unlock()

	if pr != nil && err != nil {
		pr.retire() // the pool closed while it was being made
	}
	p.provisioned(pr, false, start, err)
}

// provisioned runs the OnProvision hooks for an attempt that ended. A
// producer made while the pool closed counts as a failed attempt (err is
// ErrPoolClosed) and is never reported retired.
func (p *ProducerPool) provisioned(pr *producer, leased bool, start time.Time, err error) {
	if len(p.hooks.provision) == 0 {
		return
	}
	info := ProvisionInfo{Leased: leased, Duration: time.Since(start), Err: err}
	if err == nil {
		info.Producer = pr.id
	}
	for _, h := range p.hooks.provision {
		h.OnProvision(info)
	}
}

// retired runs the OnRetire hooks for a producer the pool took out of use.
func (p *ProducerPool) retired(pr *producer, cause error) {
	for _, h := range p.hooks.retire {
		h.OnRetire(RetireInfo{Producer: pr.id, Cause: cause})
	}
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

// newProducer dials the brokers, fetches metadata and starts a producer. It
// returns within ctx: when ctx ends, the dialer closes the connections sarama
// is blocked on.
func (p *ProducerPool) newProducer(ctx context.Context, txnID string) (*producer, error) {
	d := newDialer(dialTimeout, keepAlive)
	stop := context.AfterFunc(ctx, d.abort)
	client, err := sarama.NewClient(p.cfg.Brokers, p.saramaConfig(d, txnID))
	var async sarama.AsyncProducer
	if err == nil {
		// A transactional producer fetches its producer id here.
		async, err = sarama.NewAsyncProducerFromClient(client)
	}
	if !stop() {
		d.abort()
		if client != nil {
			_ = client.Close()
		}
		if p.ctx.Err() != nil {
			return nil, ErrPoolClosed
		}
		return nil, fmt.Errorf("provision producer: no answer from %v within %v: %w", p.cfg.Brokers, p.cfg.ProvisionTimeout, err)
	}
	if err != nil {
		if client != nil {
			_ = client.Close()
		}
		d.abort()
		return nil, fmt.Errorf("provision producer: %w", err)
	}
	d.ready.Store(true)
	pr := &producer{
		pool:     p,
		client:   client,
		async:    async,
		input:    async.Input(),
		dialer:   d,
		retiring: make(chan struct{}),
		slot:     -1,
	}
	p.mu.Lock()
	p.nextID++
	pr.id = p.nextID
	p.live[pr] = struct{}{}
	p.mu.Unlock()
	pr.start()
	return pr, nil
}

// forget removes a fully closed producer from the live set, folding its
// counter into the pool's.
func (p *ProducerPool) forget(pr *producer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.live, pr)
	if pr.slot >= 0 {
		delete(p.slots, pr.slot)
	}
	p.retiredSent += pr.sent.Load()
}
