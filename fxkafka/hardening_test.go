package fxkafka

// The hardening suite (issue 9): each test is one promise that broke on a
// path no earlier test looked at. Every test synchronises on events (a
// request the broker holds, a hook, a channel), never on a pause.

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
)

// held is a kind of request a kfake cluster holds until release: the
// broker neither answers nor fails it meanwhile.
type held struct {
	seen chan struct{} // one value per request held (buffered; extra ones dropped)

	mu       sync.Mutex // protects following
	released chan struct{}
	isDone   bool
	sleeping []chan struct{} // closed when a held request's control returns
}

// release lets the held requests (and every later one) through, and waits
// until kfake has resumed each: kfake deadlocks if Close races a sleeping
// control's wake-up, so the cluster must not close before that.
func (h *held) release() {
	h.mu.Lock()
	if !h.isDone {
		h.isDone = true
		close(h.released)
	}
	sleeping := h.sleeping
	h.mu.Unlock()
	for _, done := range sleeping {
		<-done
	}
}

// sleep holds the request kfake's current control handles until release.
// It reports false, holding nothing, once release has run.
func (h *held) sleep(c *kfake.Cluster) bool {
	h.mu.Lock()
	if h.isDone {
		h.mu.Unlock()
		return false
	}
	done := make(chan struct{})
	h.sleeping = append(h.sleeping, done)
	h.mu.Unlock()
	defer close(done)
	select {
	case h.seen <- struct{}{}:
	default:
	}
	c.SleepControl(func() { <-h.released })
	return true
}

func newHeld(t *testing.T) *held {
	h := &held{seen: make(chan struct{}, 64), released: make(chan struct{})}
	t.Cleanup(h.release) // registered after the cluster's Close: runs before it
	return h
}

// holdRequests makes c hold every request of key until release is called.
func holdRequests(t *testing.T, c *kfake.Cluster, key kmsg.Key) *held {
	t.Helper()
	h := newHeld(t)
	c.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !h.sleep(c) {
			c.DropControl()
		}
		return nil, nil, false
	})
	return h
}

// slotsNow returns how many slots the pool's table holds, and the most it
// ever held.
func slotsNow(p *ProducerPool) (now, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.slots), p.peak
}

// provisionHook calls fn at the end of each provisioning attempt.
type provisionHook func(ProvisionInfo)

func (h provisionHook) OnProvision(info ProvisionInfo) { h(info) }

func TestCloseRacingAProvisioningThatJustSucceededLeavesNoGoroutine(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name  string
		cfg   func(*Config)
		last  kmsg.Key // the attempt's last request
		lease bool
	}{
		{"plain", func(*Config) {}, kmsg.Metadata, false},
		{"idempotent", func(c *Config) { c.Idempotent = true }, kmsg.InitProducerID, false},
		{"transactional", func(c *Config) { c.TransactionalID = "race-tx" }, kmsg.InitProducerID, true},
	}
	// call is what waits for the provisioning: a shared send, or a Lease.
	call := func(p *ProducerPool, lease bool) error {
		if lease {
			l, err := p.Lease(context.Background())
			if err == nil {
				l.Release()
			}
			return err
		}
		_, _, err := p.SendMessage(context.Background(), msg("racing close"))
		return err
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startBroker(t, "", topic)

			t.Run("close while the attempt's goroutine is still reporting success", func(t *testing.T) {
				var p *ProducerPool
				closed := make(chan error, 1)
				hook := provisionHook(func(info ProvisionInfo) {
					if info.Err != nil {
						return
					}
					go func() { closed <- p.Close(context.Background()) }()
					<-p.closing // Close has begun; the attempt's goroutine has not returned
				})
				cfg := testConfig(c.ListenAddrs()...)
				tt.cfg(&cfg)
				var err error
				p, err = New(cfg, WithHook(hook))
				require.NoError(t, err)
				err = call(p, tt.lease)
				assert.Contains(t, []string{ClassOK, ClassClosed}, ErrorClass(err), "%v", err)
				require.NoError(t, <-closed)
				assert.Zero(t, p.Stats().Producers)
				assert.Zero(t, p.Stats().Provisioning)
			})

			t.Run("close as the broker answers the attempt's last request", func(t *testing.T) {
				for range 20 {
					cfg := testConfig(c.ListenAddrs()...)
					tt.cfg(&cfg)
					// A hook hears an attempt the Close turned into a
					// failure as one: a success names its producer.
					p, err := New(cfg, WithHook(provisionHook(func(info ProvisionInfo) {
						if info.Err == nil {
							assert.Positive(t, info.Producer, "a successful attempt made a producer")
						}
					})))
					require.NoError(t, err)
					closed := make(chan error, 1)
					var once sync.Once
					c.ControlKey(int16(tt.last), func(kmsg.Request) (kmsg.Response, error, bool) {
						once.Do(func() { go func() { closed <- p.Close(context.Background()) }() })
						return nil, nil, false // answered now, racing the Close just started
					})
					err = call(p, tt.lease)
					assert.Contains(t, []string{ClassOK, ClassClosed}, ErrorClass(err), "%v", err)
					require.NoError(t, <-closed)
					assert.Zero(t, p.Stats().Producers)
				}
			})
		})
	}
}

