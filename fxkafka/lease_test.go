package fxkafka

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func keyed(v string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("one key, one partition"), Value: sarama.StringEncoder(v)}
}

// readUntil consumes topic with the given isolation until every value of
// want has been seen, and returns every value seen. Records after the wanted
// ones prove that earlier records were skipped, not missed.
func readUntil(t *testing.T, c *kfake.Cluster, committedOnly bool, want ...string) []string {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if committedOnly {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	} else {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadUncommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var seen []string
	for !containsAll(seen, want) {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "saw %v, want %v", seen, want)
		fs.EachRecord(func(r *kgo.Record) { seen = append(seen, string(r.Value)) })
	}
	return seen
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func TestLeaseIsExclusiveAndReleaseMakesItReusable(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 2
	p := newTestPool(t, cfg)

	l, err := p.Lease(context.Background())
	require.NoError(t, err)
	_, _, err = l.SendMessage(context.Background(), msg("leased"))
	require.NoError(t, err)
	require.NoError(t, l.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("leased-a"), msg("leased-b")}))
	_, _, err = p.SendMessage(context.Background(), msg("shared"))
	require.NoError(t, err)
	s := p.Stats()
	assert.Equal(t, 2, s.Producers, "the shared send did not use the leased producer")
	assert.Equal(t, 1, s.Leased)

	leased := l.pr
	l.Release()
	l.Release() // twice is safe
	_, _, err = l.SendMessage(context.Background(), msg("after release"))
	assert.ErrorIs(t, err, ErrLeaseReleased)
	assert.Zero(t, p.Stats().Leased)

	attempts := p.Stats().ProvisionAttempts
	again, err := p.Lease(context.Background())
	require.NoError(t, err)
	assert.Same(t, leased, again.pr, "a released producer is reused")
	assert.Equal(t, attempts, p.Stats().ProvisionAttempts)
	again.Release()

	require.NoError(t, p.Close(context.Background()))
	assert.Len(t, readBack(t, c, topic), 4)
	_, err = p.Lease(context.Background())
	assert.ErrorIs(t, err, ErrPoolClosed)
}

func TestLeasesCountAgainstTheCap(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 1
	p := newTestPool(t, cfg)

	l, err := p.Lease(context.Background())
	require.NoError(t, err)
	_, _, err = p.SendMessage(context.Background(), msg("no room"))
	require.ErrorIs(t, err, ErrUnavailable, "the only producer the cap allows is leased")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = p.Lease(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := make(chan *Lease)
	go func() {
		l2, err := p.Lease(context.Background())
		assert.NoError(t, err)
		got <- l2
	}()
	l.Release()
	l2 := <-got
	assert.Same(t, l.pr, l2.pr)
	assert.Equal(t, 1, p.Stats().Producers)
	l2.Release()
}

func TestTransactionalLeaseCommitsAndAborts(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TransactionalID = "orders-tx"
	p := newTestPool(t, cfg)
	ctx := context.Background()

	l, err := p.Lease(ctx)
	require.NoError(t, err)
	assert.Equal(t, "orders-tx-0", l.pr.txnID)
	_, _, err = l.SendMessage(ctx, keyed("outside"))
	require.ErrorIs(t, err, ErrNoTransaction, "sends need an open transaction")

	require.NoError(t, l.BeginTxn())
	for _, v := range []string{"aborted-1", "aborted-2"} {
		_, _, err := l.SendMessage(ctx, keyed(v))
		require.NoError(t, err)
	}
	require.NoError(t, l.AbortTxn(ctx))
	require.NoError(t, l.BeginTxn())
	require.NoError(t, l.SendMessages(ctx, []*sarama.ProducerMessage{keyed("committed-1"), keyed("committed-2")}))
	require.NoError(t, l.CommitTxn(ctx))

	other, err := p.Lease(ctx)
	require.NoError(t, err)
	assert.Equal(t, "orders-tx-1", other.pr.txnID, "a second lease gets its own transactional id")
	other.Release()
	l.Release()
	require.NoError(t, p.Close(ctx))

	committed := readUntil(t, c, true, "committed-1", "committed-2")
	assert.NotContains(t, committed, "aborted-1")
	assert.NotContains(t, committed, "aborted-2")
	assert.Equal(t, []string{"committed-1", "committed-2"}, committed)
	all := readUntil(t, c, false, "committed-2")
	assert.Subset(t, all, []string{"aborted-1", "aborted-2"}, "the aborted messages were written, then aborted")
}

func TestUnreleasedLeaseIsAbortedOnClose(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TransactionalID = "orders-tx"
	ctx := context.Background()

	p, err := New(cfg)
	require.NoError(t, err)
	l, err := p.Lease(ctx)
	require.NoError(t, err)
	require.NoError(t, l.BeginTxn())
	_, _, err = l.SendMessage(ctx, keyed("never committed"))
	require.NoError(t, err)
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(closeCtx))
	for _, pi := range c.PartitionInfos(topic) {
		assert.Equal(t, pi.HighWatermark, pi.LastStableOffset, "partition %d: no transaction left open", pi.Partition)
	}
	assert.ErrorIs(t, l.CommitTxn(ctx), ErrPoolClosed)
	l.Release()

	q := newTestPool(t, cfg)
	l2, err := q.Lease(ctx)
	require.NoError(t, err)
	require.NoError(t, l2.BeginTxn())
	_, _, err = l2.SendMessage(ctx, keyed("later"))
	require.NoError(t, err)
	require.NoError(t, l2.CommitTxn(ctx))
	l2.Release()

	committed := readUntil(t, c, true, "later")
	assert.Equal(t, []string{"later"}, committed, "the unreleased lease's transaction was aborted")
}

