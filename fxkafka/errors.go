package fxkafka

import (
	"errors"
	"fmt"
)

// Errors returned by [ProducerPool] sends. Match them with [errors.Is]; the
// error returned also wraps its cause (a dial error, a context error, a
// [sarama.KError]), which errors.Is and errors.As reach as well.
//
// They fall in two classes. [ErrUnavailable], [ErrPoolClosed] and
// [ErrInvalidMessage] mean the message never reached a producer: it was not
// written and will not be, and retrying it cannot duplicate it.
// [ErrDeliveryUnknown] means the message was handed to a producer and no
// acknowledgement came back: it may have been written, so a retry may write
// it twice.
var (
	// ErrUnavailable is returned by a send when no producer could be had:
	// no broker is reachable now (the pool is backing off after a failed
	// provisioning attempt, or the attempt the caller waited for failed), or
	// the caller's context ended before a producer took the message. The
	// message was never handed to Kafka and will not be delivered later.
	ErrUnavailable = errors.New("fxkafka: kafka unavailable, message not sent")

	// ErrPoolClosed is returned by a send on a pool that is closed or
	// closing. The message was not accepted.
	ErrPoolClosed = errors.New("fxkafka: producer pool closed, message not sent")

	// ErrInvalidMessage is returned by a send for a nil message, a message
	// without a topic, or one larger than Config.MaxMessageBytes. Nothing of
	// the call was sent.
	ErrInvalidMessage = errors.New("fxkafka: invalid message")

	// ErrDeliveryUnknown is matched by every [*DeliveryError]: the message
	// was handed to a producer, but no acknowledgement came back. It may
	// have been written.
	ErrDeliveryUnknown = errors.New("fxkafka: message may have been written")
)

// DeliveryError is returned for a message that was handed to a producer and
// was not acknowledged: the caller's context ended first (Err is the context
// error), or sarama gave up after its retries (Err is the broker or network
// error). The message may have been written; the pool never sends it again.
// It matches [ErrDeliveryUnknown].
type DeliveryError struct {
	Topic string
	Err   error
}

func (e *DeliveryError) Error() string {
	return fmt.Sprintf("fxkafka: send to %s: outcome unknown, message may have been written: %v", e.Topic, e.Err)
}

// Unwrap returns the cause.
func (e *DeliveryError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrDeliveryUnknown].
func (e *DeliveryError) Is(target error) bool { return target == ErrDeliveryUnknown }

// unavailable wraps ErrUnavailable together with its cause.
func unavailable(cause error) error {
	if cause == nil {
		return ErrUnavailable
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, cause)
}

// SendErrors is returned by [ProducerPool.SendMessages] when some messages
// failed. It holds one entry per failed message, in the order given; errors.Is
// and errors.As look through every entry.
type SendErrors []*MessageError

// MessageError is the failure of one message of a [ProducerPool.SendMessages]
// call: Index is its position in the slice given.
type MessageError struct {
	Index int
	Err   error
}

func (e *MessageError) Error() string { return fmt.Sprintf("message %d: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *MessageError) Unwrap() error { return e.Err }

func (es SendErrors) Error() string {
	if len(es) == 1 {
		return "fxkafka: 1 message failed: " + es[0].Error()
	}
	return fmt.Sprintf("fxkafka: %d messages failed; first: %v", len(es), es[0])
}

// Unwrap returns every message's error.
func (es SendErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
