package fxkafka

import (
	"math/rand/v2"

	"github.com/IBM/sarama"
)

// stickyRun is how many keyless messages in a row the sticky partitioner
// sends to one partition before it moves on.
const stickyRun = 256

// stickyPartitioner is the pool's default partitioner. A message with a key
// is hashed exactly as sarama's default hash partitioner does, so keyed
// messages land where they always did. Messages without a key go to one
// partition for a run of stickyRun messages, then to another chosen at
// random: Kafka's Java client and franz-go do the same. sarama keeps one
// batch in flight per partition, so spreading concurrent keyless sends over
// every partition (sarama's random choice) cuts them into many tiny requests;
// keeping them together lets them batch.
//
// sarama calls a partitioner from one goroutine per topic, so it needs no
// lock.
type stickyPartitioner struct {
	hash    sarama.Partitioner
	current int32
	left    int
}

func newStickyPartitioner(topic string) sarama.Partitioner {
	return &stickyPartitioner{hash: sarama.NewHashPartitioner(topic)}
}

func (s *stickyPartitioner) Partition(msg *sarama.ProducerMessage, numPartitions int32) (int32, error) {
	if msg.Key != nil {
		return s.hash.Partition(msg, numPartitions)
	}
	if s.left <= 0 || s.current >= numPartitions {
		s.current = rand.Int32N(numPartitions)
		s.left = stickyRun
	}
	s.left--
	return s.current, nil
}

// RequiresConsistency is true for sarama's Partitioner interface; keyless
// messages opt out per message below.
func (s *stickyPartitioner) RequiresConsistency() bool { return true }

// MessageRequiresConsistency lets sarama offer only writable partitions for
// keyless messages, as its hash partitioner does.
func (s *stickyPartitioner) MessageRequiresConsistency(msg *sarama.ProducerMessage) bool {
	return msg.Key != nil
}
