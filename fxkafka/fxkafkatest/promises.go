package fxkafkatest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// Promises collects the outcomes of [fxkafka.ProducerPool.Produce] calls,
// for tests of code that produces asynchronously. Hand each Produce a
// promise from [Promises.Promise] (or wrap the code's own with
// [Promises.Then]), then wait for the outcomes with [Promises.WaitFor] or
// [Promises.WaitForAll] instead of sleeping: a wait returns as soon as the
// promises have run. It holds the pool to its word that a promise runs
// exactly once: a second call fails the test.
//
//	promises := fxkafkatest.NewPromises(t)
//	for _, m := range msgs {
//		pool.Produce(ctx, m, promises.Promise())
//	}
//	outcomes := promises.WaitForAll(10 * time.Second)
//	assert.Empty(t, promises.Failed())
//
// Its methods are safe for concurrent use; promises may run on any
// goroutine.
type Promises struct {
	t testing.TB

	mu       sync.Mutex // protects following
	issued   int        // promises handed out by Promise and Then
	outcomes []Outcome
	changed  chan struct{} // closed and replaced when an outcome arrives
}

// Outcome is what one promise was called with, recorded when it ran.
type Outcome struct {
	// Message is the message the promise received: the one given to
	// Produce.
	Message *sarama.ProducerMessage

	// Topic, Key and Value are the message's, as they were when the
	// promise ran (Key and Value encoded; nil when nil or when their
	// Encode fails).
	Topic      string
	Key, Value []byte

	// Partition, Offset and Timestamp are where and when the broker stored
	// the message, when Err is nil; Partition and Offset are -1 otherwise.
	Partition int32
	Offset    int64
	Timestamp time.Time

	// Err is the error the promise received: nil when acknowledged, else
	// an error of the classes fxkafka.ErrorClass names.
	Err error
}

// NewPromises returns an empty collector that reports to t.
func NewPromises(t testing.TB) *Promises {
	return &Promises{t: t, changed: make(chan struct{})}
}

// Promise returns a promise for one Produce call that records its outcome.
// Use a new one for each call: the test fails if one is called twice.
func (ps *Promises) Promise() func(*sarama.ProducerMessage, error) {
	return ps.Then(nil)
}

// Then returns a promise for one Produce call that records its outcome and
// then calls next (if not nil), so that a test can watch the outcomes of
// code whose own promise does work. The outcome is recorded before next
// runs; a wait that returns has seen the outcome, not necessarily next's
// work. The test fails if the promise is called twice.
func (ps *Promises) Then(next func(*sarama.ProducerMessage, error)) func(*sarama.ProducerMessage, error) {
	ps.mu.Lock()
	ps.issued++
	n := ps.issued
	ps.mu.Unlock()
	var called atomic.Bool
	return func(msg *sarama.ProducerMessage, err error) {
		if !called.CompareAndSwap(false, true) {
			ps.t.Errorf("fxkafkatest: promise %d called again (with %v): the pool calls each promise once", n, err)
			return
		}
		ps.record(outcomeOf(msg, err))
		if next != nil {
			next(msg, err)
		}
	}
}

func outcomeOf(msg *sarama.ProducerMessage, err error) Outcome {
	o := Outcome{Message: msg, Partition: -1, Offset: -1, Err: err}
	if msg == nil {
		return o
	}
	o.Topic = msg.Topic
	o.Key, o.Value = encoded(msg.Key), encoded(msg.Value)
	if err == nil {
		o.Partition, o.Offset, o.Timestamp = msg.Partition, msg.Offset, msg.Timestamp
	}
	return o
}

func encoded(e sarama.Encoder) []byte {
	if e == nil {
		return nil
	}
	b, err := e.Encode()
	if err != nil {
		return nil
	}
	return b
}

func (ps *Promises) record(o Outcome) {
	ps.mu.Lock()
	ps.outcomes = append(ps.outcomes, o)
	close(ps.changed)
	ps.changed = make(chan struct{})
	ps.mu.Unlock()
}

// Outcomes returns the outcomes recorded so far, in the order the promises
// ran (for one partition, the order produced).
func (ps *Promises) Outcomes() []Outcome {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]Outcome(nil), ps.outcomes...)
}

// Failed returns the outcomes recorded so far whose Err is not nil.
func (ps *Promises) Failed() []Outcome {
	var failed []Outcome
	for _, o := range ps.Outcomes() {
		if o.Err != nil {
			failed = append(failed, o)
		}
	}
	return failed
}

// Wait waits until at least n outcomes are recorded and returns them all.
// If ctx ends first it returns those recorded with an error wrapping ctx's.
func (ps *Promises) Wait(ctx context.Context, n int) ([]Outcome, error) {
	for {
		ps.mu.Lock()
		got, changed := len(ps.outcomes), ps.changed
		ps.mu.Unlock()
		if got >= n {
			return ps.Outcomes(), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			out := ps.Outcomes()
			return out, fmt.Errorf("fxkafkatest: %d of %d promises ran: %w", len(out), n, ctx.Err())
		}
	}
}

// WaitFor is Wait bounded by timeout; it fails the test if fewer than n
// outcomes arrive in time.
func (ps *Promises) WaitFor(n int, timeout time.Duration) []Outcome {
	ps.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := ps.Wait(ctx, n)
	if err != nil {
		ps.t.Fatal(err)
	}
	return out
}

// WaitForAll waits until every promise Promise and Then have handed out so
// far has run, and returns the outcomes; it fails the test if that takes
// longer than timeout.
func (ps *Promises) WaitForAll(timeout time.Duration) []Outcome {
	ps.t.Helper()
	ps.mu.Lock()
	n := ps.issued
	ps.mu.Unlock()
	return ps.WaitFor(n, timeout)
}
