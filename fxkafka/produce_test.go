package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// promises records every promise call of a Produce run.
type promises struct {
	calls []atomic.Int32
	mu    sync.Mutex
	errs  map[int]error
	bad   atomic.Int32 // a promise called with a message other than its own
}

func newPromises(n int) *promises {
	return &promises{calls: make([]atomic.Int32, n), errs: make(map[int]error)}
}

func (ps *promises) for_(i int, m *sarama.ProducerMessage) func(*sarama.ProducerMessage, error) {
	return func(got *sarama.ProducerMessage, err error) {
		if got != m {
			ps.bad.Add(1)
		}
		if err != nil {
			ps.mu.Lock()
			ps.errs[i] = err
			ps.mu.Unlock()
		}
		ps.calls[i].Add(1) // last: a waiter that sees it sees the error too
	}
}

// check asserts every promise ran exactly once.
func (ps *promises) check(t *testing.T) {
	t.Helper()
	for i := range ps.calls {
		if n := ps.calls[i].Load(); n != 1 {
			t.Fatalf("promise %d called %d times", i, n)
		}
	}
	assert.Zero(t, ps.bad.Load(), "promises called with another message")
}

// keyedValue is message i of a keyed stream: key k<i%keys>, value "<key>/<i>".
func keyedValue(i, keys int) (key, val string) {
	key = fmt.Sprintf("k%03d", i%keys)
	return key, fmt.Sprintf("%s/%07d", key, i)
}

// checkOrder asserts that, per key (hence per partition), the stored values
// come in the order produced, each at most once.
func checkOrder(t *testing.T, recs []storedRecord) {
	t.Helper()
	last := map[string]int{}
	seen := map[string]bool{}
	for _, r := range recs {
		require.False(t, seen[r.Value], "%s stored twice", r.Value)
		seen[r.Value] = true
		key, n, ok := strings.Cut(r.Value, "/")
		require.True(t, ok, r.Value)
		i, err := strconv.Atoi(n)
		require.NoError(t, err)
		if prev, ok := last[key]; ok {
			require.Greater(t, i, prev, "key %s: %d stored after %d", key, i, prev)
		}
		last[key] = i
	}
}

func TestOneGoroutineProducesInOrderAndEveryPromiseRunsOnce(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	const n, keys = 100_000, 64
	ps := newPromises(n)
	ctx := context.Background()
	for i := range n {
		k, v := keyedValue(i, keys)
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}
		p.Produce(ctx, m, ps.for_(i, m))
	}
	require.NoError(t, p.Flush(ctx))
	ps.check(t)
	assert.Empty(t, ps.errs)
	recs := readBack(t, c, topic)
	require.Len(t, recs, n, "every message stored once")
	checkOrder(t, recs)
	s := p.Stats()
	assert.EqualValues(t, n, s.Sent)
	assert.Zero(t, s.Buffered)
	assert.Zero(t, s.InFlight)
}

func TestProduceKeepsOrderWithIdempotenceUnderFaults(t *testing.T) {
	checkLeaks(t)
	for _, f := range faults[:2] { // leadership moves; retriable errors, some stored before the error
		t.Run(f.name, func(t *testing.T) {
			env := newChaosEnv(t, f.brokers)
			cfg := testConfig(env.c().ListenAddrs()...)
			cfg.Idempotent = true
			cfg.ProvisionBackoffMax = 200 * time.Millisecond
			p := newTestPool(t, cfg)
			// The producer exists and knows the topic before the fault.
			_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
			require.NoError(t, err)
			end := f.start(t, env)
			const n, keys = 20_000, 16
			ps := newPromises(n)
			for i := range n {
				k, v := keyedValue(i, keys)
				m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}
				p.Produce(context.Background(), m, ps.for_(i, m))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, p.Flush(ctx))
			end()
			ps.check(t)
			recs := checkKeyedOutcomes(t, env.c(), ps, n, keys)
			t.Logf("%s: %d produced, %d failed, %d stored", f.name, n, len(ps.errs), len(recs))
		})
	}
}

