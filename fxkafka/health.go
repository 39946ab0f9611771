package fxkafka

import (
	"errors"
	"io"
	"net"
	"slices"
	"syscall"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
	"go.uber.org/zap"
)

// brokenErrors are the errors after which a producer is not worth keeping:
// its connections are gone, its circuit breaker is open (sarama keeps a
// topic's breaker open for 10s after 3 errors, failing sends even once the
// broker is back), or its producer id is no longer valid (an idempotent
// producer after a broker lost its state, or a fenced one). A new producer
// starts with none of that.
var brokenErrors = []error{
	sarama.ErrOutOfBrokers,
	sarama.ErrClosedClient,
	sarama.ErrNotConnected,
	breaker.ErrBreakerOpen,
	sarama.ErrOutOfOrderSequenceNumber,
	sarama.ErrUnknownProducerID,
	sarama.ErrInvalidProducerIDMapping,
	sarama.ErrInvalidProducerEpoch,
	sarama.ErrProducerFenced,
	io.EOF,
	io.ErrUnexpectedEOF,
	syscall.ECONNREFUSED,
	syscall.ECONNRESET,
	syscall.EPIPE,
	errAborted,
}

// isBroken reports whether err, returned by sarama for a message, means the
// producer that returned it should be replaced.
func isBroken(err error) bool {
	for _, target := range brokenErrors {
		if errors.Is(err, target) {
			return true
		}
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// retireBroken takes pr out of the routing set, so no new send reaches it,
// and closes it in the background: the messages it holds finish (or fail)
// and reach their callers. The next send that finds no producer provisions
// a fresh one. It runs on pr's error drainer; hand-offs to pr in progress are
// ordered before its shutdown by pr.retire.
func (p *ProducerPool) retireBroken(pr *producer, cause error) {
	p.mu.Lock()
	prods := *p.producers.Load()
	i := slices.Index(prods, pr)
	if i < 0 { // already out: retired before, or the pool is closing
		p.mu.Unlock()
		return
	}
	rest := slices.Delete(slices.Clone(prods), i, i+1)
	p.producers.Store(&rest)
	p.nRetired++
	p.mu.Unlock()
	p.log.Warn("producer broken, replacing it", zap.Int("producer", pr.id), zap.Error(cause))
	p.retired(pr, cause)
	pr.retire()
}
