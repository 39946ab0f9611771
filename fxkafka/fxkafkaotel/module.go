package fxkafkaotel

import (
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"go.fxkafka.dev/fxkafka"
)

// Module registers a [Hook] with the pool fxkafka.Module builds, as
// fxkafka.ModuleOptions does (the "fxkafka.options" value group). It uses the application's
// trace.TracerProvider, metric.MeterProvider and
// propagation.TextMapPropagator if the application provides them, and
// OpenTelemetry's globals otherwise (W3C Trace Context if no global
// propagator is set); messaging.client.id is the fxkafka.Config's ClientID.
//
//	fx.New(
//		fxkafka.Module,
//		fxkafkaotel.Module,
//		fx.Supply(fx.Annotate(tracerProvider, fx.As(new(trace.TracerProvider)))),
//		...
//	)
var Module = fx.Module("fxkafkaotel", fx.Provide(newModuleOption))

type moduleParams struct {
	fx.In

	TracerProvider trace.TracerProvider          `optional:"true"`
	MeterProvider  metric.MeterProvider          `optional:"true"`
	Propagator     propagation.TextMapPropagator `optional:"true"`
	Config         fxkafka.Config                `optional:"true"`
}

type moduleResult struct {
	fx.Out

	Options []fxkafka.Option `group:"fxkafka.options"` // what fxkafka.ModuleOptions supplies
}

func newModuleOption(in moduleParams) (moduleResult, error) {
	h, err := NewHook(
		WithTracerProvider(in.TracerProvider),
		WithMeterProvider(in.MeterProvider),
		WithPropagator(in.Propagator),
		WithClientID(in.Config.ClientID),
	)
	if err != nil {
		return moduleResult{}, err
	}
	return moduleResult{Options: []fxkafka.Option{fxkafka.WithHook(h)}}, nil
}
