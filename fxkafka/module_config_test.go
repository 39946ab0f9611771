package fxkafka

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.yaml.in/yaml/v3"
)

func TestModuleDecorateCanSupplyBrokersWithNoEnvironment(t *testing.T) {
	checkLeaks(t)
	clearEnv(t) // no KAFKA_* at all: the environment's Config lacks Brokers
	c := startBroker(t, "", topic)

	var pool *ProducerPool
	app := fxtest.New(t, Module,
		fx.Decorate(func(cfg Config) Config {
			cfg.Brokers = c.ListenAddrs()
			return cfg
		}),
		fx.Populate(&pool),
	)
	app.RequireStart()
	_, _, err := pool.SendMessage(context.Background(), msg("decorated"))
	require.NoError(t, err)
	app.RequireStop()
	assert.Equal(t, map[string]int{"decorated": 1}, countValues(readBack(t, c, topic)))
}

func TestModuleReportsWhatIsMissingWhenNothingSuppliesIt(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	app := fx.New(Module,
		fx.Decorate(func(cfg Config) Config {
			cfg.ClientID = "orders" // a decorator that leaves Brokers empty
			return cfg
		}),
		fx.Invoke(func(*ProducerPool) {}),
		fx.NopLogger,
	)
	var ce *ConfigError
	require.ErrorAs(t, app.Err(), &ce)
	assert.Equal(t, "Brokers", ce.Field)
	assert.Equal(t, "KAFKA_BROKERS", ce.EnvVar)
}

func TestModuleAcceptsAConfigDecodedFromAFile(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name   string
		format string
		decode func([]byte, any) error
	}{
		{"YAML", "brokers: [%s]\nclientID: from-yaml\nprovisionTimeout: 2s\nprovisionBackoffMax: 200ms\n", yaml.Unmarshal},
		{"JSON", `{"brokers": ["%s"], "clientID": "from-json", "provisionTimeout": "2s", "provisionBackoffMax": 200000000}`, json.Unmarshal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t) // fx.Replace: the environment is not read
			c := startBroker(t, "", topic)
			var cfg Config
			require.NoError(t, tt.decode([]byte(fmt.Sprintf(tt.format, c.ListenAddrs()[0])), &cfg))
			require.Equal(t, 2*time.Second, cfg.ProvisionTimeout)
			require.Equal(t, 200*time.Millisecond, cfg.ProvisionBackoffMax)

			var pool *ProducerPool
			app := fxtest.New(t, Module,
				fx.Replace(cfg),
				fx.Populate(&pool),
			)
			app.RequireStart()
			_, _, err := pool.SendMessage(context.Background(), msg(tt.name))
			require.NoError(t, err)
			app.RequireStop()
			assert.Equal(t, map[string]int{tt.name: 1}, countValues(readBack(t, c, topic)))
		})
	}
}

// everyField is a Config with every field set, and the same in YAML and
// JSON as a file would hold it.
var (
	everyField = Config{
		Brokers: []string{"kafka-1:9092", "kafka-2:9092"}, ClientID: "orders", MaxProducers: 2,
		ProducerBusyAt: 64, Version: "3.6.0", RequiredAcks: "all", Idempotent: true, Partitioner: "hash",
		KeyHash: "murmur2", MaxMessageBytes: 2048, MaxBatchBytes: 65536, Compression: "zstd",
		CompressionLevel: 3, Linger: 5 * time.Millisecond, MaxBufferedMessages: 500, MaxBufferedBytes: 1 << 20,
		TLS: true, TLSCAFile: "ca.pem", TLSCertFile: "cert.pem", TLSKeyFile: "key.pem",
		TLSServerName: "kafka.internal", TLSInsecureSkipVerify: true, SASLMechanism: "SCRAM-SHA-512",
		SASLUser: "svc", SASLPassword: "s3cret", TransactionalID: "orders-tx",
		ProvisionTimeout: 2 * time.Second, ProvisionBackoffMax: 500 * time.Millisecond,
	}
	everyFieldYAML = `
brokers: [kafka-1:9092, kafka-2:9092]
clientID: orders
maxProducers: 2
producerBusyAt: 64
version: 3.6.0
requiredAcks: all
idempotent: true
partitioner: hash
keyHash: murmur2
maxMessageBytes: 2048
maxBatchBytes: 65536
compression: zstd
compressionLevel: 3
linger: 5ms
maxBufferedMessages: 500
maxBufferedBytes: 1048576
tls: true
tlsCAFile: ca.pem
tlsCertFile: cert.pem
tlsKeyFile: key.pem
tlsServerName: kafka.internal
tlsInsecureSkipVerify: true
saslMechanism: SCRAM-SHA-512
saslUser: svc
saslPassword: s3cret
transactionalID: orders-tx
provisionTimeout: 2s
provisionBackoffMax: 500ms
`
	everyFieldJSON = `{
"brokers": ["kafka-1:9092", "kafka-2:9092"], "clientID": "orders", "maxProducers": 2,
"producerBusyAt": 64, "version": "3.6.0", "requiredAcks": "all", "idempotent": true,
"partitioner": "hash", "keyHash": "murmur2", "maxMessageBytes": 2048, "maxBatchBytes": 65536,
"compression": "zstd", "compressionLevel": 3, "linger": "5ms", "maxBufferedMessages": 500,
"maxBufferedBytes": 1048576, "tls": true, "tlsCAFile": "ca.pem", "tlsCertFile": "cert.pem",
"tlsKeyFile": "key.pem", "tlsServerName": "kafka.internal", "tlsInsecureSkipVerify": true,
"saslMechanism": "SCRAM-SHA-512", "saslUser": "svc", "saslPassword": "s3cret",
"transactionalID": "orders-tx", "provisionTimeout": "2s", "provisionBackoffMax": "500ms"
}`
)

