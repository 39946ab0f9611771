package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const topic = "events"

func msg(v string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}
}

func TestSendMessageDeliversAndReportsPartitionAndOffset(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))

	m := msg("hello")
	m.Metadata = "caller's"
	partition, offset, err := p.SendMessage(context.Background(), m)
	require.NoError(t, err)
	assert.Equal(t, partition, m.Partition, "the message's Partition is set")
	assert.Equal(t, offset, m.Offset, "the message's Offset is set")
	assert.Equal(t, "caller's", m.Metadata, "Metadata belongs to the caller")
	require.NoError(t, p.Close(context.Background()))

	got := readBack(t, c, topic)
	require.Len(t, got, 1)
	assert.Equal(t, storedRecord{Value: "hello", Partition: partition, Offset: offset}, got[0])
}

func TestNewDoesNotDial(t *testing.T) {
	checkLeaks(t)
	h := startHungListener(t)
	p := newTestPool(t, testConfig(h.addr()))
	s := p.Stats()
	assert.Zero(t, s.Producers)
	assert.Zero(t, s.ProvisionAttempts, "New must not start provisioning")

	// The listener accepts in arrival order: if New had connected, that
	// connection would be accepted before this probe's.
	probe, err := net.Dial("tcp", h.addr())
	require.NoError(t, err)
	defer probe.Close()
	first := <-h.accepted
	assert.Equal(t, probe.LocalAddr().String(), first.String(), "New connected to the broker")
}

func TestSendWithNothingListeningFailsFastWithErrUnavailable(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, testConfig(freeAddr(t)))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := p.SendMessage(ctx, msg("first"))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, sarama.ErrOutOfBrokers, "the cause is wrapped")
	assert.NoError(t, ctx.Err(), "failed before its deadline")

	// The pool is backing off now: the next send fails without an attempt.
	attempts := p.Stats().ProvisionAttempts
	_, _, err = p.SendMessage(ctx, msg("second"))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, sarama.ErrOutOfBrokers)
	assert.NoError(t, ctx.Err())
	assert.Equal(t, attempts, p.Stats().ProvisionAttempts, "no dial during backoff")

	s := p.Stats()
	assert.EqualValues(t, 2, s.FailedUnavailable)
	assert.ErrorIs(t, s.LastProvisionError, sarama.ErrOutOfBrokers)
}

func TestSendToHungBrokerReturnsByItsDeadline(t *testing.T) {
	checkLeaks(t)
	h := startHungListener(t)
	cfg := testConfig(h.addr())
	cfg.ProvisionTimeout = time.Minute // only the caller's deadline can end the wait
	p := newTestPool(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := p.SendMessage(ctx, msg("x"))
	require.ErrorIs(t, err, ErrUnavailable, "the message never reached a producer")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	elapsed := time.Since(start)
	t.Logf("returned %v after the send, deadline 200ms", elapsed)
	assert.Less(t, elapsed, cfg.ProvisionTimeout/2, "returned at the caller's deadline, not the provisioning's")
}

func TestCloseWithHungProvisioningReturnsByItsDeadline(t *testing.T) {
	checkLeaks(t)
	p, err := closeWhileProvisioningHangs(t, func(p *ProducerPool) error {
		_, _, err := p.SendMessage(context.Background(), msg("x"))
		return err
	})
	assert.ErrorIs(t, err, ErrPoolClosed)
	assert.EqualValues(t, 1, p.Stats().ProvisionFailures)
}

// closeWhileProvisioningHangs runs call on a pool whose broker accepts
// connections and never answers, closes the pool once provisioning is
// connected, checks that Close returned before its deadline, and returns
// call's error.
func closeWhileProvisioningHangs(t *testing.T, call func(*ProducerPool) error) (*ProducerPool, error) {
	t.Helper()
	h := startHungListener(t)
	cfg := testConfig(h.addr())
	cfg.ProvisionTimeout = time.Minute
	p, err := New(cfg)
	require.NoError(t, err)

	callErr := make(chan error, 1)
	go func() { callErr <- call(p) }()
	<-h.accepted // provisioning is connected and waiting for an answer

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	assert.NoError(t, ctx.Err(), "Close returned before its deadline")
	return p, <-callErr
}

func TestPoolRecoversWhenBrokerStartsAfterOutage(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	p := newTestPool(t, testConfig(addr))

	_, _, err := p.SendMessage(context.Background(), msg("during outage"))
	require.ErrorIs(t, err, ErrUnavailable)

	c := startBroker(t, addr, topic)
	up := time.Now()
	recovered := sendUntilOK(t, p, msg("after outage"), 10*time.Second)
	t.Logf("recovered %v after the broker started", recovered.Sub(up))

	require.NoError(t, p.Close(context.Background()))
	got := countValues(readBack(t, c, topic))
	assert.Equal(t, map[string]int{"after outage": 1}, got, "the outage send is never delivered")
}

// sendUntilOK sends m until it succeeds, failing the test after limit. Every
// failure must be ErrUnavailable (never sent, so resending cannot duplicate).
func sendUntilOK(t *testing.T, p *ProducerPool, m *sarama.ProducerMessage, limit time.Duration) time.Time {
	t.Helper()
	retryUntil(t, limit, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := p.SendMessage(ctx, m)
		if err != nil {
			require.ErrorIs(t, err, ErrUnavailable)
		}
		return err
	})
	return time.Now()
}

