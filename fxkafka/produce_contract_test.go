package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
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

// Produce, Flush, Close and the buffer held to their documented contract
// (Produce's and Flush's docs): each test states the promise it
// checks.

// TestFlushWaitsForThePromiseOfARefusedMessage: Produce's contract says Flush
// "waits until every message produced before it was called has its
// outcome"; Flush's doc says "and its promise has returned". A message the
// pool refuses at once (nil, no topic, too large, bad timestamp) has its
// promise queued like any other; Flush must not return before it ran.
func TestFlushWaitsForThePromiseOfARefusedMessage(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name string
		give *sarama.ProducerMessage
	}{
		{"nil message", nil},
		{"no topic", &sarama.ProducerMessage{Value: sarama.StringEncoder("x")}},
		{"larger than MaxMessageBytes", &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(make([]byte, 2<<20))}},
		{"timestamp before 1970", &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("x"), Timestamp: time.Unix(-10, 0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPool(t, testConfig(freeAddr(t))) // never reached: the message is refused first
			gotErr, flushErr := flushWhileAPromiseRuns(t, p, tt.give)
			require.ErrorIs(t, gotErr, ErrInvalidMessage)
			require.Error(t, flushErr, "Flush returned nil while the promise of a message produced before it was still running")
		})
	}
}

// TestAPromiseThatExitsItsGoroutineDoesNotStrandTheOthers: a promise
// that ends its goroutine with runtime.Goexit (t.FailNow, require.* in a
// test's promise) must not silently stop the pool's promise goroutine:
// the promises after it must still run, and Flush must still return.
func TestAPromiseThatExitsItsGoroutineDoesNotStrandTheOthers(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	p.Produce(context.Background(), msg("exits"), func(*sarama.ProducerMessage, error) { runtime.Goexit() })
	done := make(chan error, 1)
	p.Produce(context.Background(), msg("after"), func(_ *sarama.ProducerMessage, err error) { done <- err })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NoError(t, p.Flush(ctx), "Flush never saw the promises run")
	// Close promises every promise is called before it returns.
	closeErr := p.Close(context.Background())
	select {
	case err := <-done:
		require.NoError(t, err)
	default:
		t.Fatalf("Close returned %v and the promise of \"after\" was never called", closeErr)
	}
}

// valueHook records, at OnSendEnd, the value and header values of each
// message it sees: the hook doc allows reading Topic, Key, Value and
// Headers there.
type valueHook struct {
	mu     sync.Mutex
	values []string
	hdrs   []string
}

func (h *valueHook) OnSendEnd(_ context.Context, m *sarama.ProducerMessage, _ SendInfo) {
	var v []byte
	if m.Value != nil {
		v, _ = m.Value.Encode()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.values = append(h.values, string(v))
	for _, hd := range m.Headers {
		h.hdrs = append(h.hdrs, string(hd.Value))
	}
}

// TestCallerReusingItsBytesAfterProduceDoesNotChangeWhatHooksSee:
// Produce's doc says its key, value and headers are copied before it
// returns, "so the bytes they point to are the caller's again at once". A
// send-end hook (which may read Value and Headers) must then see the
// message as produced, not the caller's reused bytes.
func TestCallerReusingItsBytesAfterProduceDoesNotChangeWhatHooksSee(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	h := &valueHook{}
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithHook(h))
	_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, release := holdProduce(t, c)

	val := []byte("original")
	hv := []byte("hdr-orig")
	m := &sarama.ProducerMessage{Topic: topic, Value: sarama.ByteEncoder(val), Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: hv}}}
	done := make(chan error, 1)
	p.Produce(context.Background(), m, func(_ *sarama.ProducerMessage, err error) { done <- err })
	// The caller owns its bytes again as soon as Produce returns: reuse them.
	copy(val, "MUTATED!")
	copy(hv, "MUTATED!")
	<-held
	release()
	require.NoError(t, <-done)
	require.NoError(t, p.Flush(context.Background()))

	h.mu.Lock()
	defer h.mu.Unlock()
	require.Equal(t, []string{"warm-up", "original"}, h.values, "the hook saw the caller's reused value bytes")
	require.Equal(t, []string{"hdr-orig"}, h.hdrs, "the hook saw the caller's reused header bytes")
	// The broker stored the original (the pool's own copy).
	var stored []string
	for _, r := range readBack(t, c, topic) {
		stored = append(stored, r.Value)
	}
	require.Contains(t, stored, "original")
}

