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

// Each calls nothing: the registry holds no metric.
func (Registry) Each(func(string, any)) {}

// Get returns nil: the registry holds no metric.
func (Registry) Get(string) any { return nil }

// GetAll returns nil: the registry holds no metric.
func (Registry) GetAll() map[string]map[string]any { return nil }

// Register keeps nothing.
func (Registry) Register(string, any) error { return nil }

// RunHealthchecks has none to run.
func (Registry) RunHealthchecks() {}

// Unregister has nothing to remove.
func (Registry) Unregister(string) {}

// UnregisterAll has nothing to remove.
func (Registry) UnregisterAll() {}

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