// retryUntil calls f every few milliseconds until it returns nil, failing
// the test if that takes longer than limit. The pause only paces the calls.
func retryUntil(t *testing.T, limit time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		require.True(t, time.Now().Before(deadline), "not within %v: %v", limit, err)
		<-tick.C
	}
}

func TestConcurrentSendersNeverMakeMoreThanMaxProducers(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 3
	cfg.ProducerBusyAt = 1 // every concurrent send asks for another producer
	p := newTestPool(t, cfg)

	// Produce requests are held until the cap is reached, so the load that
	// asks for more producers lasts until they exist, however fast or slow
	// the machine. The hold is bounded: a pool that stops short fails below.
	full := func() bool { return p.Stats().Producers >= cfg.MaxProducers }
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !full() {
			c.SleepControl(func() {
				deadline := time.Now().Add(10 * time.Second)
				for !full() && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond) // polls the pool's state, bounded
				}
			})
		}
		return nil, nil, false
	})

	const senders, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				_, _, err := p.SendMessage(context.Background(), msg(value(g*each+i)))
				errs <- err
			}
		})
	}
	// While the senders wait on held requests, further sends see every
	// producer busy and ask for another one; each gives up after 10ms.
	probes := 0
	deadline := time.Now().Add(10 * time.Second)
	for !full() && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, _, err := p.SendMessage(ctx, msg("probe"))
		cancel()
		if errors.Is(err, ErrUnavailable) {
			continue // never handed off: not stored
		}
		require.True(t, err == nil || errors.Is(err, ErrDeliveryUnknown), "probe: %v", err)
		probes++ // handed off: acknowledged now or flushed by Close
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	s := p.Stats()
	made := s.ProvisionAttempts - s.ProvisionFailures
	assert.LessOrEqual(t, made, int64(cfg.MaxProducers), "producers ever made")
	assert.Equal(t, cfg.MaxProducers, s.Producers, "a busy pool grows to its cap")
	require.NoError(t, p.Close(context.Background()))
	assert.EqualValues(t, senders*each+probes, p.Stats().Sent)
}

func TestLightLoadStaysOnOneProducer(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	for i := range 50 {
		_, _, err := p.SendMessage(context.Background(), msg(value(i)))
		require.NoError(t, err)
	}
	s := p.Stats()
	assert.Equal(t, 1, s.Producers)
	assert.EqualValues(t, 1, s.ProvisionAttempts)
	assert.Zero(t, s.InFlight)
}

