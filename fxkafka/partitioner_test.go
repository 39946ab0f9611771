package fxkafka

import (
	"fmt"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestKeyHashFNV1aPlacesKeysAsSaramasHashPartitioner(t *testing.T) {
	for _, partitions := range []int32{6, 12} {
		sp := sarama.NewHashPartitioner(topic)
		for i := range 2000 {
			key := []byte(fmt.Sprintf("key-%d", i))
			want, err := sp.Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key)}, partitions)
			require.NoError(t, err)
			assert.Equal(t, want, hashPartition("fnv1a", key, partitions), "key-%d of %d partitions", i, partitions)
		}
	}
}

func TestKeyHashMurmur2PlacesKeysAsJavaAndFranzGo(t *testing.T) {
	for _, partitions := range []int{6, 12} {
		fp := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
		sp := sarama.NewMurmur2Partitioner(topic)
		for i := range 2000 {
			key := []byte(fmt.Sprintf("key-%d", i))
			want := int32(fp.Partition(&kgo.Record{Key: key}, partitions))
			got := hashPartition("murmur2", key, int32(partitions))
			assert.Equal(t, want, got, "key-%d of %d partitions, franz-go", i, partitions)
			saramas, err := sp.Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder(key)}, int32(partitions))
			require.NoError(t, err)
			assert.Equal(t, saramas, got, "key-%d of %d partitions, sarama's murmur2", i, partitions)
		}
	}
}

func TestKeyHashesTakeTheEmptyKey(t *testing.T) {
	for _, h := range []string{"fnv1a", "murmur2"} {
		p := hashPartition(h, []byte{}, 7)
		assert.True(t, p >= 0 && p < 7, "%s: %d", h, p)
	}
}
