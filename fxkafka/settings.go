package fxkafka

import (
	"errors"
	"time"

	"github.com/IBM/sarama"
)

// settings is what the send path needs, derived once in New from Config, the options, and the
// *sarama.Config the pool builds (after WithSaramaConfig's func has run). One place: the engine
// reads only this (and the per-producer *sarama.Config from p.saramaConfig for sarama.NewClient).
type settings struct {
	acks                sarama.RequiredAcks
	ackTimeout          time.Duration // ProduceRequest.Timeout
	version             sarama.KafkaVersion
	codec               sarama.CompressionCodec
	codecLevel          int // sarama.CompressionLevelDefault when 0 / unset
	linger              time.Duration
	hold                time.Duration // the pipelined hold (producer.holdFor): pipelinedHold, 0 with a linger or a negative Config.Linger
	maxBatchBytes       int           // largest record batch the pool builds
	maxMessageBytes     int           // largest message, counted as the broker does (record + batch overhead)
	maxRequestBytes     int           // the most a produce request's batches may hold: MaxRequestBytes (a field only so that a test can lower it)
	maxInFlight         int           // produce requests in flight per broker connection
	retries             int           // further attempts for a retriable failure
	retryBackoff        time.Duration
	idempotent          bool
	keyHash             string                        // "fnv1a" or "murmur2"
	sticky              bool                          // keyless messages: the pool chooses (true, "sticky") or random ("hash")
	partitioner         sarama.PartitionerConstructor // non-nil only if WithSaramaConfig set Producer.Partitioner
	maxBufferedMessages int
	maxBufferedBytes    int
}

// resolved is everything New derives from a checked Config, its security
// settings and the WithSaramaConfig funcs, once.
type resolved struct {
	cfg Config         // with its defaults
	sc  *sarama.Config // final: every producer's config is a copy
	set settings
}

// build makes the sarama configuration c (already checked) and sec come to,
// runs funcs on it and derives the send path's settings from the result.
// Every error is a *ConfigError naming the Config field (and variable)
// responsible, or "WithSaramaConfig" for what a func did.
func (c Config) build(sec security, funcs []func(*sarama.Config)) (resolved, error) {
	d := c.withDefaults()
	sc := d.saramaFromConfig(sec)
	// check and checkSecurity refuse everything sarama would; this is the
	// backstop that keeps a sarama check added later from failing every
	// send instead.
	if err := validateSarama(sc, d.TransactionalID); err != nil {
		return resolved{}, saramaConfigError(err)
	}
	custom := false
	if len(funcs) > 0 {
		var err error
		if custom, err = tune(sc, funcs, d); err != nil {
			return resolved{}, err
		}
	}
	set := settings{
		acks:                sc.Producer.RequiredAcks,
		ackTimeout:          sc.Producer.Timeout,
		version:             sc.Version,
		codec:               sc.Producer.Compression,
		codecLevel:          sc.Producer.CompressionLevel,
		linger:              sc.Producer.Flush.Frequency,
		maxBatchBytes:       d.MaxBatchBytes,
		maxMessageBytes:     sc.Producer.MaxMessageBytes,
		maxRequestBytes:     MaxRequestBytes,
		maxInFlight:         sc.Net.MaxOpenRequests,
		retries:             sc.Producer.Retry.Max,
		retryBackoff:        sc.Producer.Retry.Backoff,
		idempotent:          sc.Producer.Idempotent,
		keyHash:             d.KeyHash,
		sticky:              d.Partitioner == "sticky",
		maxBufferedMessages: d.MaxBufferedMessages,
		maxBufferedBytes:    d.MaxBufferedBytes,
	}
	if custom {
		set.partitioner = sc.Producer.Partitioner
	}
	if d.Linger >= 0 && set.linger <= 0 {
		set.hold = pipelinedHold // a negative Linger asks for no wait at all
	}
	// The pool builds and sends the batches itself, idempotent ones
	// included: the client only carries its requests. sarama's producer
	// checks (above) hold sarama's producer to one request in flight for
	// idempotence; the pool's lanes keep one batch in flight per producer id
	// and partition, so its connections carry pipelineDepth.
	if set.idempotent {
		set.maxInFlight = pipelineDepth
	}
	sc.Producer.Idempotent = false
	sc.Net.MaxOpenRequests = set.maxInFlight
	return resolved{cfg: d, sc: sc, set: set}, nil
}

// configure validates cfg together with the options already applied to p
// and sets what New derives from them: p.cfg, p.sec (by initSecurity, the
// one parse of the TLS and SASL settings), p.base.config and p.set. New
// calls it once; nothing changes them after.
func (p *ProducerPool) configure(cfg Config) error {
	if err := cfg.check(); err != nil {
		return err
	}
	p.cfg = cfg.withDefaults()
	if err := p.initSecurity(); err != nil {
		return err
	}
	r, err := cfg.build(p.sec, p.base.funcs)
	if err != nil {
		return err
	}
	p.cfg, p.base.config, p.set = r.cfg, r.sc, r.set
	return nil
}

// noTokens stands in for the OAUTHBEARER token provider when
// Config.Validate lets sarama check the configuration: the provider is
// WithTokenProvider's, which only New sees and requires. It is never asked
// for a token.
type noTokens struct{}

func (noTokens) Token() (*sarama.AccessToken, error) {
	return nil, errors.New("fxkafka: no token provider: pass WithTokenProvider to New")
}