// lanesRetrying reports whether some lane of some producer of p holds a
// batch waiting to be sent again.
func lanesRetrying(p *ProducerPool) bool {
	found := false
	for _, pr := range p.allProducers() {
		pr.eachPartition(func(ps *partState) {
			ps.mu.Lock()
			defer ps.mu.Unlock()
			for _, lp := range ps.lanes {
				if lp != nil && lp.retry != nil {
					found = true
				}
			}
		})
	}
	return found
}

// TestPromisesOfOnePartitionRunInProduceOrderWhenCloseGivesUp: the doc
// of Produce says promises run "in the order outcomes arrive (for one
// partition, the order produced)". When Close gives up on a partition that
// has a batch waiting to be retried and newer records behind it, the
// older batch's promises must still run first.
func TestPromisesOfOnePartitionRunInProduceOrderWhenCloseGivesUp(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	p, err := New(cfg, WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Retry.Backoff = time.Minute // the retried batch waits while the test looks
	}))
	require.NoError(t, err)
	_, _, err = p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	// Not stored, retriable: the batch goes back to its lane to wait.
	fh := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotEnoughReplicas, Count: -1})
	defer fh.Remove()

	var o outcomesInOrder
	promise := o.promise
	p.Produce(context.Background(), keyed("first"), promise("first"))
	waitFor(t, 5*time.Second, "the first batch to wait for its retry", func() bool { return lanesRetrying(p) })
	p.Produce(context.Background(), keyed("second"), promise("second"))
	p.Produce(context.Background(), keyed("third"), promise("third"))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p.Close(ctx) // gives up at once
	order, errs := o.taken()
	for name, err := range errs {
		assert.True(t, errors.Is(err, ErrPoolClosed) || errors.Is(err, ErrUnavailable), "%s: %v", name, err)
	}
	require.Equal(t, []string{"first", "second", "third"}, order, "promises of one partition out of produce order")
}

// TestStatsReturnToZeroAfterCloseGivesUp: InFlight and Buffered count
// what is still waiting; once Close has given up on every message and
// returned, nothing is.
func TestStatsReturnToZeroAfterCloseGivesUp(t *testing.T) {
	checkLeaks(t)
	const buffered = 50
	p, held := heldPool(t, buffered)
	ps := newPromises(200)
	var wg sync.WaitGroup
	for i := range 200 {
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(i % 7)), Value: sarama.StringEncoder(value(i))}
		if i < buffered {
			p.Produce(context.Background(), m, ps.for_(i, m))
			continue
		}
		wg.Go(func() { p.Produce(context.Background(), m, ps.for_(i, m)) }) // waits for space
	}
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = p.Close(ctx)
	wg.Wait()
	waitFor(t, 5*time.Second, "every promise", func() bool {
		for i := range ps.calls {
			if ps.calls[i].Load() == 0 {
				return false
			}
		}
		return true
	})
	ps.check(t)
	s := p.Stats()
	assert.Zero(t, s.InFlight, "InFlight")
	assert.Zero(t, s.Buffered, "Buffered")
	assert.Zero(t, s.Waiting, "Waiting")
	requireGivenUp(t, ps)
}

