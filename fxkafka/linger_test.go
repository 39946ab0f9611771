package fxkafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchSizes is a hook that records the batch size of every acknowledged
// message, by value.
type batchSizes struct {
	mu   sync.Mutex
	seen map[string]int
}

func (b *batchSizes) OnSendEnd(_ context.Context, m *sarama.ProducerMessage, info SendInfo) {
	var v []byte
	if m.Value != nil { // a refused message may have none
		v, _ = m.Value.Encode()
	}
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

func TestFlushEndsTheLingerOfAProducerMadeWhileItWaits(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	h := holdRequests(t, c, kmsg.Metadata)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour
	p := newTestPool(t, cfg)

	// A Produce waits for the pool's first producer, whose provisioning
	// the broker holds; a Flush then waits for that message.
	promised := make(chan error, 1)
	go p.Produce(context.Background(), msg("x"), func(_ *sarama.ProducerMessage, err error) { promised <- err })
	<-h.seen
	waitFor(t, 5*time.Second, "the message to hold buffer space", func() bool { return p.Stats().Buffered == 1 })
	flushed := make(chan error, 1)
	go func() { flushed <- p.Flush(context.Background()) }()
	waitFor(t, 5*time.Second, "Flush to wait", func() bool { return p.flushing.Load() == 1 })

	// The producer made now must not hold the message for the linger.
	h.release()
	select {
	case err := <-flushed:
		require.NoError(t, err)
	case <-time.After(30 * time.Second): // a bound on a hang, not a synchronisation
		t.Fatal("Flush waited for the linger of a producer made while it waited")
	}
	require.NoError(t, <-promised)
}

func TestAMessageLargerThanABatchOrTheBufferTravelsAlone(t *testing.T) {
	checkLeaks(t)
	c, err := kfake.NewCluster(kfake.SeedTopics(1, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBatchBytes = 1000    // below the default MaxMessageBytes (1 MiB), as Java's batch.size
	cfg.MaxBufferedBytes = 2000 // likewise
	cfg.Linger = time.Hour      // batches leave only when full, or on Flush
	sizes := &batchSizes{}
	p := newTestPool(t, cfg, WithHook(sizes))

	big := func(name string) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(append([]byte(name), make([]byte, 5000)...))}
	}
	const n = 10
	done := make(chan error, n+2)
	promise := func(_ *sarama.ProducerMessage, err error) { done <- err }
	p.Produce(context.Background(), big("big-first"), promise)
	for i := range n {
		p.Produce(context.Background(), msg(value(i)), promise)
	}
	p.Produce(context.Background(), big("big-last"), promise)
	require.NoError(t, p.Flush(context.Background()))
	for range n + 2 {
		require.NoError(t, <-done)
	}
	sizes.mu.Lock()
	defer sizes.mu.Unlock()
	for k, batch := range sizes.seen {
		if len(k) > 5000 {
			assert.Equal(t, 1, batch, "a message larger than MaxBatchBytes in a batch of its own")
		} else {
			assert.Positive(t, batch)
		}
	}
	assert.Len(t, sizes.seen, n+2)
	stored := countValues(readBack(t, c, topic))
	assert.Len(t, stored, n+2)
}

func TestAProduceWaitingForBufferSpaceEndsTheLinger(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour
	cfg.MaxBufferedMessages = 2
	p := newTestPool(t, cfg)
	const n = 5
	done := make(chan error, n)
	promise := func(_ *sarama.ProducerMessage, err error) { done <- err }
	for i := range n { // the third waits for space the first two hold while they linger
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a bound on a hang
		p.Produce(ctx, msg(value(i)), promise)
		cancel()
	}
	for range n - 2 {
		require.NoError(t, <-done, "sent while the next Produce waited, long before the linger")
	}
	require.NoError(t, p.Flush(context.Background()))
	for range 2 {
		require.NoError(t, <-done)
	}
}

func TestARequestTakesNoMoreBatchesThanItCanHold(t *testing.T) {
	checkLeaks(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	var mu sync.Mutex
	var perRequest []int // bytes of the batches in each produce request
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n := 0
		for _, b := range batchesOf(t, req) {
			n += b.bytes
		}
		mu.Lock()
		perRequest = append(perRequest, n)
		mu.Unlock()
		return nil, nil, false
	})
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour // every partition's batch waits for the Flush
	cfg.KeyHash = "murmur2"
	cfg.MaxMessageBytes, cfg.MaxBatchBytes = 1000, 1000
	p := newTestPool(t, cfg)
	// The one broker leads all 6 partitions; a request of 6 full batches
	// would pass this limit, which room for 2 allows.
	p.set.maxRequestBytes = 2 * (1000 + requestBatchOverhead)

	const n = 600
	done := make(chan error, n)
	for i := range n {
		m := msg(value(i))
		m.Key = sarama.StringEncoder(fmt.Sprintf("key-%d", i)) // every partition
		p.Produce(context.Background(), m, func(_ *sarama.ProducerMessage, err error) { done <- err })
	}
	require.NoError(t, p.Flush(context.Background()))
	for range n {
		require.NoError(t, <-done)
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, perRequest)
	for _, bytes := range perRequest {
		assert.LessOrEqual(t, bytes, p.set.maxRequestBytes, "bytes of the batches in each request: %v", perRequest)
	}
	assert.Len(t, countValues(readBack(t, c, topic)), n)
}
