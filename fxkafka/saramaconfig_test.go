package fxkafka

import (
	"context"
	"crypto/tls"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.fxkafka.dev/internal/nopmetrics"
)

func TestSettingsAreDerivedFromConfig(t *testing.T) {
	p, err := New(Config{
		Brokers:             []string{"kafka:9092"},
		Version:             "3.6.0",
		RequiredAcks:        "leader",
		Compression:         "GZIP",
		CompressionLevel:    6,
		Linger:              5 * time.Millisecond,
		MaxMessageBytes:     4096,
		MaxBatchBytes:       65536,
		KeyHash:             "murmur2",
		Partitioner:         "hash",
		MaxBufferedMessages: 100,
		MaxBufferedBytes:    1 << 20,
	})
	require.NoError(t, err)
	assert.Equal(t, settings{
		acks:                sarama.WaitForLocal,
		ackTimeout:          brokerAckTimeout,
		version:             sarama.V3_6_0_0,
		codec:               sarama.CompressionGZIP,
		codecLevel:          6,
		linger:              5 * time.Millisecond,
		maxBatchBytes:       65536,
		maxMessageBytes:     4096,
		maxRequestBytes:     MaxRequestBytes,
		maxInFlight:         pipelineDepth,
		retries:             produceRetries,
		retryBackoff:        produceBackoff,
		keyHash:             "murmur2",
		sticky:              false,
		maxBufferedMessages: 100,
		maxBufferedBytes:    1 << 20,
	}, p.set)
}

func TestSettingsDefaults(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want func(*settings)
	}{
		{"defaults", Config{}, func(s *settings) {}},
		{"idempotent", Config{Idempotent: true}, func(s *settings) { s.idempotent, s.maxInFlight = true, pipelineDepth }},
		{"no linger, no hold", Config{Linger: -time.Millisecond}, func(s *settings) { s.linger, s.hold = 0, 0 }},
		{"a linger instead of the hold", Config{Linger: 5 * time.Millisecond}, func(s *settings) { s.linger, s.hold = 5*time.Millisecond, 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.Brokers = []string{"kafka:9092"}
			p, err := New(tt.give)
			require.NoError(t, err)
			want := settings{
				acks:                sarama.WaitForAll,
				ackTimeout:          brokerAckTimeout,
				version:             sarama.DefaultVersion,
				codec:               sarama.CompressionNone,
				codecLevel:          sarama.CompressionLevelDefault,
				linger:              DefaultLinger,
				hold:                pipelinedHold,
				maxBatchBytes:       DefaultMaxBatchBytes,
				maxMessageBytes:     DefaultMaxMessageBytes,
				maxRequestBytes:     MaxRequestBytes,
				maxInFlight:         pipelineDepth,
				retries:             produceRetries,
				retryBackoff:        produceBackoff,
				keyHash:             DefaultKeyHash,
				sticky:              true,
				maxBufferedMessages: DefaultMaxBufferedMessages,
				maxBufferedBytes:    DefaultMaxBufferedBytes,
			}
			tt.want(&want)
			assert.Equal(t, want, p.set)
		})
	}
}

func TestSaramaConfigCarriesTheConfigsSettings(t *testing.T) {
	p, err := New(Config{
		Brokers:          []string{"kafka:9092"},
		ClientID:         "orders",
		Version:          "3.6.0",
		Compression:      "zstd",
		CompressionLevel: 9,
		Linger:           2 * time.Millisecond,
		MaxMessageBytes:  4096,
		ProvisionTimeout: 3 * time.Second,
	})
	require.NoError(t, err)
	d := newDialer(0, 0, nil)
	sc := p.saramaConfig(d)
	assert.Equal(t, "orders", sc.ClientID)
	assert.Equal(t, sarama.V3_6_0_0, sc.Version)
	assert.Equal(t, sarama.CompressionZSTD, sc.Producer.Compression)
	assert.Equal(t, 9, sc.Producer.CompressionLevel)
	assert.Equal(t, 2*time.Millisecond, sc.Producer.Flush.Frequency)
	assert.Equal(t, 4096, sc.Producer.MaxMessageBytes)
	assert.Equal(t, 3*time.Second, sc.Metadata.Timeout)
	assert.Same(t, d, sc.Net.Proxy.Dialer.(*dialer))
	assert.True(t, sc.Producer.Return.Successes)
	assert.Equal(t, nopmetrics.Registry{}, sc.MetricRegistry)
	require.NoError(t, sc.Validate())
}

