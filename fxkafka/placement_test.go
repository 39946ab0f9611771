package fxkafka

import (
	"context"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// noLeader makes c's metadata answers report LEADER_NOT_AVAILABLE for the
// given partitions of topic until the returned function is called.
func noLeader(c *kfake.Cluster, parts ...int32) (lift func()) {
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Metadata}, Topic: topic, Partitions: parts, Err: kerr.LeaderNotAvailable, Count: -1})
	return func() { h.Remove() }
}

// running reports whether some goroutine is in fn. Its name comes from the
// function itself, so that a rename cannot make the answer "no" at once.
func running(fn any) bool {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name() + "("
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Contains(string(buf[:n]), name)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestProduceKeylessRecordsPassOverAPartitionWithoutALeader: a topic of
// three partitions whose partition 2 has no leader (an election that does
// not end during the test), the others healthy, a broker 5 ms away so that
// requests pipeline. Produce's keyless records may go to any partition, so
// none is placed where nothing can send it: every one is acknowledged. (A
// fill turn that went to partition 2 left a third of them there, to fail
// with LEADER_NOT_AVAILABLE once the refresher gave up; the placement
// before it, which went to a partition with nothing in flight, left them
// all there.)
func TestProduceKeylessRecordsPassOverAPartitionWithoutALeader(t *testing.T) {
	checkLeaks(t)
	c := startFarCluster(t, 5*time.Millisecond, 1, 3)
	lift := noLeader(c, 2)
	t.Cleanup(lift)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBufferedMessages = 60 // a share of 10 records a partition
	p := newTestPool(t, cfg)
	ctx := context.Background()
	pr := warmUntilPipelining(t, p, []int32{0, 1}, 3)
	v, ok := pr.topics.Load(topic)
	require.True(t, ok)
	require.Nil(t, v.(*topicState).partitions()[2].sinkNow.Load(), "partition 2 has no leader")

	const n = 300
	ps := newPromises(n)
	for i := range n {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value(i))}
		p.Produce(ctx, m, ps.for_(i, m))
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, p.Flush(fctx))
	ps.check(t)
	assert.True(t, pr.pipe.pipelining(), "requests still pipeline")
	assert.Empty(t, ps.errs, "keyless records failed though two partitions of three had a leader")
}

// TestAPartitionAddedWithoutALeaderGetsOneLater: the topic grows from two
// partitions to four while the new partition 3 has no leader yet; its
// leader is elected a moment later. A record Produce places on partition 3
// (a key hashing there, or a keyless record in its turn) is sent once the
// leader is known, and Flush returns: a partition that grow finds without
// a leader asks the refresher to look again, as a lost leader does. (Before,
// nothing looked again: its records were neither sent nor failed until
// Close.)
func TestAPartitionAddedWithoutALeaderGetsOneLater(t *testing.T) {
	checkLeaks(t)
	c, p := twoPartitionPool(t)
	ctx := context.Background()

	lift := noLeader(c, 3)
	defer lift()
	growTopic(t, c, 4)

	prods := *p.shared.Load()
	require.Len(t, prods, 1)
	pr := prods[0]
	var ts *topicState
	waitFor(t, 10*time.Second, "the pool to see 4 partitions", func() bool {
		if v, ok := pr.topics.Load(topic); ok && len(v.(*topicState).partitions()) == 4 {
			ts = v.(*topicState)
			return true
		}
		return false
	})
	// grow stores the partitions, then looks their leaders up: once it has
	// returned, partition 3 was found without one.
	waitFor(t, 10*time.Second, "grow to return", func() bool { return !running((*producer).grow) })
	require.Nil(t, ts.partitions()[3].sinkNow.Load(), "partition 3 had no leader when it was added")
	lift() // the election ends

	m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(keyFor(3, 4)), Value: sarama.StringEncoder("on the new partition")}
	ps := newPromises(1)
	p.Produce(ctx, m, ps.for_(0, m))
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, p.Flush(fctx), "the record on partition 3 was neither sent nor failed")
	ps.check(t)
	require.Empty(t, ps.errs)
	assert.Equal(t, int32(3), m.Partition)
}

// TestOneStalledBrokerDoesNotStallKeylessProduce: three brokers 5 ms away,
// one partition each; broker 2 stops answering produce requests (a stalled
// disk, a GC pause: its requests are held until the test ends). One
// goroutine produces keyless records, which may go to any partition: the
// two healthy brokers take them all, as the fill's turn passes over a
// partition whose last share still waits behind its batch in flight.
// (Without that, records piled up behind the stalled batch until they took
// the whole buffer, and Produce blocked on space until its context ended,
// though two brokers of three were idle.)
func TestOneStalledBrokerDoesNotStallKeylessProduce(t *testing.T) {
	checkLeaks(t)
	c := startFarCluster(t, 5*time.Millisecond, 3, 3)
	for q := range int32(3) {
		if c.LeaderFor(topic, q) != q {
			require.NoError(t, c.MoveTopicPartition(topic, q, q))
		}
	}
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBufferedMessages = 60 // a share of 10 records a partition
	p := newTestPool(t, cfg)
	ctx := context.Background()
	pr := warmUntilPipelining(t, p, []int32{0, 1, 2}, 3)

	stop := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if c.CurrentNode() == 2 {
			c.SleepControl(func() { <-stop })
		}
		return nil, nil, false
	})
	var once bool
	release := func() {
		if !once {
			once = true
			close(stop)
		}
	}
	t.Cleanup(release) // before the cluster closes

	const n = 3000 // 50 buffers' worth
	ps := newPromises(n)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range n {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value(i))}
		p.Produce(pctx, m, ps.for_(i, m))
	}
	blocked := pctx.Err() // the stream stalled on buffer space past its deadline
	release()
	require.NoError(t, p.Flush(ctx))
	ps.check(t)
	assert.True(t, pr.pipe.pipelining(), "requests still pipeline")
	assert.NoError(t, blocked, "one stalled broker of three held up every keyless Produce")
	assert.Empty(t, ps.errs)
}
