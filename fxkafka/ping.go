package fxkafka

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"
)

// Ping reports whether a broker answers now: nil if one does, an error
// matching [ErrUnavailable] (wrapping the cause) if none does before ctx
// ends, or [ErrPoolClosed]. It uses an open producer's connection where one
// exists (one ApiVersions round trip); otherwise it starts or joins a
// provisioning attempt, which dials and fetches metadata, and keeps the
// producer it makes. While the pool backs off after a failed attempt it
// fails at once.
//
// Ping is for readiness checks. Do not make liveness depend on it: a service
// that is alive while Kafka is down is the point of the pool.
func (p *ProducerPool) Ping(ctx context.Context) error {
	// Any open producer's connections answer for the brokers, a leased
	// one's too: only with none open does Ping provision.
	p.mu.Lock()
	var pr *producer
	for sl := range p.slots {
		if sl.pr != nil && sl.state != slotRetiring {
			pr = sl.pr
			break
		}
	}
	p.mu.Unlock()
	if pr == nil {
		var err error
		if pr, err = p.acquire(ctx, false); err != nil {
			return forOp("ping", err)
		}
	}
	p.mu.Lock()
	if p.closed.Load() {
		p.mu.Unlock()
		return forOp("ping", closedErr)
	}
	p.wg.Add(1) // under mu with the pool open: ordered before Close's Wait
	p.mu.Unlock()

	answer := make(chan error, 1)
	go func() { // owned by the pool; ends at the answer, Net.ReadTimeout, or Close's abort
		defer p.wg.Done()
		b := pr.client.LeastLoadedBroker()
		if b == nil {
			answer <- sarama.ErrClosedClient
			return
		}
		if _, err := b.ApiVersions(&sarama.ApiVersionsRequest{Version: 0}); err != nil {
			answer <- fmt.Errorf("%s: %w", b.Addr(), err)
			return
		}
		answer <- nil
	}()
	select {
	case err := <-answer:
		switch {
		case err == nil:
			return nil
		case p.closed.Load():
			return forOp("ping", closedErr)
		}
		return forOp("ping", unavailable(err))
	case <-ctx.Done():
		return forOp("ping", unavailable(ctx.Err()))
	}
}
