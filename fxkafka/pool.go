package fxkafka

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// ProducerPool is a lazily provisioned, capped pool of Kafka producers
// behind a context-aware send API. It is safe for concurrent use by multiple
// goroutines.
//
// [New] only validates its arguments: the first send provisions the first
// producer. A producer is a sarama client (its own connections and the
// cluster's metadata) under the pool's own batching: records of concurrent
// sends are gathered into batches per partition, and produce requests are
// pipelined on a connection when the broker is far enough for that to pay,
// so a send waits one broker round trip, not the batch ahead of it too. A
// further producer is provisioned when the least-loaded shared producer is
// busy (a connection with every request slot in flight and records waiting
// while requests pipeline, or Config.ProducerBusyAt records) and fewer than
// Config.MaxProducers exist. Synchronous sends go to the least-loaded
// producer; [ProducerPool.Produce] to the oldest, so that a stream's
// messages to a partition share a lane.
//
// A pool must be closed with [ProducerPool.Close] (the Fx module does it in
// its OnStop hook), which flushes and closes every producer it made.
type ProducerPool struct {
	cfg   Config
	sec   security
	log   *zap.Logger
	hooks hookSet    // set by options in New, read-only after
	base  saramaBase // the sarama config New builds once, and WithSaramaConfig's funcs
	set   settings   // what the send path needs, derived once in New; read-only after

	tokenProvider sarama.AccessTokenProvider // set by WithTokenProvider; New copies it into sec

	// shared is an immutable snapshot of the producers that take shared
	// sends, replaced under mu whenever one is added or removed, so
	// routing a send takes no lock.
	shared  atomic.Pointer[[]*producer]
	ordered atomic.Pointer[producer] // the producer Produce's streams went to last
	closed  atomic.Bool              // set under mu; read without it on the send path
	closing chan struct{}            // closed by Close: wakes callers waiting on provisioning
	ctx     context.Context
	cancel  context.CancelFunc // cancels provisioning under way; called by Close
	wg      sync.WaitGroup     // every goroutine of the pool's, and every producer until closed
	allDone chan struct{}      // closed when wg is done after Close, and every promise has run
	// producersDone is closed when wg is done after Close: every producer
	// and pool goroutine has exited (the promise goroutine may still run).
	producersDone chan struct{}

	mu          sync.Mutex // protects following
	slots       map[*slot]struct{}
	attempt     *attempt  // the provisioning attempt under way, or nil
	failures    int       // consecutive failed provisioning attempts
	nextAttempt time.Time // no attempt starts before this (backoff)
	lastErr     error     // the last provisioning error, nil after a success
	nextID      int
	nRetired    int64
	leaseFreed  chan struct{} // closed and replaced when a lease producer frees up
	peak        int           // most slots at once: never above MaxProducers

	// The rest guard themselves (their own locks, or atomics).

	buf      buffer
	flushing atomic.Int32 // > 0: Flush calls waiting: no producer lingers
	promises promiseRunner

	waiting           atomic.Int64
	inFlight          atomic.Int64
	sent              atomic.Int64
	waitCount         atomic.Int64
	waitDuration      atomic.Int64
	abandoned         atomic.Int64 // messages failed after their producer was aborted
	provisionAttempts atomic.Int64
	provisionFailures atomic.Int64
	failedUnavailable atomic.Int64
	failedClosed      atomic.Int64
	failedInvalid     atomic.Int64
	failedUnknown     atomic.Int64
}

// New returns a pool for cfg. It validates cfg and the options and returns
// a [*ConfigError] if they are unusable; it never touches the network and
// starts no goroutine. The first send provisions the first producer.
func New(cfg Config, opts ...Option) (*ProducerPool, error) {
	ctx, cancel := context.WithCancel(context.Background())
	p := &ProducerPool{
		log:     zap.NewNop(),
		closing: make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		allDone: make(chan struct{}),

		producersDone: make(chan struct{}),
		slots:         make(map[*slot]struct{}),
		leaseFreed:    make(chan struct{}),
	}
	for _, o := range opts {
		o.apply(p)
	}
	if err := p.configure(cfg); err != nil {
		cancel()
		return nil, err
	}
	p.log = p.log.Named("fxkafka")
	if cfg.TLSInsecureSkipVerify {
		p.log.Warn("TLS CERTIFICATE VERIFICATION IS OFF (TLSInsecureSkipVerify): any server can impersonate the brokers; use it for development only")
	}
	var starving func() // only a linger holds records back
	if p.set.linger > 0 {
		starving = func() {
			for _, pr := range p.allProducers() {
				pr.wakeAll()
			}
		}
	}
	p.buf.init(p.set.maxBufferedMessages, p.set.maxBufferedBytes, starving)
	p.promises.init(p)
	p.shared.Store(&[]*producer{})
	return p, nil
}

