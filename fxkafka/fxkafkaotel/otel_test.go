package fxkafkaotel_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaotel"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkLeaks verifies, after the test's other cleanups, that it left no
// goroutine behind.
func checkLeaks(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

const topic = "orders"

// telemetry is an SDK tracer provider recording every span and a meter
// provider read on demand.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tel.tp.Shutdown(context.Background())
		_ = tel.mp.Shutdown(context.Background())
	})
	return tel
}

// producerSpans returns the ended spans of kind PRODUCER.
func (tel *telemetry) producerSpans() []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			out = append(out, s)
		}
	}
	return out
}

func attrs(kvs []attribute.KeyValue) map[string]any {
	m := map[string]any{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// newPool returns a pool with the hook, closed at cleanup.
func newPool(t *testing.T, cfg fxkafka.Config, h *fxkafkaotel.Hook) *fxkafka.ProducerPool {
	t.Helper()
	p, err := fxkafka.New(cfg, fxkafka.WithHook(h))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close(context.Background())) })
	return p
}

func newHook(t *testing.T, tel *telemetry, opts ...fxkafkaotel.Option) *fxkafkaotel.Hook {
	t.Helper()
	h, err := fxkafkaotel.NewHook(append([]fxkafkaotel.Option{
		fxkafkaotel.WithTracerProvider(tel.tp), fxkafkaotel.WithMeterProvider(tel.mp),
	}, opts...)...)
	require.NoError(t, err)
	return h
}

func order(v string) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(v), Value: sarama.StringEncoder(v)}
}