// checkKeyedOutcomes reads back what c stored (the warm-up message aside)
// for the n keyed values of keyedValue(i, keys) produced with ps's
// promises, and checks it against their outcomes: each key's records in
// order; an acknowledged value stored once, one failed as not sent never;
// any other failure a DeliveryError saying it may have been written.
func checkKeyedOutcomes(t *testing.T, c *kfake.Cluster, ps *promises, n, keys int) []storedRecord {
	t.Helper()
	var recs []storedRecord
	for _, r := range readBack(t, c, topic) {
		if r.Value != "warm-up" {
			recs = append(recs, r)
		}
	}
	checkOrder(t, recs)
	stored := countValues(recs)
	for i := range n {
		_, v := keyedValue(i, keys)
		err := ps.errs[i]
		switch {
		case err == nil:
			require.Equal(t, 1, stored[v], "%s acknowledged", v)
		case errors.Is(err, ErrUnavailable), errors.Is(err, ErrPoolClosed):
			require.Zero(t, stored[v], "%s failed as not sent: %v", v, err)
		default:
			require.ErrorIs(t, err, ErrDeliveryUnknown)
			var de *DeliveryError
			require.True(t, errors.As(err, &de), "%v", err)
			require.True(t, strings.Contains(err.Error(), "may have been written"), "%v", err)
		}
	}
	return recs
}

// holdProduce makes c hold every produce request until the returned
// function is called (at cleanup at the latest); held receives one value
// per request held.
func holdProduce(t *testing.T, c *kfake.Cluster) (held <-chan struct{}, release func()) {
	ch := make(chan struct{}, 1024)
	stop := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(stop) }) }
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-stop:
			return nil, nil, false
		default:
		}
		select {
		case ch <- struct{}{}:
		default:
		}
		<-stop
		return nil, nil, false
	})
	t.Cleanup(release) // runs before the broker's Close
	return ch, release
}

func TestProduceBlocksOnAFullBufferAndHonoursItsContext(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBufferedMessages = 8
	p := newTestPool(t, cfg)
	_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, release := holdProduce(t, c)

	ps := newPromises(cfg.MaxBufferedMessages + 1)
	for i := range cfg.MaxBufferedMessages {
		m := msg(value(i))
		p.Produce(context.Background(), m, ps.for_(i, m))
	}
	<-held
	assert.Equal(t, cfg.MaxBufferedMessages, p.Stats().Buffered, "the buffer is full")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	last := msg("one too many")
	p.Produce(ctx, last, ps.for_(cfg.MaxBufferedMessages, last))
	require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "Produce returned only when its context ended")

	release()
	require.NoError(t, p.Flush(context.Background()))
	ps.check(t)
	require.Len(t, ps.errs, 1)
	err = ps.errs[cfg.MaxBufferedMessages]
	require.ErrorIs(t, err, ErrUnavailable, "not sent: retrying is safe")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, p.Close(context.Background()))
	assert.NotContains(t, countValues(readBack(t, c, topic)), "one too many")
}

// heldPool returns a pool buffering at most maxBuffered messages, warmed
// up on a broker that then holds every produce request (holdProduce's
// held). Its caller closes it.
func heldPool(t *testing.T, maxBuffered int) (p *ProducerPool, held <-chan struct{}) {
	t.Helper()
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBufferedMessages = maxBuffered
	p, err := New(cfg)
	require.NoError(t, err)
	_, _, err = p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, _ = holdProduce(t, c)
	return p, held
}

// requireGivenUp checks that every outcome ps holds is a Close giving up:
// ErrPoolClosed (never sent) or ErrDeliveryUnknown (sent, unanswered).
func requireGivenUp(t *testing.T, ps *promises) {
	t.Helper()
	for i, err := range ps.errs {
		require.True(t, errors.Is(err, ErrPoolClosed) || errors.Is(err, ErrDeliveryUnknown), "message %d: %v", i, err)
	}
}

func TestCloseWithAFullBufferCallsEveryPromise(t *testing.T) {
	checkLeaks(t)
	const buffered = 500
	p, held := heldPool(t, buffered)

	ps := newPromises(buffered)
	for i := range buffered {
		m := msg(value(i))
		p.Produce(context.Background(), m, ps.for_(i, m))
	}
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Close(ctx), context.DeadlineExceeded, "Close gave up on held messages")
	ps.check(t) // before Close returned
	requireGivenUp(t, ps)
	assert.Len(t, ps.errs, buffered, "nothing was acknowledged")

	// A Produce after Close still gets its promise, on a pool goroutine.
	done := make(chan error, 1)
	p.Produce(context.Background(), msg("late"), func(_ *sarama.ProducerMessage, err error) { done <- err })
	require.ErrorIs(t, <-done, ErrPoolClosed)
}

