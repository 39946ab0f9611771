package fxkafkaotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaotel"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestModuleUsesTheApplicationsProvidersAndPropagator(t *testing.T) {
	checkLeaks(t)
	broker := fxkafkatest.NewBroker(t, topic)
	tel := newTelemetry(t)
	cfg := broker.Config()
	cfg.ClientID = "orders-service"
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

	var pool *fxkafka.ProducerPool
	app := fxtest.New(t,
		fxkafka.Module,
		fxkafkaotel.Module,
		fx.Replace(cfg),
		fx.Supply(
			fx.Annotate(tel.tp, fx.As(new(trace.TracerProvider))),
			fx.Annotate(tel.mp, fx.As(new(metric.MeterProvider))),
			fx.Annotate(prop, fx.As(new(propagation.TextMapPropagator))),
		),
		fx.Populate(&pool),
	)
	app.RequireStart()
	member, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)
	_, _, err = pool.SendMessage(baggage.ContextWithBaggage(context.Background(), bag), order("o-1"))
	require.NoError(t, err)
	app.RequireStop()

	spans := tel.producerSpans()
	require.Len(t, spans, 1, "the app's tracer provider")
	assert.Equal(t, "orders-service", attrs(spans[0].Attributes())["messaging.client.id"], "the pool's Config.ClientID")
	_, sent, _, _, _ := byClass(t, tel)
	assert.Equal(t, map[string]int64{fxkafka.ClassOK: 1}, sent, "the app's meter provider")

	recs := broker.WaitForRecords(topic, 1, 10*time.Second)
	headers := map[string]string{}
	for _, h := range recs[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	assert.Equal(t, "tenant=acme", headers["baggage"], "the app's propagator")
	assert.Equal(t, spans[0].SpanContext().SpanID(), contextIn(recs[0]).SpanID())
}

// TestModuleFallsBackToTheGlobals sets the global tracer and meter
// providers for the rest of the test binary; the other tests give theirs
// explicitly. The global propagator is never set in this binary: the W3C
// default is what this test sees.
func TestModuleFallsBackToTheGlobals(t *testing.T) {
	checkLeaks(t)
	broker := fxkafkatest.NewBroker(t, topic)
	tel := newTelemetry(t)
	otel.SetTracerProvider(tel.tp)
	otel.SetMeterProvider(tel.mp)

	var pool *fxkafka.ProducerPool
	app := fxtest.New(t, fxkafka.Module, fxkafkaotel.Module, fx.Replace(broker.Config()), fx.Populate(&pool))
	app.RequireStart()
	_, _, err := pool.SendMessage(context.Background(), order("o-1"))
	require.NoError(t, err)
	app.RequireStop()

	spans := tel.producerSpans()
	require.Len(t, spans, 1, "the global tracer provider")
	_, sent, _, _, _ := byClass(t, tel)
	assert.Equal(t, map[string]int64{fxkafka.ClassOK: 1}, sent, "the global meter provider")
	recs := broker.WaitForRecords(topic, 1, 10*time.Second)
	assert.Equal(t, spans[0].SpanContext().SpanID(), contextIn(recs[0]).SpanID(), "W3C traceparent when no global propagator is set")
}
