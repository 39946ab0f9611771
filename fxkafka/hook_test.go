package fxkafka_test

// These tests use only the public API and the hooks, so that they hold for
// any send path behind it.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

const hookTopic = "events"

// verifyNoLeaks checks, after the test's other cleanups, that it left no
// goroutine behind.
func verifyNoLeaks(t *testing.T) {
	t.Cleanup(func() {
		goleak.VerifyNone(t)
	})
}

type valueKey struct{}

// recorder is a hook that records every call, keyed by the message's value,
// and adds a header to every message it sees start.
type recorder struct {
	mu         sync.Mutex
	starts     map[string]int
	ends       map[string][]fxkafka.SendInfo
	provisions []fxkafka.ProvisionInfo
	retires    []fxkafka.RetireInfo
	changed    chan struct{} // size 1: poked at every OnSendStart and OnSendEnd
}

func newRecorder() *recorder {
	return &recorder{starts: map[string]int{}, ends: map[string][]fxkafka.SendInfo{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitUntil waits for cond, checking it whenever a send starts or ends.
func (r *recorder) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second) // a bound on a hang, not a synchronisation
	for !cond() {
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// endsOf counts the OnSendEnd calls of a class.
func (r *recorder) endsOf(class string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, infos := range r.ends {
		for _, info := range infos {
			if info.Class == class {
				n++
			}
		}
	}
	return n
}

func (r *recorder) OnSendStart(ctx context.Context, msg *sarama.ProducerMessage) context.Context {
	var v string // "" for a message without a value (a refused nil message is seen empty)
	if msg.Value != nil {
		b, _ := msg.Value.Encode()
		v = string(b)
	}
	r.mu.Lock()
	r.starts[v]++
	r.mu.Unlock()
	r.poke()
	msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte("seen-by"), Value: []byte("recorder")})
	return context.WithValue(ctx, valueKey{}, v)
}

func (r *recorder) OnSendEnd(ctx context.Context, _ *sarama.ProducerMessage, info fxkafka.SendInfo) {
	v, _ := ctx.Value(valueKey{}).(string) // the context OnSendStart returned
	r.mu.Lock()
	r.ends[v] = append(r.ends[v], info)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) OnProvision(info fxkafka.ProvisionInfo) {
	r.mu.Lock()
	r.provisions = append(r.provisions, info)
	r.mu.Unlock()
}

func (r *recorder) OnRetire(info fxkafka.RetireInfo) {
	r.mu.Lock()
	r.retires = append(r.retires, info)
	r.mu.Unlock()
}

// end returns the one OnSendEnd call for value, failing if there were more
// or fewer, or if OnSendStart was not called exactly once before it.
func (r *recorder) end(t *testing.T, value string) fxkafka.SendInfo {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Equal(t, 1, r.starts[value], "OnSendStart calls for %q", value)
	require.Len(t, r.ends[value], 1, "OnSendEnd calls for %q", value)
	return r.ends[value][0]
}

func (r *recorder) startCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.starts {
		n += c
	}
	return n
}

// provisioned returns the ids of the producers whose provisioning succeeded.
func (r *recorder) provisioned() map[int]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := map[int]bool{}
	for _, p := range r.provisions {
		if p.Err == nil {
			ids[p.Producer] = true
		}
	}
	return ids
}

func hookMsg(v string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: hookTopic, Value: sarama.StringEncoder(v)}
}

func newHookedPool(t *testing.T, cfg fxkafka.Config, h fxkafka.Hook) *fxkafka.ProducerPool {
	t.Helper()
	p, err := fxkafka.New(cfg, fxkafka.WithHook(h))
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, p.Close(ctx))
	})
	return p
}

