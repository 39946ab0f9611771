package fxkafka

import (
	"context"

	"go.uber.org/fx"
	"go.uber.org/zap"
)

// hooks returns the lifecycle hooks of a pool. OnStart does not touch the
// network (a service starts while Kafka is down); OnStop closes the pool
// within the stop context, flushing every producer it made.
func hooks(p *ProducerPool) fx.Hook {
	return fx.Hook{
		OnStart: func(context.Context) error {
			p.log.Info("producer pool ready; brokers are dialed on first send",
				zap.Strings("brokers", p.cfg.Brokers), zap.Int("maxProducers", p.cfg.MaxProducers))
			return nil
		},
		OnStop: p.Close,
	}
}
