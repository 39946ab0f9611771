package fxkafka

import (
	"context"

	"github.com/IBM/sarama"
)

// Producer is the send API of a [ProducerPool]. Handlers that depend on it
// rather than on *ProducerPool can be unit-tested with a fake; [Module]
// provides it.
type Producer interface {
	SendMessage(ctx context.Context, msg *sarama.ProducerMessage) (partition int32, offset int64, err error)
	SendMessages(ctx context.Context, msgs []*sarama.ProducerMessage) error
}

var _ Producer = (*ProducerPool)(nil)