func TestLeaseWithoutTransactionalIDHasNoTransactions(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	l, err := p.Lease(context.Background())
	require.NoError(t, err)
	defer l.Release()
	assert.ErrorIs(t, l.BeginTxn(), ErrNoTransaction)
	_, _, err = l.SendMessage(context.Background(), msg("plain"))
	require.NoError(t, err)
}

func TestCloseDuringALeaseProvisioningReturnsByItsDeadline(t *testing.T) {
	checkLeaks(t)
	p, err := closeWhileProvisioningHangs(t, func(p *ProducerPool) error {
		_, err := p.Lease(context.Background())
		return err
	})
	assert.ErrorIs(t, err, ErrPoolClosed)
	assert.Zero(t, p.Stats().Producers)
}

func TestAReleasedLeaseGivesItsSlotToSharedSends(t *testing.T) {
	checkLeaks(t)
	for _, txn := range []string{"", "orders-tx"} {
		t.Run(fmt.Sprintf("TransactionalID=%q", txn), func(t *testing.T) {
			c := startBroker(t, "", topic)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.MaxProducers = 1
			cfg.TransactionalID = txn
			p := newTestPool(t, cfg)
			ctx := context.Background()
			l, err := p.Lease(ctx)
			require.NoError(t, err)
			_, _, err = p.SendMessage(ctx, msg("while leased"))
			require.ErrorIs(t, err, ErrNoFreeProducer, "the one producer is held")
			l.Release()
			_, _, err = p.SendMessage(ctx, msg("after release"))
			require.NoError(t, err, "a released lease producer does not keep the cap from shared sends")
			assert.Equal(t, 1, p.Stats().Producers)
		})
	}
}

// A lease's send refused before anything was written (no transaction open,
// the lease released) must not be classed, counted or reported as "outcome
// unknown": ErrLeaseReleased and ErrNoTransaction say nothing was sent,
// ErrorClass puts them in the classes that say so, and Stats.FailedUnknown
// counts only messages that may have been written.
func TestALeaseSendRefusedBeforeWritingIsNeverOutcomeUnknown(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TransactionalID = "lease-refused-tx"
	p := newTestPool(t, cfg)
	ctx := context.Background()

	l, err := p.Lease(ctx)
	require.NoError(t, err)
	_, _, err = l.SendMessage(ctx, msg("no transaction open"))
	require.ErrorIs(t, err, ErrNoTransaction)
	assert.NotEqual(t, ClassUnknown, ErrorClass(err), "nothing was written, yet the class says it may have been: %v", err)
	err = l.SendMessages(ctx, []*sarama.ProducerMessage{msg("no transaction open either")})
	require.ErrorIs(t, err, ErrNoTransaction)
	assert.NotEqual(t, ClassUnknown, ErrorClass(err), "nothing was written, yet the class says it may have been: %v", err)

	l.Release()
	_, _, err = l.SendMessage(ctx, msg("after release"))
	require.ErrorIs(t, err, ErrLeaseReleased)
	assert.NotEqual(t, ClassUnknown, ErrorClass(err), "nothing was sent, yet the class says it may have been: %v", err)

	assert.Zero(t, p.Stats().FailedUnknown, "no message was sent, so none may have been written")
	assert.Empty(t, readBack(t, c, topic))
}
