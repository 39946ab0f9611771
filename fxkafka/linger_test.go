package fxkafka

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// batchSizes is a hook that records the batch size of every acknowledged
// message, by value.
type batchSizes struct {
	mu   sync.Mutex
	seen map[string]int
}

func (b *batchSizes) OnSendEnd(_ context.Context, m *sarama.ProducerMessage, info SendInfo) {
	v, _ := m.Value.Encode()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen == nil {
		b.seen = map[string]int{}
	}
	b.seen[string(v)] = info.Batch
}

func TestLingerHoldsRecordsUntilTheirBatchIsFullOrFlushed(t *testing.T) {
	checkLeaks(t)
	c, err := kfake.NewCluster(kfake.SeedTopics(1, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour // batches leave only when full, or on Flush
	cfg.MaxMessageBytes = 1000
	cfg.MaxBatchBytes = 1000
	sizes := &batchSizes{}
	p := newTestPool(t, cfg, WithHook(sizes))
	// Each record of a 100-byte value takes 100 + 12 bytes of a batch of at
	// most 1000 - 61: eight fit.
	value := func(i int) sarama.Encoder { return sarama.ByteEncoder(append([]byte(value(i)), make([]byte, 93)...)) }
	const n = 20
	done := make(chan error, n)
	for i := range n {
		p.Produce(context.Background(), &sarama.ProducerMessage{Topic: topic, Value: value(i)}, func(_ *sarama.ProducerMessage, err error) { done <- err })
	}
	require.NoError(t, p.Flush(context.Background()))
	for range n {
		require.NoError(t, <-done)
	}
	var got []int
	for i := range n {
		v, _ := value(i).Encode()
		sizes.mu.Lock()
		got = append(got, sizes.seen[string(v)])
		sizes.mu.Unlock()
	}
	assert.Equal(t, append(slices.Repeat([]int{8}, 16), 4, 4, 4, 4), got, "two full batches, then the rest on Flush")
}
