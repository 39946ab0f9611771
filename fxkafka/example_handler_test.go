package fxkafka_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/fx"

	"go.fxkafka.dev/fxkafka"
)

// The README's usage snippet, compiled and run.

// Handler publishes orders; it depends on the Producer interface.
type Handler struct{ producer fxkafka.Producer }

func NewHandler(p fxkafka.Producer) *Handler { return &Handler{producer: p} }

func (h *Handler) Publish(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, _, err := h.producer.SendMessage(ctx, &sarama.ProducerMessage{
		Topic: "orders",
		Value: sarama.ByteEncoder(body),
	})
	return err // errors.Is(err, fxkafka.ErrUnavailable): not sent, safe to retry
}

func main() {
	fx.New(
		fxkafka.Module, // Config from KAFKA_BROKERS..., *ProducerPool, Producer
		fx.Provide(NewHandler),
		fx.Invoke(func(*Handler) {}),
	).Run()
}

var _ = main // shown in the README; the example below runs the same wiring

// Handlers take the Producer interface in their constructors.
func Example_handler() {
	broker := localBroker()
	defer broker.Close()

	var h *Handler
	app := fx.New(
		fxkafka.Module,
		fx.Replace(fxkafka.Config{Brokers: broker.ListenAddrs()}),
		fx.Provide(NewHandler),
		fx.Populate(&h),
		fx.NopLogger,
	)
	if err := app.Start(context.Background()); err != nil {
		panic(err)
	}
	fmt.Println(h.Publish(context.Background(), []byte("order-1")))
	if err := app.Stop(context.Background()); err != nil {
		panic(err)
	}
	// Output: <nil>
}

// fx.Decorate adjusts the configuration the environment gave.
func Example_decorate() {
	broker := localBroker()
	defer broker.Close()
	os.Setenv("KAFKA_BROKERS", broker.ListenAddrs()[0]) // the deployment sets it
	defer os.Unsetenv("KAFKA_BROKERS")

	var cfg fxkafka.Config
	app := fx.New(
		fxkafka.Module,
		fx.Decorate(func(c fxkafka.Config) fxkafka.Config {
			c.ClientID = "orders-service"
			return c
		}),
		fx.Populate(&cfg),
		fx.NopLogger,
	)
	fmt.Println(app.Err(), cfg.ClientID, cfg.Brokers[0] == broker.ListenAddrs()[0])
	// Output: <nil> orders-service true
}
