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

func newPool(t *testing.T, cfg fxkafka.Config) *fxkafka.ProducerPool {
	t.Helper()
	p, err := fxkafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

// ordersSender sends a value to topic "orders" through p, within 5 s.
func ordersSender(p *fxkafka.ProducerPool) func(v string) error {
	return func(v string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(v)})
		return err
	}
}

func TestReadTopicReturnsWhatTheBrokerStored(t *testing.T) {
	checkLeaks(t)
	b := fxkafkatest.NewBroker(t, "orders")
	p := newPool(t, b.Config())

	m := &sarama.ProducerMessage{
		Topic:   "orders",
		Key:     sarama.StringEncoder("k1"),
		Value:   sarama.StringEncoder("v1"),
		Headers: []sarama.RecordHeader{{Key: []byte("trace"), Value: []byte("abc")}},
	}
	partition, offset, err := p.SendMessage(context.Background(), m)
	require.NoError(t, err)

	recs := b.WaitForRecords("orders", 1, 10*time.Second)
	require.Len(t, recs, 1)
	r := recs[0]
	assert.Equal(t, "orders", r.Topic)
	assert.Equal(t, partition, r.Partition)
	assert.Equal(t, offset, r.Offset)
	assert.Equal(t, "k1", string(r.Key))
	assert.Equal(t, "v1", string(r.Value))
	assert.Equal(t, []fxkafkatest.Header{{Key: "trace", Value: []byte("abc")}}, r.Headers)
}

func TestReadTopicWaitsForTheExpectedCountWithinItsContext(t *testing.T) {
	checkLeaks(t)
	b := fxkafkatest.NewBroker(t, "orders")
	p := newPool(t, b.Config())

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	recs, err := b.ReadTopic(ctx, "orders", 1)
	require.ErrorIs(t, err, context.DeadlineExceeded, "nothing was sent")
	assert.Empty(t, recs)

	done := make(chan []fxkafkatest.Record)
	go func() { done <- b.WaitForRecords("orders", 3, 10*time.Second) }()
	for i := range 3 {
		_, _, err := p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(string(rune('a' + i)))})
		require.NoError(t, err)
	}
	assert.Len(t, <-done, 3)
}

func TestDownRefusesAndUpComesBackOnTheSameAddressWithTheData(t *testing.T) {
	checkLeaks(t)
	b := fxkafkatest.NewBroker(t, "orders")
	addrs := b.Addrs()
	p := newPool(t, b.Config())
	send := ordersSender(p)
	require.NoError(t, send("before"))

	b.Down()
	assert.Nil(t, b.Cluster())
	err := send("during")
	require.Error(t, err)
	t.Logf("send while down: %v", err)

	b.Up()
	assert.Equal(t, addrs, b.Addrs())
	// Sends until one is acknowledged, each with a value of its own: one
	// that failed as "may have been written" may be stored too.
	deadline := time.Now().Add(10 * time.Second)
	var acked string
	for i := 0; acked == ""; i++ {
		require.True(t, time.Now().Before(deadline), "no recovery")
		if v := fmt.Sprintf("after-%d", i); send(v) == nil {
			acked = v
		}
	}
	values := map[string]int{}
	for _, r := range b.WaitForRecords("orders", 2, 10*time.Second) {
		values[string(r.Value)]++
	}
	assert.Equal(t, 1, values["before"], "data written before Down survives")
	assert.Equal(t, 1, values[acked])
}

func TestHoldProduceKeepsASendInFlightUntilReleased(t *testing.T) {
	checkLeaks(t)
	b := fxkafkatest.NewBroker(t, "orders")
	p := newPool(t, b.Config())
	_, _, err := p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("before")})
	require.NoError(t, err)

	held, release := b.HoldProduce()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("held")})
		done <- err
	}()
	<-held // the request is at the broker: the send is in flight until its caller gives up
	cancel()
	require.ErrorIs(t, <-done, fxkafka.ErrDeliveryUnknown, "the caller gave up while its request was at the broker")

	release()
	release() // more than once is safe
	_, _, err = p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("after")})
	require.NoError(t, err)
}
