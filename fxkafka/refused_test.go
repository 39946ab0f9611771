package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// countingHook counts send starts and ends by value ("" for none), records
// the class and the message's Timestamp of each end, and (if mutate)
// changes what it is given.
type countingHook struct {
	mutate bool
	mu     sync.Mutex
	starts map[string]int
	ends   map[string]int
	class  map[string]string
	stamps map[string]time.Time
}

func newCountingHook(mutate bool) *countingHook {
	return &countingHook{mutate: mutate, starts: map[string]int{}, ends: map[string]int{}, class: map[string]string{}, stamps: map[string]time.Time{}}
}

func messageValue(m *sarama.ProducerMessage) string {
	if m == nil || m.Value == nil {
		return ""
	}
	b, _ := m.Value.Encode()
	return string(b)
}

func (h *countingHook) OnSendStart(ctx context.Context, m *sarama.ProducerMessage) context.Context {
	v := messageValue(m)
	h.mu.Lock()
	h.starts[v]++
	h.mu.Unlock()
	if h.mutate {
		m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte("trace"), Value: []byte("x")})
		if len(m.Headers) > 1 {
			m.Headers[0] = sarama.RecordHeader{Key: []byte("changed"), Value: []byte("changed")}
		}
	}
	return ctx
}

func (h *countingHook) OnSendEnd(_ context.Context, m *sarama.ProducerMessage, info SendInfo) {
	v := messageValue(m)
	h.mu.Lock()
	h.ends[v]++
	h.class[v] = info.Class
	h.stamps[v] = m.Timestamp
	h.mu.Unlock()
}

func (h *countingHook) check(t *testing.T, class string, values ...string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range values {
		assert.Equal(t, 1, h.starts[v], "starts of %q", v)
		assert.Equal(t, 1, h.ends[v], "ends of %q", v)
		if class != "" {
			assert.Equal(t, class, h.class[v], "class of %q", v)
		}
	}
}

func (h *countingHook) totals() (starts, ends int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.starts {
		starts += n
	}
	for _, n := range h.ends {
		ends += n
	}
	return starts, ends
}

func pm(topic, v string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}
}

func TestHooksSeeEveryRefusedMessageOnceOnEveryPath(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	h := newCountingHook(true)
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithHook(h))
	ctx := context.Background()
	badTS := func(v string) *sarama.ProducerMessage {
		m := pm(topic, v)
		m.Timestamp = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
		return m
	}
	withHdr := func(m *sarama.ProducerMessage) *sarama.ProducerMessage {
		m.Headers = []sarama.RecordHeader{{Key: []byte("k"), Value: []byte("v")}}
		return m
	}

	// SendMessage: nil, no topic, too-long topic, bad timestamp.
	_, _, err := p.SendMessage(ctx, nil)
	require.ErrorIs(t, err, ErrInvalidMessage)
	_, _, err = p.SendMessage(ctx, pm("", "s-notopic"))
	require.ErrorIs(t, err, ErrInvalidMessage)
	_, _, err = p.SendMessage(ctx, pm(strings.Repeat("t", 250), "s-longtopic"))
	require.ErrorIs(t, err, ErrInvalidMessage)
	refused := withHdr(badTS("s-ts"))
	_, _, err = p.SendMessage(ctx, refused)
	require.ErrorIs(t, err, ErrInvalidMessage)
	h.check(t, ClassInvalid, "", "s-notopic", "s-longtopic", "s-ts")
	assert.Len(t, refused.Headers, 1, "a hook's headers on a refused message reached the caller's")
	assert.Equal(t, "k", string(refused.Headers[0].Key), "a hook's change on a refused message reached the caller's")

	// SendMessages: one invalid by the checks, one to a missing topic.
	err = p.SendMessages(ctx, []*sarama.ProducerMessage{pm(topic, "m1-a"), badTS("m1-b"), pm(topic, "m1-c")})
	require.ErrorIs(t, err, ErrInvalidMessage)
	h.check(t, ClassInvalid, "m1-a", "m1-b", "m1-c")
	caller := []*sarama.ProducerMessage{withHdr(pm(topic, "m2-a")), pm("missing-topic", "m2-b"), pm(topic, "m2-c")}
	err = p.SendMessages(ctx, caller)
	var me *MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, 1, me.Index)
	h.check(t, ClassInvalid, "m2-a", "m2-b", "m2-c")
	assert.Len(t, caller[0].Headers, 1)
	assert.Equal(t, int32(0), caller[0].Partition)
	assert.Equal(t, int64(0), caller[0].Offset)

	// Produce: invalid and missing topic; the promise once each.
	var promised sync.WaitGroup
	var calls atomic.Int32
	promise := func(_ *sarama.ProducerMessage, err error) {
		calls.Add(1)
		assert.ErrorIs(t, err, ErrInvalidMessage)
		promised.Done()
	}
	promised.Add(3)
	p.Produce(ctx, badTS("p-ts"), promise)
	p.Produce(ctx, nil, promise)
	p.Produce(ctx, pm("missing-topic", "p-miss"), promise)
	promised.Wait()
	require.NoError(t, p.Flush(ctx))
	assert.EqualValues(t, 3, calls.Load())
	h.mu.Lock()
	assert.Equal(t, 2, h.starts[""], "nil via SendMessage and Produce")
	assert.Equal(t, 2, h.ends[""])
	h.mu.Unlock()
	h.check(t, ClassInvalid, "p-ts", "p-miss")

	// A lease's sends.
	l, err := p.Lease(ctx)
	require.NoError(t, err)
	_, _, err = l.SendMessage(ctx, badTS("l-ts"))
	require.ErrorIs(t, err, ErrInvalidMessage)
	_, _, err = l.SendMessage(ctx, pm("missing-topic", "l-miss"))
	require.ErrorIs(t, err, ErrInvalidMessage)
	err = l.SendMessages(ctx, []*sarama.ProducerMessage{pm(topic, "l2-a"), pm("missing-topic", "l2-b")})
	require.ErrorAs(t, err, &me)
	assert.Equal(t, 1, me.Index)
	err = l.SendMessages(ctx, []*sarama.ProducerMessage{nil, pm(topic, "l3-b")})
	require.ErrorAs(t, err, &me)
	assert.Equal(t, 0, me.Index)
	_, _, err = l.SendMessage(ctx, pm(topic, "l-ok"))
	require.NoError(t, err, "the lease is still usable")
	l.Release()
	h.check(t, ClassInvalid, "l-ts", "l-miss", "l2-a", "l2-b", "l3-b")
	h.check(t, ClassOK, "l-ok")
	assert.Zero(t, p.Stats().InFlight)
	s, e := h.totals()
	assert.Equal(t, s, e, "every start has its end")
}

