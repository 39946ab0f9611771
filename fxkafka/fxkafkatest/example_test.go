package fxkafkatest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/fxkafka/fxkafka/fxkafka"
	"github.com/fxkafka/fxkafka/fxkafka/fxkafkatest"
)

// OrderService is the code under test: it depends on fxkafka.Producer.
type OrderService struct{ producer fxkafka.Producer }

func NewOrderService(p fxkafka.Producer) *OrderService { return &OrderService{producer: p} }

func (s *OrderService) Place(ctx context.Context, id string) error {
	_, _, err := s.producer.SendMessage(ctx, &sarama.ProducerMessage{
		Topic: "orders", Key: sarama.StringEncoder(id), Value: sarama.StringEncoder("placed"),
	})
	return err
}

// A complete test of a service wired with fxkafka.Module, as it sits in a
// _test.go file (there, t is the test's *testing.T).
func Example() {
	t := newExampleTB()
	defer t.finish()
	testOrderService(t)
	// Output: orders holds 1 record(s): key=order-1 value=placed
}

func testOrderService(t testing.TB) {
	broker := fxkafkatest.NewBroker(t, "orders")

	var svc *OrderService
	app := fxtest.New(t,
		fxkafka.Module,
		fx.Replace(broker.Config()),
		fx.Provide(NewOrderService),
		fx.Populate(&svc),
	)
	app.RequireStart()
	if err := svc.Place(context.Background(), "order-1"); err != nil {
		t.Fatal(err)
	}
	app.RequireStop()

	recs := broker.WaitForRecords("orders", 1, 10*time.Second)
	fmt.Printf("orders holds %d record(s): key=%s value=%s\n", len(recs), recs[0].Key, recs[0].Value)
}
