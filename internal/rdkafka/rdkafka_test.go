package rdkafka

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/internal/benchkit"
)

func TestThePoolSendsToTheMockClusterAndTheMessageIsReadBack(t *testing.T) {
	tgt := Mock(t, 0)
	p := newPool(t, fxkafka.Config{Brokers: tgt.Addrs, Version: tgt.Version})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := &sarama.ProducerMessage{Topic: "orders", Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("placed")}
	partition, offset, err := p.SendMessage(ctx, msg)
	require.NoError(t, err, "the mock cluster creates the topic on first use")

	opts := append([]kgo.Opt{
		kgo.SeedBrokers(tgt.Addrs...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"orders": {partition: kgo.NewOffset().At(offset)}}),
	}, tgt.KgoOpts...)
	cl, err := kgo.NewClient(opts...)
	require.NoError(t, err)
	defer cl.Close()
	var got []*kgo.Record
	for len(got) == 0 {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "nothing read back")
		got = append(got, fs.Records()...)
	}
	assert.Equal(t, "k", string(got[0].Key))
	assert.Equal(t, "placed", string(got[0].Value))
	assert.Equal(t, offset, got[0].Offset)
}

// TestEveryPeerSendsToBothBrokers sends a few messages with each
// benchmark client to the mock cluster (with a round trip set) and
// librdkafka to kfake: a broken peer or broker set-up fails here, not in a
// benchmark run.
func TestEveryPeerSendsToBothBrokers(t *testing.T) {
	mock := Mock(t, time.Millisecond)
	peers := []benchkit.SendImpl{
		poolSend(false), poolSend(true), benchkit.SyncProducer(), benchkit.FranzSync(false), benchkit.FranzSync(true),
		Librdkafka(false), Librdkafka(true),
	}
	for _, impl := range peers {
		t.Run("mock/"+impl.Name, func(t *testing.T) { sendSome(t, impl, mock) })
	}
	kf := benchkit.Kfake(t, time.Millisecond)
	for _, impl := range []benchkit.SendImpl{Librdkafka(false), Librdkafka(true)} {
		t.Run("kfake/"+impl.Name, func(t *testing.T) { sendSome(t, impl, kf) })
	}
}

func sendSome(t *testing.T, impl benchkit.SendImpl, tgt benchkit.Target) {
	send := impl.New(t, tgt)
	for range 3 {
		require.NoError(t, send())
	}
}
