package fxkafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/fx"
	"go.yaml.in/yaml/v3"

	"go.fxkafka.dev/fxkafka"
)

// A Config from a YAML file: the field names of its yaml tags, durations as
// Go durations.
func ExampleConfig_yaml() {
	file := `
brokers: [kafka-1:9092, kafka-2:9092]
compression: zstd
linger: 5ms
provisionTimeout: 2s
saslMechanism: PLAIN
saslUser: orders
saslPassword: s3cret
`
	var cfg fxkafka.Config
	if err := yaml.Unmarshal([]byte(file), &cfg); err != nil {
		panic(err)
	}
	fmt.Println(cfg.Brokers, cfg.Compression, cfg.Linger, cfg.ProvisionTimeout, cfg.SASLPassword)
	fmt.Println(cfg.Validate())
	// Output:
	// [kafka-1:9092 kafka-2:9092] zstd 5ms 2s [redacted]
	// <nil>
}

// A Config from JSON: durations as strings, or as nanoseconds (what
// encoding/json writes).
func ExampleConfig_UnmarshalJSON() {
	var cfg fxkafka.Config
	err := json.Unmarshal([]byte(`{"brokers": ["kafka:9092"], "linger": "5ms", "provisionTimeout": 2000000000}`), &cfg)
	fmt.Println(cfg.Linger, cfg.ProvisionTimeout, err)

	err = json.Unmarshal([]byte(`{"brokers": ["kafka:9092"], "linger": "5"}`), &cfg)
	fmt.Println(err)
	// Output:
	// 5ms 2s <nil>
	// fxkafka: invalid config Linger (KAFKA_LINGER): "5" is not a duration such as "5s"
}

func ExampleWithSaramaConfig() {
	cfg := fxkafka.Config{Brokers: []string{"kafka:9092"}}
	pool, err := fxkafka.New(cfg, fxkafka.WithSaramaConfig(func(sc *sarama.Config) {
		sc.Metadata.RefreshFrequency = time.Minute
		sc.Producer.Retry.Max = 5
	}))
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	// A setting the pool's guarantees rest on is refused, not overwritten.
	_, err = fxkafka.New(cfg, fxkafka.WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Return.Successes = false
	}))
	fmt.Println(errors.Is(err, fxkafka.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// fxkafka: invalid config WithSaramaConfig: changes Producer.Return.Successes, which the pool owns: the pool waits for every message's result
}

func ExampleModuleOptions() {
	tune := func(sc *sarama.Config) { sc.Net.TLS.Enable = true }
	app := fx.New(
		fxkafka.Module,
		fx.Replace(fxkafka.Config{Brokers: []string{"kafka:9092"}}),
		fxkafka.ModuleOptions(fxkafka.WithSaramaConfig(tune)),
		fx.Invoke(func(*fxkafka.ProducerPool) {}),
		fx.NopLogger,
	)
	fmt.Println(errors.Is(app.Err(), fxkafka.ErrInvalidConfig))
	// Output: true
}
