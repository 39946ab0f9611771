package fxkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigFromEnvReadsEveryVariable(t *testing.T) {
	clearEnv(t)
	for k, v := range map[string]string{
		"KAFKA_BROKERS":               " kafka-1:9092, kafka-2:9092 ,",
		"KAFKA_CLIENT_ID":             "orders",
		"KAFKA_MAX_PRODUCERS":         "2",
		"KAFKA_PRODUCER_BUSY_AT":      "64",
		"KAFKA_VERSION":               "3.6.0",
		"KAFKA_REQUIRED_ACKS":         "all",
		"KAFKA_IDEMPOTENT":            "true",
		"KAFKA_PARTITIONER":           "hash",
		"KAFKA_MAX_MESSAGE_BYTES":     "2048",
		"KAFKA_TRANSACTIONAL_ID":      "orders-tx",
		"KAFKA_PROVISION_TIMEOUT":     "2s",
		"KAFKA_PROVISION_BACKOFF_MAX": "500ms",
	} {
		t.Setenv(k, v)
	}
	got, err := ConfigFromEnv()
	require.NoError(t, err)
	assert.Equal(t, Config{
		Brokers:             []string{"kafka-1:9092", "kafka-2:9092"},
		ClientID:            "orders",
		MaxProducers:        2,
		ProducerBusyAt:      64,
		Version:             "3.6.0",
		RequiredAcks:        "all",
		Idempotent:          true,
		Partitioner:         "hash",
		MaxMessageBytes:     2048,
		TransactionalID:     "orders-tx",
		ProvisionTimeout:    2 * time.Second,
		ProvisionBackoffMax: 500 * time.Millisecond,
	}, got)
}

func TestConfigDefaultsApplyToZeroFields(t *testing.T) {
	p, err := New(Config{Brokers: []string{"kafka:9092"}})
	require.NoError(t, err)
	c := p.cfg
	assert.Equal(t, DefaultClientID, c.ClientID)
	assert.Equal(t, DefaultMaxProducers, c.MaxProducers)
	assert.Equal(t, DefaultProducerBusyAt, c.ProducerBusyAt)
	assert.Equal(t, DefaultMaxMessageBytes, c.MaxMessageBytes)
	assert.Equal(t, DefaultProvisionTimeout, c.ProvisionTimeout)
	assert.Equal(t, DefaultProvisionBackoffMax, c.ProvisionBackoffMax)
	assert.Equal(t, DefaultMaxProducers, p.Stats().MaxProducers)
}

func TestIdempotenceConflictsAreConfigErrors(t *testing.T) {
	tests := []struct {
		name  string
		give  Config
		field string
	}{
		{"idempotent with leader acks", Config{Idempotent: true, RequiredAcks: "leader"}, "RequiredAcks"},
		{"idempotent on 0.10", Config{Idempotent: true, Version: "0.10.2.0"}, "Version"},
		{"transactions with no acks", Config{TransactionalID: "tx", RequiredAcks: "none"}, "RequiredAcks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.Brokers = []string{"kafka:9092"}
			var ce *ConfigError
			require.ErrorAs(t, tt.give.Validate(), &ce)
			assert.Equal(t, tt.field, ce.Field)
		})
	}
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
