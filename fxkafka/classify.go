package fxkafka

import (
	"errors"

	"github.com/IBM/sarama"
)

// brokerVerdict is what a broker's error code for one batch means for the
// batch and for the producer.
type brokerVerdict int

const (
	// verdictRetry: a passing condition; the batch was not written. Send it
	// again after a pause.
	verdictRetry brokerVerdict = iota
	// verdictRetryMaybeWritten: a passing condition after which the batch
	// may be stored (the broker timed out waiting for replicas, say).
	verdictRetryMaybeWritten
	// verdictLeader: the partition's leader moved or is unknown; the batch
	// was not written. Find the leader, then send it again.
	verdictLeader
	// verdictRejected: the broker refused the batch for what it holds (too
	// large, an invalid record, no such topic, not allowed); nothing of it
	// was written. One bad record can fail a batch: the pool splits it to
	// find which, so that other callers' records still go.
	verdictRejected
	// verdictBroken: the producer's id or epoch is no longer valid; the
	// producer must be replaced. The batch was not written.
	verdictBroken
)

// brokerVerdicts classifies the error codes a produce response carries.
// Codes not listed are treated as verdictRetryMaybeWritten: retried, and
// reported as "may have been written" if the retries run out.
var brokerVerdicts = map[sarama.KError]brokerVerdict{
	sarama.ErrNotLeaderForPartition:        verdictLeader,
	sarama.ErrLeaderNotAvailable:           verdictLeader,
	sarama.ErrUnknownTopicOrPartition:      verdictLeader,
	sarama.ErrFencedLeaderEpoch:            verdictLeader,
	sarama.ErrUnknownLeaderEpoch:           verdictLeader,
	sarama.ErrKafkaStorageError:            verdictLeader,
	sarama.ErrNotEnoughReplicas:            verdictRetry,
	sarama.ErrConcurrentTransactions:       verdictRetry,
	sarama.ErrOffsetsLoadInProgress:        verdictRetry,
	sarama.ErrThrottlingQuotaExceeded:      verdictRetry,
	sarama.ErrRequestTimedOut:              verdictRetryMaybeWritten,
	sarama.ErrNotEnoughReplicasAfterAppend: verdictRetryMaybeWritten,
	sarama.ErrNetworkException:             verdictRetryMaybeWritten,

	sarama.ErrMessageSizeTooLarge:                verdictRejected,
	sarama.ErrMessageSetSizeTooLarge:             verdictRejected,
	sarama.ErrInvalidMessage:                     verdictRejected, // CORRUPT_MESSAGE
	sarama.ErrInvalidRecord:                      verdictRejected,
	sarama.ErrInvalidTimestamp:                   verdictRejected,
	sarama.ErrInvalidTopic:                       verdictRejected,
	sarama.ErrTopicAuthorizationFailed:           verdictRejected,
	sarama.ErrClusterAuthorizationFailed:         verdictRejected,
	sarama.ErrTransactionalIDAuthorizationFailed: verdictRejected,
	sarama.ErrPolicyViolation:                    verdictRejected,
	sarama.ErrUnsupportedForMessageFormat:        verdictRejected,
	sarama.ErrUnsupportedCompressionType:         verdictRejected,
	sarama.ErrInvalidRequiredAcks:                verdictRejected,
	sarama.ErrUnsupportedVersion:                 verdictRejected,
	sarama.ErrInvalidTxnState:                    verdictBroken,
	sarama.ErrOutOfOrderSequenceNumber:           verdictBroken,
	sarama.ErrUnknownProducerID:                  verdictBroken,
	sarama.ErrInvalidProducerIDMapping:           verdictBroken,
	sarama.ErrInvalidProducerEpoch:               verdictBroken,
	sarama.ErrProducerFenced:                     verdictBroken,
	sarama.ErrTransactionCoordinatorFenced:       verdictBroken,
}

func verdictOf(k sarama.KError) brokerVerdict {
	if v, ok := brokerVerdicts[k]; ok {
		return v
	}
	return verdictRetryMaybeWritten
}

// splittable reports whether a batch of several records the broker refused
// with k may hold records it would take alone: a batch too large, or one
// bad record failing the others with it.
func splittable(k sarama.KError) bool {
	switch k {
	case sarama.ErrMessageSizeTooLarge, sarama.ErrMessageSetSizeTooLarge, sarama.ErrInvalidMessage,
		sarama.ErrInvalidRecord, sarama.ErrInvalidTimestamp:
		return true
	}
	return false
}

// isMetadataRefusal reports whether err, from a metadata refresh, carries a
// broker's answer for some topic or partition (no leader, no such topic)
// rather than a failure to reach the brokers.
func isMetadataRefusal(err error) bool {
	for _, k := range []sarama.KError{sarama.ErrLeaderNotAvailable, sarama.ErrUnknownTopicOrPartition,
		sarama.ErrNotLeaderForPartition, sarama.ErrReplicaNotAvailable, sarama.ErrTopicAuthorizationFailed} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
