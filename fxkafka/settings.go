package fxkafka

import (
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
	maxBatchBytes       int // largest record batch the pool builds
	maxMessageBytes     int // largest message, counted as the broker does (record + batch overhead)
	maxInFlight         int // produce requests in flight per broker connection
	retries             int // further attempts for a retriable failure
	retryBackoff        time.Duration
	idempotent          bool
	keyHash             string                        // "fnv1a" or "murmur2"
	sticky              bool                          // keyless messages: the pool chooses (true, "sticky") or random ("hash")
	partitioner         sarama.PartitionerConstructor // non-nil only if WithSaramaConfig set Producer.Partitioner
	maxBufferedMessages int
	maxBufferedBytes    int
}

// resolved is everything New derives from a Config and the
// WithSaramaConfig funcs, once.
type resolved struct {
	cfg Config         // with its defaults
	sec security       // TLS and SASL, the files read once
	sc  *sarama.Config // final: every producer's config is a copy
	set settings
}

// resolve checks c, builds the sarama configuration it makes, runs funcs on
// it and derives the send path's settings from the result. Every error is a
// *ConfigError naming the Config field (and variable) responsible, or
// "WithSaramaConfig" for what a func did.
func (c Config) resolve(funcs []func(*sarama.Config)) (resolved, error) {
	sec, err := c.check()
	if err != nil {
		return resolved{}, err
	}
	d := c.withDefaults()
	sc := d.saramaFromConfig(sec)
	// check refuses everything sarama would; this is the backstop that
	// keeps a sarama check added later from failing every send instead.
	if err := validateSarama(sc, d.TransactionalID); err != nil {
		return resolved{}, saramaConfigError(err)
	}
	custom := false
	if len(funcs) > 0 {
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
	return resolved{cfg: d, sec: sec, sc: sc, set: set}, nil
}

// configure validates cfg together with the options already applied to p
// and sets what New derives from them: p.cfg, p.sec, p.base.config and
// p.set. New calls it once; nothing changes them after.
func (p *ProducerPool) configure(cfg Config) error {
	r, err := cfg.resolve(p.base.funcs)
	if err != nil {
		return err
	}
	p.cfg, p.sec, p.base.config, p.set = r.cfg, r.sec, r.sc, r.set
	return nil
}