func TestProvisioningABrokerThatNeverAnswersInitProducerIDEndsAtProvisionTimeout(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name string
		cfg  func(*Config)
		call func(*ProducerPool) error
	}{
		{"an idempotent send", func(c *Config) { c.Idempotent = true }, func(p *ProducerPool) error {
			_, _, err := p.SendMessage(context.Background(), msg("x"))
			return err
		}},
		{"a transactional lease", func(c *Config) { c.TransactionalID = "hung-tx" }, func(p *ProducerPool) error {
			_, err := p.Lease(context.Background())
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startBroker(t, "", topic)
			hold := holdRequests(t, c, kmsg.InitProducerID)
			cfg := testConfig(c.ListenAddrs()...)
			tt.cfg(&cfg)
			cfg.ProvisionTimeout = 300 * time.Millisecond
			p := newTestPool(t, cfg)

			start := time.Now()
			err := tt.call(p) // no deadline of its own: only ProvisionTimeout ends it
			elapsed := time.Since(start)
			t.Logf("returned after %v with ProvisionTimeout %v", elapsed, cfg.ProvisionTimeout)
			require.ErrorIs(t, err, ErrUnavailable)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Len(t, hold.seen, 1, "the request was made and held")
			// sarama's own InitProducerID retries (50 x 100 ms) took 5.4 s here.
			assert.Less(t, elapsed, 10*cfg.ProvisionTimeout, "ended at ProvisionTimeout, not after retries of its own")
		})
	}
}

func TestCloseDuringAProvisioningWaitingForInitProducerIDReturnsByItsDeadline(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name string
		cfg  func(*Config)
		call func(*ProducerPool) error
	}{
		{"an idempotent send", func(c *Config) { c.Idempotent = true }, func(p *ProducerPool) error {
			_, _, err := p.SendMessage(context.Background(), msg("x"))
			return err
		}},
		{"a transactional lease", func(c *Config) { c.TransactionalID = "hung-tx" }, func(p *ProducerPool) error {
			_, err := p.Lease(context.Background())
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startBroker(t, "", topic)
			hold := holdRequests(t, c, kmsg.InitProducerID)
			cfg := testConfig(c.ListenAddrs()...)
			tt.cfg(&cfg)
			cfg.ProvisionTimeout = time.Minute // only Close can end the attempt
			p, err := New(cfg)
			require.NoError(t, err)

			callErr := make(chan error, 1)
			go func() { callErr <- tt.call(p) }()
			<-hold.seen // the attempt waits for the held InitProducerID

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			require.NoError(t, p.Close(ctx), "nothing was in flight")
			t.Logf("Close returned after %v", time.Since(start))
			assert.NoError(t, ctx.Err(), "Close returned before its deadline (it took 5.1 s before)")
			assert.ErrorIs(t, <-callErr, ErrPoolClosed)
		})
	}
}

