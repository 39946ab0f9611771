package fxkafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestWithLatencyEveryRequestTakesAtLeastTheRoundTrip(t *testing.T) {
	checkLeaks(t)
	const rtt = 20 * time.Millisecond
	b := fxkafkatest.NewCluster(t, fxkafkatest.WithTopics("orders"), fxkafkatest.WithLatency(rtt))

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs()...))
	require.NoError(t, err)
	defer cl.Close()
	ctx := context.Background()
	require.NoError(t, cl.Ping(ctx)) // connected: what follows is one request each
	for range 3 {
		start := time.Now()
		_, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest())
		require.NoError(t, err)
		assert.GreaterOrEqual(t, time.Since(start), rtt, "a metadata request came back early")
	}

	p := newPool(t, b.Config())
	_, _, err = p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("warm")})
	require.NoError(t, err)
	start := time.Now()
	_, _, err = p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("timed")})
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), rtt, "a send came back early")
}

func TestWithBrokersAndWithPartitionsShapeTheCluster(t *testing.T) {
	checkLeaks(t)
	b := fxkafkatest.NewCluster(t,
		fxkafkatest.WithTopics("orders"),
		fxkafkatest.WithBrokers(3),
		fxkafkatest.WithPartitions(6),
	)
	require.Len(t, b.Addrs(), 3)
	leaders := map[int32]bool{}
	infos := b.Cluster().PartitionInfos("orders")
	for _, pi := range infos {
		leaders[pi.Leader] = true
	}
	assert.Len(t, infos, 6)
	assert.Len(t, leaders, 3, "leadership is spread over the brokers")

	p := newPool(t, b.Config())
	_, _, err := p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "created-on-use", Value: sarama.StringEncoder("v")})
	require.NoError(t, err)
	assert.Len(t, b.Cluster().PartitionInfos("created-on-use"), 6, "a topic created on first use has WithPartitions partitions")
	assert.Len(t, b.WaitForRecords("created-on-use", 1, 10*time.Second), 1)
}

func TestDownAndUpKeepTheLatencyAndLeaveNoGoroutineBehind(t *testing.T) {
	checkLeaks(t)
	const rtt = 10 * time.Millisecond
	b := fxkafkatest.NewCluster(t, fxkafkatest.WithTopics("orders"), fxkafkatest.WithBrokers(2), fxkafkatest.WithLatency(rtt))
	p := newPool(t, b.Config())
	send := ordersSender(p)
	require.NoError(t, send("before"))

	b.Down()
	require.Error(t, send("during"))
	b.Up()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; send(fmt.Sprintf("after-%d", i)) != nil; i++ {
		require.True(t, time.Now().Before(deadline), "no recovery")
	}
	// The first request on a connection the restart left stale fails as
	// "may have been written" (the pool cannot know it never arrived);
	// the next goes on a fresh one.
	for i := 0; ; i++ {
		start := time.Now()
		err := send(fmt.Sprintf("timed-%d", i))
		if err == nil {
			assert.GreaterOrEqual(t, time.Since(start), rtt, "the latency came back with the broker")
			break
		}
		require.ErrorIs(t, err, fxkafka.ErrDeliveryUnknown)
		require.Less(t, i, 5, "fresh connections keep failing")
	}
	assert.GreaterOrEqual(t, len(b.WaitForRecords("orders", 3, 10*time.Second)), 3)
}

func TestNewClusterFailsTheTestOnAnInvalidOption(t *testing.T) {
	tests := []struct {
		name string
		give fxkafkatest.Option
		want string
	}{
		{"no brokers", fxkafkatest.WithBrokers(0), "WithBrokers(0): want at least 1"},
		{"negative partitions", fxkafkatest.WithPartitions(-1), "WithPartitions(-1): want at least 1"},
		{"negative latency", fxkafkatest.WithLatency(-time.Millisecond), "WithLatency(-1ms): want 0 or more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newExampleTB() // panics where a test would fail
			defer tb.finish()
			assert.PanicsWithValue(t, "fxkafkatest: NewCluster: "+tt.want, func() {
				fxkafkatest.NewCluster(tb, tt.give)
			})
		})
	}
}