// contextIn returns the span context a consumer extracts from a stored
// record's headers.
func contextIn(r fxkafkatest.Record) trace.SpanContext {
	carrier := propagation.MapCarrier{}
	for _, h := range r.Headers {
		carrier[h.Key] = string(h.Value)
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}

func TestASendWithAParentSpanYieldsOneProducerSpanWhoseContextTheRecordCarries(t *testing.T) {
	checkLeaks(t)
	broker := fxkafkatest.NewBroker(t, topic)
	tel := newTelemetry(t)
	cfg := broker.Config()
	cfg.ClientID = "orders-service"
	pool := newPool(t, cfg, newHook(t, tel, fxkafkaotel.WithClientID(cfg.ClientID)))

	ctx, parent := tel.tp.Tracer("test").Start(context.Background(), "POST /orders")
	msg := order("o-1")
	partition, offset, err := pool.SendMessage(ctx, msg)
	require.NoError(t, err)
	parent.End()
	assert.Empty(t, msg.Headers, "the caller's message is left as it was")

	spans := tel.producerSpans()
	require.Len(t, spans, 1, "one producer span per message")
	span := spans[0]
	assert.Equal(t, "send orders", span.Name())
	assert.Equal(t, parent.SpanContext().TraceID(), span.SpanContext().TraceID())
	assert.Equal(t, parent.SpanContext().SpanID(), span.Parent().SpanID(), "a child of the caller's span")
	assert.Equal(t, codes.Unset, span.Status().Code)
	assert.Equal(t, map[string]any{
		"messaging.system":                   "kafka",
		"messaging.operation.name":           "send",
		"messaging.operation.type":           "send",
		"messaging.destination.name":         topic,
		"messaging.destination.partition.id": strconv.Itoa(int(partition)),
		"messaging.kafka.offset":             offset,
		"messaging.client.id":                "orders-service",
	}, attrs(span.Attributes()))

	recs := broker.WaitForRecords(topic, 1, 10*time.Second)
	require.Len(t, recs, 1)
	stored := contextIn(recs[0])
	require.True(t, stored.IsValid(), "the record carries a traceparent header: %v", recs[0].Headers)
	assert.Equal(t, span.SpanContext().TraceID(), stored.TraceID())
	assert.Equal(t, span.SpanContext().SpanID(), stored.SpanID(), "a consumer continues from the producer span")
	assert.True(t, stored.IsSampled())
}

func TestASendWithoutAParentSpanStartsATrace(t *testing.T) {
	checkLeaks(t)
	broker := fxkafkatest.NewBroker(t, topic)
	tel := newTelemetry(t)
	pool := newPool(t, broker.Config(), newHook(t, tel))

	_, _, err := pool.SendMessage(context.Background(), order("o-2"))
	require.NoError(t, err)
	spans := tel.producerSpans()
	require.Len(t, spans, 1)
	assert.False(t, spans[0].Parent().IsValid(), "a root span")
	assert.Equal(t, fxkafka.DefaultClientID, attrs(spans[0].Attributes())["messaging.client.id"])
	recs := broker.WaitForRecords(topic, 1, 10*time.Second)
	assert.Equal(t, spans[0].SpanContext().SpanID(), contextIn(recs[0]).SpanID())
}

func TestAHeaderThePropagatorSetsReplacesTheMessagesOwn(t *testing.T) {
	checkLeaks(t)
	broker := fxkafkatest.NewBroker(t, topic)
	tel := newTelemetry(t)
	pool := newPool(t, broker.Config(), newHook(t, tel))

	msg := order("o-3")
	stale := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" // copied from an upstream record, say
	msg.Headers = []sarama.RecordHeader{{Key: []byte("traceparent"), Value: []byte(stale)}, {Key: []byte("kept"), Value: []byte("yes")}}
	_, _, err := pool.SendMessage(context.Background(), msg)
	require.NoError(t, err)
	assert.Equal(t, stale, string(msg.Headers[0].Value), "the caller's headers are left as they were")

	recs := broker.WaitForRecords(topic, 1, 10*time.Second)
	require.Len(t, recs[0].Headers, 2)
	assert.Equal(t, "kept", recs[0].Headers[1].Key)
	assert.Equal(t, tel.producerSpans()[0].SpanContext().SpanID(), contextIn(recs[0]).SpanID())
}

func TestAFailedSendsSpanHasStatusErrorAndItsErrorType(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name      string
		wantClass string
		send      func(t *testing.T, h *fxkafkaotel.Hook) error
	}{
		{"no broker reachable", fxkafka.ClassUnavailable, func(t *testing.T, h *fxkafkaotel.Hook) error {
			pool := newPool(t, fxkafka.Config{Brokers: []string{"127.0.0.1:1"}, ProvisionTimeout: time.Second}, h)
			_, _, err := pool.SendMessage(context.Background(), order("o"))
			return err
		}},
		{"pool closed", fxkafka.ClassClosed, func(t *testing.T, h *fxkafkaotel.Hook) error {
			pool := newPool(t, fxkafka.Config{Brokers: []string{"127.0.0.1:1"}}, h)
			require.NoError(t, pool.Close(context.Background()))
			_, _, err := pool.SendMessage(context.Background(), order("o"))
			return err
		}},
		{"no answer before the deadline", fxkafka.ClassUnknown, func(t *testing.T, h *fxkafkaotel.Hook) error {
			broker := fxkafkatest.NewBroker(t, topic)
			pool := newPool(t, broker.Config(), h)
			held, release := broker.HoldProduce()
			t.Cleanup(release) // before the pool's Close, which waits for the answer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { <-held; cancel() }() // the caller gives up once its request is at the broker
			_, _, err := pool.SendMessage(ctx, order("o"))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tel := newTelemetry(t)
			err := tt.send(t, newHook(t, tel))
			require.Error(t, err)
			require.Equal(t, tt.wantClass, fxkafka.ErrorClass(err))

			spans := tel.producerSpans()
			require.Len(t, spans, 1)
			assert.Equal(t, codes.Error, spans[0].Status().Code)
			assert.Equal(t, err.Error(), spans[0].Status().Description)
			got := attrs(spans[0].Attributes())
			assert.Equal(t, tt.wantClass, got["error.type"])
			assert.NotContains(t, got, "messaging.destination.partition.id", "not written")
			assert.NotContains(t, got, "messaging.kafka.offset", "not written")
		})
	}
}