func TestHooksSeeEachMessageOnceWithTheOutcomeItsCallerGot(t *testing.T) {
	verifyNoLeaks(t)
	broker := fxkafkatest.NewBroker(t, hookTopic)
	rec := newRecorder()
	pool := newHookedPool(t, broker.Config(), rec)
	ctx := context.Background()

	one := hookMsg("one")
	began := time.Now()
	partition, offset, err := pool.SendMessage(ctx, one)
	took := time.Since(began)
	require.NoError(t, err)
	info := rec.end(t, "one") // OnSendEnd has returned when SendMessage does
	assert.Equal(t, fxkafka.ClassOK, info.Class)
	assert.NoError(t, info.Err)
	assert.Equal(t, partition, info.Partition)
	assert.Equal(t, offset, info.Offset)
	assert.Positive(t, info.Producer, "the producer that carried it")
	assert.Positive(t, info.Duration)
	assert.LessOrEqual(t, info.Duration, took)
	assert.Empty(t, one.Headers, "the hook's header went into the pool's copy, not the caller's message")

	batch := []*sarama.ProducerMessage{hookMsg("two"), hookMsg("three")}
	require.NoError(t, pool.SendMessages(ctx, batch))
	for i, v := range []string{"two", "three"} {
		info := rec.end(t, v)
		assert.Equal(t, fxkafka.ClassOK, info.Class)
		assert.Equal(t, batch[i].Partition, info.Partition)
		assert.Equal(t, batch[i].Offset, info.Offset)
	}

	// Messages refused by validation are seen too, start and end, so
	// that metrics count every send: a nil one as an empty message.
	_, _, err = pool.SendMessage(ctx, nil)
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage)
	_, _, err = pool.SendMessage(ctx, &sarama.ProducerMessage{Value: sarama.StringEncoder("no topic")})
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage)
	err = pool.SendMessages(ctx, []*sarama.ProducerMessage{hookMsg("valid beside"), {Value: sarama.StringEncoder("no topic either")}})
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage)
	for _, v := range []string{"", "no topic", "valid beside", "no topic either"} {
		info := rec.end(t, v)
		assert.Equal(t, fxkafka.ClassInvalid, info.Class, v)
		assert.ErrorIs(t, info.Err, fxkafka.ErrInvalidMessage, v)
		assert.Equal(t, int32(-1), info.Partition, v)
		assert.Zero(t, info.Producer, v)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = pool.SendMessage(cancelled, hookMsg("four"))
	require.ErrorIs(t, err, fxkafka.ErrUnavailable)
	info = rec.end(t, "four")
	assert.Equal(t, fxkafka.ClassUnavailable, info.Class)
	assert.ErrorIs(t, info.Err, fxkafka.ErrUnavailable)
	assert.Equal(t, int32(-1), info.Partition)
	assert.Equal(t, int64(-1), info.Offset)
	assert.Zero(t, info.Producer, "no producer carried it")

	require.NoError(t, pool.Close(ctx))
	_, _, err = pool.SendMessage(ctx, hookMsg("five"))
	require.ErrorIs(t, err, fxkafka.ErrPoolClosed)
	assert.Equal(t, fxkafka.ClassClosed, rec.end(t, "five").Class)

	// Close has returned: every pool goroutine, and so every provisioning
	// and retirement hook, has run.
	require.Len(t, rec.provisions, 1)
	prov := rec.provisions[0]
	assert.NoError(t, prov.Err)
	assert.False(t, prov.Leased)
	assert.Positive(t, prov.Duration)
	assert.Equal(t, prov.Producer, rec.end(t, "one").Producer)
	require.Len(t, rec.retires, 1)
	assert.Equal(t, prov.Producer, rec.retires[0].Producer)
	assert.ErrorIs(t, rec.retires[0].Cause, fxkafka.ErrPoolClosed)

	recs := broker.WaitForRecords(hookTopic, 3, 10*time.Second)
	require.Len(t, recs, 3)
	for _, r := range recs {
		assert.Equal(t, []fxkafkatest.Header{{Key: "seen-by", Value: []byte("recorder")}}, r.Headers,
			"a header added by OnSendStart is sent with %q", r.Value)
	}
}

// holdProduce makes the broker keep its first produce request unanswered
// until the returned function is called.
func holdProduce(c *kfake.Cluster) (release func()) {
	held := make(chan struct{})
	var first atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if first.CompareAndSwap(false, true) {
			c.SleepControl(func() { <-held })
		}
		return nil, nil, false
	})
	return sync.OnceFunc(func() { close(held) })
}

// expiresOn is a context whose deadline passes when event happens: its Err
// is then context.DeadlineExceeded, as a deadline's would be at that moment.
func expiresOn(parent context.Context, event <-chan struct{}) context.Context {
	return eventDeadline{Context: parent, done: event}
}

type eventDeadline struct {
	context.Context
	done <-chan struct{}
}

func (c eventDeadline) Done() <-chan struct{} { return c.done }

