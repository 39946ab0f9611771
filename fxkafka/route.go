package fxkafka

import (
	"context"
	"time"
)

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
