package fxkafka

import (
	"time"

	"github.com/IBM/sarama"
)

// settings is what the send path needs, derived once in New from Config and
// the options. The engine reads only this (and, for sarama.NewClient, the
// per-producer *sarama.Config from saramaConfig).
type settings struct {
	acks                sarama.RequiredAcks
	ackTimeout          time.Duration // ProduceRequest.Timeout
	version             sarama.KafkaVersion
	codec               sarama.CompressionCodec
	codecLevel          int
	linger              time.Duration
	maxBatchBytes       int // largest record batch the pool builds
	maxMessageBytes     int // largest message, counted as the broker does
	maxInFlight         int // produce requests in flight per broker connection
	retries             int // further attempts for a retriable failure
	retryBackoff        time.Duration
	idempotent          bool
	keyHash             string                        // "fnv1a" or "murmur2"
	sticky              bool                          // keyless: the pool's choice (true) or random
	partitioner         sarama.PartitionerConstructor // non-nil only if set through WithSaramaConfig
	maxBufferedMessages int
	maxBufferedBytes    int
}

// deriveSettings derives the send path's settings from the pool's Config.
func (p *ProducerPool) deriveSettings() (settings, error) {
	c := p.cfg
	s := settings{
		ackTimeout:          brokerAckTimeout,
		version:             sarama.DefaultVersion,
		codec:               sarama.CompressionNone,
		codecLevel:          sarama.CompressionLevelDefault,
		maxBatchBytes:       1 << 20,
		maxMessageBytes:     c.MaxMessageBytes,
		maxInFlight:         5,
		retries:             produceRetries,
		retryBackoff:        produceBackoff,
		idempotent:          c.Idempotent,
		keyHash:             "fnv1a",
		sticky:              c.Partitioner != "hash",
		maxBufferedMessages: 10000,
		maxBufferedBytes:    64 << 20,
	}
	if c.Version != "" {
		s.version, _ = sarama.ParseKafkaVersion(c.Version) // checked by Validate
	}
	s.acks, _ = parseAcks(c.RequiredAcks) // checked by Validate
	if s.idempotent {
		s.acks = sarama.WaitForAll
	}
	s.maxBatchBytes = max(s.maxBatchBytes, s.maxMessageBytes)
	if c.MaxBufferedMessages > 0 {
		s.maxBufferedMessages = c.MaxBufferedMessages
	}
	if c.MaxBufferedBytes > 0 {
		s.maxBufferedBytes = c.MaxBufferedBytes
	}
	return s, nil
}