// Headers before Kafka 0.11 are refused by the checks: the hooks see it.
func TestHooksSeeHeadersRefusedBeforeKafka011(t *testing.T) {
	h := newCountingHook(false)
	cfg := testConfig("127.0.0.1:1")
	cfg.Version = "0.10.2.0"
	p := newTestPool(t, cfg, WithHook(h))
	m := pm(topic, "old-hdr")
	m.Headers = []sarama.RecordHeader{{Key: []byte("k"), Value: []byte("v")}}
	_, _, err := p.SendMessage(context.Background(), m)
	require.ErrorIs(t, err, ErrInvalidMessage)
	h.check(t, ClassInvalid, "old-hdr")
}

// A call refused for one message counts the same in Stats whether the
// pool's checks refused it or its topic is missing.
func TestStatsCountAMissingTopicLikeTheChecks(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	ctx := context.Background()
	_, _, err := p.SendMessage(ctx, msg("warm")) // a producer exists
	require.NoError(t, err)

	before := p.Stats().FailedInvalid
	err = p.SendMessages(ctx, []*sarama.ProducerMessage{msg("a"), pm("", "b"), msg("c")})
	require.ErrorIs(t, err, ErrInvalidMessage)
	byChecks := p.Stats().FailedInvalid - before

	before = p.Stats().FailedInvalid
	err = p.SendMessages(ctx, []*sarama.ProducerMessage{msg("a"), pm("missing-topic", "b"), msg("c")})
	require.ErrorIs(t, err, ErrInvalidMessage)
	byTopic := p.Stats().FailedInvalid - before
	assert.Equal(t, byChecks, byTopic, "FailedInvalid: %d for a call refused by the checks, %d for one refused for a missing topic", byChecks, byTopic)
	assert.Zero(t, p.Stats().InFlight)
}

// The doc: "if one is invalid (by the pool's checks, or its topic does not
// exist), the call returns that message's [*MessageError]" — also for a
// call of one message.
func TestSendMessagesOfOneMessageToAMissingTopicReturnsAMessageError(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	ctx := context.Background()
	errChecks := p.SendMessages(ctx, []*sarama.ProducerMessage{pm("", "x")})
	_, isME := errChecks.(*MessageError)
	require.True(t, isME, "control: checks give a *MessageError: %T", errChecks)

	err := p.SendMessages(ctx, []*sarama.ProducerMessage{pm("missing-topic", "x")})
	require.ErrorIs(t, err, ErrInvalidMessage)
	_, isME = err.(*MessageError)
	var ses SendErrors
	assert.True(t, isME && !errors.As(err, &ses), "a one-message call to a missing topic returns %T (%v), a call of two a *MessageError", err, err)
	assert.Zero(t, p.Stats().InFlight)
}

func TestTransactionalLeaseSendMessagesToAMissingTopic(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TransactionalID = "tx-missing-topic"
	h := newCountingHook(false)
	p := newTestPool(t, cfg, WithHook(h))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := p.Lease(ctx)
	require.NoError(t, err)
	defer l.Release()
	require.NoError(t, l.BeginTxn())
	err = l.SendMessages(ctx, []*sarama.ProducerMessage{msg("tx-a"), pm("missing-topic", "tx-b"), msg("tx-c")})
	var me *MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, 1, me.Index)
	h.check(t, ClassInvalid, "tx-a", "tx-b", "tx-c")
	_, _, err = l.SendMessage(ctx, msg("tx-ok"))
	require.NoError(t, err)
	require.NoError(t, l.CommitTxn(ctx), "nothing of the refused call was sent: the transaction commits")
	l.Release()
	assert.Zero(t, p.Stats().InFlight)
	require.NoError(t, p.Close(ctx))
	// One record and the commit marker: the refused call's two good
	// messages would make it four.
	assert.EqualValues(t, 2, stored(c), "offsets used on the topic")
}

