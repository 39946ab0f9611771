package fxkafka

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKeyHashPlacesKeysWhereTheOtherClientsDo: for many keys and 6 and 12
// partitions, KeyHash "murmur2" places a keyed message where franz-go's
// StickyKeyPartitioner (Java's murmur2) does, and "fnv1a" where sarama's
// NewHashPartitioner does, with either Partitioner.
func TestKeyHashPlacesKeysWhereTheOtherClientsDo(t *testing.T) {
	franz := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	sarama1a := sarama.NewHashPartitioner(topic)
	tests := []struct {
		keyHash, partitioner string
	}{
		{"murmur2", "sticky"}, {"murmur2", "hash"}, {"fnv1a", "sticky"}, {"fnv1a", "hash"}, {"", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("KeyHash=%s/Partitioner=%s", tt.keyHash, tt.partitioner), func(t *testing.T) {
			newPartitioner, err := partitionerFor(tt.partitioner, tt.keyHash)
			require.NoError(t, err)
			ours := newPartitioner(topic)
			for _, n := range []int32{6, 12} {
				for i := range 2000 {
					key := fmt.Sprintf("order-%d", i)
					got, err := ours.Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key)}, n)
					require.NoError(t, err)
					var want int32
					if tt.keyHash == "murmur2" {
						want = int32(franz.Partition(&kgo.Record{Key: []byte(key)}, int(n)))
					} else {
						want, err = sarama1a.Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key)}, n)
						require.NoError(t, err)
					}
					require.Equal(t, want, got, "key %q, %d partitions", key, n)
				}
			}
		})
	}
}
