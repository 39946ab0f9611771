package fxkafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestPromisesRecordEveryOutcomeOfAStreamInTheOrderProduced(t *testing.T) {
	checkLeaks(t)
	const n = 1000
	broker := fxkafkatest.NewBroker(t, "events")
	pool, err := fxkafka.New(broker.Config())
	require.NoError(t, err)
	defer pool.Close(context.Background())

	promises := fxkafkatest.NewPromises(t)
	for i := range n {
		pool.Produce(context.Background(), &sarama.ProducerMessage{
			Topic: "events",
			Key:   sarama.StringEncoder(fmt.Sprintf("user-%d", i%4)),
			Value: sarama.StringEncoder(fmt.Sprintf("%04d", i)),
		}, promises.Promise())
	}
	outcomes := promises.WaitForAll(10 * time.Second) // every promise ran once, or the test fails
	require.Len(t, outcomes, n)
	assert.Empty(t, promises.Failed())

	last := map[string]string{} // key -> the last value seen
	offsets := map[int32]int64{}
	for _, o := range outcomes {
		assert.Equal(t, "events", o.Topic)
		assert.GreaterOrEqual(t, o.Partition, int32(0))
		assert.False(t, o.Timestamp.IsZero())
		if prev, ok := last[string(o.Key)]; ok {
			assert.Less(t, prev, string(o.Value), "a key's promises run in the order produced")
		}
		last[string(o.Key)] = string(o.Value)
		if prev, ok := offsets[o.Partition]; ok {
			assert.Greater(t, o.Offset, prev, "a partition's promises run in offset order")
		}
		offsets[o.Partition] = o.Offset
	}
	assert.Len(t, broker.WaitForRecords("events", n, 10*time.Second), n)
}

func TestPromisesRecordWhatWasNotSent(t *testing.T) {
	checkLeaks(t)
	p := newPool(t, fxkafka.Config{Brokers: []string{"127.0.0.1:1"}}) // nothing listens there
	promises := fxkafkatest.NewPromises(t)
	m := &sarama.ProducerMessage{Topic: "events", Value: sarama.StringEncoder("lost?")}
	p.Produce(context.Background(), m, promises.Promise())

	outcomes := promises.WaitForAll(10 * time.Second)
	require.Len(t, outcomes, 1)
	o := outcomes[0]
	assert.Same(t, m, o.Message)
	assert.Equal(t, "lost?", string(o.Value))
	assert.ErrorIs(t, o.Err, fxkafka.ErrUnavailable)
	assert.Equal(t, int32(-1), o.Partition)
	assert.Equal(t, int64(-1), o.Offset)
	assert.Equal(t, outcomes, promises.Failed())
}

func TestPromisesThenRecordsTheOutcomeAndCallsTheNextPromise(t *testing.T) {
	checkLeaks(t)
	b := fxkafkatest.NewBroker(t, "events")
	p := newPool(t, b.Config())
	promises := fxkafkatest.NewPromises(t)
	next := make(chan error, 1)
	p.Produce(context.Background(), &sarama.ProducerMessage{Topic: "events", Value: sarama.StringEncoder("v")},
		promises.Then(func(_ *sarama.ProducerMessage, err error) { next <- err }))

	require.NoError(t, <-next)
	assert.Len(t, promises.Outcomes(), 1, "recorded before next ran")
}

func TestPromisesWaitHonoursItsContext(t *testing.T) {
	promises := fxkafkatest.NewPromises(t)
	promise := promises.Promise()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	outcomes, err := promises.Wait(ctx, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded, "no promise ran")
	assert.Empty(t, outcomes)

	promise(&sarama.ProducerMessage{Topic: "events"}, nil)
	outcomes, err = promises.Wait(context.Background(), 1)
	require.NoError(t, err)
	assert.Len(t, outcomes, 1)
}

func TestAPromiseCalledTwiceFailsTheTest(t *testing.T) {
	tb := newExampleTB() // panics where a test would fail
	defer tb.finish()
	promises := fxkafkatest.NewPromises(tb)
	promise := promises.Promise()
	m := &sarama.ProducerMessage{Topic: "events"}
	promise(m, nil)
	assert.PanicsWithValue(t, "fxkafkatest: promise 1 called again (with <nil>): the pool calls each promise once", func() {
		promise(m, nil)
	})
	assert.Len(t, promises.Outcomes(), 1, "the second call is not an outcome")
}
