package fxkafka

import (
	"context"
	"testing"

	"github.com/IBM/sarama"

	"go.fxkafka.dev/internal/benchkit"
)

// BenchmarkProducePool is one goroutine handing b.N messages to the pool's
// Produce (default Config, and Idempotent), then Flush, at 0 and 5 ms of
// round trip, beside BenchmarkProduce's peers. It reports msgs/s and the
// peak heap.
func BenchmarkProducePool(b *testing.B) {
	benchkit.Produce(b, "kfake", benchkit.Kfake, produceRTTs, poolProduce(false), poolProduce(true))
}

func poolProduce(idempotent bool) benchkit.ProduceImpl {
	return benchkit.ProduceImpl{Name: poolName(idempotent), New: func(tb testing.TB, tgt benchkit.Target) benchkit.Producer {
		p := benchPool(tb, tgt, idempotent)
		ctx := context.Background()
		var failed benchkit.Failures
		promise := func(_ *sarama.ProducerMessage, err error) {
			if err != nil {
				failed.Add(err)
			}
		}
		return benchkit.Producer{
			Produce: func() { p.Produce(ctx, benchkit.Message(), promise) },
			Flush: func() error {
				if err := p.Flush(ctx); err != nil {
					return err
				}
				return failed.Take(0)
			},
		}
	}}
}
