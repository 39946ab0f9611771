package fxkafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ProducerPool is a lazily provisioned, capped pool of sarama producers
// behind a context-aware send API. It is safe for concurrent use by multiple
// goroutines.
//
// [New] only validates its arguments: the first send provisions the first
// producer. A further producer is provisioned only when every open one is
// busy (Config.ProducerBusyAt in-flight messages) and fewer than
// Config.MaxProducers exist. Producers are shared: each send goes to the
// least-loaded one, and sarama batches concurrent sends on it.
//
// A pool must be closed with [ProducerPool.Close] (the Fx module does it in
// its OnStop hook), which flushes and closes every producer it made.
type ProducerPool struct {
	cfg   Config
	sec   security
	log   *zap.Logger
	hooks hookSet // set by options in New, read-only after

	// producers is an immutable snapshot of the open producers, replaced
	// (under mu) whenever one is added or removed, so routing a send takes
	// no lock.
	producers atomic.Pointer[[]*producer]
	closed    atomic.Bool   // set under mu; read without it on the send path
	closing   chan struct{} // closed by Close: wakes callers waiting on provisioning
	ctx       context.Context
	cancel    context.CancelFunc // cancels provisioning under way; called by Close
	wg        sync.WaitGroup     // every goroutine the pool starts
	allDone   chan struct{}      // closed when wg is done after Close

	mu          sync.Mutex             // protects following fields
	attempt     *attempt               // the provisioning attempt under way, or nil
	failures    int                    // consecutive failed provisioning attempts
	nextAttempt time.Time              // no attempt starts before this (backoff)
	lastErr     error                  // the last provisioning error, nil after a success
	live        map[*producer]struct{} // every producer not yet fully closed: shared, leased, retiring
	nextID      int
	retiredSent int64 // messages acknowledged by producers no longer live
	nRetired    int64 // producers taken out of the routing set
	peak        int   // most producers open at once

	leases     map[*producer]struct{} // lease producers, held or idle
	leaseIdle  []*producer            // released lease producers, ready for Lease
	leaseCount int                    // len(leases) plus lease producers being provisioned
	leasesHeld int                    // leases not yet released
	slots      map[int]bool           // lease slots in use, until the producer is fully closed
	leaseFreed chan struct{}          // closed and replaced when a lease producer frees up

	waiting           atomic.Int64
	waitCount         atomic.Int64
	waitDuration      atomic.Int64
	provisionAttempts atomic.Int64
	provisionFailures atomic.Int64
	failedUnavailable atomic.Int64
	failedClosed      atomic.Int64
	failedInvalid     atomic.Int64
	failedUnknown     atomic.Int64
}

// Option configures a [ProducerPool] beyond its [Config].
type Option interface {
	apply(*ProducerPool)
}

type optionFunc func(*ProducerPool)

func (f optionFunc) apply(p *ProducerPool) { f(p) }

// WithLogger sets the logger the pool reports provisioning, outages and
// recoveries to. The default is a no-op logger. A nil logger is ignored.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(p *ProducerPool) {
		if l != nil {
			p.log = l
		}
	})
}

// New returns a pool for cfg. It validates cfg and returns a [*ConfigError]
// if it is unusable; it never touches the network and starts no goroutine.
// The first send provisions the first producer.
func New(cfg Config, opts ...Option) (*ProducerPool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &ProducerPool{
		cfg:     cfg.withDefaults(),
		log:     zap.NewNop(),
		closing: make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		allDone: make(chan struct{}),
		live:    make(map[*producer]struct{}),
		leases:  make(map[*producer]struct{}),
		slots:   make(map[int]bool),

		leaseFreed: make(chan struct{}),
	}
	for _, o := range opts {
		o.apply(p)
	}
	p.log = p.log.Named("fxkafka")
	p.sec, _ = cfg.checkSecurity() // checked by Validate
	if cfg.TLSInsecureSkipVerify {
		p.log.Warn("TLS CERTIFICATE VERIFICATION IS OFF (TLSInsecureSkipVerify): any server can impersonate the brokers; use it for development only")
	}
	p.producers.Store(&[]*producer{})
	return p, nil
}

