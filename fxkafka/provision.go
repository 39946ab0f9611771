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

// sarama settings the pool fixes; the package doc explains each.
const (
	dialTimeout      = 3 * time.Second
	keepAlive        = 30 * time.Second
	readTimeout      = 10 * time.Second
	writeTimeout     = 10 * time.Second
	brokerAckTimeout = 5 * time.Second // Producer.Timeout: below readTimeout
	metadataRetries  = 1
	metadataBackoff  = 100 * time.Millisecond
	produceRetries   = 3
	produceBackoff   = 100 * time.Millisecond
)

// errCapLeased: every producer the cap allows is leased.
var errCapLeased = errors.New("every producer MaxProducers allows is leased")

// attempt is one provisioning attempt. err is written before done is closed.
type attempt struct {
	done chan struct{}
	err  error
}

// acquire returns the producer a send of n messages should use, with n
// reserved on its load. With no producer open it starts or joins a
// provisioning attempt and waits for it as long as ctx allows; while the pool
// backs off after a failure it fails at once with ErrUnavailable.
func (p *ProducerPool) acquire(ctx context.Context, n int) (*producer, error) {
	var waitStart time.Time
	defer func() {
		if !waitStart.IsZero() {
			p.waiting.Add(-1)
			p.waitCount.Add(1)
			p.waitDuration.Add(int64(time.Since(waitStart)))
		}
	}()
	for {
		if p.closed.Load() {
			return nil, ErrPoolClosed
		}
		prods := *p.producers.Load()
		if pr := leastLoaded(prods); pr != nil {
			if pr.load.Add(int64(n))-int64(n) >= int64(p.cfg.ProducerBusyAt) && len(prods) < p.cfg.MaxProducers {
				p.provisionMore()
			}
			return pr, nil
		}
		a, err := p.attemptForWaiter()
		if err != nil {
			return nil, err
		}
		if a == nil {
			continue // a producer appeared
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
			p.waiting.Add(1)
		}
		select {
		case <-a.done:
			if a.err != nil {
				return nil, unavailable(a.err)
			}
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		case <-p.closing:
			return nil, ErrPoolClosed
		}
	}
}

// leastLoaded returns the producer with the lowest load, or nil.
func leastLoaded(prods []*producer) *producer {
	var best *producer
	var bestLoad int64
	for _, pr := range prods {
		if l := pr.load.Load(); best == nil || l < bestLoad {
			best, bestLoad = pr, l
		}
	}
	return best
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
		done:     make(chan struct{}),
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

// saramaConfig builds the sarama configuration of one producer. The package
// doc explains each setting.
func (p *ProducerPool) saramaConfig(d *dialer, txnID string) *sarama.Config {
	c := p.cfg
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	if c.Version != "" {
		sc.Version, _ = sarama.ParseKafkaVersion(c.Version) // checked by Validate
	}
	sc.MetricRegistry = nopRegistry{}
	p.sec.apply(c, sc)

	sc.Net.Proxy.Enable = true
	sc.Net.Proxy.Dialer = d
	sc.Net.DialTimeout = dialTimeout
	sc.Net.ReadTimeout = readTimeout
	sc.Net.WriteTimeout = writeTimeout
	sc.Net.KeepAlive = keepAlive

	// sarama's retry pauses are skipped while provisioning (the pool's own
	// backoff paces attempts, and a caller may be waiting) and once the
	// producer is being abandoned.
	pause := func(normal time.Duration) func(int, int) time.Duration {
		return func(int, int) time.Duration {
			if !d.ready.Load() || d.aborted.Load() {
				return 0
			}
			return normal
		}
	}
	sc.Metadata.Full = true
	sc.Metadata.Retry.Max = metadataRetries
	sc.Metadata.Retry.BackoffFunc = pause(metadataBackoff)
	sc.Metadata.Timeout = c.ProvisionTimeout

	sc.Producer.RequiredAcks, _ = parseAcks(c.RequiredAcks) // checked by Validate
	sc.Producer.Timeout = brokerAckTimeout
	sc.Producer.MaxMessageBytes = c.MaxMessageBytes
	sc.Producer.Partitioner, _ = partitionerFor(c.Partitioner) // checked by Validate
	sc.Producer.Retry.Max = produceRetries
	sc.Producer.Retry.BackoffFunc = pause(produceBackoff)
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	if txnID != "" {
		sc.Producer.Transaction.ID = txnID
		// Not skipped while provisioning: a broker answers
		// CONCURRENT_TRANSACTIONS until it has finished aborting the
		// previous holder's transaction, which takes time.
		sc.Producer.Transaction.Retry.BackoffFunc = func(int, int) time.Duration {
			if d.aborted.Load() {
				return 0
			}
			return produceBackoff
		}
	}
	if c.Idempotent || txnID != "" {
		sc.Producer.Idempotent = true
		sc.Producer.RequiredAcks = sarama.WaitForAll
		sc.Net.MaxOpenRequests = 1
	}
	return sc
}
