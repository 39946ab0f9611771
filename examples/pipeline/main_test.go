package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newPool(t *testing.T, b *fxkafkatest.Broker) *fxkafka.ProducerPool {
	t.Helper()
	p, err := fxkafka.New(b.Config())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

// checkOrder asserts that each key's values ("<key>/<n>") are stored once
// each, in increasing n.
func checkOrder(t *testing.T, recs []fxkafkatest.Record) {
	t.Helper()
	last := map[string]int{}
	for _, r := range recs {
		key, n, ok := strings.Cut(string(r.Value), "/")
		require.True(t, ok, string(r.Value))
		require.Equal(t, key, string(r.Key))
		i, err := strconv.Atoi(n)
		require.NoError(t, err)
		if prev, seen := last[key]; seen {
			require.Greater(t, i, prev, "key %s: %d stored after %d", key, i, prev)
		}
		last[key] = i
	}
}

func TestPipelineDeliversEveryEventOncePerKeyInOrder(t *testing.T) {
	b := fxkafkatest.NewBroker(t, "pipeline")
	pl := &Pipeline{Pool: newPool(t, b), Topic: "pipeline"}
	const n = 20_000
	counts, err := pl.Run(context.Background(), Generate(n, 8))
	require.NoError(t, err)
	assert.Equal(t, Counts{Produced: n, Acked: n}, counts, "every outcome is counted when Run returns")
	assert.NoError(t, pl.FirstError())

	recs := b.WaitForRecords("pipeline", n, 10*time.Second)
	require.Len(t, recs, n)
	checkOrder(t, recs)
}

func TestPipelineReadsKeyedAndKeylessLines(t *testing.T) {
	b := fxkafkatest.NewBroker(t, "pipeline")
	pl := &Pipeline{Pool: newPool(t, b), Topic: "pipeline"}
	counts, err := pl.Run(context.Background(), Lines(strings.NewReader("a\tfirst\nsecond\na\tthird\n")))
	require.NoError(t, err)
	assert.Equal(t, Counts{Produced: 3, Acked: 3}, counts)

	byValue := map[string]string{}
	for _, r := range b.WaitForRecords("pipeline", 3, 10*time.Second) {
		byValue[string(r.Value)] = string(r.Key)
	}
	assert.Equal(t, map[string]string{"first": "a", "second": "", "third": "a"}, byValue)
}

func TestAnInterruptedPipelineStopsReadingAndFlushesWhatItProduced(t *testing.T) {
	b := fxkafkatest.NewBroker(t, "pipeline")
	pl := &Pipeline{Pool: newPool(t, b), Topic: "pipeline"}
	ctx, interrupt := context.WithCancel(context.Background())
	defer interrupt()
	events := Generate(1_000_000, 8)
	const stopAt = 500
	src := func(yield func(Event) bool) error {
		n := 0
		return events(func(e Event) bool {
			if n++; n > stopAt {
				interrupt() // Ctrl-C, as the next event is read
			}
			return yield(e)
		})
	}
	counts, err := pl.Run(ctx, src)
	require.NoError(t, err)
	assert.Equal(t, Counts{Produced: stopAt, Acked: stopAt}, counts, "nothing read after the interrupt, everything before it delivered")
	checkOrder(t, b.WaitForRecords("pipeline", stopAt, 10*time.Second))
}

func TestRunUsesTheClusterOfKafkaBrokersAndReportsTheCounts(t *testing.T) {
	b := fxkafkatest.NewBroker(t, "events")
	t.Setenv("KAFKA_BROKERS", strings.Join(b.Addrs(), ","))
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), "events", Generate(100, 4), &out))
	assert.Contains(t, out.String(), "produced 100 to events in ")
	assert.Contains(t, out.String(), "acknowledged 100, unavailable 0, closed 0, invalid 0, unknown 0")
	assert.Len(t, b.WaitForRecords("events", 100, 10*time.Second), 100)
}

func TestRunWithoutKafkaBrokersUsesAnInProcessBroker(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), "pipeline", Lines(strings.NewReader("one\ntwo\n")), &out))
	assert.Contains(t, out.String(), "acknowledged 2, unavailable 0")
}

func TestAnUnreachableClusterIsCountedAsNotSent(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:1") // nothing listens there
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), "pipeline", Generate(10, 2), &out))
	assert.Contains(t, out.String(), "acknowledged 0, unavailable 10")
	assert.Contains(t, out.String(), "first failure: fxkafka: kafka unavailable")
}