func TestConfigDecodesEveryFieldFromYAMLAndJSON(t *testing.T) {
	tests := []struct {
		name   string
		give   string
		decode func([]byte, any) error
	}{
		{"YAML", everyFieldYAML, yaml.Unmarshal},
		{"JSON", everyFieldJSON, json.Unmarshal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Config
			require.NoError(t, tt.decode([]byte(tt.give), &got))
			assert.Equal(t, everyField, got)
			assert.Equal(t, "s3cret", string(got.SASLPassword), "the Secret decodes")
		})
	}
}

func TestConfigJSONRoundTripsWithTheSecretRedacted(t *testing.T) {
	b, err := json.Marshal(everyField)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "s3cret")
	var got Config
	require.NoError(t, json.Unmarshal(b, &got))
	want := everyField
	want.SASLPassword = "[redacted]"
	assert.Equal(t, want, got, "durations come back from nanoseconds")
}

func TestConfigUnmarshalJSON(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		want    Config
		wantErr string
	}{
		{"a duration in nanoseconds", `{"linger": 5000000}`, Config{Linger: 5 * time.Millisecond}, ""},
		{"a duration as a string", `{"linger": "1m30s"}`, Config{Linger: 90 * time.Second}, ""},
		{"names in any case, as encoding/json", `{"PROVISIONTIMEOUT": "3s", "ClientId": "x"}`, Config{ProvisionTimeout: 3 * time.Second, ClientID: "x"}, ""},
		{"null", `null`, Config{}, ""},
		{"a duration that does not parse", `{"provisionBackoffMax": "soon"}`, Config{}, `ProvisionBackoffMax (KAFKA_PROVISION_BACKOFF_MAX): "soon" is not a duration`},
		{"not an object", `"kafka:9092"`, Config{}, "cannot unmarshal string"},
		{"a wrong type elsewhere", `{"maxProducers": "four"}`, Config{}, "cannot unmarshal string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Config
			err := json.Unmarshal([]byte(tt.give), &got)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestModuleOptionsReachThePool(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	t.Setenv("KAFKA_BROKERS", freeAddr(t))
	var pool *ProducerPool
	app := fxtest.New(t, Module,
		ModuleOptions(
			WithSaramaConfig(func(sc *sarama.Config) { sc.Producer.Retry.Max = 1 }),
			WithSaramaConfig(func(sc *sarama.Config) { sc.Producer.Retry.Max *= 10 }), // after the first: same call
		),
		ModuleOptions(WithSaramaConfig(func(sc *sarama.Config) { sc.Metadata.RefreshFrequency = time.Hour })),
		fx.Populate(&pool),
	)
	app.RequireStart()
	assert.Equal(t, 10, pool.set.retries)
	assert.Equal(t, time.Hour, pool.saramaConfig(newDialer(0, 0, nil)).Metadata.RefreshFrequency)
	app.RequireStop()
}

func TestModuleRefusesAnOptionThatBreaksAGuarantee(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	t.Setenv("KAFKA_BROKERS", "kafka:9092")
	app := fx.New(Module,
		ModuleOptions(WithSaramaConfig(func(sc *sarama.Config) { sc.Metadata.Full = false })),
		fx.Invoke(func(*ProducerPool) {}),
		fx.NopLogger,
	)
	var ce *ConfigError
	require.ErrorAs(t, app.Err(), &ce)
	assert.Equal(t, "WithSaramaConfig", ce.Field)
	assert.ErrorContains(t, ce, "Metadata.Full")
}