// TestAMessagePlacedCompletesNormallyWhateverItsContextDoes: "The ctx
// bounds only the wait for space and for a producer: a message that has
// left in a request completes normally."
func TestAMessagePlacedCompletesNormallyWhateverItsContextDoes(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, release := holdProduce(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	m := msg("placed")
	p.Produce(ctx, m, func(got *sarama.ProducerMessage, err error) {
		if err == nil && (got.Offset < 0 || got.Timestamp.IsZero()) {
			err = fmt.Errorf("acknowledged without offset/timestamp: %d %v", got.Offset, got.Timestamp)
		}
		done <- err
	})
	<-held
	cancel()
	release()
	require.NoError(t, <-done)
}

// TestPromisesCalledBeforeCloseReturnsWhileProduceRaces: several
// goroutines produce while Close runs. Every Produce that returned before
// Close was called has its promise called, exactly once, before Close
// returns; every other promise is called exactly once too.
func TestPromisesCalledBeforeCloseReturnsWhileProduceRaces(t *testing.T) {
	checkLeaks(t)
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			c := startBroker(t, "", topic)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.MaxBufferedMessages = 64
			p, err := New(cfg)
			require.NoError(t, err)
			_, _, err = p.SendMessage(context.Background(), msg("warm-up"))
			require.NoError(t, err)

			type entry struct {
				calls  atomic.Int32
				late   atomic.Bool // called after Close returned
				before bool        // Produce returned before Close was called
				err    atomic.Value
			}
			var closeCalled, closeReturned atomic.Bool
			var mu sync.Mutex
			var entries []*entry
			var produced atomic.Int64
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						e := &entry{}
						m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint(g)), Value: sarama.StringEncoder(fmt.Sprintf("%d-%d", g, i))}
						p.Produce(context.Background(), m, func(_ *sarama.ProducerMessage, err error) {
							if closeReturned.Load() {
								e.late.Store(true)
							}
							if err != nil {
								e.err.Store(err)
							}
							e.calls.Add(1)
						})
						e.before = !closeCalled.Load()
						mu.Lock()
						entries = append(entries, e)
						mu.Unlock()
						produced.Add(1)
						if !e.before && i%50 == 0 {
							return
						}
					}
				})
			}
			t.Cleanup(func() { // on a failure before Close: stop the producers
				closeCalled.Store(true)
				_ = p.Close(context.Background())
				wg.Wait()
			})
			waitFor(t, 5*time.Second, "some produced", func() bool { return produced.Load() > 2000 })
			closeCalled.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.NoError(t, p.Close(ctx))
			closeReturned.Store(true)
			wg.Wait()
			waitFor(t, 5*time.Second, "every promise", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range entries {
					if e.calls.Load() == 0 {
						return false
					}
				}
				return true
			})
			mu.Lock()
			defer mu.Unlock()
			for i, e := range entries {
				require.EqualValues(t, 1, e.calls.Load(), "entry %d", i)
				if e.before {
					require.False(t, e.late.Load(), "entry %d: produced before Close, promise called after it returned", i)
				}
				if err, ok := e.err.Load().(error); ok {
					require.True(t, errors.Is(err, ErrPoolClosed), "entry %d: %v", i, err)
				}
			}
		})
	}
}

// TestAPromiseProducingWithAShortContextOnAFullBufferGetsUnavailable:
// a promise may call Produce with a context that ends; on a full buffer
// that Produce fails (ErrUnavailable) instead of hanging the pool.
func TestAPromiseProducingWithAShortContextOnAFullBufferGetsUnavailable(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxBufferedMessages = 1
	p := newTestPool(t, cfg)
	inner := make(chan error, 1)
	outer := make(chan error, 1)
	p.Produce(context.Background(), msg("outer"), func(_ *sarama.ProducerMessage, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		p.Produce(ctx, msg("inner"), func(_ *sarama.ProducerMessage, err error) { inner <- err })
		outer <- err
	})
	require.NoError(t, <-outer)
	require.ErrorIs(t, <-inner, ErrUnavailable)
	require.NoError(t, p.Flush(context.Background()))
	assert.Zero(t, p.Stats().Buffered)
}

