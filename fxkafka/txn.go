package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

type topicPartition struct {
	topic     string
	partition int32
}

// txnState is the transaction of a transactional producer (a lease's).
type txnState struct {
	mu      sync.Mutex // protects following
	open    bool       // BeginTxn ran; no commit or abort since
	parts   map[topicPartition]bool
	failed  error // a message sent in the transaction failed: it can only be aborted
	unknown bool  // a step's outcome is unknown: the producer is replaced on Release
}

// txnVersion is the request version of the transaction APIs
// (AddPartitionsToTxn, EndTxn) sarama's own producer uses.
func txnVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V2_8_0_0):
		return 3
	case v.IsAtLeast(sarama.V2_7_0_0):
		return 2
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 1
	}
	return 0
}

// addToTxn adds the partitions of recs the open transaction does not hold
// yet to it, before any of recs is placed.
func (pr *producer) addToTxn(ctx context.Context, recs []*record) error {
	t := pr.txn
	t.mu.Lock()
	if !t.open {
		t.mu.Unlock()
		return fmt.Errorf("%w open: call BeginTxn before sending", ErrNoTransaction)
	}
	add := map[string][]int32{}
	var added []topicPartition
	for _, r := range recs {
		tp := topicPartition{r.topic, r.partition}
		if !t.parts[tp] && !containsTP(added, tp) {
			add[r.topic] = append(add[r.topic], r.partition)
			added = append(added, tp)
		}
	}
	t.mu.Unlock()
	if len(added) == 0 {
		return nil
	}
	l := pr.laneAt(0)
	req := &sarama.AddPartitionsToTxnRequest{
		Version:         txnVersion(pr.conf.Version),
		TransactionalID: pr.txnID,
		ProducerID:      l.pid,
		ProducerEpoch:   l.epoch,
		TopicPartitions: add,
	}
	err := pr.txnStep(ctx, func(b *sarama.Broker) error {
		resp, err := b.AddPartitionsToTxn(req)
		if err != nil {
			return err
		}
		for _, pes := range resp.Errors {
			for _, pe := range pes {
				if pe.Err != sarama.ErrNoError {
					return pe.Err
				}
			}
		}
		return nil
	})
	if err != nil {
		return unavailable(fmt.Errorf("add partitions to transaction: %w", err))
	}
	t.mu.Lock()
	for _, tp := range added {
		t.parts[tp] = true
	}
	t.mu.Unlock()
	return nil
}

func containsTP(tps []topicPartition, tp topicPartition) bool {
	for _, x := range tps {
		if x == tp {
			return true
		}
	}
	return false
}

// endTxn waits for every message of the open transaction (as long as ctx
// allows), then commits or aborts it.
func (pr *producer) endTxn(ctx context.Context, commit bool) error {
	t := pr.txn
	t.mu.Lock()
	open := t.open
	t.mu.Unlock()
	if !open {
		return fmt.Errorf("%w open", ErrNoTransaction)
	}
	if err := pr.drained(ctx); err != nil {
		pr.txnUnknown()
		return err
	}
	// Read once every message of the transaction has its outcome: one that
	// failed while we waited must stop the commit.
	t.mu.Lock()
	failed := t.failed
	t.mu.Unlock()
	if commit && failed != nil {
		return fmt.Errorf("a message of the transaction failed, abort it: %w", failed)
	}
	l := pr.laneAt(0)
	req := &sarama.EndTxnRequest{
		Version:           txnVersion(pr.conf.Version),
		TransactionalID:   pr.txnID,
		ProducerID:        l.pid,
		ProducerEpoch:     l.epoch,
		TransactionResult: commit,
	}
	err := pr.txnStep(ctx, func(b *sarama.Broker) error {
		resp, err := b.EndTxn(req)
		if err != nil {
			return err
		}
		if resp.Err != sarama.ErrNoError {
			return resp.Err
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.open, t.failed = false, nil
	clear(t.parts)
	t.mu.Unlock()
	return nil
}

func (pr *producer) txnUnknown() {
	pr.txn.mu.Lock()
	pr.txn.unknown = true
	pr.txn.mu.Unlock()
}

// txnFailed records that a message of the open transaction failed.
func (pr *producer) txnFailed(err error) {
	pr.txn.mu.Lock()
	if pr.txn.open && pr.txn.failed == nil {
		pr.txn.failed = err
	}
	pr.txn.mu.Unlock()
}

// txnStep runs one request to the transaction coordinator on a goroutine of
// the producer's, retrying what the coordinator says will pass, and waits
// for it as long as ctx allows. A step cut short leaves the transaction in
// an unknown state: the producer is then replaced, not reused.
func (pr *producer) txnStep(ctx context.Context, call func(*sarama.Broker) error) error {
	pr.mu.Lock()
	select {
	case <-pr.stop:
		pr.mu.Unlock()
		return closedErr
	default:
	}
	pr.wg.Add(1) // under mu: ordered before shutdown's Wait
	pr.mu.Unlock()
	result := make(chan error, 1)
	go func() {
		defer pr.wg.Done()
		result <- pr.txnRetry(call)
	}()
	select {
	case err := <-result:
		var kerr sarama.KError
		if errors.As(err, &kerr) && verdictOf(kerr) == verdictBroken {
			pr.txnUnknown()
		}
		if err != nil && pr.retired.Load() {
			return closedErr
		}
		return err
	case <-ctx.Done():
		pr.txnUnknown()
		return ctx.Err()
	case <-pr.stop:
		return closedErr
	}
}

func (pr *producer) txnRetry(call func(*sarama.Broker) error) error {
	for attempt := 0; ; attempt++ {
		b, err := pr.client.TransactionCoordinator(pr.txnID)
		if err == nil {
			err = call(b)
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, sarama.ErrConcurrentTransactions), errors.Is(err, sarama.ErrOffsetsLoadInProgress):
		case errors.Is(err, sarama.ErrNotCoordinatorForConsumer), errors.Is(err, sarama.ErrConsumerCoordinatorNotAvailable), isConnectionError(err):
			_ = pr.client.RefreshTransactionCoordinator(pr.txnID)
		default:
			return err
		}
		if attempt >= txnRetries || pr.aborted.Load() {
			return err
		}
		select {
		case <-time.After(txnRetryPause):
		case <-pr.stop:
			return closedErr
		}
	}
}

// txnRetries bounds the retries of one transaction step (each a pause of
// txnRetryPause): a coordinator finishing the previous holder's
// transaction answers CONCURRENT_TRANSACTIONS meanwhile.
const txnRetries = 250

// abortOpenTxn aborts the open transaction of a lease's producer Close is
// closing, bounded by ProvisionTimeout (and by Close's abort).
func (pr *producer) abortOpenTxn() {
	pr.txn.mu.Lock()
	open := pr.txn.open
	pr.txn.mu.Unlock()
	if !open {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), pr.pool.cfg.ProvisionTimeout)
	defer cancel()
	_ = pr.endTxn(ctx, false)
}
