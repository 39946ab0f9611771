package fxkafkaotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaotel"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

var benchValue = sarama.ByteEncoder(make([]byte, 100))

// benchHooks are the hooks the benchmarks compare: with OpenTelemetry's
// no-op providers (an application without the SDK), and with the SDK
// recording every span (no exporter: the export pipeline is the
// application's cost, not the hook's) and aggregating the metrics.
func benchHooks(b *testing.B) map[string]*fxkafkaotel.Hook {
	b.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	sdk, err := fxkafkaotel.NewHook(fxkafkaotel.WithTracerProvider(tp), fxkafkaotel.WithMeterProvider(mp))
	require.NoError(b, err)
	noop, err := fxkafkaotel.NewHook(fxkafkaotel.WithTracerProvider(tracenoop.NewTracerProvider()), fxkafkaotel.WithMeterProvider(metricnoop.NewMeterProvider()))
	require.NoError(b, err)
	return map[string]*fxkafkaotel.Hook{"noop": noop, "sdk": sdk}
}

// BenchmarkHookCalls measures the hook alone: OnSendStart and OnSendEnd for
// one message, from parallel goroutines.
//
//	go test -run '^$' -bench BenchmarkHookCalls -benchmem -count 6 ./fxkafka/fxkafkaotel
func BenchmarkHookCalls(b *testing.B) {
	hooks := benchHooks(b)
	for _, name := range []string{"noop", "sdk"} {
		h := hooks[name]
		b.Run("Providers="+name, func(b *testing.B) {
			info := fxkafka.SendInfo{Partition: 1, Offset: 42, Class: fxkafka.ClassOK, Duration: time.Millisecond, Producer: 1}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					msg := &sarama.ProducerMessage{Topic: topic, Value: benchValue}
					ctx := h.OnSendStart(context.Background(), msg)
					h.OnSendEnd(ctx, msg, info)
				}
			})
		})
	}
}

// BenchmarkSend measures what the hook adds to a send: parallel senders (8
// per GOMAXPROCS) on one pool and one in-process broker, 100-byte values,
// each waiting for its acknowledgement.
//
//	go test -run '^$' -bench BenchmarkSend -benchmem -count 6 ./fxkafka/fxkafkaotel
func BenchmarkSend(b *testing.B) {
	broker := fxkafkatest.NewBroker(b, topic)
	hooks := benchHooks(b)
	for _, bc := range []struct {
		name string
		opts []fxkafka.Option
	}{
		{"Hook=none", nil},
		{"Hook=otel-noop", []fxkafka.Option{fxkafka.WithHook(hooks["noop"])}},
		{"Hook=otel-sdk", []fxkafka.Option{fxkafka.WithHook(hooks["sdk"])}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			pool, err := fxkafka.New(broker.Config(), bc.opts...)
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, pool.Close(context.Background())) })
			ctx := context.Background()
			_, _, err = pool.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: benchValue})
			require.NoError(b, err) // provisioned before the clock starts
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := pool.SendMessage(ctx, &sarama.ProducerMessage{Topic: topic, Value: benchValue}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