func TestSaramaConfigIsACopyPerProducer(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}})
	require.NoError(t, err)
	d1, d2 := newDialer(0, 0, nil), newDialer(0, 0, nil)
	a, b := p.saramaConfig(d1), p.saramaConfig(d2)
	require.NotSame(t, a, b)
	assert.Same(t, d1, a.Net.Proxy.Dialer.(*dialer))
	assert.Same(t, d2, b.Net.Proxy.Dialer.(*dialer))
	// The pool does idempotence and transactions itself: the client
	// carries requests, with every request slot the pool uses.
	assert.False(t, a.Producer.Idempotent)
	assert.Empty(t, a.Producer.Transaction.ID)
	assert.Equal(t, pipelineDepth, a.Net.MaxOpenRequests)
	assert.Nil(t, p.base.config.Net.Proxy.Dialer, "the config New built is left as it was")
	require.NoError(t, b.Validate())
}

func TestSaramaRetryPausesFollowTheConfiguredBackoff(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}}, WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Retry.Backoff = 40 * time.Millisecond
		sc.Metadata.Retry.Backoff = 30 * time.Millisecond
	}))
	require.NoError(t, err)
	d := newDialer(0, 0, nil)
	sc := p.saramaConfig(d)
	assert.Zero(t, sc.Producer.Retry.BackoffFunc(1, 3), "no pause while provisioning")
	d.ready.Store(true)
	assert.Equal(t, 40*time.Millisecond, sc.Producer.Retry.BackoffFunc(1, 3))
	assert.Equal(t, 30*time.Millisecond, sc.Metadata.Retry.BackoffFunc(1, 3))
	assert.Equal(t, 40*time.Millisecond, p.set.retryBackoff)
	d.abort()
	assert.Zero(t, sc.Producer.Retry.BackoffFunc(1, 3), "no pause once abandoned")
}

func TestWithSaramaConfigChangesReachEveryProducersConfigAndTheSettings(t *testing.T) {
	var seen *sarama.Config
	custom := func(topic string) sarama.Partitioner { return sarama.NewRoundRobinPartitioner(topic) }
	p, err := New(Config{Brokers: []string{"kafka:9092"}, Compression: "gzip"}, WithSaramaConfig(func(sc *sarama.Config) {
		seen = sc
		assert.Equal(t, sarama.CompressionGZIP, sc.Producer.Compression, "the func sees Config's settings")
		sc.ClientID = "from-sarama"
		sc.RackID = "eu-1a"
		sc.Metadata.RefreshFrequency = time.Minute
		sc.Producer.Compression = sarama.CompressionSnappy
		sc.Producer.Flush.Frequency = 3 * time.Millisecond
		sc.Producer.Retry.Max = 7
		sc.Producer.Partitioner = custom
		sc.Net.MaxOpenRequests = 2
	}))
	require.NoError(t, err)
	require.NotNil(t, seen)
	sc := p.saramaConfig(newDialer(0, 0, nil))
	assert.Equal(t, "from-sarama", sc.ClientID)
	assert.Equal(t, "eu-1a", sc.RackID)
	assert.Equal(t, time.Minute, sc.Metadata.RefreshFrequency)
	assert.Equal(t, sarama.CompressionSnappy, sc.Producer.Compression)
	assert.Equal(t, sarama.CompressionSnappy, p.set.codec, "the sarama setting wins over Config's")
	assert.Equal(t, 3*time.Millisecond, p.set.linger)
	assert.Equal(t, 7, p.set.retries)
	assert.Equal(t, 2, p.set.maxInFlight)
	require.NotNil(t, p.set.partitioner)
	assert.Equal(t, reflect.ValueOf(custom).Pointer(), reflect.ValueOf(p.set.partitioner).Pointer())
}

func TestWithoutACustomPartitionerTheSettingsHaveNone(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}}, WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Retry.Max = 5
	}))
	require.NoError(t, err)
	assert.Nil(t, p.set.partitioner)
}

func TestWithSaramaConfigFuncsRunInOrder(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}},
		WithSaramaConfig(func(sc *sarama.Config) { sc.Producer.Retry.Max = 1 }),
		WithSaramaConfig(nil),
		WithSaramaConfig(func(sc *sarama.Config) { sc.Producer.Retry.Max++ }),
	)
	require.NoError(t, err)
	assert.Equal(t, 2, p.set.retries)
}