func TestEveryAcknowledgedMessageIsStoredExactlyOnce(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.ProducerBusyAt = 4
	p := newTestPool(t, cfg)

	const senders, each = 32, 50
	type ack struct {
		partition int32
		offset    int64
	}
	acks := make([]ack, senders*each)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				n := g*each + i
				part, off, err := p.SendMessage(context.Background(), msg(value(n)))
				if !assert.NoError(t, err) {
					return
				}
				acks[n] = ack{part, off}
			}
		})
	}
	wg.Wait()
	require.NoError(t, p.Close(context.Background()))

	got := readBack(t, c, topic)
	require.Len(t, got, senders*each)
	byValue := make(map[string]storedRecord, len(got))
	for _, r := range got {
		_, dup := byValue[r.Value]
		require.False(t, dup, "%s stored twice", r.Value)
		byValue[r.Value] = r
	}
	for n, a := range acks {
		r, ok := byValue[value(n)]
		require.True(t, ok, "%s acknowledged but not stored", value(n))
		assert.Equal(t, a.partition, r.Partition)
		assert.Equal(t, a.offset, r.Offset)
	}
}

func TestMessagesFailedWithErrUnavailableAreNeverStored(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	p := newTestPool(t, testConfig(addr))
	for i := range 20 {
		_, _, err := p.SendMessage(context.Background(), msg(fmt.Sprintf("unavailable-%d", i)))
		require.ErrorIs(t, err, ErrUnavailable)
	}
	err := p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("batch-a"), msg("batch-b")})
	require.ErrorIs(t, err, ErrUnavailable)

	c := startBroker(t, addr, topic)
	sendUntilOK(t, p, msg("ok"), 10*time.Second)
	require.NoError(t, p.Close(context.Background()))
	assert.Equal(t, map[string]int{"ok": 1}, countValues(readBack(t, c, topic)))
}

func TestSendMessagesDeliversAllInOrder(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	var msgs []*sarama.ProducerMessage
	for i := range 100 {
		m := msg(value(i))
		m.Key = sarama.StringEncoder("same key") // one partition, so order is visible
		msgs = append(msgs, m)
	}
	require.NoError(t, p.SendMessages(context.Background(), msgs))
	for i := 1; i < len(msgs); i++ {
		assert.Equal(t, msgs[0].Partition, msgs[i].Partition)
		assert.Equal(t, msgs[i-1].Offset+1, msgs[i].Offset, "offsets follow the slice order")
	}
	require.NoError(t, p.Close(context.Background()))
	assert.Len(t, readBack(t, c, topic), 100)
}

