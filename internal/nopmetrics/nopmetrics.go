// Package nopmetrics is a go-metrics registry that records nothing, for
// the sarama configs fxkafka and its benchmarks build.
package nopmetrics

import "github.com/rcrowley/go-metrics"

// Registry gives sarama nil metrics. sarama records metrics on every
// request into Config.MetricRegistry, and go-metrics starts a process-wide
// goroutine (its meter arbiter) that never exits on the first meter it
// creates. Given per config, never through the global
// metrics.UseNilMetrics switch, so other sarama users in the process keep
// theirs.
type Registry struct{}

var _ metrics.Registry = Registry{}

func (Registry) Each(func(string, any))            {}
func (Registry) Get(string) any                    { return nil }
func (Registry) GetAll() map[string]map[string]any { return nil }
func (Registry) Register(string, any) error        { return nil }
func (Registry) RunHealthchecks()                  {}
func (Registry) Unregister(string)                 {}
func (Registry) UnregisterAll()                    {}

// GetOrRegister returns the nil metric of the kind the constructor i
// makes; a metric value rather than a constructor is handed back unused.
func (Registry) GetOrRegister(_ string, i any) any {
	switch i.(type) {
	case func() metrics.Meter:
		return metrics.NilMeter{}
	case func() metrics.Histogram:
		return metrics.NilHistogram{}
	case func() metrics.Counter:
		return metrics.NilCounter{}
	case func() metrics.Gauge:
		return metrics.NilGauge{}
	}
	return i
}