func (c eventDeadline) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestHooksSeeAnAbandonedMessageOnceThoughItsAnswerComesLater(t *testing.T) {
	verifyNoLeaks(t)
	for _, tt := range []struct {
		name string
		send func(ctx context.Context, p *fxkafka.ProducerPool) error
	}{
		{"SendMessage", func(ctx context.Context, p *fxkafka.ProducerPool) error {
			_, _, err := p.SendMessage(ctx, hookMsg("late"))
			return err
		}},
		{"SendMessages", func(ctx context.Context, p *fxkafka.ProducerPool) error {
			return p.SendMessages(ctx, []*sarama.ProducerMessage{hookMsg("late")})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			broker := fxkafkatest.NewBroker(t, hookTopic)
			rec := newRecorder()
			pool := newHookedPool(t, broker.Config(), rec)
			held, release := broker.HoldProduce()
			defer release()

			// The caller's deadline passes once its request is at the broker.
			ctx := expiresOn(context.Background(), held)
			err := tt.send(ctx, pool)
			require.ErrorIs(t, err, fxkafka.ErrDeliveryUnknown)
			info := rec.end(t, "late")
			assert.Equal(t, fxkafka.ClassUnknown, info.Class, "the hook saw what the caller got")
			assert.ErrorIs(t, info.Err, context.DeadlineExceeded)

			release()
			require.NoError(t, pool.Close(context.Background())) // waits for the broker's late answer
			rec.end(t, "late")                                   // still exactly one OnSendEnd
			broker.WaitForRecords(hookTopic, 1, 10*time.Second)
		})
	}
}

func TestHooksSeeAFailedProvisioningAndALeasedProducer(t *testing.T) {
	verifyNoLeaks(t)
	ctx := context.Background()

	down := newRecorder()
	downPool := newHookedPool(t, fxkafka.Config{Brokers: []string{"127.0.0.1:1"}, ProvisionTimeout: time.Second}, down)
	_, _, err := downPool.SendMessage(ctx, hookMsg("lost"))
	require.ErrorIs(t, err, fxkafka.ErrUnavailable)
	info := down.end(t, "lost")
	assert.Equal(t, fxkafka.ClassUnavailable, info.Class)
	assert.Zero(t, info.Producer)
	require.NoError(t, downPool.Close(ctx))
	require.Len(t, down.provisions, 1)
	assert.Error(t, down.provisions[0].Err)
	assert.Zero(t, down.provisions[0].Producer, "no producer was made")
	assert.Empty(t, down.retires, "nothing to retire")

	broker := fxkafkatest.NewBroker(t, hookTopic)
	rec := newRecorder()
	pool := newHookedPool(t, broker.Config(), rec)
	lease, err := pool.Lease(ctx)
	require.NoError(t, err)
	_, _, err = lease.SendMessage(ctx, hookMsg("leased"))
	require.NoError(t, err)
	lease.Release()
	require.NoError(t, pool.Close(ctx))
	require.Len(t, rec.provisions, 1)
	assert.True(t, rec.provisions[0].Leased)
	assert.Equal(t, rec.provisions[0].Producer, rec.end(t, "leased").Producer)
	require.Len(t, rec.retires, 1)
	assert.Equal(t, rec.provisions[0].Producer, rec.retires[0].Producer)
	assert.ErrorIs(t, rec.retires[0].Cause, fxkafka.ErrPoolClosed)
}

