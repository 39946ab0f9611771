package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// answerProduce is a produce response with code for every partition of req.
func answerProduce(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// keyFor returns a key the default key hash places on part of n.
func keyFor(part, n int32) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("k%d", i); hashPartition("fnv1a", []byte(k), n) == part {
			return k
		}
	}
}

func TestProduceOrderHoldsWhenItsProducerIsReplaced(t *testing.T) {
	checkLeaks(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.SeedTopics(2, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	for part := int32(0); part < 2; part++ {
		if c.LeaderFor(topic, part) != part {
			require.NoError(t, c.MoveTopicPartition(topic, part, part))
		}
	}
	k0, k1 := keyFor(0, 2), keyFor(1, 2)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Idempotent = true
	cfg.MaxProducers = 2
	p := newTestPool(t, cfg)
	ctx := context.Background()
	keyed := func(k, v string) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}
	}
	for _, k := range []string{k0, k1} {
		_, _, err := p.SendMessage(ctx, keyed(k, "warm-"+k))
		require.NoError(t, err)
	}

	// Broker 1 holds B's request, then answers NOT_LEADER (retry it);
	// meanwhile broker 0 answers A with OUT_OF_ORDER_SEQUENCE_NUMBER, which
	// retires the producer. C, produced after B to B's partition, must not
	// be stored before B.
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var heldB, brokeA atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		preq := req.(*kmsg.ProduceRequest)
		switch node := c.CurrentNode(); {
		case node == 1 && heldB.CompareAndSwap(false, true):
			held <- struct{}{}
			c.SleepControl(func() { <-release })
			return answerProduce(preq, kerr.NotLeaderForPartition.Code), nil, true
		case node == 0 && brokeA.CompareAndSwap(false, true):
			return answerProduce(preq, kerr.OutOfOrderSequenceNumber.Code), nil, true
		}
		return nil, nil, false
	})
	outcomes := make(chan error, 3)
	promise := func(_ *sarama.ProducerMessage, err error) { outcomes <- err }
	p.Produce(ctx, keyed(k1, "B"), promise)
	<-held
	p.Produce(ctx, keyed(k0, "A"), promise)
	require.ErrorIs(t, <-outcomes, ErrUnavailable, "A was refused: not written")
	waitFor(t, 10*time.Second, "the producer to be retired", func() bool { return p.Stats().ProducersRetired > 0 })
	produced := make(chan struct{})
	go func() { // Produce waits for the retired producer to finish
		defer close(produced)
		p.Produce(ctx, keyed(k1, "C"), promise)
	}()
	close(release)
	<-produced
	for range 2 {
		if err := <-outcomes; err != nil {
			require.True(t, errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDeliveryUnknown), "%v", err)
		}
	}
	require.NoError(t, p.Flush(ctx))
	var order []string
	for _, r := range readBack(t, c, topic) {
		if r.Partition == 1 {
			order = append(order, r.Value)
		}
	}
	for i, v := range order {
		if v == "C" {
			assert.NotContains(t, order[i+1:], "B", "B stored after C, which was produced after it: %v", order)
		}
	}
}