func TestCloseWhileManySendsAreInFlight(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.ProducerBusyAt = 8
	p, err := New(cfg)
	require.NoError(t, err)

	const senders = 32
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    []string
		refused  int
		someSent = make(chan struct{})
		once     sync.Once
	)
	for g := range senders {
		wg.Go(func() {
			for i := 0; ; i++ {
				v := fmt.Sprintf("g%02d-%06d", g, i)
				_, _, err := p.SendMessage(context.Background(), msg(v))
				mu.Lock()
				switch {
				case err == nil:
					acked = append(acked, v)
					if len(acked) == 500 {
						once.Do(func() { close(someSent) })
					}
				case errors.Is(err, ErrPoolClosed):
					refused++
				default:
					t.Errorf("send racing Close: want nil or ErrPoolClosed, got %v", err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	<-someSent
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Close(ctx))
	wg.Wait()
	assert.Equal(t, senders, refused, "every sender ends with ErrPoolClosed")

	_, _, err = p.SendMessage(context.Background(), msg("after close"))
	assert.ErrorIs(t, err, ErrPoolClosed)
	assert.ErrorIs(t, p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("after close")}), ErrPoolClosed)
	assert.NoError(t, p.Close(context.Background()), "Close twice is safe")
	assert.Zero(t, p.Stats().Producers)

	stored := countValues(readBack(t, c, topic))
	for _, v := range acked {
		assert.Equal(t, 1, stored[v], "acknowledged %s stored once", v)
	}
	assert.Len(t, stored, len(acked), "nothing but acknowledged messages stored")
}

func TestBadInputGetsErrorsNotPanics(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name  string
		give  Config
		field string
	}{
		{"no brokers", Config{}, "Brokers"},
		{"empty broker", Config{Brokers: []string{""}}, "Brokers"},
		{"broker without port", Config{Brokers: []string{"localhost"}}, "Brokers"},
		{"negative cap", Config{Brokers: []string{"localhost:9092"}, MaxProducers: -1}, "MaxProducers"},
		{"bad version", Config{Brokers: []string{"localhost:9092"}, Version: "x"}, "Version"},
		{"bad acks", Config{Brokers: []string{"localhost:9092"}, RequiredAcks: "most"}, "RequiredAcks"},
		{"negative timeout", Config{Brokers: []string{"localhost:9092"}, ProvisionTimeout: -1}, "ProvisionTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.give)
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Nil(t, p)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, err.Error(), tt.field)
		})
	}

	h := startHungListener(t) // any dial would show as a connection
	cfg := testConfig(h.addr())
	cfg.MaxMessageBytes = 1000
	p := newTestPool(t, cfg)
	big := msg(string(make([]byte, 2000)))
	msgs := []struct {
		name string
		give *sarama.ProducerMessage
	}{
		{"nil message", nil},
		{"no topic", &sarama.ProducerMessage{Value: sarama.StringEncoder("x")}},
		{"too large", big},
	}
	for _, tt := range msgs {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := p.SendMessage(context.Background(), tt.give)
			require.ErrorIs(t, err, ErrInvalidMessage)
			err = p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("ok"), tt.give})
			require.ErrorIs(t, err, ErrInvalidMessage)
			var me *MessageError
			require.ErrorAs(t, err, &me)
			assert.Equal(t, 1, me.Index)
		})
	}
	assert.Zero(t, p.Stats().ProvisionAttempts, "invalid input never dials")
	require.NoError(t, p.SendMessages(context.Background(), nil), "an empty batch is a no-op")
}

func TestCloseWithABrokerThatStoppedAnsweringReturnsByItsDeadline(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p, err := New(testConfig(c.ListenAddrs()...))
	require.NoError(t, err)
	_, _, err = p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)

	// From now on the broker takes produce requests and never answers.
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	c.ControlKey(0, func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		<-release
		return nil, nil, false
	})
	t.Cleanup(func() { close(release) }) // runs before the broker's Close

	sendCtx, cancelSend := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelSend()
	_, _, err = p.SendMessage(sendCtx, msg("held"))
	require.ErrorIs(t, err, ErrDeliveryUnknown, "handed off, never acknowledged")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	<-held

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Close(ctx)
	t.Logf("Close returned %v after its context's deadline", time.Since(start)-300*time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded, "Close reports it abandoned the held message")
	assert.Zero(t, p.Stats().InFlight, "the abandoned message was failed, not left in flight")
}

func TestPingReportsWhetherABrokerAnswers(t *testing.T) {
	checkLeaks(t)
	addr := freeAddr(t)
	p := newTestPool(t, testConfig(addr))

	require.ErrorIs(t, p.Ping(context.Background()), ErrUnavailable, "nothing listening")

	c := startBroker(t, addr, topic)
	retryUntil(t, 10*time.Second, func() error { return p.Ping(context.Background()) })
	assert.Equal(t, 1, p.Stats().Producers, "the probe's producer is kept")
	require.NoError(t, p.Ping(context.Background()), "with a producer open")

	c.Close()
	assert.ErrorIs(t, p.Ping(context.Background()), ErrUnavailable, "the open producer's broker is gone")
	require.NoError(t, p.Close(context.Background()))
	assert.ErrorIs(t, p.Ping(context.Background()), ErrPoolClosed)
}

func TestPingToHungBrokerReturnsByItsDeadline(t *testing.T) {
	checkLeaks(t)
	h := startHungListener(t)
	cfg := testConfig(h.addr())
	cfg.ProvisionTimeout = time.Minute
	p := newTestPool(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := p.Ping(ctx)
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
