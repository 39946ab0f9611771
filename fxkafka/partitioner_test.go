package fxkafka

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStickyPartitionerHashesKeyedMessagesAsSaramaDoes(t *testing.T) {
	sticky, hash := newStickyPartitioner(topic), sarama.NewHashPartitioner(topic)
	for i := range 200 {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("key-%d", i))}
		got, err := sticky.Partition(m, 12)
		require.NoError(t, err)
		want, err := hash.Partition(m, 12)
		require.NoError(t, err)
		assert.Equal(t, want, got, "key-%d", i)
		assert.True(t, sticky.(sarama.DynamicConsistencyPartitioner).MessageRequiresConsistency(m))
	}
}

func TestStickyPartitionerKeepsKeylessMessagesTogetherForARun(t *testing.T) {
	p := newStickyPartitioner(topic)
	keyless := &sarama.ProducerMessage{Topic: topic}
	assert.False(t, p.(sarama.DynamicConsistencyPartitioner).MessageRequiresConsistency(keyless))
	for run := range 20 {
		first, err := p.Partition(keyless, 3)
		require.NoError(t, err)
		require.True(t, first >= 0 && first < 3)
		for range stickyRun - 1 {
			got, _ := p.Partition(keyless, 3)
			require.Equal(t, first, got, "run %d moved before %d messages", run, stickyRun)
		}
	}
}

func TestStickyPartitionerStaysWithinFewerPartitions(t *testing.T) {
	p := newStickyPartitioner(topic)
	keyless := &sarama.ProducerMessage{Topic: topic}
	for range 100 {
		_, _ = p.Partition(keyless, 12)
		got, err := p.Partition(keyless, 2) // fewer writable partitions now
		require.NoError(t, err)
		require.Less(t, got, int32(2))
	}
}

func TestPartitionerConfigSelectsSaramasHashPartitioner(t *testing.T) {
	fn := func(c sarama.PartitionerConstructor) uintptr { return reflect.ValueOf(c).Pointer() }
	for _, tt := range []struct {
		give string
		want sarama.PartitionerConstructor
	}{
		{"", newStickyPartitioner},
		{"sticky", newStickyPartitioner},
		{"hash", sarama.NewHashPartitioner},
	} {
		p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Partitioner: tt.give})
		require.NoError(t, err)
		sc := p.saramaConfig(newDialer(0, 0, nil), "")
		assert.Equal(t, fn(tt.want), fn(sc.Producer.Partitioner), "Partitioner %q", tt.give)
	}
	_, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Partitioner: "random"})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Partitioner", ce.Field)
}