// byClass reads the duration histogram's counts and the sent counter's
// values, by fxkafka.class, and the attributes of each series.
func byClass(t *testing.T, tel *telemetry) (durations, sent map[string]int64, series map[string]map[string]any, unit string, bounds []float64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	durations, sent, series = map[string]int64{}, map[string]int64{}, map[string]map[string]any{}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, fxkafkaotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			switch m.Name {
			case "messaging.client.operation.duration":
				unit = m.Unit
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					class, _ := dp.Attributes.Value(fxkafkaotel.ClassKey)
					durations[class.AsString()] += int64(dp.Count)
					series[class.AsString()] = attrs(dp.Attributes.ToSlice())
					bounds = dp.Bounds
				}
			case "messaging.client.sent.messages":
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					class, _ := dp.Attributes.Value(fxkafkaotel.ClassKey)
					sent[class.AsString()] += dp.Value
					assert.Equal(t, series[class.AsString()], attrs(dp.Attributes.ToSlice()), "both metrics have the same attributes")
				}
			}
		}
	}
	return durations, sent, series, unit, bounds
}

func TestMetricsCountEverySendWithItsClass(t *testing.T) {
	checkLeaks(t)
	broker := fxkafkatest.NewBroker(t, topic)
	tel := newTelemetry(t)
	pool := newPool(t, broker.Config(), newHook(t, tel))
	ctx := context.Background()

	for range 3 {
		_, _, err := pool.SendMessage(ctx, order("ok"))
		require.NoError(t, err)
	}
	require.NoError(t, pool.SendMessages(ctx, []*sarama.ProducerMessage{order("ok"), order("ok")}))
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err := pool.SendMessage(cancelled, order("unavailable"))
	require.ErrorIs(t, err, fxkafka.ErrUnavailable)
	_, _, err = pool.SendMessage(ctx, nil)
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage) // refused by the pool's checks: counted too
	require.NoError(t, pool.Close(ctx))
	for range 2 {
		_, _, err := pool.SendMessage(ctx, order("closed"))
		require.ErrorIs(t, err, fxkafka.ErrPoolClosed)
	}

	durations, sent, series, unit, bounds := byClass(t, tel)
	want := map[string]int64{fxkafka.ClassOK: 5, fxkafka.ClassUnavailable: 1, fxkafka.ClassInvalid: 1, fxkafka.ClassClosed: 2}
	assert.Equal(t, want, durations, "messaging.client.operation.duration counts")
	assert.Equal(t, want, sent, "messaging.client.sent.messages")
	assert.Equal(t, "s", unit)
	assert.Equal(t, 0.0001, bounds[0], "buckets from 0.1 ms")
	assert.Equal(t, 10.0, bounds[len(bounds)-1], "to 10 s")
	assert.Equal(t, map[string]any{
		"messaging.system":           "kafka",
		"messaging.operation.name":   "send",
		"messaging.operation.type":   "send",
		"messaging.destination.name": topic,
		"fxkafka.class":              "ok",
	}, series[fxkafka.ClassOK], "no error.type on success")
	assert.Equal(t, "closed", series[fxkafka.ClassClosed]["error.type"])
	assert.Equal(t, "unavailable", series[fxkafka.ClassUnavailable]["error.type"])
	assert.Equal(t, "invalid", series[fxkafka.ClassInvalid]["error.type"])
}

func TestASendRefusedByThePoolsChecksHasAnErrorSpan(t *testing.T) {
	checkLeaks(t)
	tel := newTelemetry(t)
	pool := newPool(t, fxkafka.Config{Brokers: []string{"127.0.0.1:1"}}, newHook(t, tel))
	_, _, err := pool.SendMessage(context.Background(), &sarama.ProducerMessage{Value: sarama.StringEncoder("x")})
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage)
	_, _, err = pool.SendMessage(context.Background(), nil)
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage)
	spans := tel.producerSpans()
	require.Len(t, spans, 2, "a span for each refused send")
	for _, s := range spans {
		assert.Equal(t, "send", s.Name(), "no destination to name")
		assert.Equal(t, codes.Error, s.Status().Code)
		assert.Equal(t, fxkafka.ClassInvalid, attrs(s.Attributes())["error.type"])
	}
}