func TestMissingTopicSendsRacingClose(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	h := newCountingHook(false)
	p, err := New(testConfig(c.ListenAddrs()...), WithHook(h))
	require.NoError(t, err)
	ctx := context.Background()
	_, _, err = p.SendMessage(ctx, msg("warm"))
	require.NoError(t, err)
	var wg sync.WaitGroup
	var calls atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				err := p.SendMessages(ctx, []*sarama.ProducerMessage{
					msg(fmt.Sprintf("g%d-%d-a", g, i)), pm("missing-topic", fmt.Sprintf("g%d-%d-b", g, i)),
				})
				calls.Add(1)
				if errors.Is(err, ErrPoolClosed) {
					return
				}
				if i > 10000 {
					t.Errorf("never saw the close: %v", err)
					return
				}
			}
		}()
	}
	waitFor(t, 10*time.Second, "some calls", func() bool { return calls.Load() > 20 })
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(cctx))
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second): // bound on a hang
		t.Fatal("a SendMessages call hangs after Close")
	}
	assert.Zero(t, p.Stats().InFlight)
	s, e := h.totals()
	assert.Equal(t, s, e)
}

// Linger 1h, a message above MaxBufferedBytes: every Produce that waits
// for space ends the linger of what holds it, so each message before the
// last is sent without a Flush.
func TestStarvedBufferEndsTheLingerAroundABigMessage(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Hour
	cfg.MaxBufferedBytes = 2000
	p := newTestPool(t, cfg)
	ctx := context.Background()
	big := func(v string) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(append([]byte(v), make([]byte, 3000)...))}
	}
	seq := []*sarama.ProducerMessage{msg("s0"), big("b1"), msg("s2"), big("b3"), big("b4"), msg("s5")}
	done := make(chan error, len(seq))
	for _, m := range seq {
		mctx, cancel := context.WithTimeout(ctx, 20*time.Second) // bound on a hang
		p.Produce(mctx, m, func(_ *sarama.ProducerMessage, err error) { done <- err })
		cancel()
	}
	for i := range len(seq) - 1 {
		select {
		case err := <-done:
			require.NoError(t, err, "message %d", i)
		case <-time.After(20 * time.Second):
			t.Fatalf("message %d still lingers although a Produce waited for its space", i)
		}
	}
	require.NoError(t, p.Flush(ctx))
	require.NoError(t, <-done)
}

// Messages above MaxBatchBytes travel alone, sync and async, idempotent
// and compressed, each stored once.
func TestBigMessagesTravelAloneIdempotentAndCompressed(t *testing.T) {
	for _, comp := range []string{"none", "zstd", "gzip"} {
		t.Run(comp, func(t *testing.T) {
			checkLeaks(t)
			c, err := kfake.NewCluster(kfake.SeedTopics(2, topic))
			require.NoError(t, err)
			t.Cleanup(c.Close)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.MaxBatchBytes = 1000
			cfg.MaxBufferedBytes = 1500
			cfg.Idempotent = true
			cfg.Compression = comp
			sizes := &batchSizes{}
			p := newTestPool(t, cfg, WithHook(sizes))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			big := func(v string) *sarama.ProducerMessage {
				return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(v), Value: sarama.ByteEncoder(append([]byte(v), make([]byte, 4000)...))}
			}
			var want []string
			var batch []*sarama.ProducerMessage
			for i := range 6 {
				batch = append(batch, big(fmt.Sprintf("sync-big-%d", i)), msg(fmt.Sprintf("sync-small-%d", i)))
			}
			require.NoError(t, p.SendMessages(ctx, batch))
			for _, m := range batch {
				want = append(want, messageValue(m))
			}
			done := make(chan error, 40)
			n := 0
			for i := range 10 {
				for _, m := range []*sarama.ProducerMessage{big(fmt.Sprintf("async-big-%d", i)), msg(fmt.Sprintf("async-small-%d", i))} {
					want = append(want, messageValue(m))
					p.Produce(ctx, m, func(_ *sarama.ProducerMessage, err error) { done <- err })
					n++
				}
			}
			require.NoError(t, p.Flush(ctx))
			for range n {
				require.NoError(t, <-done)
			}
			sizes.mu.Lock()
			for _, v := range want {
				b, ok := sizes.seen[v]
				assert.True(t, ok, "%.20s acknowledged", v)
				if len(v) > 1000 {
					assert.Equal(t, 1, b, "%.20s alone in its batch", v)
				}
			}
			sizes.mu.Unlock()
			require.NoError(t, p.Close(ctx))
			stored := countValues(readBack(t, c, topic))
			for _, v := range want {
				assert.Equal(t, 1, stored[v], "%.20s stored once", v)
			}
		})
	}
}
