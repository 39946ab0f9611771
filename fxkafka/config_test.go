package fxkafka

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigFromEnvReadsEveryVariable(t *testing.T) {
	clearEnv(t)
	for k, v := range map[string]string{
		"KAFKA_BROKERS":                  " kafka-1:9092, kafka-2:9092 ,",
		"KAFKA_CLIENT_ID":                "orders",
		"KAFKA_MAX_PRODUCERS":            "2",
		"KAFKA_PRODUCER_BUSY_AT":         "64",
		"KAFKA_VERSION":                  "3.6.0",
		"KAFKA_REQUIRED_ACKS":            "all",
		"KAFKA_IDEMPOTENT":               "true",
		"KAFKA_PARTITIONER":              "hash",
		"KAFKA_KEY_HASH":                 "murmur2",
		"KAFKA_MAX_MESSAGE_BYTES":        "2048",
		"KAFKA_MAX_BATCH_BYTES":          "65536",
		"KAFKA_COMPRESSION":              "zstd",
		"KAFKA_COMPRESSION_LEVEL":        "3",
		"KAFKA_LINGER":                   "5ms",
		"KAFKA_MAX_BUFFERED_MESSAGES":    "500",
		"KAFKA_MAX_BUFFERED_BYTES":       "1048576",
		"KAFKA_TLS":                      "true",
		"KAFKA_TLS_CA_FILE":              " ",
		"KAFKA_TLS_SERVER_NAME":          "kafka.internal",
		"KAFKA_TLS_INSECURE_SKIP_VERIFY": "true",
		"KAFKA_SASL_MECHANISM":           "PLAIN",
		"KAFKA_SASL_USER":                " svc ",
		"KAFKA_SASL_PASSWORD":            " pw ",
		"KAFKA_TRANSACTIONAL_ID":         "orders-tx",
		"KAFKA_PROVISION_TIMEOUT":        "2s",
		"KAFKA_PROVISION_BACKOFF_MAX":    "500ms",
	} {
		t.Setenv(k, v)
	}
	got, err := ConfigFromEnv()
	require.NoError(t, err)
	assert.Equal(t, Config{
		Brokers:               []string{"kafka-1:9092", "kafka-2:9092"},
		ClientID:              "orders",
		MaxProducers:          2,
		ProducerBusyAt:        64,
		Version:               "3.6.0",
		RequiredAcks:          "all",
		Idempotent:            true,
		Partitioner:           "hash",
		KeyHash:               "murmur2",
		MaxMessageBytes:       2048,
		MaxBatchBytes:         65536,
		Compression:           "zstd",
		CompressionLevel:      3,
		Linger:                5 * time.Millisecond,
		MaxBufferedMessages:   500,
		MaxBufferedBytes:      1 << 20,
		TLS:                   true,
		TLSServerName:         "kafka.internal",
		TLSInsecureSkipVerify: true,
		SASLMechanism:         "PLAIN",
		SASLUser:              " svc ",
		SASLPassword:          " pw ",
		TransactionalID:       "orders-tx",
		ProvisionTimeout:      2 * time.Second,
		ProvisionBackoffMax:   500 * time.Millisecond,
	}, got, "values are trimmed, the SASL credentials are not, a blank value is unset")
}

func TestConfigFromEnvParsesEveryFieldType(t *testing.T) {
	// A value for each variable, by the field's type: a new field of a type
	// ConfigFromEnv cannot parse fails here.
	clearEnv(t)
	values := map[reflect.Type]string{
		reflect.TypeFor[string]():        "x",
		reflect.TypeFor[Secret]():        "x",
		reflect.TypeFor[bool]():          "true",
		reflect.TypeFor[int]():           "7",
		reflect.TypeFor[time.Duration](): "7s",
		reflect.TypeFor[[]string]():      "a:1,b:2",
	}
	v := reflect.ValueOf(Config{})
	for _, f := range envFields {
		give, ok := values[v.Field(f.index).Type()]
		require.True(t, ok, "no test value for %s's type %s", f.name, v.Field(f.index).Type())
		t.Setenv(f.envVar, give)
	}
	got, err := readEnv()
	require.NoError(t, err)
	gv := reflect.ValueOf(got)
	for _, f := range envFields {
		assert.False(t, gv.Field(f.index).IsZero(), "%s was not read from %s", f.name, f.envVar)
	}
}

