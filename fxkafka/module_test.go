package fxkafka

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// clearEnv unsets every variable ConfigFromEnv reads, for the test's span.
func clearEnv(t *testing.T) {
	for _, v := range envVars {
		t.Setenv(v, "")
	}
}

func TestModuleStartsAndStopsWithNothingListening(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	t.Setenv("KAFKA_BROKERS", freeAddr(t))

	var (
		pool     *ProducerPool
		producer Producer
	)
	app := fxtest.New(t, Module, fx.Populate(&pool, &producer))
	app.RequireStart()
	assert.Same(t, pool, producer, "the module provides the pool as a Producer")
	assert.Zero(t, pool.Stats().ProvisionAttempts, "OnStart does not dial")

	_, _, err := producer.SendMessage(context.Background(), msg("x"))
	assert.ErrorIs(t, err, ErrUnavailable)
	app.RequireStop()
	_, _, err = pool.SendMessage(context.Background(), msg("x"))
	assert.ErrorIs(t, err, ErrPoolClosed, "OnStop closed the pool")
}

func TestModuleFailsOnBadEnvironmentNamingTheVariable(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name    string
		give    map[string]string
		wantVar string
	}{
		{"missing brokers", map[string]string{}, "KAFKA_BROKERS"},
		{"broker without port", map[string]string{"KAFKA_BROKERS": "kafka"}, "KAFKA_BROKERS"},
		{"cap not a number", map[string]string{"KAFKA_BROKERS": "kafka:9092", "KAFKA_MAX_PRODUCERS": "four"}, "KAFKA_MAX_PRODUCERS"},
		{"negative cap", map[string]string{"KAFKA_BROKERS": "kafka:9092", "KAFKA_MAX_PRODUCERS": "-1"}, "KAFKA_MAX_PRODUCERS"},
		{"bad duration", map[string]string{"KAFKA_BROKERS": "kafka:9092", "KAFKA_PROVISION_TIMEOUT": "5"}, "KAFKA_PROVISION_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.give {
				t.Setenv(k, v)
			}
			app := fx.New(Module, fx.Invoke(func(*ProducerPool) {}), fx.NopLogger)
			err := app.Err()
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.ErrorContains(t, err, tt.wantVar)
		})
	}
}

func TestModuleLogsToTheApplicationsLogger(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	t.Setenv("KAFKA_BROKERS", freeAddr(t))
	core, logs := observer.New(zap.InfoLevel)

	var pool *ProducerPool
	app := fxtest.New(t, Module, fx.Supply(zap.New(core)), fx.Populate(&pool))
	app.RequireStart()
	_, _, err := pool.SendMessage(context.Background(), msg("x"))
	require.ErrorIs(t, err, ErrUnavailable)
	app.RequireStop()

	unavailable := logs.FilterMessage("kafka unavailable").All()
	require.Len(t, unavailable, 1, "an outage is logged once, not per send")
	assert.Equal(t, "fxkafka", unavailable[0].LoggerName)
}

func TestModuleConfigCanBeReplaced(t *testing.T) {
	checkLeaks(t)
	clearEnv(t) // fx.Replace means the environment is not read at all
	c := startBroker(t, "", topic)

	var pool *ProducerPool
	app := fxtest.New(t, Module, fx.Replace(Config{Brokers: c.ListenAddrs()}), fx.Populate(&pool))
	app.RequireStart()
	_, _, err := pool.SendMessage(context.Background(), msg("replaced"))
	require.NoError(t, err)
	app.RequireStop()
	assert.Equal(t, map[string]int{"replaced": 1}, countValues(readBack(t, c, topic)))
}

func TestModuleConfigCanBeDecorated(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	t.Setenv("KAFKA_BROKERS", freeAddr(t))
	t.Setenv("KAFKA_CLIENT_ID", "from-env")
	c := startBroker(t, "", topic)

	var (
		pool *ProducerPool
		seen Config
	)
	app := fxtest.New(t, Module,
		fx.Decorate(func(cfg Config) Config {
			seen = cfg
			cfg.Brokers = c.ListenAddrs()
			return cfg
		}),
		fx.Populate(&pool),
	)
	app.RequireStart()
	assert.Equal(t, "from-env", seen.ClientID, "the decorator receives the environment's config")
	_, _, err := pool.SendMessage(context.Background(), msg("decorated"))
	require.NoError(t, err)
	app.RequireStop()
	assert.Equal(t, map[string]int{"decorated": 1}, countValues(readBack(t, c, topic)))
}

func TestModuleStopFlushesAcknowledgedMessages(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	c := startBroker(t, "", topic)
	t.Setenv("KAFKA_BROKERS", c.ListenAddrs()[0])

	var pool *ProducerPool
	app := fxtest.New(t, Module, fx.Populate(&pool))
	app.RequireStart()
	for i := range 10 {
		_, _, err := pool.SendMessage(context.Background(), msg(value(i)))
		require.NoError(t, err)
	}
	app.RequireStop()
	assert.Len(t, readBack(t, c, topic), 10)
	assert.Zero(t, pool.Stats().Producers)
}

// endCounter is a hook that counts the sends it sees end.
type endCounter struct{ ends atomic.Int64 }

func (h *endCounter) OnSendEnd(context.Context, *sarama.ProducerMessage, SendInfo) { h.ends.Add(1) }

func TestModuleAppliesEveryOptionInTheGroup(t *testing.T) {
	checkLeaks(t)
	clearEnv(t)
	c := startBroker(t, "", topic)
	first, second := &endCounter{}, &endCounter{}

	var pool *ProducerPool
	app := fxtest.New(t, Module,
		fx.Replace(Config{Brokers: c.ListenAddrs()}),
		ModuleOptions(WithHook(first)),
		ModuleOptions(WithHook(second)),
		fx.Populate(&pool),
	)
	app.RequireStart()
	_, _, err := pool.SendMessage(context.Background(), msg("hooked"))
	require.NoError(t, err)
	app.RequireStop()
	assert.Equal(t, int64(1), first.ends.Load())
	assert.Equal(t, int64(1), second.ends.Load())
}