// TestHooksSeeEveryMessageOnceThroughAnOutageAndClose sends from many
// goroutines to several producers while the broker goes down (producers
// break and are retired; messages on their way to them are routed to
// others) and comes back, then closes the pool under load.
func TestHooksSeeEveryMessageOnceThroughAnOutageAndClose(t *testing.T) {
	verifyNoLeaks(t)
	broker := fxkafkatest.NewBroker(t, hookTopic)
	rec := newRecorder()
	cfg := broker.Config()
	cfg.MaxProducers, cfg.ProducerBusyAt = 4, 1
	pool := newHookedPool(t, cfg, rec)

	const senders, perSender = 16, 60
	var (
		oks, fails atomic.Int64
		results    sync.Map // value -> error
		milestone  = make(chan struct{}, 1)
		wg         sync.WaitGroup
	)
	notify := func() {
		select {
		case milestone <- struct{}{}:
		default:
		}
	}
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				v := fmt.Sprintf("s%02d-%03d", s, i)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				var err error
				if i%3 == 0 {
					err = pool.SendMessages(ctx, []*sarama.ProducerMessage{hookMsg(v)})
					var es fxkafka.SendErrors
					if errors.As(err, &es) {
						err = es[0].Err
					}
				} else {
					_, _, err = pool.SendMessage(ctx, hookMsg(v))
				}
				cancel()
				results.Store(v, err)
				if err == nil {
					oks.Add(1)
				} else {
					fails.Add(1)
				}
				notify()
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(30 * time.Second) // a bound on a hang, not a synchronisation
		for !cond() {
			select {
			case <-milestone:
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("sends before the outage", func() bool { return oks.Load() >= 100 })
	broker.Down()
	failsAtDown := fails.Load()
	waitFor("sends failing in the outage", func() bool { return fails.Load() > failsAtDown })
	broker.Up()
	oksAtUp := oks.Load()
	waitFor("sends after the outage", func() bool { return oks.Load() >= oksAtUp+50 || oks.Load()+fails.Load() == senders*perSender })
	require.NoError(t, pool.Close(context.Background()))
	wg.Wait()

	n := 0
	results.Range(func(k, v any) bool {
		n++
		err, _ := v.(error)
		info := rec.end(t, k.(string))
		assert.Equal(t, fxkafka.ErrorClass(err), info.Class, "the hook saw what the caller of %s got: %v", k, err)
		if err == nil {
			assert.True(t, rec.provisioned()[info.Producer], "%s was carried by producer %d, never reported provisioned", k, info.Producer)
		}
		return true
	})
	assert.Equal(t, senders*perSender, n)
	assert.Equal(t, senders*perSender, rec.startCount())

	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Len(t, rec.provisions, int(pool.Stats().ProvisionAttempts), "one OnProvision per attempt")
	retired := map[int]int{}
	for _, r := range rec.retires {
		retired[r.Producer]++
	}
	provisioned := map[int]int{}
	for _, p := range rec.provisions {
		if p.Err == nil {
			provisioned[p.Producer]++
		}
	}
	assert.Equal(t, provisioned, retired, "after Close, every producer provisioned was retired, each once")
	t.Logf("ok %d, failed %d, producers provisioned %d", oks.Load(), fails.Load(), len(provisioned))
}

// TestHooksSeeEveryMessageOnceWhenCloseCutsHandOffsShort closes the pool
// while the broker holds every produce request and thousands of messages
// are on their way to the producers: hand-offs under way are cut short and
// routed again, to find the pool closed.
func TestHooksSeeEveryMessageOnceWhenCloseCutsHandOffsShort(t *testing.T) {
	verifyNoLeaks(t)
	broker := fxkafkatest.NewBroker(t, hookTopic)
	rec := newRecorder()
	cfg := broker.Config()
	cfg.MaxProducers, cfg.ProducerBusyAt = 2, 1
	pool := newHookedPool(t, cfg, rec)
	_, _, err := pool.SendMessage(context.Background(), hookMsg("first"))
	require.NoError(t, err)
	release := holdProduce(broker.Cluster())
	defer release()

	const senders, perBatch = 16, 200
	var (
		wg      sync.WaitGroup
		results sync.Map // value -> error
	)
	for s := range senders {
		wg.Go(func() {
			batch := make([]*sarama.ProducerMessage, perBatch)
			for i := range batch {
				batch[i] = hookMsg(fmt.Sprintf("s%02d-%03d", s, i))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := pool.SendMessages(ctx, batch)
			failed := map[int]error{}
			var es fxkafka.SendErrors
			if errors.As(err, &es) {
				for _, e := range es {
					failed[e.Index] = e.Err
				}
			}
			for i, m := range batch {
				b, _ := m.Value.Encode()
				results.Store(string(b), failed[i])
			}
		})
	}
	rec.waitUntil(t, "every message started", func() bool { return rec.startCount() == 1+senders*perBatch })

	closed := make(chan error, 1)
	go func() {
		// Within 3s: long enough for the held messages once released, and
		// a bound if no hand-off was under way to be cut.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		closed <- pool.Close(ctx)
		rec.poke() // the wait below looks again: Close may return after the last hook ran
	}()
	rec.waitUntil(t, "a message refused by the closing pool", func() bool {
		return rec.endsOf(fxkafka.ClassClosed) > 0 || len(closed) > 0
	})
	release()
	closeErr := <-closed
	wg.Wait()

	ok := map[string]bool{}
	results.Range(func(k, v any) bool {
		err, _ := v.(error)
		info := rec.end(t, k.(string))
		assert.Equal(t, fxkafka.ErrorClass(err), info.Class, "the hook saw what the caller of %s got: %v", k, err)
		ok[k.(string)] = err == nil
		return true
	})
	require.Len(t, ok, senders*perBatch)
	stored := map[string]int{}
	for _, r := range broker.WaitForRecords(hookTopic, 1, 10*time.Second) {
		stored[string(r.Value)]++
	}
	for v, acked := range ok {
		if acked {
			assert.Equal(t, 1, stored[v], "%s was acknowledged: stored once", v)
		}
		if c := rec.end(t, v).Class; c == fxkafka.ClassClosed || c == fxkafka.ClassUnavailable {
			assert.Zero(t, stored[v], "%s was refused (%s): never stored", v, c)
		}
	}
	t.Logf("acknowledged %d, refused by the closing pool %d, unknown %d; Close: %v",
		rec.endsOf(fxkafka.ClassOK)-1, rec.endsOf(fxkafka.ClassClosed), rec.endsOf(fxkafka.ClassUnknown), closeErr)
}
