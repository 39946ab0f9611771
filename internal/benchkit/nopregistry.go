package benchkit

import "github.com/rcrowley/go-metrics"

// nopRegistry gives sarama nil metrics: sarama records into
// Config.MetricRegistry on every request, and go-metrics starts a
// process-wide goroutine (its meter arbiter) on the first meter that never
// exits. The pool hands its producers the same kind of registry.
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
	return i
}
