package fxkafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"go.fxkafka.dev/internal/netdelay"
)

func TestRequestsPipelineOnlyWhenTheRoundTripIsWellAboveTheirCost(t *testing.T) {
	tests := []struct {
		name      string
		rtt, cost time.Duration
		want      bool
	}{
		{"loopback broker, small request", 50 * time.Microsecond, 10 * time.Microsecond, false},
		{"loopback broker, large batch", 3 * time.Millisecond, time.Millisecond, false},
		{"broker 1 ms away", 1100 * time.Microsecond, 15 * time.Microsecond, true},
		{"broker 5 ms away, large batch", 6 * time.Millisecond, 500 * time.Microsecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g pipeGauge
			for range 10 {
				g.observeAt(time.Now().UnixNano(), tt.rtt, tt.cost)
			}
			assert.Equal(t, tt.want, g.pipelining())
		})
	}
}

func TestTheGaugeGoesByTheShortestRoundTripSeen(t *testing.T) {
	var g pipeGauge
	g.observeAt(time.Now().UnixNano(), 5*time.Millisecond, 10*time.Microsecond)
	require.True(t, g.pipelining())
	// A queue on the broker makes round trips long; the floor seen decides.
	g.observeAt(time.Now().UnixNano(), 40*time.Microsecond, 10*time.Microsecond)
	g.observeAt(time.Now().UnixNano(), 9*time.Millisecond, 10*time.Microsecond)
	assert.False(t, g.pipelining(), "the broker answers in 40 µs at best: it is near")
}

// startFarBroker starts a 3-broker kfake cluster whose every request pays rtt.
func startFarBroker(t *testing.T, rtt time.Duration) *kfake.Cluster {
	t.Helper()
	return startFarCluster(t, rtt, 3, 6)
}

// startFarCluster starts a kfake cluster of brokers brokers, with topic of
// partitions partitions, whose every request pays rtt.
func startFarCluster(t *testing.T, rtt time.Duration, brokers int, partitions int32) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(partitions, topic), kfake.ListenFn(netdelay.ListenFunc(rtt)))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func TestThePoolPipelinesAndGrowsWhenTheBrokerIsFarAndRequestsQueue(t *testing.T) {
	checkLeaks(t)
	c := startFarBroker(t, 20*time.Millisecond)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxProducers = 3
	p := newTestPool(t, cfg)
	ctx := context.Background()
	_, _, err := p.SendMessage(ctx, msg("first"))
	require.NoError(t, err)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 512 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder("load")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitFor(t, 20*time.Second, "a second producer", func() bool { return p.Stats().Producers >= 2 })
	close(stop)
	wg.Wait()
	prods := *p.shared.Load()
	require.NotEmpty(t, prods)
	assert.True(t, prods[0].pipe.pipelining(), "requests pipeline to a broker 20 ms away")
	assert.LessOrEqual(t, p.Stats().Producers, cfg.MaxProducers)
}

func TestALightLoadOnAFarBrokerStaysOnOneProducer(t *testing.T) {
	checkLeaks(t)
	c := startFarBroker(t, 5*time.Millisecond)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				_, _, err := p.SendMessage(context.Background(), msg("light"))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, p.Stats().Producers, "four senders never fill a connection's request slots")
}

func TestThePipelineDepthFollowsTheBrokersQueue(t *testing.T) {
	const limit = 16
	floor := time.Millisecond
	var g depthGauge
	now := time.Unix(1_000_000, 0).UnixNano()
	step := func(rtt time.Duration, n int) {
		for range n {
			now += int64(floor) // one adjustment per floor round trip at most
			g.observeAt(now, rtt, true, limit)
		}
	}
	step(floor, 1)
	require.Equal(t, limit, g.limit(true, limit), "no queue: the connection's whole limit")

	// Answers take half as long again as the floor: a third of every
	// round trip is queueing, so at depth d about d/3 requests wait.
	step(floor*3/2, 40)
	assert.Equal(t, 6, g.limit(true, limit), "depth falls until no more than vegasBeta requests wait (6 × 1/3 = 2)")

	step(floor, 40)
	assert.Equal(t, limit, g.limit(true, limit), "the queue gone, depth grows back to the limit")

	step(floor*10, 100)
	assert.Equal(t, minDepth, g.limit(true, limit), "never below minDepth")
	assert.Equal(t, 1, g.limit(true, 1), "limit clamps to a smaller connection limit")
	assert.Equal(t, 1, g.limit(false, limit), "one request at a time when requests do not pipeline")
	step(floor, 40)
	g.observeAt(now+int64(floor), floor, true, 4)
	assert.Equal(t, 4, g.limit(true, 16), "observing a connection of limit 4 keeps the depth within it")
}

func TestThePipelineDepthChangesAtMostOncePerRoundTrip(t *testing.T) {
	var g depthGauge
	now := time.Unix(1_000_000, 0).UnixNano()
	g.observeAt(now, time.Millisecond, true, 16)
	for range 100 {
		now += int64(time.Microsecond) // a hundred answers within one round trip
		g.observeAt(now, 5*time.Millisecond, true, 16)
	}
	assert.Equal(t, 16, g.limit(true, 16), "no step within a round trip")
}

func TestBrokersAtDifferentDistancesKeepTheirOwnDepth(t *testing.T) {
	// Neither broker queues: each answers in its own round trip. Gauged
	// together, the near one's floor would make the far one look queued.
	var near, far depthGauge
	now := time.Unix(1_000_000, 0).UnixNano()
	for range 200 {
		now += int64(5 * time.Millisecond)
		near.observeAt(now, time.Millisecond, true, 16)
		far.observeAt(now, 5*time.Millisecond, true, 16)
	}
	assert.Equal(t, 16, near.limit(true, 16))
	assert.Equal(t, 16, far.limit(true, 16))
}

func TestWithoutPipeliningAConnectionCarriesOneRequest(t *testing.T) {
	var g pipeGauge
	g.observeAt(time.Now().UnixNano(), 50*time.Microsecond, 10*time.Microsecond)
	require.False(t, g.pipelining())
	var d depthGauge
	assert.Equal(t, 1, d.limit(g.pipelining(), 16))
}
