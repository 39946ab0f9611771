package fxkafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// twoPartitionPool returns a kfake cluster whose topic has two
// partitions, and a pool that has sent to it and refreshes its metadata
// every 20 ms, so that it soon sees partitions added.
func twoPartitionPool(t *testing.T) (*kfake.Cluster, *ProducerPool) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.SeedTopics(2, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithSaramaConfig(func(sc *sarama.Config) {
		sc.Metadata.RefreshFrequency = 20 * time.Millisecond
	}))
	_, _, err = p.SendMessage(context.Background(), msg("two partitions"))
	require.NoError(t, err)
	return c, p
}

// growTopic grows topic on c to count partitions, as an operator would.
func growTopic(t *testing.T, c *kfake.Cluster, count int32) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	defer cl.Close()
	req := kmsg.NewPtrCreatePartitionsRequest()
	rt := kmsg.NewCreatePartitionsRequestTopic()
	rt.Topic, rt.Count = topic, count
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	require.NoError(t, err)
	require.Zero(t, resp.Topics[0].ErrorCode)
}

func TestKeysHashOverPartitionsAddedToATopic(t *testing.T) {
	checkLeaks(t)
	c, p := twoPartitionPool(t)
	ctx := context.Background()

	growTopic(t, c, 4)

	waitFor(t, 10*time.Second, "the pool to see 4 partitions", func() bool {
		for _, pr := range p.allProducers() {
			if v, ok := pr.topics.Load(topic); ok && len(v.(*topicState).partitions()) == 4 {
				return true
			}
		}
		return false
	})
	msgs := make([]*sarama.ProducerMessage, 200)
	for i := range msgs {
		k := fmt.Sprintf("key-%d", i)
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(k)}
	}
	require.NoError(t, p.SendMessages(ctx, msgs))
	for _, r := range readBack(t, c, topic) {
		if r.Key != "" {
			require.Equal(t, hashPartition("fnv1a", []byte(r.Key), 4), r.Partition, "key %s", r.Key)
		}
	}
}