// Stats is a snapshot of a pool's state, returned by [ProducerPool.Stats].
type Stats struct {
	// Status now.

	MaxProducers int // the cap on producers (Config.MaxProducers)
	Producers    int // producers that exist now: shared, leased, idle leases, and those still closing
	Provisioning int // provisioning attempts under way (at most one)
	Leased       int // leases held now (not yet released)
	InFlight     int // messages accepted and not yet acknowledged or failed
	Waiting      int // callers waiting for a producer to be provisioned
	Buffered     int // messages Produce handed over whose promise has not yet returned

	// Counters since New.

	Sent              int64         // messages acknowledged by the brokers
	FailedUnavailable int64         // sends failed with ErrUnavailable (never written)
	FailedClosed      int64         // sends refused with ErrPoolClosed (or ErrLeaseReleased)
	FailedInvalid     int64         // messages refused with ErrInvalidMessage (every one of a SendMessages call refused for one's sake; or ErrNoTransaction)
	FailedUnknown     int64         // messages failed with a DeliveryError (may have been written)
	ProvisionAttempts int64         // provisioning attempts started
	ProvisionFailures int64         // provisioning attempts that failed
	ProducersRetired  int64         // producers taken out of the pool: found broken, replaced when a lease was released, or closed by Close
	WaitCount         int64         // sends that waited for a producer to be provisioned
	WaitDuration      time.Duration // total time those sends waited

	// LastProvisionError is the error of the last provisioning attempt, or
	// nil if it succeeded (or none was made).
	LastProvisionError error
}

