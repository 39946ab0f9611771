package rdkafka

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/internal/benchkit"
)

var (
	mockRTTs    = []time.Duration{0, time.Millisecond, 5 * time.Millisecond}
	kfakeRTTs   = []time.Duration{0, time.Millisecond, 5 * time.Millisecond}
	senderCount = []int{1, 16, 256}
)

// BenchmarkSend is fxkafka's BenchmarkSend against librdkafka's mock
// cluster (3 brokers, 6 partitions, a round trip set on each broker) with
// librdkafka's producer among the peers, and librdkafka against the same
// kfake set-up as the core module's (delay line included), so that
// benchcmp has every peer on both brokers.
func BenchmarkSend(b *testing.B) {
	benchkit.Send(b, "mock", Mock, mockRTTs, senderCount,
		poolSend(false), poolSend(true),
		benchkit.SyncProducer(), benchkit.FranzSync(false), benchkit.FranzSync(true),
		Librdkafka(false), Librdkafka(true),
	)
	benchkit.Send(b, "kfake", benchkit.Kfake, kfakeRTTs, senderCount, Librdkafka(false), Librdkafka(true))
}

// poolSend is the pool with the default Config (Version set for the mock
// cluster), as in the core module's benchmarks.
func poolSend(idempotent bool) benchkit.SendImpl {
	name := "pool"
	if idempotent {
		name += "-idempotent"
	}
	return benchkit.SendImpl{Name: name, New: func(tb testing.TB, tgt benchkit.Target) func() error {
		p := newPool(tb, fxkafka.Config{Brokers: tgt.Addrs, Version: tgt.Version, Idempotent: idempotent})
		ctx := context.Background()
		return func() error {
			_, _, err := p.SendMessage(ctx, benchkit.Message())
			return err
		}
	}}
}

func newPool(tb testing.TB, cfg fxkafka.Config) *fxkafka.ProducerPool {
	tb.Helper()
	p, err := fxkafka.New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(tb, p.Close(ctx))
	})
	return p
}
