package fxkafka

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
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The chaos suite: each case runs many concurrent senders with deadlines
// against kfake while a fault is injected, then checks what the broker
// stored against what every caller was told:
//   - every acknowledged message is stored (exactly once with Idempotent);
//   - every message failed as not sent (ErrUnavailable, ErrPoolClosed) is not;
//   - every error is one of the documented classes;
//   - the cap held;
//   - once the fault ends, every send of a burst succeeds again (the time
//     that took is logged as the recovery time).
// Each case also runs with Close called in the middle of the fault.

const (
	chaosSenders  = 48
	chaosMax      = 3
	chaosDeadline = 300 * time.Millisecond
)

// fault is one kind of trouble. start injects it on the cluster (or
// replaces the cluster) and returns a function that ends it.
type fault struct {
	name    string
	brokers int
	start   func(t *testing.T, env *chaosEnv) (end func())
}

type chaosEnv struct {
	mu      sync.Mutex
	cluster *kfake.Cluster
	ports   []int
	dir     string
}

func (e *chaosEnv) c() *kfake.Cluster {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cluster
}

func (e *chaosEnv) restart(t *testing.T) {
	opts := []kfake.Opt{kfake.Ports(e.ports...), kfake.SeedTopics(3, topic), kfake.DataDir(e.dir)}
	c, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	e.mu.Lock()
	e.cluster = c
	e.mu.Unlock()
}

func (e *chaosEnv) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cluster != nil {
		e.cluster.Close()
		e.cluster = nil
	}
}

// everyNth returns a kfake When filter that matches one request in n.
func everyNth(n int64) func(kmsg.Request) bool {
	var count atomic.Int64
	return func(kmsg.Request) bool { return count.Add(1)%n == 0 }
}

// controlProduce runs fn on every produce request the cluster handles until
// the returned function is called.
func controlProduce(c *kfake.Cluster, fn func(*kfake.Cluster, kmsg.Request) (kmsg.Response, error, bool)) (end func()) {
	var ended atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if ended.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		return fn(c, req)
	})
	return func() { ended.Store(true) }
}

var faults = []fault{
	{
		name:    "leadership moves between brokers",
		brokers: 3,
		start: func(t *testing.T, env *chaosEnv) func() {
			stop := make(chan struct{})
			done := make(chan struct{})
			c := env.c()
			go func() {
				defer close(done)
				tick := time.NewTicker(10 * time.Millisecond) // the fault's pace
				defer tick.Stop()
				for i := int32(0); ; i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					part := i % 3
					_ = c.MoveTopicPartition(topic, part, (c.LeaderFor(topic, part)+1)%3)
				}
			}()
			return func() { close(stop); <-done }
		},
	},
	{
		name:    "retriable produce errors",
		brokers: 1,
		start: func(t *testing.T, env *chaosEnv) func() {
			c := env.c()
			h1 := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1, When: everyNth(4)})
			// REQUEST_TIMED_OUT on produce is answered after the batch is
			// stored: a retry duplicates it unless the producer is idempotent.
			h2 := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: -1, When: everyNth(7)})
			return func() { h1.Remove(); h2.Remove() }
		},
	},
	{
		name:    "connections dropped mid-request",
		brokers: 1,
		start: func(t *testing.T, env *chaosEnv) func() {
			nth := everyNth(5)
			return controlProduce(env.c(), func(c *kfake.Cluster, req kmsg.Request) (kmsg.Response, error, bool) {
				if nth(req) {
					return nil, errors.New("chaos: connection dropped"), true
				}
				return nil, nil, false
			})
		},
	},
	{
		name:    "slow broker",
		brokers: 1,
		start: func(t *testing.T, env *chaosEnv) func() {
			nth := everyNth(3)
			return controlProduce(env.c(), func(c *kfake.Cluster, req kmsg.Request) (kmsg.Response, error, bool) {
				if nth(req) {
					// Injected latency past the callers' deadline, not a wait for an event.
					c.SleepControl(func() { time.Sleep(2 * chaosDeadline) })
				}
				return nil, nil, false
			})
		},
	},
	{
		name:    "broker down after producers existed, then back",
		brokers: 1,
		start: func(t *testing.T, env *chaosEnv) func() {
			env.stop()
			return func() { env.restart(t) }
		},
	},
}

// load is a set of senders running until stopped.
type load struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	acked   atomic.Int64
	mu      sync.Mutex
	results map[string]error // value -> the error its sender got (nil: acknowledged)
}

