package fxkafkaprom_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaprom"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

// gather returns the families the registry exports, by name.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// durationCounts returns fxkafka_send_duration_seconds's sample count by
// class.
func durationCounts(t *testing.T, reg prometheus.Gatherer) map[string]uint64 {
	t.Helper()
	mf := gather(t, reg)["fxkafka_send_duration_seconds"]
	require.NotNil(t, mf, "fxkafka_send_duration_seconds is exported")
	out := map[string]uint64{}
	for _, m := range mf.GetMetric() {
		require.Len(t, m.GetLabel(), 1)
		out[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
	}
	return out
}

// batchTally is a hook that adds up what the send path told of batches, to
// compare with fxkafka_batch_messages.
type batchTally struct{ count, sum atomic.Int64 }

func (b *batchTally) OnSendEnd(_ context.Context, _ *sarama.ProducerMessage, info fxkafka.SendInfo) {
	if info.Err == nil && info.Batch > 0 {
		b.count.Add(1)
		b.sum.Add(int64(info.Batch))
	}
}

func TestHistogramsCountEverySendWithItsClass(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	broker := fxkafkatest.NewBroker(t, "orders")
	h, tally := fxkafkaprom.NewHistograms(), &batchTally{}
	pool, err := fxkafka.New(broker.Config(), fxkafka.WithHook(h), fxkafka.WithHook(tally))
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(fxkafkaprom.NewCollector(pool), h)
	ctx := context.Background()
	msg := func() *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("x")}
	}

	for range 3 {
		_, _, err := pool.SendMessage(ctx, msg())
		require.NoError(t, err)
	}
	require.NoError(t, pool.SendMessages(ctx, []*sarama.ProducerMessage{msg(), msg()}))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = pool.SendMessage(cancelled, msg())
	require.ErrorIs(t, err, fxkafka.ErrUnavailable)

	held, release := broker.HoldProduce()
	short, cancel := context.WithCancel(ctx)
	go func() { <-held; cancel() }() // the caller gives up once its request is at the broker
	_, _, err = pool.SendMessage(short, msg())
	cancel()
	require.ErrorIs(t, err, fxkafka.ErrDeliveryUnknown)
	release()

	require.NoError(t, pool.Close(ctx))
	for range 2 {
		_, _, err := pool.SendMessage(ctx, msg())
		require.ErrorIs(t, err, fxkafka.ErrPoolClosed)
	}

	assert.Equal(t, map[string]uint64{"ok": 5, "unavailable": 1, "unknown": 1, "closed": 2, "invalid": 0},
		durationCounts(t, reg), "every class's series exists, at zero if nothing failed so")
	batch := gather(t, reg)["fxkafka_batch_messages"].GetMetric()[0].GetHistogram()
	assert.Equal(t, uint64(tally.count.Load()), batch.GetSampleCount(), "one observation per acknowledged message whose batch is known")
	assert.Equal(t, float64(tally.sum.Load()), batch.GetSampleSum())

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems, "metric names follow Prometheus conventions")
}

