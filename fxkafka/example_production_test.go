package fxkafka_test

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"go.fxkafka.dev/fxkafka"
)

// A lease holds one producer for one caller; with TransactionalID it is
// transactional.
func ExampleProducerPool_Lease() {
	broker := localBroker()
	defer broker.Close()
	pool, err := fxkafka.New(fxkafka.Config{Brokers: broker.ListenAddrs(), TransactionalID: "orders-tx"})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lease, err := pool.Lease(ctx)
	if err != nil {
		panic(err)
	}
	defer lease.Release()
	if err := lease.BeginTxn(); err != nil {
		panic(err)
	}
	err = lease.SendMessages(ctx, []*sarama.ProducerMessage{
		{Topic: "orders", Value: sarama.StringEncoder("debit")},
		{Topic: "orders", Value: sarama.StringEncoder("credit")},
	})
	if err != nil {
		_ = lease.AbortTxn(ctx)
		panic(err)
	}
	fmt.Println("commit:", lease.CommitTxn(ctx))
	// Output: commit: <nil>
}

// Ping backs a readiness probe; never a liveness probe.
func ExampleProducerPool_Ping() {
	broker := localBroker()
	defer broker.Close()
	pool, err := fxkafka.New(fxkafka.Config{Brokers: broker.ListenAddrs()})
	if err != nil {
		panic(err)
	}
	defer pool.Close(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	fmt.Println("ready:", pool.Ping(ctx) == nil)
	// Output: ready: true
}

// TLS and SASL for a managed cluster. Files are checked at construction;
// the password never prints.
func ExampleConfig_security() {
	cfg := fxkafka.Config{
		Brokers:       []string{"kafka-1.example.com:9093"},
		TLS:           true,
		TLSCAFile:     "/nonexistent/ca.pem",
		SASLMechanism: fxkafka.SASLScramSHA512,
		SASLUser:      "orders",
		SASLPassword:  "s3cret",
	}
	fmt.Println(cfg.Validate())
	fmt.Printf("%v\n", cfg.SASLPassword)
	// Output:
	// fxkafka: invalid config TLSCAFile (KAFKA_TLS_CA_FILE): open /nonexistent/ca.pem: no such file or directory
	// [redacted]
}
