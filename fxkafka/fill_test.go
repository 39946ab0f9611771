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
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProduceKeylessRecordsFillOnePartitionAtATimeWhileRequestsPipeline
// places records by hand on a topic of three partitions: while requests
// pipeline, Produce's keyless records fill one partition with its share of
// the buffer (what it holds over twice the partitions, in messages or in
// bytes, at most a batch), then the next, in turn; without pipelining they
// go to the sticky partition, and unordered records never follow the fill.
func TestProduceKeylessRecordsFillOnePartitionAtATimeWhileRequestsPipeline(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name                     string
		msgs, bytes, batch, size int
		wantShare                int // records a partition takes in turn
	}{
		{"the messages' share binds", 60, 1 << 20, 1 << 20, 10, 10}, // 60 / (2*3)
		{"the bytes' share binds", 40000, 600, 1 << 20, 30, 4},      // 600 / (2*3) = 100 bytes: the 4th record passes it
		{"a batch binds", 40000, 64 << 20, 200, 50, 4},              // 200 bytes a batch
		{"a record larger than its share", 40000, 600, 1 << 20, 500, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(freeAddr(t))
			cfg.MaxBufferedMessages, cfg.MaxBufferedBytes, cfg.MaxBatchBytes = tt.msgs, tt.bytes, max(tt.batch, 1<<10)
			p := newTestPool(t, cfg)
			p.set.maxBatchBytes = tt.batch // below what Validate lets a user set, to reach the cap
			pr := &producer{pool: p, set: &p.set}
			pr.pipe.piped.Store(true)
			ts := led(pr, 3)
			ts.fill.Store(&fillTurn{p: 1})
			var got []int32
			for range 3*tt.wantShare + 1 {
				r := &record{size: tt.size}
				require.NoError(t, pr.partition(ts, r, true))
				got = append(got, r.partition)
			}
			var want []int32
			for _, q := range []int32{1, 2, 0} {
				want = append(want, slices.Repeat([]int32{q}, tt.wantShare)...)
			}
			want = append(want, 1) // round again
			assert.Equal(t, want, got)
		})
	}
	t.Run("without pipelining, and for unordered records", func(t *testing.T) {
		p := newTestPool(t, testConfig(freeAddr(t)))
		pr := &producer{pool: p, set: &p.set}
		ts := led(pr, 3)
		ts.sticky.Store(2)
		ts.fill.Store(&fillTurn{p: 0})
		for range 100 {
			r := &record{size: 1 << 20}
			require.NoError(t, pr.partition(ts, r, true))
			assert.Equal(t, int32(2), r.partition, "not pipelining: the sticky partition")
		}
		pr.pipe.piped.Store(true)
		for range 100 {
			r := &record{size: 1 << 20}
			require.NoError(t, pr.partition(ts, r, false))
			assert.Equal(t, int32(2), r.partition, "an unordered record goes by the sticky partition and the free slots, never the fill")
		}
		assert.Equal(t, int32(0), ts.fill.Load().p, "unordered records leave the fill alone")
	})
}

// led returns a topic of n partitions, each led by one sink of pr's.
func led(pr *producer, n int) *topicState {
	ts := &topicState{name: topic}
	s := &sink{pr: pr}
	parts := make([]*partState, n)
	for i := range parts {
		parts[i] = &partState{topic: ts, id: int32(i)}
		parts[i].setSinkLocked(s)
	}
	ts.parts.Store(&parts)
	ts.fill.Store(&fillTurn{})
	return ts
}

// TestTheFillSkipsAPartitionWithoutALeaderOrStillBehind places Produce's
// keyless records by hand while requests pipeline, on a topic of four
// partitions with a share of 2 records: the turn passes over a partition
// without a leader, and over one whose last share has not left (a batch in
// flight and none sent since it was filled), but not over one that sent a
// batch since; it prefers a partition behind to one without a leader, and
// stays where it is when no other has a leader. A fill partition that loses
// its leader hands the record on at once.
func TestTheFillSkipsAPartitionWithoutALeaderOrStillBehind(t *testing.T) {
	checkLeaks(t)
	cfg := testConfig(freeAddr(t))
	cfg.MaxBufferedMessages = 16 // a share of 16 / (2*4) = 2
	p := newTestPool(t, cfg)
	pr := &producer{pool: p, set: &p.set}
	pr.pipe.piped.Store(true)
	place := func(ts *topicState, n int) []int32 {
		var got []int32
		for range n {
			r := &record{size: 10}
			require.NoError(t, pr.partition(ts, r, true))
			got = append(got, r.partition)
		}
		return got
	}

	ts := led(pr, 4)
	parts := ts.partitions()
	parts[1].setSinkLocked(nil) // an election under way
	// Partition 2 was filled, and its batch is still in flight.
	parts[2].flying.Store(1)
	parts[2].sent.Store(5)
	parts[2].filledAt.Store(5)
	assert.Equal(t, []int32{0, 0, 3, 3, 0, 0}, place(ts, 6), "neither the leaderless partition nor the one behind")

	parts[2].sent.Add(1) // a batch left since: the share behind it is on its way
	assert.Equal(t, []int32{3, 3, 0, 0, 2, 2}, place(ts, 6), "the partition that sent a batch since it was filled")

	// The fill partition, 3, loses its leader; 0 has none either, 1 none,
	// and 2 is behind again: the record goes to 2.
	parts[2].filledAt.Store(parts[2].sent.Load())
	parts[3].setSinkLocked(nil)
	parts[0].setSinkLocked(nil)
	assert.Equal(t, []int32{2, 2, 2}, place(ts, 3), "behind, but led")
	assert.Equal(t, int32(2), ts.fill.Load().p)

	// Only partition 2, the fill partition now, has a leader: it keeps
	// its turn.
	parts[2].flying.Store(0)
	assert.Equal(t, []int32{2, 2, 2}, place(ts, 3))
	assert.Equal(t, int32(2), ts.fill.Load().p)
}