func TestConfigFromEnvNamesTheVariableOfAValueItCannotParse(t *testing.T) {
	tests := []struct {
		name    string
		envVar  string
		give    string
		wantErr string
	}{
		{"integer", "KAFKA_MAX_BATCH_BYTES", "1MiB", `"1MiB" is not an integer`},
		{"level", "KAFKA_COMPRESSION_LEVEL", "best", `"best" is not an integer`},
		{"duration without unit", "KAFKA_LINGER", "5", `"5" is not a duration`},
		{"boolean", "KAFKA_IDEMPOTENT", "yes please", `"yes please" is not true or false`},
		{"buffered messages", "KAFKA_MAX_BUFFERED_MESSAGES", "many", `"many" is not an integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("KAFKA_BROKERS", "kafka:9092")
			t.Setenv(tt.envVar, tt.give)
			_, err := ConfigFromEnv()
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.envVar, ce.EnvVar)
			assert.Equal(t, tt.envVar, envVars[ce.Field])
			assert.ErrorContains(t, err, tt.wantErr)
			assert.ErrorIs(t, err, ErrInvalidConfig)
		})
	}
}

func TestConfigFromEnvStillRequiresBrokers(t *testing.T) {
	clearEnv(t)
	_, err := ConfigFromEnv()
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "KAFKA_BROKERS", ce.EnvVar)
}

func TestConfigDefaultsApplyToZeroFields(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}})
	require.NoError(t, err)
	c := p.cfg
	assert.Equal(t, DefaultClientID, c.ClientID)
	assert.Equal(t, DefaultMaxProducers, c.MaxProducers)
	assert.Equal(t, DefaultProducerBusyAt, c.ProducerBusyAt)
	assert.Equal(t, DefaultMaxMessageBytes, c.MaxMessageBytes)
	assert.Equal(t, DefaultMaxBatchBytes, c.MaxBatchBytes)
	assert.Equal(t, DefaultCompression, c.Compression)
	assert.Equal(t, DefaultKeyHash, c.KeyHash)
	assert.Equal(t, DefaultLinger, c.Linger)
	assert.Equal(t, DefaultMaxBufferedMessages, c.MaxBufferedMessages)
	assert.Equal(t, DefaultMaxBufferedBytes, c.MaxBufferedBytes)
	assert.Equal(t, DefaultProvisionTimeout, c.ProvisionTimeout)
	assert.Equal(t, DefaultProvisionBackoffMax, c.ProvisionBackoffMax)
	assert.Equal(t, DefaultMaxProducers, p.Stats().MaxProducers)
}

func TestBatchAndBufferDefaultsGrowToHoldTheLargestMessage(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}, MaxMessageBytes: 80 << 20})
	require.NoError(t, err)
	assert.Equal(t, 80<<20, p.cfg.MaxBatchBytes)
	assert.Equal(t, 80<<20, p.cfg.MaxBufferedBytes)
}

func TestMaxRequestBytesLeavesRoomBelowSaramasRequestLimit(t *testing.T) {
	assert.Equal(t, int(sarama.MaxRequestSize)-10*1024, MaxRequestBytes)
}

func TestConfigThatCanNeverWorkIsRefusedNamingFieldAndVariable(t *testing.T) {
	tests := []struct {
		name    string
		give    Config
		want    string // the field
		wantErr string
	}{
		{"client id with a space before 1.0", Config{ClientID: "my service", Version: "0.10.2.0"}, "ClientID", "ASCII letters"},
		{"client id with a non-ASCII letter before 1.0", Config{ClientID: "bestellungen-ü", Version: "0.11.0.0"}, "ClientID", "before 1.0.0"},
		{"unknown codec", Config{Compression: "brotli"}, "Compression", "not one of none, gzip, snappy, lz4, zstd"},
		{"lz4 before 0.10", Config{Compression: "lz4", Version: "0.9.0.0"}, "Compression", "lz4 needs a Version of at least 0.10"},
		{"compression before 0.11", Config{Compression: "snappy", Version: "0.10.2.0"}, "Compression", "compression needs a Version of at least 0.11"},
		{"zstd before 2.1", Config{Compression: "zstd", Version: "2.0.0"}, "Compression", "zstd needs a Version of at least 2.1.0"},
		{"gzip level above 9", Config{Compression: "gzip", CompressionLevel: 10}, "CompressionLevel", "not a gzip level"},
		{"negative gzip level", Config{Compression: "gzip", CompressionLevel: -1}, "CompressionLevel", "not a gzip level"},
		{"zstd level above 22", Config{Compression: "zstd", CompressionLevel: 23}, "CompressionLevel", "not a zstd level"},
		{"level for snappy", Config{Compression: "snappy", CompressionLevel: 3}, "CompressionLevel", "snappy has no levels"},
		{"level for lz4", Config{Compression: "lz4", CompressionLevel: 3}, "CompressionLevel", "lz4 has no levels"},
		{"level without a codec", Config{CompressionLevel: 3}, "CompressionLevel", "Compression is none"},
		{"unknown key hash", Config{KeyHash: "crc32"}, "KeyHash", "not one of fnv1a, murmur2"},
		{"unknown partitioner", Config{Partitioner: "random"}, "Partitioner", "not one of sticky, hash"},
		{"message at sarama's request limit", Config{MaxMessageBytes: 100 << 20}, "MaxMessageBytes", "MaxRequestBytes"},
		{"batch at sarama's request limit", Config{MaxBatchBytes: 100 << 20}, "MaxBatchBytes", "MaxRequestBytes"},
		{"negative batch", Config{MaxBatchBytes: -1}, "MaxBatchBytes", "negative"},
		{"negative buffered messages", Config{MaxBufferedMessages: -1}, "MaxBufferedMessages", "negative"},
		{"negative buffered bytes", Config{MaxBufferedBytes: -1}, "MaxBufferedBytes", "negative"},
		{"idempotent with leader acks", Config{Idempotent: true, RequiredAcks: "leader"}, "RequiredAcks", "needs \"all\""},
		{"idempotent on 0.10", Config{Idempotent: true, Version: "0.10.2.0"}, "Version", "older than 0.11"},
		{"transactions with no acks", Config{TransactionalID: "tx", RequiredAcks: "none"}, "RequiredAcks", "needs \"all\""},
		{"transactions on 0.10", Config{TransactionalID: "tx", Version: "0.10.2.0"}, "Version", "older than 0.11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.Brokers = []string{"kafka:9092"}
			for _, err := range []error{tt.give.Validate(), newErr(tt.give)} {
				var ce *ConfigError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, tt.want, ce.Field)
				assert.Equal(t, envVars[tt.want], ce.EnvVar)
				assert.NotEmpty(t, ce.EnvVar)
				assert.ErrorContains(t, err, tt.wantErr)
			}
		})
	}
}

func newErr(c Config) error {
	_, err := New(c)
	return err
}

func TestConfigThatWorksIsAccepted(t *testing.T) {
	tests := []struct {
		name string
		give Config
	}{
		{"every codec but zstd from 0.11", Config{Compression: "lz4", Version: "0.11.0.0"}},
		{"zstd at 2.1", Config{Compression: "ZSTD", Version: "2.1.0"}},
		{"gzip levels", Config{Compression: "gzip", CompressionLevel: 9}},
		{"zstd levels", Config{Compression: "zstd", CompressionLevel: 22}},
		{"no compression on the oldest version", Config{Version: "0.8.2.0"}},
		{"old versions without idempotence", Config{Version: "0.8.2.0", RequiredAcks: "leader"}},
		{"client id with a space from 1.0", Config{ClientID: "my service", Version: "1.0.0"}},
		{"client id with a space at sarama's default version", Config{ClientID: "my service"}},
		{"murmur2 keys, random keyless", Config{KeyHash: "murmur2", Partitioner: "hash"}},
		{"no linger whatever the default", Config{Linger: -1}},
		{"batch as large as a message", Config{MaxMessageBytes: 4 << 20, MaxBatchBytes: 4 << 20}},
		{"the largest message there is", Config{MaxMessageBytes: MaxRequestBytes}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.Brokers = []string{"kafka:9092"}
			require.NoError(t, tt.give.Validate())
			require.NoError(t, newErr(tt.give))
		})
	}
}

// TestSaramaRefusalsNameTheConfigField checks the backstop behind check:
// fed the sarama configuration each bad Config makes, with check skipped,
// sarama's own Validate refuses it and the refusal names the field. So a
// sarama ConfigurationError the pool's settings can produce is a ConfigError
// at New even where check missed it.
func TestSaramaRefusalsNameTheConfigField(t *testing.T) {
	tests := []struct {
		name string
		give Config
		want string
	}{
		{"client id before 1.0", Config{ClientID: "a b", Version: "0.10.2.0"}, "ClientID"},
		{"lz4 before 0.10", Config{Compression: "lz4", Version: "0.9.0.0"}, "Compression"},
		{"zstd before 2.1", Config{Compression: "zstd", Version: "2.0.0"}, "Compression"},
		{"gzip level", Config{Compression: "gzip", CompressionLevel: 10}, "CompressionLevel"},
		{"idempotent before 0.11", Config{Idempotent: true, Version: "0.10.2.0"}, "Version"},
		{"transactional without idempotence", Config{}, "TransactionalID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := tt.give.withDefaults().saramaFromConfig(security{})
			if tt.want == "TransactionalID" {
				sc.Producer.Transaction.ID = "tx"
			}
			err := sc.Validate()
			require.Error(t, err, "sarama accepts it")
			ce := saramaConfigError(err)
			assert.Equal(t, tt.want, ce.Field, "%v", err)
			assert.Equal(t, envVars[tt.want], ce.EnvVar)
		})
	}
}

func TestEveryConfigFieldNamesItsVariable(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	require.Len(t, envFields, typ.NumField(), "every Config field has an env tag")
	seen := map[string]string{}
	for _, f := range envFields {
		assert.True(t, strings.HasPrefix(f.envVar, "KAFKA_"), "%s: %q", f.name, f.envVar)
		assert.Empty(t, seen[f.envVar], "%s and %s share %s", seen[f.envVar], f.name, f.envVar)
		seen[f.envVar] = f.name
		sf, _ := typ.FieldByName(f.name)
		assert.NotEmpty(t, sf.Tag.Get("json"), "%s has a json tag", f.name)
		assert.NotEmpty(t, sf.Tag.Get("yaml"), "%s has a yaml tag", f.name)
	}
}

func TestConfigErrorWithoutAVariableSaysSo(t *testing.T) {
	err := &ConfigError{Field: "WithSaramaConfig", Err: assert.AnError}
	assert.Equal(t, "fxkafka: invalid config WithSaramaConfig: "+assert.AnError.Error(), err.Error())
}

func TestBackoffIsBoundedAndJittered(t *testing.T) {
	limit := time.Second
	for n := 1; n <= 20; n++ {
		d := backoff(n, limit)
		base := min(limit/10<<(n-1), limit)
		if n > 8 {
			base = limit
		}
		assert.GreaterOrEqual(t, d, base/2, "failure %d", n)
		assert.LessOrEqual(t, d, base, "failure %d", n)
	}
}

// CompressionLevel's rule (config.go's doc, the README's table): 0 is the
// codec's default, gzip takes 1-9, zstd 1-22, "snappy and lz4 have no
// levels, so any other value is an error", and a level with Compression
// "none" is an error too. -1000 is sarama's private spelling of "default"
// (sarama.CompressionLevelDefault), not a value of Config's: Validate
// must refuse it like any other out-of-range level, naming the field.
func TestValidateRefusesCompressionLevelMinus1000LikeAnyOtherOutOfRangeLevel(t *testing.T) {
	for _, codec := range []string{"", "none", "snappy", "lz4", "gzip", "zstd"} {
		t.Run("codec="+codec, func(t *testing.T) {
			cfg := Config{Brokers: []string{"kafka:9092"}, Compression: codec, CompressionLevel: sarama.CompressionLevelDefault}
			err := cfg.Validate()
			var ce *ConfigError
			if assert.ErrorAs(t, err, &ce, "CompressionLevel %d with Compression %q was accepted", cfg.CompressionLevel, codec) {
				assert.Equal(t, "CompressionLevel", ce.Field)
				assert.Equal(t, "KAFKA_COMPRESSION_LEVEL", ce.EnvVar)
			}
		})
	}
}