// Stats is a snapshot of a pool's state, returned by [ProducerPool.Stats].
type Stats struct {
	// Status now.

	MaxProducers int // the cap on producers (Config.MaxProducers)
	Producers    int // producers open now, shared and leased
	Leased       int // leases held now (not yet released)
	InFlight     int // messages handed to a producer, not yet acknowledged or failed
	Waiting      int // callers waiting for a producer to be provisioned

	// Counters since New.

	Sent              int64         // messages acknowledged by the brokers
	FailedUnavailable int64         // sends failed with ErrUnavailable (never handed to a producer)
	FailedClosed      int64         // sends refused with ErrPoolClosed
	FailedInvalid     int64         // sends refused with ErrInvalidMessage
	FailedUnknown     int64         // messages failed with a DeliveryError (may have been written)
	ProvisionAttempts int64         // provisioning attempts started
	ProvisionFailures int64         // provisioning attempts that failed
	ProducersRetired  int64         // producers taken out of the pool: found broken, or closed by Close
	WaitCount         int64         // sends that waited for a producer to be provisioned
	WaitDuration      time.Duration // total time those sends waited

	// LastProvisionError is the error of the last provisioning attempt, or
	// nil if it succeeded (or none was made).
	LastProvisionError error
}

// Stats returns a snapshot of the pool's state. It takes the pool's mutex,
// which the send path does not use, and is cheap enough for every scrape.
func (p *ProducerPool) Stats() Stats {
	s := Stats{
		MaxProducers:      p.cfg.MaxProducers,
		Waiting:           int(p.waiting.Load()),
		FailedUnavailable: p.failedUnavailable.Load(),
		FailedClosed:      p.failedClosed.Load(),
		FailedInvalid:     p.failedInvalid.Load(),
		FailedUnknown:     p.failedUnknown.Load(),
		ProvisionAttempts: p.provisionAttempts.Load(),
		ProvisionFailures: p.provisionFailures.Load(),
		WaitCount:         p.waitCount.Load(),
		WaitDuration:      time.Duration(p.waitDuration.Load()),
	}
	p.mu.Lock()
	s.LastProvisionError = p.lastErr
	s.Sent = p.retiredSent
	s.ProducersRetired = p.nRetired
	s.Producers = len(*p.producers.Load()) + p.leaseCount
	s.Leased = p.leasesHeld
	for pr := range p.live {
		s.InFlight += int(pr.load.Load())
		s.Sent += pr.sent.Load()
	}
	p.mu.Unlock()
	return s
}

// Close closes the pool. It refuses new sends with [ErrPoolClosed] at once,
// cancels any provisioning under way, lets sends already handed to a
// producer finish, then flushes and closes every producer. It returns when
// all of the pool's goroutines have exited.
//
// If ctx ends first, Close stops waiting for acknowledgements: it closes the
// producers' connections, so that the messages still in flight fail (their
// senders get a [*DeliveryError]), waits the few milliseconds the pool's
// goroutines then take to exit, and returns ctx's error. Close is safe to
// call more than once and concurrently; later calls wait like the first.
func (p *ProducerPool) Close(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed.Load()
	var open, leased []*producer
	if first {
		p.closed.Store(true)
		close(p.closing)
		p.cancel()
		open = *p.producers.Load()
		p.producers.Store(&[]*producer{})
		p.nRetired += int64(len(open))
		leased = p.closeLeasesLocked()
		p.wg.Add(len(leased))
	}
	p.mu.Unlock()

	if first {
		p.log.Debug("closing producer pool", zap.Int("producers", len(open)), zap.Int("leased", len(leased)))
		for _, pr := range open {
			p.retired(pr, ErrPoolClosed)
			pr.retire()
		}
		for _, pr := range leased {
			p.retired(pr, ErrPoolClosed)
		}
		for _, pr := range leased {
			go func() { // owned by the pool: Close waits for it below
				defer p.wg.Done()
				p.closeLease(ctx, pr)
			}()
		}
		go func() { // owned by Close: it ends with the last pool goroutine, which Close waits for
			p.wg.Wait()
			close(p.allDone)
		}()
	}

	select {
	case <-p.allDone:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	for pr := range p.live {
		pr.dialer.abort()
	}
	p.mu.Unlock()
	<-p.allDone
	return fmt.Errorf("fxkafka: close: in-flight messages abandoned: %w", ctx.Err())
}
