package fxkafka

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// storedTimestamps returns the timestamp the broker stored for each value
// of topic.
func storedTimestamps(t *testing.T, c *kfake.Cluster) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	for _, r := range readRecords(t, c, topic) {
		out[string(r.Value)] = r.Timestamp
	}
	return out
}

// within asserts that ts lies between from and to at Kafka's millisecond
// precision.
func within(t *testing.T, ts, from, to time.Time) {
	t.Helper()
	assert.False(t, ts.Before(from.Truncate(time.Millisecond)), "timestamp %v before the send began (%v)", ts, from)
	assert.False(t, ts.After(to), "timestamp %v after the send ended (%v)", ts, to)
}

func TestAMessageWithoutATimestampGetsTheTimeOfItsBatch(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	ctx := context.Background()

	given := time.UnixMilli(1_700_000_000_123)
	withTS := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("given"), Timestamp: given}
	_, _, err := p.SendMessage(ctx, withTS)
	require.NoError(t, err)
	assert.True(t, withTS.Timestamp.Equal(given), "a given timestamp is kept: %v", withTS.Timestamp)

	from := time.Now()
	sync1 := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("sync")}
	_, _, err = p.SendMessage(ctx, sync1)
	require.NoError(t, err)
	within(t, sync1.Timestamp, from, time.Now())

	const n = 1000
	var mu sync.Mutex
	async := make(map[string]time.Time, n)
	from = time.Now()
	for i := range n {
		p.Produce(ctx, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value(i))},
			func(m *sarama.ProducerMessage, err error) {
				assert.NoError(t, err)
				mu.Lock()
				async[string(m.Value.(sarama.StringEncoder))] = m.Timestamp
				mu.Unlock()
			})
	}
	require.NoError(t, p.Flush(ctx))
	to := time.Now()
	require.Len(t, async, n)

	stored := storedTimestamps(t, c)
	require.Len(t, stored, n+2)
	assert.True(t, stored["given"].Equal(given), "stored %v, given %v", stored["given"], given)
	assert.True(t, stored["sync"].Equal(sync1.Timestamp.Truncate(time.Millisecond)), "stored %v, told %v", stored["sync"], sync1.Timestamp)
	for v, ts := range async {
		within(t, ts, from, to)
		assert.True(t, stored[v].Equal(ts.Truncate(time.Millisecond)), "%s: stored %v, told %v", v, stored[v], ts)
	}
}

func TestTheMessagesOfOneBatchShareOneClockRead(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour // the batch leaves on Flush, whole
	p := newTestPool(t, cfg)
	ctx := context.Background()
	const n = 100
	var mu sync.Mutex
	stamps := map[time.Time]int{}
	for i := range n {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("one key"), Value: sarama.StringEncoder(value(i))}
		p.Produce(ctx, m, func(m *sarama.ProducerMessage, err error) {
			assert.NoError(t, err)
			mu.Lock()
			stamps[m.Timestamp]++
			mu.Unlock()
		})
	}
	require.NoError(t, p.Flush(ctx))
	assert.Len(t, stamps, 1, "one key, one batch, one timestamp: %v", stamps)
}

func TestTheSendEndHookSeesTheTimestampTheCallerGets(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	h := newCountingHook(false)
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithHook(h))
	m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("x")}
	_, _, err := p.SendMessage(context.Background(), m)
	require.NoError(t, err)
	h.mu.Lock()
	defer h.mu.Unlock()
	require.False(t, m.Timestamp.IsZero())
	assert.True(t, h.stamps["x"].Equal(m.Timestamp), "the hook saw %v, the caller %v", h.stamps["x"], m.Timestamp)
}

// TestEveryMessageOfABatchKeepsItsOwnMillisecond sends, in one batch, a
// first message stamped half a millisecond into its millisecond, a later
// one on a millisecond and an earlier one 0.9 ms into its millisecond: each
// is stored at its own millisecond (a delta taken between the exact times
// and then truncated stored the later one a millisecond early, the earlier
// one a millisecond late).
func TestEveryMessageOfABatchKeepsItsOwnMillisecond(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour // one batch, sent at Flush
	p := newTestPool(t, cfg)
	var batches atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		batches.Add(int32(len(batchesOf(t, req))))
		return nil, nil, false
	})
	ctx := context.Background()
	stamps := []time.Time{
		time.Unix(0, 1_700_000_000_000_500_000), // first of the batch, not on a millisecond
		time.UnixMilli(1_700_000_001_000),       // after it, on a millisecond
		time.Unix(0, 1_699_999_999_000_900_000), // before it, later in its millisecond
		time.Unix(0, 1_700_000_000_000_900_000), // in the first's millisecond
	}
	done := make(chan error, len(stamps))
	for i, at := range stamps {
		p.Produce(ctx, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(value(i)), Timestamp: at},
			func(_ *sarama.ProducerMessage, err error) { done <- err })
	}
	require.NoError(t, p.Flush(ctx))
	for range stamps {
		require.NoError(t, <-done)
	}
	require.Equal(t, int32(1), batches.Load(), "the messages must share one batch, or each is its batch's first")
	recs := readRecords(t, c, topic)
	require.Len(t, recs, len(stamps))
	for i, r := range recs {
		require.Equal(t, value(i), string(r.Value))
		require.Equal(t, stamps[i].UnixMilli(), r.Timestamp.UnixMilli(), "message %d", i)
	}
}