// TestWithSaramaConfigRefusesChangesToWhatThePoolOwnsOrIgnores changes each
// guarded setting in turn; every one of them is listed, so a setting added
// to the lists is tested here too.
func TestWithSaramaConfigRefusesChangesToWhatThePoolOwnsOrIgnores(t *testing.T) {
	backoff := func(int, int) time.Duration { return time.Second }
	tests := map[string]func(*sarama.Config){
		"Net.Proxy.Enable":                       func(c *sarama.Config) { c.Net.Proxy.Enable = false },
		"Net.Proxy.Dialer":                       func(c *sarama.Config) { c.Net.Proxy.Dialer = &net.Dialer{} },
		"Net.DialTimeout":                        func(c *sarama.Config) { c.Net.DialTimeout = time.Minute },
		"Net.KeepAlive":                          func(c *sarama.Config) { c.Net.KeepAlive = time.Minute },
		"Net.LocalAddr":                          func(c *sarama.Config) { c.Net.LocalAddr = &net.TCPAddr{} },
		"Net.TLS.Enable":                         func(c *sarama.Config) { c.Net.TLS.Enable = true },
		"Net.TLS.Config":                         func(c *sarama.Config) { c.Net.TLS.Config = &tls.Config{MinVersion: tls.VersionTLS12} },
		"Net.ReadTimeout":                        func(c *sarama.Config) { c.Net.ReadTimeout = time.Minute },
		"Net.WriteTimeout":                       func(c *sarama.Config) { c.Net.WriteTimeout = time.Minute },
		"Metadata.Full":                          func(c *sarama.Config) { c.Metadata.Full = false },
		"Metadata.Timeout":                       func(c *sarama.Config) { c.Metadata.Timeout = time.Minute },
		"Metadata.Retry.BackoffFunc":             func(c *sarama.Config) { c.Metadata.Retry.BackoffFunc = backoff },
		"Producer.Retry.BackoffFunc":             func(c *sarama.Config) { c.Producer.Retry.BackoffFunc = backoff },
		"Producer.Transaction.Retry.BackoffFunc": func(c *sarama.Config) { c.Producer.Transaction.Retry.BackoffFunc = backoff },
		"Producer.Transaction.ID":                func(c *sarama.Config) { c.Producer.Transaction.ID = "tx" },
		"Producer.Return.Successes":              func(c *sarama.Config) { c.Producer.Return.Successes = false },
		"Producer.Return.Errors":                 func(c *sarama.Config) { c.Producer.Return.Errors = false },
		"MetricRegistry":                         func(c *sarama.Config) { c.MetricRegistry = metrics.NewRegistry() },
		"Producer.Flush.Bytes":                   func(c *sarama.Config) { c.Producer.Flush.Bytes = 1 << 10 },
		"Producer.Flush.Messages":                func(c *sarama.Config) { c.Producer.Flush.Messages = 10 },
		"Producer.Flush.MaxMessages":             func(c *sarama.Config) { c.Producer.Flush.MaxMessages = 10 },
		"Producer.Retry.MaxBufferLength":         func(c *sarama.Config) { c.Producer.Retry.MaxBufferLength = 10 },
		"Producer.Retry.MaxBufferBytes":          func(c *sarama.Config) { c.Producer.Retry.MaxBufferBytes = 10 },
		"Producer.Interceptors":                  func(c *sarama.Config) { c.Producer.Interceptors = []sarama.ProducerInterceptor{nil} },
		"Producer.Transaction.Timeout":           func(c *sarama.Config) { c.Producer.Transaction.Timeout = time.Second },
		"Producer.Transaction.Retry.Max":         func(c *sarama.Config) { c.Producer.Transaction.Retry.Max = 1 },
		"Producer.Transaction.Retry.Backoff":     func(c *sarama.Config) { c.Producer.Transaction.Retry.Backoff = time.Second },
		"ChannelBufferSize":                      func(c *sarama.Config) { c.ChannelBufferSize = 1 },
	}
	var listed []string
	for _, s := range append(append([]saramaSetting(nil), ownedSettings...), unhonouredSettings...) {
		listed = append(listed, s.name)
	}
	assert.ElementsMatch(t, listed, keys(tests), "every guarded setting has a case, and only those")
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(Config{Brokers: []string{"kafka:9092"}}, WithSaramaConfig(change))
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "WithSaramaConfig", ce.Field)
			assert.Empty(t, ce.EnvVar)
			assert.ErrorContains(t, err, "changes "+name+", which the pool ")
		})
	}
}

