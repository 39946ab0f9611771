package fxkafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/fx"

	"go.fxkafka.dev/fxkafka"
)

// localBroker starts an in-process broker for the examples; a service uses
// its cluster's addresses instead.
func localBroker() *kfake.Cluster {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		panic(err)
	}
	return c
}

// A service takes the pool (or the Producer interface) in its constructors;
// the module provides it, configured from KAFKA_BROKERS or, as here, from
// fx.Replace.
func Example() {
	broker := localBroker()
	defer broker.Close()

	app := fx.New(
		fxkafka.Module,
		fx.Replace(fxkafka.Config{Brokers: broker.ListenAddrs()}),
		fx.Invoke(func(p fxkafka.Producer) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, offset, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("order-1")})
			fmt.Println("offset", offset, "err", err)
			return err
		}),
		fx.NopLogger,
	)
	if err := app.Start(context.Background()); err != nil {
		panic(err)
	}
	if err := app.Stop(context.Background()); err != nil {
		panic(err)
	}
	// Output: offset 0 err <nil>
}

// New only validates: the pool dials on its first send.
func ExampleNew() {
	broker := localBroker()
	defer broker.Close()

	pool, err := fxkafka.New(fxkafka.Config{Brokers: broker.ListenAddrs(), MaxProducers: 2})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())
	fmt.Println("producers after New:", pool.Stats().Producers)

	_, _, err = pool.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("hello")})
	fmt.Println("err:", err, "producers after a send:", pool.Stats().Producers)
	// Output:
	// producers after New: 0
	// err: <nil> producers after a send: 1
}

// A send returns as soon as the brokers acknowledge the message, or fails
// with an error that says whether it may have been written.
func ExampleProducerPool_SendMessage() {
	pool, err := fxkafka.New(fxkafka.Config{Brokers: []string{"127.0.0.1:1"}}) // nothing listens there
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, _, err = pool.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("hello")})
	switch {
	case err == nil:
		fmt.Println("acknowledged")
	case errors.Is(err, fxkafka.ErrUnavailable), errors.Is(err, fxkafka.ErrPoolClosed):
		fmt.Println("not sent: safe to retry")
	case errors.Is(err, fxkafka.ErrDeliveryUnknown):
		fmt.Println("may have been written: a retry may duplicate it")
	default:
		fmt.Println("invalid message:", err)
	}
	// Output: not sent: safe to retry
}

// Close flushes what was handed off and refuses the rest.
func ExampleProducerPool_Close() {
	pool, err := fxkafka.New(fxkafka.Config{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println(pool.Close(ctx))
	_, _, err = pool.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("late")})
	fmt.Println(errors.Is(err, fxkafka.ErrPoolClosed))
	// Output:
	// <nil>
	// true
}

// Produce returns without waiting for the broker; each promise gets its
// message's outcome on a goroutine of the pool's, in the order produced for
// one partition (here, one key).
func ExampleProducerPool_Produce() {
	broker := localBroker()
	defer broker.Close()
	pool, err := fxkafka.New(fxkafka.Config{Brokers: broker.ListenAddrs()})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	ctx := context.Background()
	for _, item := range []string{"book", "pen", "lamp"} {
		msg := &sarama.ProducerMessage{Topic: "orders", Key: sarama.StringEncoder("customer-7"), Value: sarama.StringEncoder(item)}
		pool.Produce(ctx, msg, func(msg *sarama.ProducerMessage, err error) {
			if err != nil {
				fmt.Println(msg.Value, "not stored:", err) // ErrUnavailable and the like: see SendMessage
				return
			}
			fmt.Println(msg.Value, "stored at offset", msg.Offset)
		})
	}
	if err := pool.Flush(ctx); err != nil { // every promise above has run
		panic(err)
	}
	// Output:
	// book stored at offset 0
	// pen stored at offset 1
	// lamp stored at offset 2
}

// Flush waits until every message produced before it has its outcome and
// its promise has returned; its context bounds only the wait.
func ExampleProducerPool_Flush() {
	broker := localBroker()
	defer broker.Close()
	pool, err := fxkafka.New(fxkafka.Config{Brokers: broker.ListenAddrs()})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	var acked atomic.Int64
	for i := range 1000 {
		msg := &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(fmt.Sprintf("event-%d", i))}
		pool.Produce(context.Background(), msg, func(_ *sarama.ProducerMessage, err error) {
			if err == nil {
				acked.Add(1)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("flush:", pool.Flush(ctx))
	fmt.Println("acknowledged:", acked.Load(), "still buffered:", pool.Stats().Buffered)
	// Output:
	// flush: <nil>
	// acknowledged: 1000 still buffered: 0
}
