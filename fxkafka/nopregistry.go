package fxkafka

import "github.com/rcrowley/go-metrics"

// nopRegistry is the go-metrics registry given to every sarama producer the
// pool makes. sarama records metrics on every request into
// Config.MetricRegistry, and go-metrics starts a process-wide goroutine (its
// meter arbiter) that never exits on the first meter it creates. The pool
// reports its own [Stats] instead, so it hands sarama nil metrics: no cost
// per request and no goroutine outliving the pool. It is per producer, never
// the global metrics.UseNilMetrics switch, so other sarama users in the
// process keep theirs.
type nopRegistry struct{}

var _ metrics.Registry = nopRegistry{}

func (nopRegistry) Each(func(string, any))            {}
func (nopRegistry) Get(string) any                    { return nil }
func (nopRegistry) GetAll() map[string]map[string]any { return nil }
func (nopRegistry) Register(string, any) error        { return nil }
func (nopRegistry) RunHealthchecks()                  {}
func (nopRegistry) Unregister(string)                 {}
func (nopRegistry) UnregisterAll()                    {}
func (nopRegistry) GetOrRegister(_ string, i any) any {
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
	// A metric value rather than a constructor: hand it back unused.
	return i
}