func TestWithSaramaConfigResultsThatCannotWorkAreRefused(t *testing.T) {
	tests := []struct {
		name    string
		give    Config
		change  func(*sarama.Config)
		wantErr string
	}{
		{"idempotence on 0.10", Config{Idempotent: true}, func(c *sarama.Config) { c.Version = sarama.V0_10_2_0 }, "Idempotent producer requires Version"},
		{"idempotence with leader acks", Config{}, func(c *sarama.Config) {
			c.Producer.Idempotent = true
			c.Net.MaxOpenRequests = 1
			c.Producer.RequiredAcks = sarama.WaitForLocal
		}, "WaitForAll"},
		{"leases' transactions on 0.10", Config{TransactionalID: "tx"}, func(c *sarama.Config) { c.Version = sarama.V0_10_2_0 }, "Idempotent producer requires Version"},
		{"leases' transactions without retries", Config{TransactionalID: "tx"}, func(c *sarama.Config) { c.Producer.Retry.Max = 0 }, "Retry.Max >= 1"},
		{"client id with a space on 0.10", Config{}, func(c *sarama.Config) { c.ClientID = "a b"; c.Version = sarama.V0_10_2_0 }, "ClientID value"},
		{"zstd on 2.0", Config{Compression: "zstd"}, func(c *sarama.Config) { c.Version = sarama.V2_0_0_0 }, "zstd compression requires"},
		{"ack timeout at the read timeout", Config{}, func(c *sarama.Config) { c.Producer.Timeout = readTimeout }, "Producer.Timeout"},
		{"message at sarama's request limit", Config{}, func(c *sarama.Config) { c.Producer.MaxMessageBytes = int(sarama.MaxRequestSize) }, "MaxRequestBytes"},
		{"a level for lz4", Config{Compression: "lz4"}, func(c *sarama.Config) { c.Producer.CompressionLevel = 5 }, "lz4 has no levels"},
		{"SASL v0", Config{SASLMechanism: SASLPlain, SASLUser: "u", SASLPassword: "p"}, func(c *sarama.Config) {
			c.Net.SASL.Version, c.ApiVersionsRequest = sarama.SASLHandshakeV0, false
		}, "Net.SASL.Version"},
		{"a codec sarama does not know", Config{}, func(c *sarama.Config) { c.Producer.Compression = 9 }, "9 is not a codec sarama knows"},
		{"no partitioner", Config{}, func(c *sarama.Config) { c.Producer.Partitioner = nil }, "Partitioner must not be nil"},
		{"no open requests", Config{}, func(c *sarama.Config) { c.Net.MaxOpenRequests = 0 }, "MaxOpenRequests"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.Brokers = []string{"kafka:9092"}
			require.NoError(t, tt.give.Validate(), "the Config alone is fine")
			_, err := New(tt.give, WithSaramaConfig(tt.change))
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "WithSaramaConfig", ce.Field)
			assert.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// TestWithSaramaConfigSettingIsWhatTheBrokerStores: an escape-hatch setting
// reaches the wire. The broker stores the batch with the codec the func set,
// over Config's.
func TestWithSaramaConfigSettingIsWhatTheBrokerStores(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Compression = sarama.CompressionLZ4
	}))
	_, _, err := p.SendMessage(context.Background(), msg(strings.Repeat("lz4 ", 100)))
	require.NoError(t, err)
	assert.Equal(t, []uint8{uint8(sarama.CompressionLZ4)}, storedCodecs(t, c, topic, 1))
}

func TestCompressionIsWhatTheBrokerStores(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		give string
		want sarama.CompressionCodec
	}{
		{"", sarama.CompressionNone},
		{"none", sarama.CompressionNone},
		{"gzip", sarama.CompressionGZIP},
		{"snappy", sarama.CompressionSnappy},
		{"lz4", sarama.CompressionLZ4},
		{"zstd", sarama.CompressionZSTD},
	}
	for _, tt := range tests {
		t.Run("Compression="+tt.give, func(t *testing.T) {
			c := startBroker(t, "", topic)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.Compression = tt.give
			p := newTestPool(t, cfg)
			msgs := make([]*sarama.ProducerMessage, 10)
			for i := range msgs {
				msgs[i] = msg(strings.Repeat(`{"order":42,"state":"paid"}`, 20))
			}
			require.NoError(t, p.SendMessages(context.Background(), msgs))
			for _, codec := range storedCodecs(t, c, topic, len(msgs)) {
				require.Equal(t, uint8(tt.want), codec)
			}
		})
	}
}

// storedCodecs reads want records of topic back and returns the codec of
// the batch each was stored in.
func storedCodecs(t *testing.T, c *kfake.Cluster, topic string, want int) []uint8 {
	t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []uint8
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records", len(out), want)
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r.Attrs.CompressionType()) })
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