func TestProduceDuringAnOutageFailsFastAndNothingIsSentLater(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	cfg := testConfig(addr)
	cfg.ProvisionBackoffMax = 50 * time.Millisecond
	p := newTestPool(t, cfg)
	errs := make(chan error, 10)
	for i := range 10 {
		p.Produce(context.Background(), msg(value(i)), func(_ *sarama.ProducerMessage, err error) { errs <- err })
	}
	for range 10 {
		require.ErrorIs(t, <-errs, ErrUnavailable)
	}
	c := startBroker(t, addr, topic)
	sendUntilOK(t, p, msg("after"), 5*time.Second)
	require.NoError(t, p.Close(context.Background()))
	for _, r := range readBack(t, c, topic) {
		assert.Equal(t, "after", r.Value, "a message failed as unavailable was never sent")
	}
}

func TestAPanickingPromiseDoesNotStopThePool(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	done := make(chan error, 1)
	p.Produce(context.Background(), msg("first"), func(*sarama.ProducerMessage, error) { panic("a promise's bug") })
	p.Produce(context.Background(), msg("second"), func(_ *sarama.ProducerMessage, err error) { done <- err })
	require.NoError(t, <-done)
	require.NoError(t, p.Flush(context.Background()))
}

func TestFlushWaitsOnlyForWhatCameBefore(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	var acked atomic.Int32
	for i := range 100 {
		p.Produce(context.Background(), msg(value(i)), func(_ *sarama.ProducerMessage, err error) {
			if err == nil {
				acked.Add(1)
			}
		})
	}
	require.NoError(t, p.Flush(context.Background()))
	assert.EqualValues(t, 100, acked.Load(), "every earlier promise ran before Flush returned")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, p.Flush(ctx), "nothing left to wait for")
}

func TestProduceNeverGrowsThePool(t *testing.T) {
	checkLeaks(t)
	c := startFarBroker(t, 5*time.Millisecond)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	for i := range 20_000 {
		k, v := keyedValue(i, 64)
		p.Produce(context.Background(), &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}, nil)
	}
	require.NoError(t, p.Flush(context.Background()))
	s := p.Stats()
	assert.Equal(t, 1, s.Producers, "a stream stays on one producer: others would carry nothing")
	assert.EqualValues(t, 1, s.ProvisionAttempts)
}

func TestCloseReturnsByItsContextWhileAPromiseDoesNot(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p, err := New(testConfig(c.ListenAddrs()...))
	require.NoError(t, err)
	running, unblock := make(chan struct{}), make(chan struct{})
	p.Produce(context.Background(), msg("blocks"), func(*sarama.ProducerMessage, error) {
		close(running)
		<-unblock
	})
	later := make(chan error, 1)
	p.Produce(context.Background(), msg("after it"), func(_ *sarama.ProducerMessage, err error) { later <- err })
	<-running
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = p.Close(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "a promise is still running")
	close(unblock)
	require.NoError(t, <-later, "the promises after the slow one still run, once it returns")
}

func TestAMessageLargerThanTheBufferIsNotOvertakenBySmallOnes(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBufferedBytes = 2000
	p := newTestPool(t, cfg)
	_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, release := holdProduce(t, c)

	done := make(chan error, 3)
	promise := func(_ *sarama.ProducerMessage, err error) { done <- err }
	p.Produce(context.Background(), msg("small-first"), promise) // held at the broker
	<-held
	big := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(make([]byte, 5000))}
	go p.Produce(context.Background(), big, promise) // waits for an empty buffer
	waitFor(t, 5*time.Second, "the big message to wait", func() bool { return p.buf.waiters.Load() == 1 })

	// A small message that fits waits behind it, or the buffer might never
	// empty for the big one.
	go p.Produce(context.Background(), msg("small-after"), promise)
	waitFor(t, 5*time.Second, "the small message to wait behind the big one", func() bool { return p.buf.waiters.Load() == 2 })
	assert.Equal(t, 1, p.Stats().Buffered)

	release()
	for range 3 {
		require.NoError(t, <-done)
	}
	require.NoError(t, p.Flush(context.Background()))
}