func TestHistogramsObserveDurationsAndBatchesAsTold(t *testing.T) {
	h := fxkafkaprom.NewHistograms()
	tests := []fxkafka.SendInfo{
		{Class: fxkafka.ClassOK, Duration: 300 * time.Microsecond, Batch: 3},
		{Class: fxkafka.ClassOK, Duration: 2 * time.Millisecond, Batch: 100},
		{Class: fxkafka.ClassOK, Duration: time.Millisecond}, // batch unknown
		{Class: fxkafka.ClassUnknown, Err: errors.New("timeout"), Duration: 12 * time.Second, Batch: 7},
		{Class: "new class", Err: errors.New("?"), Duration: time.Second}, // counted as unknown
	}
	for _, info := range tests {
		h.OnSendEnd(context.Background(), nil, info)
	}
	require.NoError(t, testutil.CollectAndCompare(h, strings.NewReader(`
# HELP fxkafka_batch_messages Messages in the record batch that carried each acknowledged message, observed once per message.
# TYPE fxkafka_batch_messages histogram
fxkafka_batch_messages_bucket{le="1"} 0
fxkafka_batch_messages_bucket{le="2"} 0
fxkafka_batch_messages_bucket{le="4"} 1
fxkafka_batch_messages_bucket{le="8"} 1
fxkafka_batch_messages_bucket{le="16"} 1
fxkafka_batch_messages_bucket{le="32"} 1
fxkafka_batch_messages_bucket{le="64"} 1
fxkafka_batch_messages_bucket{le="128"} 2
fxkafka_batch_messages_bucket{le="256"} 2
fxkafka_batch_messages_bucket{le="512"} 2
fxkafka_batch_messages_bucket{le="1024"} 2
fxkafka_batch_messages_bucket{le="2048"} 2
fxkafka_batch_messages_bucket{le="4096"} 2
fxkafka_batch_messages_bucket{le="8192"} 2
fxkafka_batch_messages_bucket{le="+Inf"} 2
fxkafka_batch_messages_sum 103
fxkafka_batch_messages_count 2
`), "fxkafka_batch_messages"))

	var unknown *dto.Histogram
	for _, m := range gather(t, registryOf(h))["fxkafka_send_duration_seconds"].GetMetric() {
		if m.GetLabel()[0].GetValue() == "unknown" {
			unknown = m.GetHistogram()
		}
	}
	require.NotNil(t, unknown)
	assert.Equal(t, uint64(2), unknown.GetSampleCount())
	buckets := unknown.GetBucket()
	assert.Equal(t, 0.0001, buckets[0].GetUpperBound(), "from 0.1 ms")
	assert.Equal(t, 10.0, buckets[len(buckets)-1].GetUpperBound(), "to 10 s")
	assert.Equal(t, uint64(1), buckets[len(buckets)-1].GetCumulativeCount(), "12 s is past the last bucket")
}

func registryOf(c prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return reg
}

func TestModuleRegistersTheHistogramsHookWithThePool(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	broker := fxkafkatest.NewBroker(t, "orders")
	reg := prometheus.NewPedanticRegistry()

	var pool *fxkafka.ProducerPool
	app := fxtest.New(t,
		fxkafka.Module,
		fxkafkaprom.Module,
		fx.Replace(broker.Config()),
		fx.Provide(func() prometheus.Registerer { return reg }),
		fx.Populate(&pool),
	)
	app.RequireStart()
	_, _, err := pool.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("x")})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), durationCounts(t, reg)["ok"])
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	app.RequireStop()
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Zero(t, n, "unregistered on stop")
}

func TestEveryInvalidSendIsCountedWithItsClass(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	c, err := kfake.NewCluster(kfake.SeedTopics(1, "orders"))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	h := fxkafkaprom.NewHistograms()
	pool, err := fxkafka.New(fxkafka.Config{Brokers: c.ListenAddrs(), MaxMessageBytes: 1000}, fxkafka.WithHook(h))
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(h)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		m    *sarama.ProducerMessage
	}{
		{"nil message", nil},
		{"no topic", &sarama.ProducerMessage{Value: sarama.StringEncoder("x")}},
		{"too large", &sarama.ProducerMessage{Topic: "orders", Value: sarama.ByteEncoder(make([]byte, 2000))}},
		{"bad timestamp", &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("x"), Timestamp: time.Unix(-100, 0)}},
		{"unknown topic", &sarama.ProducerMessage{Topic: "no-such-topic", Value: sarama.StringEncoder("x")}},
	} {
		before := durationCounts(t, reg)[fxkafka.ClassInvalid]
		_, _, err := pool.SendMessage(ctx, tc.m)
		require.ErrorIs(t, err, fxkafka.ErrInvalidMessage, tc.name)
		assert.Equal(t, before+1, durationCounts(t, reg)[fxkafka.ClassInvalid], "%s: counted in fxkafka_send_duration_seconds{class=\"invalid\"}", tc.name)
	}
	require.NoError(t, pool.Close(ctx))
}
