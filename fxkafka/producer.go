package fxkafka

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// errRetired is returned by producer.handoff when the producer is being
// closed: the messages not yet handed off may go to another producer.
var errRetired = errors.New("fxkafka: producer retired")

// producer is one sarama AsyncProducer with the pool's bookkeeping. Its
// goroutines (the result drainers) belong to the pool's WaitGroup.
type producer struct {
	id     int
	pool   *ProducerPool
	client sarama.Client
	async  sarama.AsyncProducer
	input  chan<- *sarama.ProducerMessage
	dialer *dialer

	// load counts messages reserved for or handed to this producer and not
	// yet completed: the routing key.
	load atomic.Int64
	sent atomic.Int64 // messages acknowledged

	// gate orders hand-offs before AsyncClose: a hand-off holds it shared
	// while it writes to input and checks isRetired first; retire sets
	// isRetired, then takes the gate exclusively, which waits out the
	// hand-offs under way. After that nothing writes to input, which sarama
	// closes on shutdown.
	gate      sync.RWMutex
	isRetired atomic.Bool   // retire has started
	retiring  chan struct{} // closed when retire starts: wakes blocked hand-offs
	once      sync.Once

	drainers atomic.Int32 // running drainer goroutines
	broken   atomic.Bool  // an error showed it cannot recover; replace, never reuse
	slot     int          // lease slot (transactional id suffix), or -1
	// closingTxn lets Close abort the open transaction of a lease producer
	// after the pool is marked closed. Protected by the pool's mu.
	closingTxn bool
}

// successDrainers is how many goroutines receive from a producer's
// Successes(). sarama's successes channel is unbuffered and fed by one
// goroutine per broker, which stalls while a receiver wakes the sender the
// result belongs to; several receivers keep it flowing under load.
const successDrainers = 8

// start launches the producer's drainer goroutines, owned by the pool.
func (pr *producer) start() {
	pr.drainers.Store(successDrainers + 1)
	pr.pool.wg.Add(successDrainers + 1)
	for range successDrainers {
		go pr.drainSuccesses()
	}
	go pr.drainErrors()
}

// handoff writes reqs to the producer's input in order. It returns how many
// were handed off and, if not all, why: errRetired (the rest may go to
// another producer) or ctx's error.
func (pr *producer) handoff(ctx context.Context, reqs []*sendReq) (int, error) {
	pr.gate.RLock()
	defer pr.gate.RUnlock()
	if pr.isRetired.Load() {
		return 0, errRetired
	}
	for i, r := range reqs {
		r.producer = pr.id // before the hand-off: a drainer may read it at once
		select {
		case pr.input <- &r.msg:
		case <-pr.retiring:
			r.producer = 0
			return i, errRetired
		case <-ctx.Done():
			r.producer = 0
			return i, ctx.Err()
		}
	}
	return len(reqs), nil
}

// retire stops hand-offs to the producer and starts its shutdown: sarama
// flushes what it holds, the drainers deliver the results, and the last
// drainer closes the client. It does not wait. Safe to call more than once.
func (pr *producer) retire() {
	pr.once.Do(func() {
		pr.isRetired.Store(true)
		close(pr.retiring)
		pr.gate.Lock() // waits out the hand-offs and transaction steps under way
		pr.gate.Unlock()
		pr.async.AsyncClose()
	})
}

func (pr *producer) drainSuccesses() {
	defer pr.drained()
	for m := range pr.async.Successes() {
		r := m.Metadata.(*sendReq)
		pr.sent.Add(1)
		pr.load.Add(-1)
		r.complete(m.Partition, m.Offset, nil)
	}
}

func (pr *producer) drainErrors() {
	defer pr.drained()
	for pe := range pr.async.Errors() {
		r := pe.Msg.Metadata.(*sendReq)
		err := classify(pe)
		pr.load.Add(-1)
		r.complete(-1, -1, err)
		if isBroken(pe.Err) {
			pr.broken.Store(true)
			pr.pool.retireBroken(pr, pe.Err)
		}
	}
}

// classify turns a sarama producer error into the pool's error classes.
func classify(pe *sarama.ProducerError) error {
	// sarama's ErrShuttingDown is not a "not sent": besides refusing new
	// messages (which the gate prevents), sarama returns it for messages it
	// was retrying when shutdown began, which may have been written.
	var cfgErr sarama.ConfigurationError
	if errors.As(pe.Err, &cfgErr) {
		// sarama's dispatcher checks (size, headers on old versions) run
		// before anything is sent.
		return errors.Join(ErrInvalidMessage, pe.Err)
	}
	return &DeliveryError{Topic: pe.Msg.Topic, Err: pe.Err}
}

// drained runs as each drainer exits; the last one closes the client and
// the connections and forgets the producer.
func (pr *producer) drained() {
	defer pr.pool.wg.Done()
	if pr.drainers.Add(-1) > 0 {
		return
	}
	if err := pr.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		pr.pool.log.Debug("close client", zap.Int("producer", pr.id), zap.Error(err))
	}
	pr.dialer.abort()
	pr.pool.forget(pr)
}
