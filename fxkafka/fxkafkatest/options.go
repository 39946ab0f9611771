package fxkafkatest

import (
	"fmt"
	"time"
)

// Option shapes the cluster [NewCluster] starts.
type Option interface{ apply(*options) }

type options struct {
	topics     []string
	brokers    int
	partitions int
	latency    time.Duration
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

func (o options) validate() error {
	switch {
	case o.brokers < 1:
		return fmt.Errorf("WithBrokers(%d): want at least 1", o.brokers)
	case o.partitions < 1:
		return fmt.Errorf("WithPartitions(%d): want at least 1", o.partitions)
	case o.latency < 0:
		return fmt.Errorf("WithLatency(%v): want 0 or more", o.latency)
	}
	return nil
}

// WithTopics creates topics when the cluster starts, each with the
// partitions [WithPartitions] sets. A topic not named here is created on
// its first use. WithTopics given twice creates both lists.
func WithTopics(names ...string) Option {
	return optionFunc(func(o *options) { o.topics = append(o.topics, names...) })
}

// WithBrokers sets how many brokers the cluster has; default 1. Partition p
// of a [WithTopics] topic is led by broker p mod n, so a client holds a
// connection to each broker, as it would to a real cluster; a topic created
// on first use gets kfake's leaders, chosen at random.
func WithBrokers(n int) Option {
	return optionFunc(func(o *options) { o.brokers = n })
}

// WithPartitions sets the number of partitions of every topic the cluster
// creates, up front or on first use; default [Partitions].
func WithPartitions(n int) Option {
	return optionFunc(func(o *options) { o.partitions = n })
}

// WithLatency makes every request to the cluster pay a network round trip
// of d; default 0, none. Each byte a broker reads reaches it d after the
// client wrote it (the whole round trip is put on the way in; responses
// leave at once), on every connection, pipelined requests included: n
// requests a client writes together are all answered about d after they
// were written, not n × d, as on a real network. It models propagation
// delay only, not bandwidth, and adds nothing to connection setup beyond
// the first request's round trip. Use it to test timeouts, deadlines and
// throughput under latency without cgo or a real cluster:
//
//	b := fxkafkatest.NewCluster(t, fxkafkatest.WithTopics("orders"), fxkafkatest.WithLatency(5*time.Millisecond))
//
// A test may assert that an operation took at least some number of round
// trips; it should not assert an upper bound, which a loaded machine
// breaks.
func WithLatency(d time.Duration) Option {
	return optionFunc(func(o *options) { o.latency = d })
}