func TestALeaseDuringASharedProvisioningNeverExceedsTheCap(t *testing.T) {
	checkLeaks(t)
	for _, maxProducers := range []int{1, 2} {
		t.Run(fmt.Sprintf("MaxProducers=%d", maxProducers), func(t *testing.T) {
			c := startBroker(t, "", topic)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.MaxProducers = maxProducers
			cfg.ProvisionTimeout = time.Minute // the held attempt ends when the test releases it
			p := newTestPool(t, cfg)
			hold := holdRequests(t, c, kmsg.Metadata)

			sent := make(chan error, 1)
			go func() {
				_, _, err := p.SendMessage(context.Background(), msg("shared"))
				sent <- err
			}()
			<-hold.seen // the shared attempt is under way, waiting for its metadata

			// A Lease now joins that attempt rather than starting one of its own.
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			_, err := p.Lease(ctx)
			cancel()
			require.ErrorIs(t, err, ErrUnavailable)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			s := p.Stats()
			assert.Equal(t, 1, s.Producers+s.Provisioning, "one slot: the shared attempt")
			assert.EqualValues(t, 1, s.ProvisionAttempts)
			slots, _ := slotsNow(p)
			assert.Equal(t, 1, slots)

			hold.release()
			require.NoError(t, <-sent)

			// Then leases and shared sends that each want another producer,
			// all at once.
			var wg sync.WaitGroup
			for i := range 16 {
				wg.Go(func() {
					if i%2 == 0 {
						ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
						defer cancel()
						if l, err := p.Lease(ctx); err == nil {
							l.Release()
						} else {
							assert.ErrorIs(t, err, ErrUnavailable)
						}
						return
					}
					_, _, err := p.SendMessage(context.Background(), msg(value(i)))
					assert.True(t, err == nil || errors.Is(err, ErrNoFreeProducer), "%v", err)
				})
			}
			wg.Wait()

			s = p.Stats()
			_, peak := slotsNow(p)
			assert.LessOrEqual(t, s.Producers+s.Provisioning, maxProducers)
			assert.LessOrEqual(t, peak, maxProducers, "slots ever held at once")
			assert.LessOrEqual(t, s.ProvisionAttempts-s.ProvisionFailures, int64(maxProducers), "producers ever made")
			if maxProducers == 1 {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := p.Lease(ctx)
				require.ErrorIs(t, err, ErrNoFreeProducer, "the one producer is shared")
				assert.NoError(t, ctx.Err(), "at once")
			}
		})
	}
}

func TestFiftyLeasesDuringAnOutageMakeOneProvisioningAttempt(t *testing.T) {
	checkLeaks(t)

	t.Run("while the attempt hangs, every Lease joins it", func(t *testing.T) {
		h := startHungListener(t)
		cfg := testConfig(h.addr())
		cfg.ProvisionTimeout = time.Minute
		p := newTestPool(t, cfg)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				_, err := p.Lease(ctx)
				assert.ErrorIs(t, err, ErrUnavailable)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			})
		}
		wg.Wait()
		assert.EqualValues(t, 1, p.Stats().ProvisionAttempts)
		<-h.accepted
		assert.Empty(t, h.accepted, "one connection: one attempt")
	})

	t.Run("after the attempt failed, every Lease backs off", func(t *testing.T) {
		cfg := testConfig(freeAddr(t))
		cfg.ProvisionBackoffMax = time.Minute // the first pause is at least 3 s
		p := newTestPool(t, cfg)
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				_, err := p.Lease(context.Background())
				assert.ErrorIs(t, err, ErrUnavailable)
				assert.ErrorIs(t, err, sarama.ErrOutOfBrokers, "the cause is the attempt's")
			})
		}
		wg.Wait()
		s := p.Stats()
		assert.EqualValues(t, 1, s.ProvisionAttempts)
		assert.Error(t, s.LastProvisionError)
	})

	t.Run("a lease provisioning that succeeds clears LastProvisionError", func(t *testing.T) {
		addr := freeAddr(t)
		p := newTestPool(t, testConfig(addr))
		_, err := p.Lease(context.Background())
		require.ErrorIs(t, err, ErrUnavailable)
		require.Error(t, p.Stats().LastProvisionError)

		startBroker(t, addr, topic)
		var l *Lease
		retryUntil(t, 10*time.Second, func() (err error) {
			l, err = p.Lease(context.Background())
			return err
		})
		defer l.Release()
		s := p.Stats()
		assert.NoError(t, s.LastProvisionError, "the last attempt succeeded")
		assert.Positive(t, s.ProvisionFailures)
	})
}

