package fxkafka

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// FuzzConfigNewAcceptsOnlyWhatSaramaAccepts: a Config New accepts makes
// sarama configs (shared and transactional) that sarama's own Validate
// accepts, so no send fails for a setting; a Config it refuses is refused
// with a *ConfigError naming the field and its variable. Never a panic.
func FuzzConfigNewAcceptsOnlyWhatSaramaAccepts(f *testing.F) {
	f.Add("svc", "", "", 0, 0, 0, 0, false, "", "", int64(0))
	f.Add("my service", "0.10.2.0", "lz4", 0, 0, 0, 0, false, "", "leader", int64(0))
	f.Add("ü", "0.9.0.0", "zstd", 3, 2048, 1024, 0, true, "tx", "all", int64(-1))
	f.Add("a.b-c_d", "2.0.0", "gzip", 10, 1<<20, 100<<20, 1000, false, "tx", "none", int64(time.Millisecond))
	f.Add("x", "3.6.0", "SNAPPY", 1, 104857600, 0, 0, true, "", "", int64(5))
	f.Fuzz(func(t *testing.T, clientID, version, codec string, level, maxMsg, maxBatch, maxBuffered int, idempotent bool, txnID, acks string, linger int64) {
		cfg := Config{
			Brokers: []string{"kafka:9092"}, ClientID: clientID, Version: version, Compression: codec,
			CompressionLevel: level, MaxMessageBytes: maxMsg, MaxBatchBytes: maxBatch,
			MaxBufferedBytes: maxBuffered, Idempotent: idempotent, TransactionalID: txnID,
			RequiredAcks: acks, Linger: time.Duration(linger),
		}
		p, err := New(cfg)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || envVars[ce.Field] == "" || ce.EnvVar != envVars[ce.Field] {
				t.Fatalf("refusal without a field and its variable: %v", err)
			}
			return
		}
		if err := p.saramaConfig(newDialer(0, 0, nil)).Validate(); err != nil {
			t.Fatalf("New accepted %+v, sarama refuses it: %v", cfg, err)
		}
	})
}

// FuzzWithSaramaConfigNeverPanicsAndKeepsItsLimits: whatever a func sets
// among the settings the pool honours, New refuses it with a *ConfigError
// or makes configs sarama accepts within the pool's limits.
func FuzzWithSaramaConfigNeverPanicsAndKeepsItsLimits(f *testing.F) {
	f.Add(int8(0), 0, 0, 0, int64(0), 0, 0, "")
	f.Add(int8(9), 5, 1, 100<<20, int64(10*time.Second), 0, -1, "a b")
	f.Add(int8(4), 22, 2, 1<<20, int64(time.Second), 3, 5, "x")
	f.Add(int8(-1), -1000, 3, -1, int64(-1), -1, 1, "")
	versions := []sarama.KafkaVersion{sarama.DefaultVersion, sarama.V0_8_2_0, sarama.V0_10_2_0, sarama.V2_0_0_0, sarama.V3_6_0_0}
	f.Fuzz(func(t *testing.T, codec int8, level, version, maxMsg int, timeout int64, retries, openRequests int, clientID string) {
		change := func(sc *sarama.Config) {
			sc.Producer.Compression = sarama.CompressionCodec(codec)
			sc.Producer.CompressionLevel = level
			sc.Version = versions[uint(version)%uint(len(versions))]
			if maxMsg != 0 {
				sc.Producer.MaxMessageBytes = maxMsg
			}
			if timeout != 0 {
				sc.Producer.Timeout = time.Duration(timeout)
			}
			sc.Producer.Retry.Max = retries
			if openRequests != 0 {
				sc.Net.MaxOpenRequests = openRequests
			}
			if clientID != "" {
				sc.ClientID = clientID
			}
		}
		p, err := New(Config{Brokers: []string{"kafka:9092"}, TransactionalID: "tx"}, WithSaramaConfig(change))
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != "WithSaramaConfig" || !strings.Contains(err.Error(), "WithSaramaConfig") {
				t.Fatalf("refusal not a WithSaramaConfig ConfigError: %v", err)
			}
			return
		}
		sc := p.saramaConfig(newDialer(0, 0, nil))
		if err := sc.Validate(); err != nil {
			t.Fatalf("New accepted what sarama refuses: %v", err)
		}
		if name, err := checkPoolLimits(sc); err != nil {
			t.Fatalf("New accepted %s: %v", name, err)
		}
	})
}