// TestProduceKeepsOrderUnderEveryChaosFault: per-partition order equal
// to produce order, nothing stored twice, nothing failed as not sent
// stored, and promises of one key in produce order; with and without
// Idempotent, under each fault of the chaos suite.
func TestProduceKeepsOrderUnderEveryChaosFault(t *testing.T) {
	checkLeaks(t)
	for _, f := range faults[:4] {
		for _, idem := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/Idempotent=%v", f.name, idem), func(t *testing.T) {
				env := newChaosEnv(t, f.brokers)
				cfg := testConfig(env.c().ListenAddrs()...)
				cfg.Idempotent = idem
				p := newTestPool(t, cfg)
				_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
				require.NoError(t, err)
				end := f.start(t, env)
				const n, keys = 10_000, 16
				ps := newPromises(n)
				var pmu sync.Mutex
				lastPromised := map[string]int{}
				var promiseOrderErr error
				for i := range n {
					k, v := keyedValue(i, keys)
					m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}
					rec := ps.for_(i, m)
					p.Produce(context.Background(), m, func(got *sarama.ProducerMessage, err error) {
						rec(got, err)
						pmu.Lock()
						if prev, ok := lastPromised[k]; ok && prev > i && promiseOrderErr == nil {
							promiseOrderErr = fmt.Errorf("key %s: promise of %d after %d (%v)", k, i, prev, err)
						}
						lastPromised[k] = i
						pmu.Unlock()
					})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				require.NoError(t, p.Flush(ctx))
				end()
				ps.check(t)
				recs := checkKeyedOutcomes(t, env.c(), ps, n, keys)
				pmu.Lock()
				require.NoError(t, promiseOrderErr)
				pmu.Unlock()
				classes := map[string]int{}
				for _, err := range ps.errs {
					classes[ErrorClass(err)+": "+err.Error()]++
				}
				t.Logf("%d produced, %d failed, %d stored; %v", n, len(ps.errs), len(recs), classes)
			})
		}
	}
}