func TestALeaseWaitsForOneAttemptAndReportsItsFailure(t *testing.T) {
	checkLeaks(t)
	cfg := testConfig(freeAddr(t))
	cfg.ProvisionBackoffMax = time.Nanosecond // no pause: only the Lease's own logic stops a second attempt
	p := newTestPool(t, cfg)
	for i := range 30 {
		_, err := p.Lease(context.Background())
		require.ErrorIs(t, err, ErrUnavailable)
		require.ErrorIs(t, err, sarama.ErrOutOfBrokers)
		// The attempt's end also tells waiting Leases a slot freed up; a
		// Lease woken by that must still see its attempt failed.
		require.EqualValues(t, i+1, p.Stats().ProvisionAttempts, "Lease %d made one attempt", i)
	}
}

// forgetMissingTopics makes every producer look up again the topics it
// found missing, as it does once missingTopicTTL has passed.
func forgetMissingTopics(p *ProducerPool) {
	for _, pr := range p.allProducers() {
		pr.topics.Range(func(k, v any) bool {
			ts := v.(*topicState)
			select {
			case <-ts.loaded:
				if ts.err != nil {
					pr.topics.CompareAndDelete(k, ts)
				}
			default:
			}
			return true
		})
	}
}

func TestATopicThatDoesNotExistNeverRetiresAProducer(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic) // kfake creates no topic on its own
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("first"))
	require.NoError(t, err)

	stop := make(chan struct{})
	var healthy sync.WaitGroup
	var okSends atomic.Int64
	for g := range 4 {
		healthy.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, _, err := p.SendMessage(context.Background(), msg(fmt.Sprintf("healthy-%d-%d", g, i)))
				if !assert.NoError(t, err, "a send to the healthy topic") {
					return
				}
				okSends.Add(1)
			}
		})
	}

	typo := func(v string) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: "evnets", Value: sarama.StringEncoder(v)}
	}
	for i := range 60 {
		_, _, err := p.SendMessage(context.Background(), typo("lost"))
		require.ErrorIs(t, err, ErrInvalidMessage, "nothing was sent")
		require.NotErrorIs(t, err, ErrDeliveryUnknown)
		assert.ErrorIs(t, err, sarama.ErrUnknownTopicOrPartition)

		err = p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("beside a typo"), typo("lost")})
		require.ErrorIs(t, err, ErrInvalidMessage)
		require.NotErrorIs(t, err, ErrDeliveryUnknown)
		if i%10 == 0 {
			start := time.Now()
			forgetMissingTopics(p) // the next send asks the broker again
			_, _, err := p.SendMessage(context.Background(), typo("lost"))
			require.ErrorIs(t, err, ErrInvalidMessage)
			t.Logf("looked up again in %v", time.Since(start))
		}
	}
	close(stop)
	healthy.Wait()

	s := p.Stats()
	assert.Zero(t, s.ProducersRetired, "a missing topic is the message's fault, not the producer's")
	assert.EqualValues(t, 1, s.ProvisionAttempts)
	assert.EqualValues(t, 60+2*60+6, s.FailedInvalid, "each message of a call counts")
	require.NoError(t, p.Close(context.Background()))
	stored := countValues(readBack(t, c, topic))
	assert.Zero(t, stored["beside a typo"], "a call with a missing topic sends nothing")
	assert.EqualValues(t, okSends.Load()+1, len(stored))
}

