package fxkafkaotel_test

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaotel"
)

// Without Fx: make the hook and give it to fxkafka.New. Nothing listens on
// the broker address here, so the send fails and its span says why.
func ExampleNewHook() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	cfg := fxkafka.Config{Brokers: []string{"127.0.0.1:1"}, ClientID: "orders"}
	hook, err := fxkafkaotel.NewHook(fxkafkaotel.WithTracerProvider(tp), fxkafkaotel.WithClientID(cfg.ClientID))
	if err != nil {
		panic(err)
	}
	pool, err := fxkafka.New(cfg, fxkafka.WithHook(hook))
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	_, _, err = pool.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("o-1")})
	fmt.Println(fxkafka.ErrorClass(err))
	for _, s := range spans.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "error.type" {
				fmt.Println(s.Name(), s.SpanKind(), s.Status().Code, a.Value.AsString())
			}
		}
	}
	// Output:
	// unavailable
	// send orders producer Error unavailable
}

// With Fx: add the module next to fxkafka.Module. It uses the app's
// trace.TracerProvider (and metric.MeterProvider, propagation.TextMapPropagator)
// if the app provides them, else OpenTelemetry's globals.
func ExampleModule() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	var producer fxkafka.Producer
	app := fx.New(
		fxkafka.Module,
		fxkafkaotel.Module,
		fx.Replace(fxkafka.Config{Brokers: []string{"127.0.0.1:1"}}),
		fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))),
		fx.Populate(&producer),
		fx.NopLogger,
	)
	if err := app.Start(context.Background()); err != nil {
		panic(err)
	}
	_, _, _ = producer.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("o-1")})
	if err := app.Stop(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(len(spans.Ended()), spans.Ended()[0].Name())
	// Output: 1 send orders
}