// TestProduceUnderChaosWithCloseMidFault: a Produce stream during a
// fault, and Close with a short context in the middle of it. Every promise
// runs exactly once before Close returns; each send hook exactly once per
// message; a message failed as not sent is not stored; an acknowledged one
// is stored (once, with Idempotent); per-key order holds.
func TestProduceUnderChaosWithCloseMidFault(t *testing.T) {
	checkLeaks(t)
	for _, f := range faults[:4] {
		for _, idem := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/Idempotent=%v", f.name, idem), func(t *testing.T) {
				env := newChaosEnv(t, f.brokers)
				cfg := testConfig(env.c().ListenAddrs()...)
				cfg.Idempotent = idem
				cfg.MaxBufferedMessages = 2000
				h := newCountingHook(false)
				p, err := New(cfg, WithHook(h))
				require.NoError(t, err)
				_, _, err = p.SendMessage(context.Background(), msg("warm-up"))
				require.NoError(t, err)
				end := f.start(t, env)
				const keys = 16
				var mu sync.Mutex
				var calls []int
				var errs []error
				var closeReturned atomic.Bool
				var late atomic.Int32
				stop := make(chan struct{})
				var n atomic.Int64
				done := make(chan struct{})
				go func() {
					defer close(done)
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						k, v := keyedValue(i, keys)
						mu.Lock()
						calls = append(calls, 0)
						errs = append(errs, nil)
						mu.Unlock()
						m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}
						p.Produce(context.Background(), m, func(_ *sarama.ProducerMessage, err error) {
							if closeReturned.Load() {
								late.Add(1)
							}
							mu.Lock()
							calls[i]++
							errs[i] = err
							mu.Unlock()
						})
						n.Add(1)
						if errors.Is(func() error { mu.Lock(); defer mu.Unlock(); return errs[i] }(), ErrPoolClosed) {
							return
						}
					}
				}()
				stopOnce := sync.OnceFunc(func() { close(stop) })
				t.Cleanup(func() { // on a failure before Close: stop the stream
					stopOnce()
					_ = p.Close(context.Background())
					<-done
				})
				waitFor(t, 10*time.Second, "a stream under way", func() bool { return n.Load() > 5000 })
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				defer cancel()
				closeErr := p.Close(ctx)
				closeReturned.Store(true)
				stopOnce()
				<-done
				end()
				if closeErr != nil {
					require.ErrorIs(t, closeErr, context.DeadlineExceeded)
				}
				// Produce calls after Close returned get their promise on a
				// goroutine of their own: wait for those.
				waitFor(t, 5*time.Second, "late promises", func() bool {
					mu.Lock()
					defer mu.Unlock()
					for _, c := range calls {
						if c == 0 {
							return false
						}
					}
					return true
				})
				var recs []storedRecord
				for _, r := range readBack(t, env.c(), topic) {
					if r.Value != "warm-up" {
						recs = append(recs, r)
					}
				}
				checkOrder(t, recs)
				stored := countValues(recs)
				mu.Lock()
				defer mu.Unlock()
				classes := map[string]int{}
				for i, c := range calls {
					_, v := keyedValue(i, keys)
					require.Equal(t, 1, c, "promise %d", i)
					err := errs[i]
					classes[ErrorClass(err)]++
					switch {
					case err == nil:
						require.Equal(t, 1, stored[v], "%s acknowledged", v)
					case errors.Is(err, ErrUnavailable), errors.Is(err, ErrPoolClosed):
						require.Zero(t, stored[v], "%s failed as not sent: %v", v, err)
					default:
						require.ErrorIs(t, err, ErrDeliveryUnknown)
					}
				}
				h.mu.Lock()
				defer h.mu.Unlock()
				for i := range calls {
					_, v := keyedValue(i, keys)
					require.Equal(t, 1, h.starts[v], "OnSendStart of %s", v)
					require.Equal(t, 1, h.ends[v], "OnSendEnd of %s", v)
				}
				s := p.Stats()
				assert.Zero(t, s.InFlight)
				assert.Zero(t, s.Buffered)
				t.Logf("%d produced; %v; %d promises after Close returned; close: %v", len(calls), classes, late.Load(), closeErr)
			})
		}
	}
}

// TestProduceStoresKeysValuesHeadersAndTimestampsAsGiven: nil stays
// null, empty stays empty, headers (empty and nil values) and explicit
// timestamps reach the broker as produced; the promise sees the stored
// partition, offset and timestamp.
func TestProduceStoresKeysValuesHeadersAndTimestampsAsGiven(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	ts := time.UnixMilli(1_700_000_000_123)
	tests := []struct {
		name       string
		key, value sarama.Encoder
		hdrs       []sarama.RecordHeader
		ts         time.Time
	}{
		{"nil key, empty value", nil, sarama.ByteEncoder{}, nil, time.Time{}},
		{"empty key, nil value", sarama.ByteEncoder{}, nil, nil, ts},
		{"headers", sarama.StringEncoder("k"), sarama.StringEncoder("v"), []sarama.RecordHeader{
			{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("empty"), Value: []byte{}}, {Key: []byte("null"), Value: nil}, {Key: []byte{}, Value: []byte("x")},
		}, ts},
	}
	type got struct {
		m   *sarama.ProducerMessage
		err error
	}
	results := make([]got, len(tests))
	var wg sync.WaitGroup
	for i, tt := range tests {
		m := &sarama.ProducerMessage{Topic: topic, Key: tt.key, Value: tt.value, Headers: tt.hdrs, Timestamp: tt.ts}
		wg.Add(1)
		p.Produce(context.Background(), m, func(gm *sarama.ProducerMessage, err error) {
			results[i] = got{gm, err}
			wg.Done()
		})
	}
	require.NoError(t, p.Flush(context.Background()))
	wg.Wait()
	stored := readRecords(t, c, topic)
	require.Len(t, stored, len(tests))
	byOffset := map[[2]int64]int{}
	for i, r := range stored {
		byOffset[[2]int64{int64(r.Partition), r.Offset}] = i
	}
	for i, tt := range tests {
		res := results[i]
		require.NoError(t, res.err, tt.name)
		j, ok := byOffset[[2]int64{int64(res.m.Partition), res.m.Offset}]
		require.True(t, ok, "%s: the promise's partition %d offset %d is not where it was stored", tt.name, res.m.Partition, res.m.Offset)
		r := stored[j]
		enc := func(e sarama.Encoder) []byte {
			if e == nil {
				return nil
			}
			b, _ := e.Encode()
			return b
		}
		wantKey, wantVal := enc(tt.key), enc(tt.value)
		assert.Equal(t, wantKey == nil, r.Key == nil, "%s: key null-ness", tt.name)
		assert.Equal(t, wantVal == nil, r.Value == nil, "%s: value null-ness", tt.name)
		assert.Equal(t, string(wantKey), string(r.Key), tt.name)
		assert.Equal(t, string(wantVal), string(r.Value), tt.name)
		require.Len(t, r.Headers, len(tt.hdrs), tt.name)
		for k, h := range tt.hdrs {
			assert.Equal(t, string(h.Key), r.Headers[k].Key, tt.name)
			assert.Equal(t, string(h.Value), string(r.Headers[k].Value), tt.name)
		}
		if !tt.ts.IsZero() {
			assert.Equal(t, tt.ts.UnixMilli(), r.Timestamp.UnixMilli(), "%s: timestamp", tt.name)
		}
		assert.Equal(t, r.Timestamp.UnixMilli(), res.m.Timestamp.UnixMilli(), "%s: the promise's timestamp is the stored one", tt.name)
	}
}

