package fxkafka

import "go.uber.org/zap"

// Option configures a [ProducerPool] beyond its [Config]; pass options to
// [New].
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
