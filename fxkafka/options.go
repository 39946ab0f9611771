package fxkafka

import (
	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// Option configures a [ProducerPool] beyond its [Config]: pass options to
// [New], or to the Fx [Module] with [ModuleOptions].
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

// WithSaramaConfig is the escape hatch to every sarama setting Config has no
// field for. New runs f once, on the *sarama.Config it builds from the
// Config (f sees Config's settings and the pool's own), and every producer
// then gets a copy of the result. Several WithSaramaConfig options run in
// the order given. A nil f is ignored.
//
// f may change what the pool honours: ClientID, RackID, Version,
// ApiVersionsRequest, Net.MaxOpenRequests (the most requests in flight per
// broker connection), Net.SASL.*, Net.ResolveCanonicalBootstrapServers,
// Metadata.Retry.Max and Backoff, Metadata.RefreshFrequency,
// Metadata.AllowAutoTopicCreation, Metadata.SingleFlight and, of the
// Producer settings, RequiredAcks, Timeout (below 10s), MaxMessageBytes,
// Compression, CompressionLevel, Flush.Frequency (the linger),
// Partitioner, Idempotent, Retry.Max and Retry.Backoff. The result wins
// over the Config field it overrides.
//
// New refuses with a [*ConfigError] (Field "WithSaramaConfig", Err naming
// the setting) a change to a setting the pool owns, because its guarantees
// rest on it: Net.Proxy.* and the dial settings (DialTimeout, KeepAlive,
// LocalAddr: the pool's dialer makes every connection and can abort it),
// Net.TLS.* (the dialer does TLS, from Config's TLS fields),
// Net.ReadTimeout and WriteTimeout, Metadata.Full, Metadata.Timeout
// (Config.ProvisionTimeout), the Retry.BackoffFunc of Metadata, Producer
// and Producer.Transaction, Producer.Transaction.ID, Producer.Return.* and
// MetricRegistry. It refuses likewise a change to a producer setting the
// pool does not use (Producer.Flush.Bytes, Messages and MaxMessages,
// Producer.Retry.MaxBufferLength and MaxBufferBytes, Producer.Interceptors,
// Producer.Transaction.Timeout and Retry.Max and Backoff,
// ChannelBufferSize), and a result that sarama's own Validate or the pool's
// limits refuse (Producer.Timeout not below Net.ReadTimeout, SASL
// handshake v0, whose raw tokens the dialer's frame check refuses). Consumer.*
// and Admin.* do nothing in a producer pool.
func WithSaramaConfig(f func(*sarama.Config)) Option {
	return optionFunc(func(p *ProducerPool) {
		if f != nil {
			p.base.funcs = append(p.base.funcs, f)
		}
	})
}