// TestFlushHonoursItsContextAndWorksOnAClosedPool: Flush returns ctx's
// error while a message produced before it waits; after Close it returns
// nil at once (everything has its outcome), and a Produce after Close is
// waited for by a Flush after it.
func TestFlushHonoursItsContextAndWorksOnAClosedPool(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p, err := New(testConfig(c.ListenAddrs()...))
	require.NoError(t, err)
	_, _, err = p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, release := holdProduce(t, c)
	done := make(chan error, 1)
	p.Produce(context.Background(), msg("held"), func(_ *sarama.ProducerMessage, err error) { done <- err })
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.Flush(ctx), context.DeadlineExceeded)
	release()
	require.NoError(t, <-done)
	require.NoError(t, p.Close(context.Background()))
	require.NoError(t, p.Flush(context.Background()))

	lateErr, flushErr := flushWhileAPromiseRuns(t, p, msg("late"))
	require.ErrorIs(t, lateErr, ErrPoolClosed)
	require.Error(t, flushErr, "Flush on a closed pool returned before the promise of a Produce before it")
}

// TestProduceToAMissingTopicIsInvalidAndFlushWaitsForIt: a topic that
// does not exist fails as ErrInvalidMessage (not written), Flush waits for
// its promise, and nothing is left in the buffer or in flight.
func TestProduceToAMissingTopicIsInvalidAndFlushWaitsForIt(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	var gotErr error
	var calls atomic.Int32
	p.Produce(context.Background(), &sarama.ProducerMessage{Topic: "no-such-topic", Value: sarama.StringEncoder("x")}, func(_ *sarama.ProducerMessage, err error) {
		gotErr = err
		calls.Add(1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Flush(ctx))
	require.EqualValues(t, 1, calls.Load())
	require.ErrorIs(t, gotErr, ErrInvalidMessage)
	s := p.Stats()
	assert.Zero(t, s.InFlight)
	assert.Zero(t, s.Buffered)
	assert.EqualValues(t, 1, s.FailedInvalid)
}

// TestProduceOnAClosedPoolGetsErrPoolClosedWhateverItsContext: the doc
// of Produce says "On a closed pool the promise gets ErrPoolClosed".
func TestProduceOnAClosedPoolGetsErrPoolClosedWhateverItsContext(t *testing.T) {
	checkLeaks(t)
	p, err := New(testConfig(freeAddr(t)))
	require.NoError(t, err)
	require.NoError(t, p.Close(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	p.Produce(ctx, msg("after close"), func(_ *sarama.ProducerMessage, err error) { done <- err })
	require.ErrorIs(t, <-done, ErrPoolClosed)
}

// TestALingeringStreamThroughATinyBufferNeverStalls: with a long
// Linger and a buffer of a few messages, one goroutine's stream keeps
// moving (a Produce waiting for space ends the linger) and Flush returns.
func TestALingeringStreamThroughATinyBufferNeverStalls(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = time.Minute
	cfg.MaxBufferedMessages = 3
	cfg.MaxBufferedBytes = 400
	p := newTestPool(t, cfg)
	const n = 3000
	ps := newPromises(n)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range n {
		k, v := keyedValue(i, 5)
		m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(k), Value: sarama.StringEncoder(v)}
		p.Produce(ctx, m, ps.for_(i, m))
	}
	require.NoError(t, p.Flush(ctx))
	ps.check(t)
	require.Empty(t, ps.errs)
	recs := readBack(t, c, topic)
	require.Len(t, recs, n)
	checkOrder(t, recs)
}

// TestPromisesBehindABatchInFlightRunAfterThatBatchs: the producer gives up on a
// partition's records (as Close does, or a producer's retirement) while
// the batch ahead of them is in flight, held at the broker. They fail as
// not sent, and their promises run after that batch's, in produce order.
func TestPromisesBehindABatchInFlightRunAfterThatBatchs(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("warm-up"))
	require.NoError(t, err)
	held, release := holdProduce(t, c)

	var o outcomesInOrder
	promise := o.promise
	p.Produce(context.Background(), keyed("first"), promise("first"))
	<-held // first's batch is in flight
	p.Produce(context.Background(), keyed("second"), promise("second"))
	p.Produce(context.Background(), keyed("third"), promise("third"))

	prs := p.allProducers()
	require.Len(t, prs, 1)
	prs[0].failAll(errors.New("given up on by the test"))
	release() // first's batch is answered
	require.NoError(t, p.Flush(context.Background()))
	order, errs := o.taken()
	require.Equal(t, []string{"first", "second", "third"}, order, "promises of one partition out of produce order")
	assert.NoError(t, errs["first"])
	for _, name := range []string{"second", "third"} {
		assert.ErrorIs(t, errs[name], ErrUnavailable, "%s was given up on before it was sent", name)
	}
}

// outcomesInOrder records the order in which promises run, and each one's
// error, by name.
type outcomesInOrder struct {
	mu    sync.Mutex
	order []string
	errs  map[string]error
}

func (o *outcomesInOrder) promise(name string) func(*sarama.ProducerMessage, error) {
	return func(_ *sarama.ProducerMessage, err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.errs == nil {
			o.errs = map[string]error{}
		}
		o.order = append(o.order, name)
		o.errs[name] = err
	}
}

// taken returns what was recorded so far.
func (o *outcomesInOrder) taken() ([]string, map[string]error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.order), maps.Clone(o.errs)
}

// flushWhileAPromiseRuns produces m with a promise that blocks until
// released, and returns the promise's error and what a Flush with an
// ended context said while that promise was running (it must not be nil:
// the promise has not returned). A second Flush then waits for it.
func flushWhileAPromiseRuns(t *testing.T, p *ProducerPool, m *sarama.ProducerMessage) (promiseErr, flushErr error) {
	t.Helper()
	running, unblock := make(chan struct{}), make(chan struct{})
	p.Produce(context.Background(), m, func(_ *sarama.ProducerMessage, err error) {
		promiseErr = err
		close(running)
		<-unblock
	})
	<-running
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	flushErr = p.Flush(ctx)
	close(unblock)
	require.NoError(t, p.Flush(context.Background()))
	return promiseErr, flushErr
}
