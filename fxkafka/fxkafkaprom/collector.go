// Package fxkafkaprom exports a [fxkafka.ProducerPool]'s [fxkafka.Stats] as
// Prometheus metrics ([Collector]), and the latency of its sends and the
// size of its batches as histograms ([Histograms], a hook). It is a separate
// module so that services that do not use Prometheus do not link it.
//
// With Fx, add the module next to fxkafka.Module:
//
//	fx.New(fxkafka.Module, fxkafkaprom.Module, ...)
//
// It registers the collector and the histograms with the application's
// prometheus.Registerer if it provides one, or with
// prometheus.DefaultRegisterer, and unregisters them on stop. Without Fx:
//
//	h := fxkafkaprom.NewHistograms()
//	pool, err := fxkafka.New(cfg, fxkafka.WithHook(h))
//	...
//	prometheus.MustRegister(fxkafkaprom.NewCollector(pool), h)
package fxkafkaprom

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"go.fxkafka.dev/fxkafka"
)

// Collector is a prometheus.Collector reading a pool's Stats on every
// scrape. Metric names follow Prometheus conventions: the fxkafka_ prefix,
// _total for counters, seconds for durations.
type Collector struct {
	pool *fxkafka.ProducerPool

	producers, maxProducers, inFlight, waiting    *prometheus.Desc
	sent, failed                                  *prometheus.Desc
	provisionAttempts, provisionFailures, retired *prometheus.Desc
	waits, waitSeconds, lastProvisionFailed       *prometheus.Desc
}

// NewCollector returns a collector for pool.
func NewCollector(pool *fxkafka.ProducerPool) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("fxkafka_"+name, help, labels, nil)
	}
	return &Collector{
		pool:                pool,
		producers:           d("producers", "Producers open now."),
		maxProducers:        d("max_producers", "The cap on producers (Config.MaxProducers)."),
		inFlight:            d("in_flight_messages", "Messages handed to a producer, not yet acknowledged or failed."),
		waiting:             d("waiting_sends", "Sends waiting for a producer to be provisioned."),
		sent:                d("messages_sent_total", "Messages acknowledged by the brokers."),
		failed:              d("messages_failed_total", "Sends that failed, by error class: unavailable, closed and invalid were never sent; unknown may have been written.", "class"),
		provisionAttempts:   d("provision_attempts_total", "Provisioning attempts started."),
		provisionFailures:   d("provision_failures_total", "Provisioning attempts that failed."),
		retired:             d("producers_retired_total", "Producers taken out of the pool: found broken, or closed."),
		waits:               d("provision_waits_total", "Sends that waited for a producer to be provisioned."),
		waitSeconds:         d("provision_wait_seconds_total", "Total time sends waited for a producer to be provisioned."),
		lastProvisionFailed: d("last_provision_failed", "1 if the last provisioning attempt failed (Kafka unreachable), else 0."),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.producers, c.maxProducers, c.inFlight, c.waiting, c.sent, c.failed,
		c.provisionAttempts, c.provisionFailures, c.retired, c.waits, c.waitSeconds, c.lastProvisionFailed,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.producers, float64(s.Producers))
	gauge(c.maxProducers, float64(s.MaxProducers))
	gauge(c.inFlight, float64(s.InFlight))
	gauge(c.waiting, float64(s.Waiting))
	counter(c.sent, float64(s.Sent))
	counter(c.failed, float64(s.FailedUnavailable), "unavailable")
	counter(c.failed, float64(s.FailedClosed), "closed")
	counter(c.failed, float64(s.FailedInvalid), "invalid")
	counter(c.failed, float64(s.FailedUnknown), "unknown")
	counter(c.provisionAttempts, float64(s.ProvisionAttempts))
	counter(c.provisionFailures, float64(s.ProvisionFailures))
	counter(c.retired, float64(s.ProducersRetired))
	counter(c.waits, float64(s.WaitCount))
	counter(c.waitSeconds, s.WaitDuration.Seconds())
	failed := 0.0
	if s.LastProvisionError != nil {
		failed = 1
	}
	gauge(c.lastProvisionFailed, failed)
}

// Module registers a [Histograms] hook with the pool fxkafka.Module builds
// (through the "fxkafka.options" value group), and, on start, a Collector
// for the pool and the Histograms with the application's
// prometheus.Registerer, or prometheus.DefaultRegisterer; it unregisters
// both on stop.
var Module = fx.Module("fxkafkaprom",
	fx.Provide(
		fx.Private,
		NewHistograms,
	),
	fx.Provide(fx.Annotate(
		// What fxkafka.ModuleOptions supplies: a []Option in the group.
		func(h *Histograms) []fxkafka.Option { return []fxkafka.Option{fxkafka.WithHook(h)} },
		fx.ResultTags(`group:"fxkafka.options"`),
	)),
	fx.Invoke(register),
)

type params struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Pool       *fxkafka.ProducerPool
	Histograms *Histograms
	Registerer prometheus.Registerer `optional:"true"`
}

func register(p params) {
	reg := p.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	c := NewCollector(p.Pool)
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error {
			if err := reg.Register(c); err != nil {
				return err
			}
			if err := reg.Register(p.Histograms); err != nil {
				reg.Unregister(c)
				return err
			}
			return nil
		},
		OnStop: func(context.Context) error {
			reg.Unregister(p.Histograms)
			reg.Unregister(c)
			return nil
		},
	})
}