func TestOneBrokerOfThreeGoingDownDoesNotRetireTheProducer(t *testing.T) {
	checkLeaks(t)
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))

	keyedTo := func(i int) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("key-%d", i%24)), Value: sarama.StringEncoder(value(i))}
	}
	send := func(from, n int) (failed int) {
		var wg sync.WaitGroup
		var nf atomic.Int64
		for i := from; i < from+n; i++ {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, _, err := p.SendMessage(ctx, keyedTo(i))
				if err != nil {
					nf.Add(1)
					assert.Contains(t, []string{ClassUnavailable, ClassUnknown}, ErrorClass(err), "%v", err)
				}
			})
		}
		wg.Wait()
		return int(nf.Load())
	}
	require.Zero(t, send(0, 48), "every broker up")

	// The broker leading partition 0 dies: every connection to it is
	// dropped at its next request. The cluster has not noticed yet, so it
	// still names that broker the leader of its partitions.
	down := c.LeaderFor(topic, 0)
	var dead atomic.Bool
	dead.Store(true)
	c.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if dead.Load() && c.CurrentNode() == down {
			return nil, errors.New("broker down"), true
		}
		return nil, nil, false
	})
	failed := send(100, 48)
	t.Logf("%d of 48 sends failed while a leader was down", failed)
	assert.Positive(t, failed, "the partitions of the dead broker were unreachable")

	// The cluster elects other leaders; the pool follows them.
	require.NoError(t, c.RemoveNode(down))
	retryUntil(t, 10*time.Second, func() error {
		if n := send(200, 48); n > 0 {
			return fmt.Errorf("%d sends failed", n)
		}
		return nil
	})
	s := p.Stats()
	assert.Zero(t, s.ProducersRetired, "one broker down is no broken producer")
	assert.Zero(t, s.ProvisionFailures)
	t.Logf("%d producers made (more than one when the load saturated a connection)", s.ProvisionAttempts)
}

func TestCloseRacingCommitTxnEndsInSuccessOrErrPoolClosed(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TransactionalID = "commit-race"
	cfg.ProvisionTimeout = 500 * time.Millisecond // bounds Close's abort of an open transaction
	ctx := context.Background()

	open := func(t *testing.T) (*ProducerPool, *Lease) {
		p, err := New(cfg)
		require.NoError(t, err)
		l, err := p.Lease(ctx)
		require.NoError(t, err)
		require.NoError(t, l.BeginTxn())
		_, _, err = l.SendMessage(ctx, keyed("in a transaction"))
		require.NoError(t, err)
		return p, l
	}
	wantCommitOrClosed := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			assert.ErrorIs(t, err, ErrPoolClosed)
			assert.NotContains(t, err.Error(), "invalid transition")
		}
	}

	t.Run("Close while the commit is at the broker, answered", func(t *testing.T) {
		hold := holdRequests(t, c, kmsg.EndTxn)
		p, l := open(t)
		committed := make(chan error, 1)
		go func() { committed <- l.CommitTxn(ctx) }()
		<-hold.seen
		closed := make(chan error, 1)
		go func() { closed <- p.Close(ctx) }()
		<-p.closing
		hold.release()
		wantCommitOrClosed(t, <-committed)
		require.NoError(t, <-closed)
		l.Release()
	})

	t.Run("Close while the commit is at the broker, never answered", func(t *testing.T) {
		hold := holdRequests(t, c, kmsg.EndTxn)
		p, l := open(t)
		committed := make(chan error, 1)
		go func() { committed <- l.CommitTxn(ctx) }()
		<-hold.seen
		require.NoError(t, p.Close(ctx))
		err := <-committed
		require.ErrorIs(t, err, ErrPoolClosed, "Close cut the commit short")
		wantCommitOrClosed(t, err)
		l.Release()
		hold.release()
	})

	t.Run("Close and CommitTxn at once", func(t *testing.T) {
		for range 10 {
			p, l := open(t)
			committed := make(chan error, 1)
			go func() { committed <- l.CommitTxn(ctx) }()
			require.NoError(t, p.Close(ctx))
			wantCommitOrClosed(t, <-committed)
			l.Release()
		}
	})
}

func TestPingRacingCloseReturnsErrPoolClosed(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p, err := New(testConfig(c.ListenAddrs()...))
	require.NoError(t, err)
	require.NoError(t, p.Ping(context.Background()), "a producer exists")

	hold := holdRequests(t, c, kmsg.ApiVersions) // Ping's round trip
	pinged := make(chan error, 1)
	go func() { pinged <- p.Ping(context.Background()) }()
	<-hold.seen
	require.NoError(t, p.Close(context.Background()))
	err = <-pinged
	require.ErrorIs(t, err, ErrPoolClosed, "not ErrUnavailable: the pool closed, Kafka did not go away")
	assert.NotErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, p.Ping(context.Background()), ErrPoolClosed)
}

