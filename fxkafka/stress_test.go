package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// stressLog records what each message's sender was told.
type stressLog struct {
	mu      sync.Mutex
	outcome map[string]error
}

func (l *stressLog) told(v string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.outcome[v] = err
}

// TestStress runs goroutines that mix every call of the pool (SendMessage,
// SendMessages, Produce, Flush, Lease and its sends, Ping, Stats) against a
// broker that answers some produce requests with a retriable error, and
// closes the pool halfway through. No call panics; every call returns one of
// its documented classes; every message acknowledged is stored once and
// none told "not sent" is stored; every promise runs once; nothing is left
// in flight, buffered or running.
func TestStress(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.NotLeaderForPartition, Count: -1, When: everyNth(9)})
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 3
	cfg.ProducerBusyAt = 4
	cfg.Linger = time.Millisecond
	p, err := New(cfg)
	require.NoError(t, err)

	const workers, opsEach = 24, 60
	log := &stressLog{outcome: make(map[string]error)}
	var (
		ops           atomic.Int64
		halfway       = make(chan struct{})
		halfwayOnce   sync.Once
		produced      atomic.Int64
		promised      atomic.Int64
		promisedTwice atomic.Int64
		promises      sync.WaitGroup
	)
	// sendClass checks a send's error: one of the classes SendMessage
	// documents (invalid never: every message here is valid).
	sendClass := func(what string, err error) {
		switch ErrorClass(err) {
		case ClassOK, ClassUnavailable, ClassClosed, ClassUnknown:
		default:
			t.Errorf("%s: undocumented outcome %v", what, err)
		}
		if err != nil && ErrorClass(err) == ClassUnknown {
			assert.ErrorIs(t, err, ErrDeliveryUnknown, what)
		}
	}
	deadline := func(r *rand.Rand) (context.Context, context.CancelFunc) {
		if r.IntN(4) == 0 {
			return context.WithTimeout(context.Background(), time.Duration(r.IntN(20))*time.Millisecond)
		}
		return context.WithTimeout(context.Background(), 5*time.Second)
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := range opsEach {
				if ops.Add(1) == workers*opsEach/2 {
					halfwayOnce.Do(func() { close(halfway) })
				}
				v := fmt.Sprintf("w%02d-%03d", w, i)
				ctx, cancel := deadline(r)
				switch r.IntN(10) {
				case 0, 1, 2:
					_, _, err := p.SendMessage(ctx, msg(v))
					sendClass("SendMessage", err)
					log.told(v, err)
				case 3:
					msgs := []*sarama.ProducerMessage{msg(v + "-a"), msg(v + "-b"), msg(v + "-c")}
					err := p.SendMessages(ctx, msgs)
					var se SendErrors
					failed := map[int]error{}
					if errors.As(err, &se) {
						for _, me := range se {
							sendClass("SendMessages", me.Err)
							failed[me.Index] = me.Err
						}
					} else if err != nil {
						t.Errorf("SendMessages: %v is no SendErrors", err)
					}
					for j, m := range msgs {
						log.told(string(m.Value.(sarama.StringEncoder)), failed[j])
					}
				case 4, 5:
					produced.Add(1)
					promises.Add(1)
					var once atomic.Bool
					p.Produce(ctx, msg(v), func(m *sarama.ProducerMessage, err error) {
						if !once.CompareAndSwap(false, true) {
							promisedTwice.Add(1)
							return
						}
						defer promises.Done()
						promised.Add(1)
						sendClass("Produce", err)
						log.told(v, err)
					})
				case 6:
					if err := p.Flush(ctx); err != nil {
						assert.ErrorIs(t, err, ctx.Err(), "Flush ends with nil or its context's error")
					}
				case 7:
					l, err := p.Lease(ctx)
					if err != nil {
						assert.Contains(t, []string{ClassUnavailable, ClassClosed}, ErrorClass(err), "Lease: %v", err)
						break
					}
					_, _, err = l.SendMessage(ctx, msg(v))
					sendClass("Lease.SendMessage", err)
					log.told(v, err)
					l.Release()
				case 8:
					if err := p.Ping(ctx); err != nil {
						assert.Contains(t, []string{ClassUnavailable, ClassClosed}, ErrorClass(err), "Ping: %v", err)
					}
				case 9:
					s := p.Stats()
					assert.LessOrEqual(t, s.Producers+s.Provisioning, cfg.MaxProducers, "Stats: %+v", s)
				}
				cancel()
			}
		})
	}
	<-halfway
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- p.Close(closeCtx) }()
	require.NoError(t, p.Close(closeCtx), "every message ends before Close's deadline")
	require.NoError(t, <-closed, "Close twice, at once")
	wg.Wait()
	promises.Wait()
	// A Produce after Close still runs its promise, on a goroutine of its
	// own, and frees its buffer space after the promise returns: Flush
	// waits for that.
	require.NoError(t, p.Flush(context.Background()))

	assert.Equal(t, produced.Load(), promised.Load(), "every promise ran")
	assert.Zero(t, promisedTwice.Load(), "no promise ran twice")
	s := p.Stats()
	assert.Zero(t, s.Producers)
	assert.Zero(t, s.InFlight)
	assert.Zero(t, s.Buffered)
	_, peak := slotsNow(p)
	assert.LessOrEqual(t, peak, cfg.MaxProducers)

	stored := countValues(readBack(t, c, topic))
	var acked, notSent, unknown int
	for v, err := range log.outcome {
		switch ErrorClass(err) {
		case ClassOK:
			acked++
			assert.Equal(t, 1, stored[v], "acknowledged %s stored once", v)
		case ClassUnavailable, ClassClosed:
			notSent++
			assert.Zero(t, stored[v], "%s was told it was not sent: %v", v, err)
		default:
			unknown++
			assert.LessOrEqual(t, stored[v], 1, "%s stored at most once", v)
		}
	}
	t.Logf("%d acknowledged, %d not sent, %d unknown; %d stored", acked, notSent, unknown, len(stored))
	assert.Positive(t, acked)
	assert.Positive(t, notSent)
}
