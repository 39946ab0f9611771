package fxkafka

import (
	"context"
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKeyHashPlacesKeysWhereTheOtherClientsDo: for many keys and 6 and 12
// partitions, a keyed message the pool sends with KeyHash "murmur2" is
// stored on the partition franz-go's StickyKeyPartitioner (Java's murmur2)
// picks, and with "fnv1a" (the default) on the one sarama's
// NewHashPartitioner picks, whatever the Partitioner (which only places
// keyless messages). Read back from the broker.
func TestKeyHashPlacesKeysWhereTheOtherClientsDo(t *testing.T) {
	checkLeaks(t)
	franz := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	tests := []struct{ keyHash, partitioner string }{
		{"murmur2", "sticky"}, {"murmur2", "hash"}, {"fnv1a", "sticky"}, {"fnv1a", "hash"}, {"", ""},
	}
	for _, partitions := range []int32{6, 12} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("Partitions=%d/KeyHash=%s/Partitioner=%s", partitions, tt.keyHash, tt.partitioner), func(t *testing.T) {
				c, err := kfake.NewCluster(kfake.SeedTopics(partitions, topic))
				require.NoError(t, err)
				defer c.Close()
				cfg := testConfig(c.ListenAddrs()...)
				cfg.KeyHash, cfg.Partitioner = tt.keyHash, tt.partitioner
				p, err := New(cfg)
				require.NoError(t, err)
				const keys = 500
				msgs := make([]*sarama.ProducerMessage, keys)
				for i := range msgs {
					k := fmt.Sprintf("order-%d", i)
					msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(k)}
				}
				require.NoError(t, p.SendMessages(context.Background(), msgs))
				require.NoError(t, p.Close(context.Background()))
				fnv := sarama.NewHashPartitioner(topic)
				stored := readBack(t, c, topic)
				require.Len(t, stored, keys)
				for _, r := range stored {
					var want int32
					if tt.keyHash == "murmur2" {
						want = int32(franz.Partition(&kgo.Record{Key: []byte(r.Key)}, int(partitions)))
					} else {
						want, err = fnv.Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key)}, partitions)
						require.NoError(t, err)
					}
					require.Equal(t, want, r.Partition, "key %q", r.Key)
				}
			})
		}
	}
}
