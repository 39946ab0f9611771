package fxkafkaprom_test

import (
	"context"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaprom"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestModuleExportsThePoolsStats(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	broker := fxkafkatest.NewBroker(t, "orders")
	reg := prometheus.NewPedanticRegistry()

	var pool *fxkafka.ProducerPool
	app := fxtest.New(t,
		fxkafka.Module,
		fxkafkaprom.Module,
		fx.Replace(broker.Config()),
		fx.Provide(func() prometheus.Registerer { return reg }),
		fx.Populate(&pool),
	)
	app.RequireStart()
	for range 3 {
		_, _, err := pool.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("x")})
		require.NoError(t, err)
	}
	_, _, err := pool.SendMessage(context.Background(), nil)
	require.ErrorIs(t, err, fxkafka.ErrInvalidMessage)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP fxkafka_messages_sent_total Messages acknowledged by the brokers.
# TYPE fxkafka_messages_sent_total counter
fxkafka_messages_sent_total 3
# HELP fxkafka_messages_failed_total Sends that failed, by error class: unavailable, closed and invalid were never sent; unknown may have been written.
# TYPE fxkafka_messages_failed_total counter
fxkafka_messages_failed_total{class="closed"} 0
fxkafka_messages_failed_total{class="invalid"} 1
fxkafka_messages_failed_total{class="unavailable"} 0
fxkafka_messages_failed_total{class="unknown"} 0
# HELP fxkafka_producers Producers open now.
# TYPE fxkafka_producers gauge
fxkafka_producers 1
# HELP fxkafka_provision_attempts_total Provisioning attempts started.
# TYPE fxkafka_provision_attempts_total counter
fxkafka_provision_attempts_total 1
`), "fxkafka_messages_sent_total", "fxkafka_messages_failed_total", "fxkafka_producers", "fxkafka_provision_attempts_total"))

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems, "metric names follow Prometheus conventions")
	app.RequireStop()
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Zero(t, n, "unregistered on stop")
}
