package fxkafkatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

// OrderService is a user's code under test: it depends on fxkafka.Producer.
type OrderService struct{ producer fxkafka.Producer }

func NewOrderService(p fxkafka.Producer) *OrderService { return &OrderService{producer: p} }

func (s *OrderService) Place(ctx context.Context, id string) error {
	_, _, err := s.producer.SendMessage(ctx, &sarama.ProducerMessage{
		Topic: "orders", Key: sarama.StringEncoder(id), Value: sarama.StringEncoder("placed"),
	})
	return err
}

// TestOrderService is the README's test of a user's service, as a user
// writes it (with t *testing.T); Example_fxtest runs the same body.
func TestOrderService(t *testing.T) {
	checkLeaks(t)
	testOrderService(t)
}

func testOrderService(t testing.TB) {
	broker := fxkafkatest.NewBroker(t, "orders")
	var svc *OrderService
	app := fxtest.New(t, fxkafka.Module, fx.Replace(broker.Config()), fx.Provide(NewOrderService), fx.Populate(&svc))
	app.RequireStart()
	require.NoError(t, svc.Place(context.Background(), "order-1"))
	app.RequireStop()

	recs := broker.WaitForRecords("orders", 1, 10*time.Second)
	assert.Equal(t, "order-1", string(recs[0].Key))
}
