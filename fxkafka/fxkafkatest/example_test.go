package fxkafkatest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

// A test of outage handling: take the broker down, see the send refused,
// bring it back, and read back what the topic holds. In a test, t is the
// test's *testing.T.
func ExampleBroker_Down() {
	t := newExampleTB()
	defer t.finish()

	broker := fxkafkatest.NewBroker(t, "orders")
	pool, err := fxkafka.New(broker.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	send := func(v string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := pool.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder(v)})
		return err
	}

	broker.Down()
	err = send("lost?")
	fmt.Println("while down, safe to retry:", errors.Is(err, fxkafka.ErrUnavailable))

	broker.Up()
	for send("kept") != nil { // the pool notices within Config().ProvisionBackoffMax
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range broker.WaitForRecords("orders", 1, 10*time.Second) {
		fmt.Println("stored:", string(r.Value))
	}
	// Output:
	// while down, safe to retry: true
	// stored: kept
}

// An fxtest test of a service wired with fxkafka.Module, against the
// in-process broker: the body of TestOrderService (see orders_test.go).
func Example_fxtest() {
	t := newExampleTB()
	defer t.finish()
	testOrderService(t)
	fmt.Println("order placed and stored")
	// Output: order placed and stored
}

// A test under a 5 ms network round trip, without cgo or a real cluster:
// every request the pool makes, pipelined ones included, pays it.
func ExampleWithLatency() {
	t := newExampleTB()
	defer t.finish()

	broker := fxkafkatest.NewCluster(t,
		fxkafkatest.WithTopics("orders"),            // created up front; others on first use
		fxkafkatest.WithBrokers(3),                  // default 1; partition p led by broker p mod 3
		fxkafkatest.WithPartitions(6),               // default 3, for every topic
		fxkafkatest.WithLatency(5*time.Millisecond), // default 0
	)
	pool, err := fxkafka.New(broker.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, _, err = pool.SendMessage(ctx, &sarama.ProducerMessage{Topic: "orders", Value: sarama.StringEncoder("slow")})
	fmt.Println("sent:", err == nil)
	fmt.Println("took a round trip or more:", time.Since(start) >= 5*time.Millisecond)
	// Output:
	// sent: true
	// took a round trip or more: true
}

// A test of code that produces asynchronously: each Produce gets a promise
// from the collector, and the test waits for every outcome instead of
// sleeping. Messages with one key keep their order.
func ExamplePromises() {
	t := newExampleTB()
	defer t.finish()

	broker := fxkafkatest.NewBroker(t, "events")
	pool, err := fxkafka.New(broker.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())

	promises := fxkafkatest.NewPromises(t)
	for i := range 3 {
		pool.Produce(context.Background(), &sarama.ProducerMessage{
			Topic: "events",
			Key:   sarama.StringEncoder("user-1"),
			Value: sarama.StringEncoder(fmt.Sprintf("event-%d", i)),
		}, promises.Promise())
	}
	for _, o := range promises.WaitForAll(10 * time.Second) {
		fmt.Println(string(o.Value), "at offset", o.Offset, "err", o.Err)
	}
	fmt.Println("failed:", len(promises.Failed()))
	// Output:
	// event-0 at offset 0 err <nil>
	// event-1 at offset 1 err <nil>
	// event-2 at offset 2 err <nil>
	// failed: 0
}
