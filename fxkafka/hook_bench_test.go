package fxkafka

import (
	"context"
	"testing"

	"github.com/IBM/sarama"
)

// nopHook implements every hook interface and does nothing: what the pool
// itself pays for calling hooks.
type nopHook struct{}

func (nopHook) OnSendStart(ctx context.Context, _ *sarama.ProducerMessage) context.Context {
	return ctx
}
func (nopHook) OnSendEnd(context.Context, *sarama.ProducerMessage, SendInfo) {}
func (nopHook) OnProvision(ProvisionInfo)                                    {}
func (nopHook) OnRetire(RetireInfo)                                          {}

// BenchmarkHook measures the cost of one no-op hook per send against none:
// parallel senders (8 per GOMAXPROCS) on one pool and one
// in-process broker, 100-byte values, each waiting for its acknowledgement.
//
//	go test -run '^$' -bench BenchmarkHook -benchmem -count 6 ./fxkafka
func BenchmarkHook(b *testing.B) {
	c := startBroker(b, "", topic)
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"Hook=none", nil},
		{"Hook=nop", []Option{WithHook(nopHook{})}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := newTestPool(b, testConfig(c.ListenAddrs()...), bc.opts...)
			ctx := context.Background()
			if _, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: hookBenchValue}); err != nil {
				b.Fatal(err) // provisioned before the clock starts
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(8) // 8 senders per CPU: enough to keep the producer batching
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: hookBenchValue}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

var hookBenchValue = sarama.ByteEncoder(make([]byte, 100))