func TestPingAndLeaseErrorsDoNotSpeakOfAMessage(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, testConfig(freeAddr(t)))
	var errs []error
	errs = append(errs, p.Ping(context.Background()))
	_, err := p.Lease(context.Background())
	errs = append(errs, err)
	require.NoError(t, p.Close(context.Background()))
	errs = append(errs, p.Ping(context.Background()))
	_, err = p.Lease(context.Background())
	errs = append(errs, err)
	for _, err := range errs {
		require.Error(t, err)
		assert.NotContains(t, err.Error(), "message")
		assert.Contains(t, []string{ClassUnavailable, ClassClosed}, ErrorClass(err))
	}
	_, _, err = p.SendMessage(context.Background(), msg("x"))
	assert.Contains(t, err.Error(), "message not sent", "a send's error does")
}

func TestEveryProducerLeasedIsNoFreeProducerNotKafkaUnavailable(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 1
	p := newTestPool(t, cfg)
	l, err := p.Lease(context.Background())
	require.NoError(t, err)
	defer l.Release()

	_, _, err = p.SendMessage(context.Background(), msg("no room"))
	require.ErrorIs(t, err, ErrNoFreeProducer)
	require.ErrorIs(t, err, ErrUnavailable, "not sent: retrying is safe")
	assert.NotContains(t, err.Error(), "kafka unavailable", "Kafka is up; the cap is taken")
	assert.Contains(t, err.Error(), "MaxProducers")
	// Ping asks whether a broker answers: the leased producer's
	// connection tells, though no send could use it.
	require.NoError(t, p.Ping(context.Background()))
}

func TestALeaseFailsAtOnceWhenTheOnlyProducerIsShared(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 1
	p := newTestPool(t, cfg)
	_, _, err := p.SendMessage(context.Background(), msg("shared"))
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = p.Lease(ctx)
	require.ErrorIs(t, err, ErrNoFreeProducer)
	assert.NoError(t, ctx.Err(), "at once: a shared producer is never released")
	assert.NotContains(t, err.Error(), "kafka unavailable")
	assert.EqualValues(t, 1, p.Stats().ProvisionAttempts)
}

func TestCloseWithAnExpiredContextOnAnIdlePoolReturnsNil(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		use  func(*testing.T, *ProducerPool)
	}{
		{"never used", func(*testing.T, *ProducerPool) {}},
		{"with an idle shared producer", func(t *testing.T, p *ProducerPool) {
			_, _, err := p.SendMessage(context.Background(), msg("acknowledged"))
			require.NoError(t, err)
		}},
		{"with an idle lease producer", func(t *testing.T, p *ProducerPool) {
			l, err := p.Lease(context.Background())
			require.NoError(t, err)
			_, _, err = l.SendMessage(context.Background(), msg("acknowledged"))
			require.NoError(t, err)
			l.Release()
		}},
		{"after Produce and Flush", func(t *testing.T, p *ProducerPool) {
			p.Produce(context.Background(), msg("flushed"), nil)
			require.NoError(t, p.Flush(context.Background()))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each time anew: the last answer's bookkeeping may still be
			// finishing as the sender returns.
			for range 20 {
				p, err := New(testConfig(c.ListenAddrs()...))
				require.NoError(t, err)
				tt.use(t, p)
				require.NoError(t, p.Close(expired), "nothing was in flight: nothing was abandoned")
				assert.Zero(t, p.Stats().Producers)
			}
		})
	}
}

func TestSendMessagesWithOneMessageToAMissingTopicSendsNothingAndNamesIt(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	err := p.SendMessages(context.Background(), []*sarama.ProducerMessage{
		msg("good-0"),
		{Topic: "no-such-topic", Value: sarama.StringEncoder("bad-1")},
		msg("good-2"),
	})
	require.ErrorIs(t, err, ErrInvalidMessage)
	var me *MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, 1, me.Index, "the message to blame, as for the pool's own checks")
	assert.Contains(t, me.Error(), "no-such-topic")
	var ses SendErrors
	assert.False(t, errors.As(err, &ses), "one error for the call, not one per message: %v", err)
	assert.Zero(t, p.Stats().InFlight)

	// The good messages were not sent; alone, they are.
	require.NoError(t, p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("good-0"), msg("good-2")}))
	require.NoError(t, p.Close(context.Background()))
	stored := countValues(readBack(t, c, topic))
	assert.Equal(t, map[string]int{"good-0": 1, "good-2": 1}, stored)
}