func startLoad(p *ProducerPool, prefix string) *load {
	l := &load{stop: make(chan struct{}), results: make(map[string]error)}
	for g := range chaosSenders {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				v := fmt.Sprintf("%s-%03d-%06d", prefix, g, i)
				m := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(v), Value: sarama.StringEncoder(v)}
				ctx, cancel := context.WithTimeout(context.Background(), chaosDeadline)
				_, _, err := p.SendMessage(ctx, m)
				cancel()
				l.mu.Lock()
				l.results[v] = err
				l.mu.Unlock()
				if err == nil {
					l.acked.Add(1)
				} else if errors.Is(err, ErrPoolClosed) {
					return
				}
			}
		})
	}
	return l
}

func (l *load) end() map[string]error {
	close(l.stop)
	l.wg.Wait()
	return l.results
}

// waitFor polls cond every few milliseconds until it holds, failing after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		<-tick.C
	}
}

// recover measures how long after the fault ended a burst of concurrent
// sends first succeeds in full.
func measureRecovery(t *testing.T, p *ProducerPool) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for round := 0; ; round++ {
		var failed atomic.Int64
		var wg sync.WaitGroup
		for i := range chaosSenders {
			wg.Go(func() {
				v := fmt.Sprintf("probe-%04d-%03d", round, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if _, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(v)}); err != nil {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if failed.Load() == 0 {
			return time.Since(start)
		}
		require.Less(t, time.Since(start), 10*time.Second, "no recovery: %d of a burst still failing", failed.Load())
		<-tick.C
	}
}

// chaosTally is one row of the suite's table.
type chaosTally struct {
	acked, unavailable, closed, unknown, stored, duplicates int
	recovery                                                time.Duration
}

func TestChaos(t *testing.T) {
	checkLeaks(t)
	for _, f := range faults {
		for _, idempotent := range []bool{true, false} {
			for _, closeDuring := range []bool{false, true} {
				name := fmt.Sprintf("%s/Idempotent=%v/CloseDuringFault=%v", f.name, idempotent, closeDuring)
				t.Run(name, func(t *testing.T) {
					tally := runChaos(t, f, idempotent, closeDuring)
					t.Logf("| %s | %d | %d | %d | %d | %d | %d | %v |", name, tally.acked, tally.unavailable,
						tally.closed, tally.unknown, tally.stored, tally.duplicates, tally.recovery.Round(time.Millisecond))
				})
			}
		}
	}
}

// newChaosEnv starts a cluster of n brokers for a fault, stopped at cleanup.
func newChaosEnv(t *testing.T, n int) *chaosEnv {
	env := &chaosEnv{dir: t.TempDir()}
	for range n {
		env.ports = append(env.ports, portOf(t, freeAddr(t)))
	}
	env.restart(t)
	t.Cleanup(env.stop)
	return env
}

func runChaos(t *testing.T, f fault, idempotent, closeDuring bool) chaosTally {
	env := newChaosEnv(t, f.brokers)

	cfg := testConfig(env.c().ListenAddrs()...)
	cfg.MaxProducers = chaosMax
	cfg.ProducerBusyAt = 8
	cfg.Idempotent = idempotent
	p, err := New(cfg)
	require.NoError(t, err)

	l := startLoad(p, "load")
	waitFor(t, 10*time.Second, "acks before the fault", func() bool { return l.acked.Load() >= 300 })

	before := l.acked.Load()
	end := f.start(t, env)
	// Let the fault act on a good number of sends before ending it.
	waitFor(t, 10*time.Second, "sends during the fault", func() bool {
		s := p.Stats()
		return l.acked.Load()-before >= 300 || s.FailedUnavailable+s.FailedUnknown >= 50
	})

	var tally chaosTally
	if closeDuring {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// Close flushes within its context, or gives up when it ends (a
		// fault may hold answers past it): either way it returns.
		if closeErr := p.Close(ctx); closeErr != nil {
			require.ErrorIs(t, closeErr, context.DeadlineExceeded)
		}
		cancel()
		end()
		results := l.end()
		checkStored(t, env, results, idempotent, &tally)
	} else {
		end()
		tally.recovery = measureRecovery(t, p)
		results := l.end()
		require.NoError(t, p.Close(context.Background()))
		checkStored(t, env, results, idempotent, &tally)
	}
	assert.LessOrEqual(t, p.peak, chaosMax, "the cap held")
	return tally
}

// checkStored compares what the broker holds with what every sender was told.
func checkStored(t *testing.T, env *chaosEnv, results map[string]error, idempotent bool, tally *chaosTally) {
	t.Helper()
	recs := readBack(t, env.c(), topic)
	stored := countValues(recs)
	for v, n := range stored {
		tally.stored++
		tally.duplicates += n - 1
		// The pool never sends a message twice: with Idempotent it retries
		// and the broker drops the copy; without, it never retries a batch
		// that may be stored.
		if n > 1 {
			var where []storedRecord
			for _, r := range recs {
				if r.Value == v {
					where = append(where, r)
				}
			}
			t.Errorf("%s stored %d times (Idempotent %v: %v); its sender got %v", v, n, idempotent, where, results[v])
		}
	}
	for v, err := range results {
		switch {
		case err == nil:
			tally.acked++
			require.GreaterOrEqual(t, stored[v], 1, "acknowledged %s is not stored", v)
			if idempotent {
				require.Equal(t, 1, stored[v], "acknowledged %s stored %d times with Idempotent", v, stored[v])
			}
		case errors.Is(err, ErrUnavailable):
			tally.unavailable++
			require.Zero(t, stored[v], "%s failed with ErrUnavailable but is stored: %v", v, err)
		case errors.Is(err, ErrPoolClosed):
			tally.closed++
			require.Zero(t, stored[v], "%s failed with ErrPoolClosed but is stored", v)
		case errors.Is(err, ErrDeliveryUnknown):
			tally.unknown++
		default:
			t.Fatalf("%s failed with an error of no documented class: %v", v, err)
		}
	}
	if idempotent {
		assert.Zero(t, tally.duplicates, "duplicates with Idempotent")
	}
}

// TestPoolRecoversFromAFullBrokerRestart: producers existed, the broker went
// away and came back on the same address empty (no topics' data, no
// producer ids). Broken producers are replaced, so a whole burst succeeds
// again, not just a share of it (sarama's circuit breaker alone would fail a
// share for 10s, and an idempotent producer's old id is rejected for good).
func TestPoolRecoversFromAFullBrokerRestart(t *testing.T) {
	checkLeaks(t)
	for _, idempotent := range []bool{false, true} {
		t.Run(fmt.Sprintf("Idempotent=%v", idempotent), func(t *testing.T) {
			addr := freeAddr(t)
			c := startBroker(t, addr, topic)
			cfg := testConfig(addr)
			cfg.Idempotent = idempotent
			cfg.MaxProducers = chaosMax
			cfg.ProducerBusyAt = 8
			p := newTestPool(t, cfg)

			l := startLoad(p, "restart")
			waitFor(t, 10*time.Second, "acks before the restart", func() bool { return l.acked.Load() >= 300 })
			require.GreaterOrEqual(t, p.Stats().Producers, 1)
			if idempotent {
				// Every partition written before the restart: then each
				// producer's next batch anywhere carries a sequence past
				// 0, which the empty broker refuses from a producer it
				// does not know (a first sequence of 0 it would take, as
				// Kafka 2.5 and later do, and the producer would live on).
				// The load's keyless records may all have gone to one
				// partition.
				written := map[int32]bool{}
				parts := len(c.PartitionInfos(topic))
				for i := 0; len(written) < parts && i < 1000; i++ {
					part, _, err := p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprint("k", i)), Value: sarama.StringEncoder(fmt.Sprint("restart-keyed-", i))})
					require.NoError(t, err)
					written[part] = true
				}
				require.Len(t, written, parts, "every partition written before the restart")
			}
			c.Close()
			waitFor(t, 10*time.Second, "the outage to be seen", func() bool { return p.Stats().FailedUnavailable >= 50 })
			startBroker(t, addr, topic) // empty: a new cluster on the same port
			recovery := measureRecovery(t, p)
			results := l.end()
			t.Logf("every send of a %d-sender burst succeeded %v after the broker came back; %d producers replaced",
				chaosSenders, recovery.Round(time.Millisecond), p.Stats().ProducersRetired)
			if idempotent {
				// The new broker knows none of the producer ids: those
				// producers are finished and must have been replaced. A
				// plain producer may live through the outage (its sinks
				// reconnect) or be replaced, as the outage's length has it.
				assert.Positive(t, p.Stats().ProducersRetired, "producers whose ids the broker lost were replaced")
			}
			assert.Less(t, recovery, 3*time.Second)
			for v, err := range results {
				if err != nil {
					require.True(t, errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDeliveryUnknown) || errors.Is(err, ErrPoolClosed),
						"%s: error of no documented class: %v", v, err)
				}
			}
		})
	}
}
