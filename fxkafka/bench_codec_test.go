package fxkafka

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"go.fxkafka.dev/internal/benchkit"
	"go.fxkafka.dev/internal/netdelay"
)

// jsonPayloads are order events as a service would send them: JSON with the
// same keys in every message and values that vary, about 300 bytes each.
var jsonPayloads = func() [][]byte {
	out := make([][]byte, 1024)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"order_id":"ord-%08d","customer":{"id":%d,"name":"customer-%d","tier":%q},`+
			`"items":[{"sku":"SKU-%05d","qty":%d,"unit_price":%d.%02d},{"sku":"SKU-%05d","qty":%d,"unit_price":%d.%02d}],`+
			`"currency":"EUR","status":"created","created_at":"2026-12-01T12:%02d:%02d.%03dZ","channel":"web"}`,
			i*7919, i%997, i%997, []string{"gold", "silver", "bronze"}[i%3],
			i*31%100000, i%5+1, i%200, i%100, i*17%100000, i%3+1, i%90, i*7%100,
			i%60, i*13%60, i*37%1000)
	}
	return out
}()

// countingListener counts the bytes clients write to the broker.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkCodec sends the JSON-like payloads above with each
// Config.Compression, from 1 and 256 senders, against kfake on loopback (3
// brokers, 6 partitions, produce requests answered without storing). It
// reports msgs/s, the p50 and p99 of a send, the bytes the brokers read
// per message (requests and their headers included), and the ratio of the
// payload's bytes to those.
func BenchmarkCodec(b *testing.B) {
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		for _, senders := range []int{1, 256} {
			b.Run(fmt.Sprintf("Codec=%s/Senders=%d", codec, senders), func(b *testing.B) {
				var read atomic.Int64
				c, err := kfake.NewCluster(
					kfake.NumBrokers(benchkit.Brokers),
					kfake.SeedTopics(benchkit.Partitions, benchkit.Topic),
					kfake.BlackholeProduce(),
					kfake.ListenFn(func(network, addr string) (net.Listener, error) {
						ln, err := net.Listen(network, addr)
						return countingListener{Listener: ln, n: &read}, err
					}),
				)
				require.NoError(b, err)
				b.Cleanup(c.Close)
				p := newTestPool(b, Config{Brokers: c.ListenAddrs(), Compression: codec})
				var next, payload atomic.Int64
				send := func() error {
					v := jsonPayloads[next.Add(1)%int64(len(jsonPayloads))]
					payload.Add(int64(len(v)))
					_, _, err := p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: benchkit.Topic, Value: sarama.ByteEncoder(v)})
					return err
				}
				benchkit.WarmUp(b, senders, send)
				read.Store(0)
				payload.Store(0)
				benchkit.RunSenders(b, senders, send)
				b.ReportMetric(float64(read.Load())/float64(b.N), "wire-B/msg")
				b.ReportMetric(float64(payload.Load())/float64(read.Load()), "payload/wire")
			})
		}
	}
}

// BenchmarkLinger sends 100-byte values from 1 and 256 senders with
// Config.Linger negative (no wait at all), 0 (the default: no linger, but
// the pipelined hold under load), 1 ms and 5 ms, against kfake with 1 ms
// of round trip on every request. It reports msgs/s and the p50 and p99 of
// a send.
func BenchmarkLinger(b *testing.B) {
	lingers := []struct {
		name string
		give time.Duration
	}{
		{"none", -1},   // no wait at all
		{"default", 0}, // no linger, but the pipelined hold under load
		{"1ms", time.Millisecond},
		{"5ms", 5 * time.Millisecond},
	}
	for _, lg := range lingers {
		for _, senders := range []int{1, 256} {
			b.Run(fmt.Sprintf("Linger=%s/Senders=%d", lg.name, senders), func(b *testing.B) {
				c, err := kfake.NewCluster(
					kfake.NumBrokers(benchkit.Brokers),
					kfake.SeedTopics(benchkit.Partitions, benchkit.Topic),
					kfake.BlackholeProduce(),
					kfake.ListenFn(netdelay.ListenFunc(time.Millisecond)),
				)
				require.NoError(b, err)
				b.Cleanup(c.Close)
				p := newTestPool(b, Config{Brokers: c.ListenAddrs(), Linger: lg.give})
				send := func() error {
					_, _, err := p.SendMessage(context.Background(), benchkit.Message())
					return err
				}
				benchkit.WarmUp(b, senders, send)
				benchkit.RunSenders(b, senders, send)
			})
		}
	}
}
