// Package rdkafka is fxkafka's second, independent broker and its fastest
// peer under latency: librdkafka (through confluent-kafka-go, cgo), in a
// module of its own so that the library and its other tests never need cgo.
//
// [Mock] starts librdkafka's mock cluster, a Kafka implementation written
// apart from kfake, with a round-trip time set on each broker. [Librdkafka]
// is librdkafka's own producer as a benchmark peer. The module's benchmarks
// (BenchmarkSend) run the pool and every peer against the mock cluster, and
// librdkafka against kfake; internal/benchcmp puts them in the same table as
// the core module's.
//
// Facts the mock cluster imposes: sarama decodes its answers only at Version
// 2.1 to 2.3 (so [Mock] sets "2.1.0"), franz-go needs
// kgo.MaxVersions(kversion.V2_1_0()), and it creates any topic on first use.
package rdkafka

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"

	"go.fxkafka.dev/internal/benchkit"
)

// MockVersion is the Kafka version sarama-based clients speak to the mock
// cluster: the newest whose answers sarama decodes from it.
const MockVersion = "2.1.0"

// Mock starts librdkafka's mock cluster of [benchkit.Brokers] brokers, with
// [benchkit.Topic] of [benchkit.Partitions] partitions and a round trip of
// rtt on every broker (librdkafka rounds it to whole milliseconds), closed
// at tb's cleanup. It is a [benchkit.StartFunc].
func Mock(tb testing.TB, rtt time.Duration) benchkit.Target {
	tb.Helper()
	mc, err := kafka.NewMockCluster(benchkit.Brokers)
	if err != nil {
		tb.Fatalf("rdkafka: start the mock cluster: %v", err)
	}
	tb.Cleanup(mc.Close)
	// The round trip before the topic: set after CreateTopic, the call
	// often waits a second for the mock cluster's thread (measured: 7 of 40).
	if rtt > 0 {
		if err := mc.SetRoundtripDuration(-1, rtt); err != nil {
			tb.Fatalf("rdkafka: set the round trip to %v: %v", rtt, err)
		}
	}
	if err := mc.CreateTopic(benchkit.Topic, benchkit.Partitions, 1); err != nil {
		tb.Fatalf("rdkafka: create %s: %v", benchkit.Topic, err)
	}
	return benchkit.Target{
		Addrs:   strings.Split(mc.BootstrapServers(), ","),
		Version: MockVersion,
		KgoOpts: []kgo.Opt{kgo.MaxVersions(kversion.V2_1_0())},
	}
}

// Librdkafka is one librdkafka producer shared by every sender, each
// producing with a delivery channel of its own and waiting for the report:
// librdkafka's defaults with linger.ms=0 and acks=all, idempotent or not,
// and without telemetry pushes.
// Its allocations as the benchmarks count them are Go's only.
func Librdkafka(idempotent bool) benchkit.SendImpl {
	name := "librdkafka"
	if idempotent {
		name += "-idempotent"
	}
	return benchkit.SendImpl{Name: name, New: func(tb testing.TB, tgt benchkit.Target) func() error {
		p := newProducer(tb, tgt, idempotent)
		topic := benchkit.Topic
		reports := sync.Pool{New: func() any { return make(chan kafka.Event, 1) }}
		return func() error {
			ch := reports.Get().(chan kafka.Event)
			defer reports.Put(ch)
			err := p.Produce(&kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Value:          benchkit.Value,
			}, ch)
			if err != nil {
				return err
			}
			switch e := (<-ch).(type) {
			case *kafka.Message:
				return e.TopicPartition.Error
			default:
				return fmt.Errorf("rdkafka: delivery report: %v", e)
			}
		}
	}}
}

// newProducer makes a librdkafka producer for tgt, closed at tb's cleanup;
// a goroutine drains its events (errors and logs) until Close closes them.
func newProducer(tb testing.TB, tgt benchkit.Target, idempotent bool) *kafka.Producer {
	tb.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  strings.Join(tgt.Addrs, ","),
		"linger.ms":          0,
		"acks":               "all",
		"enable.idempotence": idempotent,
		// Not producing work: telemetry pushes (KIP-714, which kfake
		// answers) and info-level logs on stderr.
		"enable.metrics.push": false,
		"log_level":           4,
	})
	if err != nil {
		tb.Fatalf("rdkafka: new producer: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range p.Events() {
		}
	})
	tb.Cleanup(func() {
		p.Flush(10_000)
		p.Close()
		wg.Wait()
	})
	return p
}