// Stats returns a snapshot of the pool's state. It takes the pool's mutex,
// which the send path takes only to provision, and is cheap enough for
// every scrape.
func (p *ProducerPool) Stats() Stats {
	s := Stats{
		MaxProducers:      p.cfg.MaxProducers,
		Waiting:           int(p.waiting.Load()),
		InFlight:          int(p.inFlight.Load()),
		Buffered:          p.buf.count(),
		Sent:              p.sent.Load(),
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
	s.ProducersRetired = p.nRetired
	for sl := range p.slots {
		switch sl.state {
		case slotOpening:
			s.Provisioning++
		case slotLeased:
			s.Leased++
			s.Producers++
		default:
			s.Producers++
		}
	}
	p.mu.Unlock()
	return s
}

// Close closes the pool. It refuses new sends with [ErrPoolClosed] at once,
// cancels any provisioning under way, and flushes every producer: messages
// waiting for a batch leave at once, and Close waits for every message
// accepted to be acknowledged or to fail, then closes the producers and
// runs the promises of [ProducerPool.Produce] still due. It returns when all
// of the pool's goroutines have exited.
//
// If ctx ends first, Close stops waiting: it closes the producers'
// connections, so that the messages in flight fail (their senders get a
// [*DeliveryError]) and those not yet sent fail with ErrPoolClosed, waits
// the few milliseconds the pool's goroutines then take to exit, and returns
// an error wrapping ctx's if any message was given up that way (nil if
// nothing was waiting). Close is safe to call more than once and
// concurrently; later calls wait like the first, and any call whose ctx
// ends makes the producers give up.
//
// Every promise of [ProducerPool.Produce] is called before Close returns,
// unless one is still running two seconds after ctx ended: then Close
// returns an error saying so, and the pool's promise goroutine calls the promises left
// when that one returns, then exits. A promise must not call Close or Flush:
// they would wait for it.
func (p *ProducerPool) Close(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed.Load()
	var prs []*producer
	if first {
		p.closed.Store(true)
		close(p.closing)
		p.cancel()
		for sl := range p.slots {
			if sl.pr != nil && sl.state != slotRetiring {
				sl.state = slotRetiring
				prs = append(prs, sl.pr)
				p.nRetired++
			}
		}
		p.shared.Store(&[]*producer{})
		p.wg.Add(len(prs))
	}
	p.mu.Unlock()

	if first {
		p.log.Debug("closing producer pool", zap.Int("producers", len(prs)))
		for _, pr := range prs {
			go func() { // owned by the pool: Close waits for it below
				defer p.wg.Done()
				p.closeProducer(pr, closedErr)
			}()
		}
		go func() { // owned by Close: it ends with the last pool goroutine, which Close waits for
			p.wg.Wait()
			close(p.producersDone)
			p.promises.finish()
			close(p.allDone)
		}()
	}

	select {
	case <-p.allDone:
		return nil
	case <-ctx.Done():
	}
	// Given up: a message failed because a producer was aborted. (A
	// producer's load is no measure of it: the load drops just after the
	// last answer's senders are told, so an idle pool could seem busy.)
	abandoned := p.abandoned.Load()
	// Abort after unlocking: aborting closes connections and takes the
	// producers' locks.
	for _, pr := range p.allProducers() {
		pr.abort()
	}
	p.buf.wakeAll()
	<-p.producersDone // at once: aborted connections fail what was in flight
	grace := time.NewTimer(abortGrace)
	defer grace.Stop()
	select {
	case <-p.allDone: // the promises due ran
	case <-grace.C:
		// A promise has not returned: the promise goroutine runs it, and
		// those after it, when it does; Close does not wait for user code
		// past its context and the grace.
		return fmt.Errorf("fxkafka: close: a promise is still running: %w", ctx.Err())
	}
	if p.abandoned.Load() > abandoned {
		return fmt.Errorf("fxkafka: close: gave up on messages still in flight: %w", ctx.Err())
	}
	return nil
}

// closeProducer flushes and closes pr (aborting if the pool's Close runs out
// of time, which aborts pr directly), tells the hooks, and frees its slot.
func (p *ProducerPool) closeProducer(pr *producer, cause error) {
	if pr.txn != nil {
		pr.abortOpenTxn()
	}
	pr.close(context.Background())
	p.hookRetire(pr, cause)
	p.forget(pr)
}

// retireBroken takes pr out of use: no new send reaches it, what waits on it
// unsent fails with ErrUnavailable (retrying is safe), what is in flight
// finishes, and it is closed in the background. The next send that finds no
// producer provisions a fresh one.
func (p *ProducerPool) retireBroken(pr *producer, cause error) {
	p.mu.Lock()
	sl := p.slotOfLocked(pr)
	if sl == nil || sl.state == slotRetiring || p.closed.Load() {
		p.mu.Unlock()
		return
	}
	wasShared := sl.state == slotShared
	sl.state = slotRetiring
	if wasShared {
		p.publishSharedLocked()
	}
	p.nRetired++
	p.wg.Add(1)
	p.mu.Unlock()
	p.log.Warn("producer broken, replacing it", zap.Int("producer", pr.id), zap.Error(cause))
	pr.retired.Store(true)
	pr.failAll(fmt.Errorf("producer %d broken: %w", pr.id, cause))
	go func() { // owned by the pool
		defer p.wg.Done()
		// What is in flight is answered or times out at the broker.
		ctx, cancel := context.WithTimeout(context.Background(), p.set.ackTimeout+time.Second)
		defer cancel()
		if err := pr.drained(ctx); err != nil {
			pr.abort()
		}
		pr.close(context.Background())
		p.hookRetire(pr, cause)
		p.forget(pr)
	}()
}

// forget frees the slot of a producer that has finished closing.
func (p *ProducerPool) forget(pr *producer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sl := p.slotOfLocked(pr); sl != nil {
		delete(p.slots, sl)
		p.broadcastLeaseLocked() // a slot is free for a new producer
	}
}

// count adds a failed message to the counter of err's class.
func (p *ProducerPool) count(err error) {
	switch ErrorClass(err) {
	case ClassClosed:
		p.failedClosed.Add(1)
	case ClassUnavailable:
		p.failedUnavailable.Add(1)
	case ClassInvalid:
		p.failedInvalid.Add(1)
	case ClassUnknown:
		p.failedUnknown.Add(1)
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