// TestTheStickyPartitionFollowsTheLeaders drives a topic's leaders by hand
// and places keyless records while requests do not pipeline: a sticky
// partition losing its leader hands the sticky partition to the next one
// that has one; with none led it stays; a partition gaining a leader takes
// it from one that has none.
func TestTheStickyPartitionFollowsTheLeaders(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, testConfig(freeAddr(t)))
	pr := &producer{pool: p, set: &p.set}
	ts := led(pr, 3)
	parts := ts.partitions()
	place := func(ordered bool) int32 {
		r := &record{size: 10}
		require.NoError(t, pr.partition(ts, r, ordered))
		return r.partition
	}
	ts.sticky.Store(1)
	parts[1].setSinkLocked(nil)
	assert.Equal(t, int32(2), ts.sticky.Load(), "the next partition with a leader")
	parts[2].setSinkLocked(nil)
	assert.Equal(t, int32(0), place(true))
	assert.Equal(t, int32(0), place(false))

	parts[0].setSinkLocked(nil)
	assert.Equal(t, int32(0), place(false), "no partition has a leader: it stays")

	parts[2].setSinkLocked(&sink{pr: pr})
	assert.Equal(t, int32(2), place(true), "a partition gaining a leader takes it from one without")
	parts[1].setSinkLocked(&sink{pr: pr})
	assert.Equal(t, int32(2), place(true), "not from one with a leader")
}

// TestARequestCarriesOnePartitionWhileItsConnectionHasASlotToSpare sends
// three records, one per partition of a broker 5 ms away, held by a linger
// so that they are due together. On connections carrying at most two
// requests, the first request takes one partition's batch, and the second,
// taking the last slot, takes both others; on connections carrying one at a
// time, one request takes all three.
func TestARequestCarriesOnePartitionWhileItsConnectionHasASlotToSpare(t *testing.T) {
	for _, tt := range []struct {
		name  string
		slots int   // Net.MaxOpenRequests
		want  []int // partitions in each produce request, in order
	}{
		{"two requests at a time", 2, []int{1, 2}},
		{"one request at a time", 1, []int{3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			c := startFarCluster(t, 5*time.Millisecond, 1, 3)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.Linger = 30 * time.Millisecond
			p := newTestPool(t, cfg, WithSaramaConfig(func(sc *sarama.Config) { sc.Net.MaxOpenRequests = tt.slots }))
			ctx := context.Background()
			pr := warmUntilPipelining(t, p, []int32{0, 1, 2}, 3)

			var mu sync.Mutex
			var got []int
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				n := 0
				for _, rt := range req.(*kmsg.ProduceRequest).Topics {
					n += len(rt.Partitions)
				}
				mu.Lock()
				got = append(got, n)
				mu.Unlock()
				return nil, nil, false
			})
			var msgs []*sarama.ProducerMessage
			for q := range int32(3) {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(keyFor(q, 3)), Value: sarama.StringEncoder("due together")})
			}
			require.NoError(t, p.SendMessages(ctx, msgs))
			require.True(t, pr.pipe.pipelining(), "requests still pipeline")
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, tt.want, got)
		})
	}
}

// warmUntilPipelining sends messages keyed to each of parts (of a topic of
// n partitions) through p until its one producer's requests pipeline (the
// producer measures round trips and their cost as answers come), and
// returns that producer.
func warmUntilPipelining(t *testing.T, p *ProducerPool, parts []int32, n int32) *producer {
	t.Helper()
	ctx := context.Background()
	var pr *producer
	waitFor(t, 20*time.Second, "requests to pipeline", func() bool {
		for _, q := range parts {
			_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(keyFor(q, n)), Value: sarama.StringEncoder("warm")})
			require.NoError(t, err)
		}
		prods := *p.shared.Load()
		require.Len(t, prods, 1)
		pr = prods[0]
		return pr.pipe.pipelining()
	})
	return pr
}
