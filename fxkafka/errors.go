package fxkafka

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by [ProducerPool] sends, [ProducerPool.Ping] and
// [ProducerPool.Lease]. Match them with [errors.Is]; the error returned also
// wraps its cause (a dial error, a context error, a [sarama.KError]), which
// errors.Is and errors.As reach as well. [ErrorClass] names the class of any
// of them.
//
// For a message they fall in two kinds. [ErrUnavailable], [ErrPoolClosed]
// and [ErrInvalidMessage] mean the message was not written and will not be:
// retrying it cannot duplicate it (retrying an invalid one is pointless).
// [ErrDeliveryUnknown] means the message was sent and no acknowledgement
// came back: it may have been written, so a retry may write it twice.
var (
	// ErrUnavailable is returned when no producer could take the message,
	// or none could deliver it: no broker is reachable now (the pool is
	// backing off after a failed provisioning attempt, or the attempt the
	// caller waited for failed), the caller's context ended before the
	// message left in a request, or the brokers refused it for a passing
	// reason (no leader) until the retries ran out. The message was never
	// written and will not be delivered later: retrying is safe.
	ErrUnavailable = errors.New("fxkafka: kafka unavailable")

	// ErrPoolClosed is returned by a send on a pool that is closed or
	// closing, and for a message Close had to give up on before it was
	// sent. The message was not written.
	ErrPoolClosed = errors.New("fxkafka: producer pool closed")

	// ErrInvalidMessage is returned for a message that cannot be written: nil,
	// without a topic, larger than Config.MaxMessageBytes, with a timestamp
	// Kafka cannot store, with headers on a Version before 0.11, to a topic
	// that does not exist, or one the broker refused for what it holds
	// (MESSAGE_TOO_LARGE, INVALID_RECORD, not authorised...). Nothing of it
	// was written. SendMessages checks every message first and sends
	// nothing if one is invalid.
	ErrInvalidMessage = errors.New("fxkafka: invalid message")

	// ErrDeliveryUnknown is matched by every [*DeliveryError]: the message
	// was sent, but no acknowledgement came back. It may have been written.
	ErrDeliveryUnknown = errors.New("fxkafka: message may have been written")

	// ErrNoFreeProducer is returned when the cap is taken by producers the
	// caller cannot use: a send finds every producer MaxProducers allows
	// held by a Lease (a released lease's producer is given to shared sends
	// instead), or a Lease finds them all shared. It also matches
	// [ErrUnavailable] (for a send: not written, retrying is safe). Raise
	// Config.MaxProducers or release leases.
	ErrNoFreeProducer = errors.New("fxkafka: no free producer")
)

// DeliveryError is returned for a message that was sent and not
// acknowledged: the caller's context ended while it was in flight (Err is
// the context error), or the brokers did not confirm it before the retries
// ran out (Err is the broker or network error). The message may have been
// written; the pool never sends it again. It matches [ErrDeliveryUnknown].
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

// sendError is an error of one of the pool's classes with its cause, worded
// for the operation that returned it: a send says the message was not
// sent; Ping and Lease do not speak of a message.
type sendError struct {
	class error  // ErrUnavailable, ErrPoolClosed or ErrInvalidMessage
	also  error  // a second sentinel it matches (ErrNoFreeProducer), or nil
	op    string // "" for a send, else "ping", "lease", ...
	what  string
	cause error
}

func (e *sendError) Error() string {
	var b strings.Builder
	lead := e.class
	if e.also != nil {
		lead = e.also
	}
	b.WriteString(lead.Error())
	if e.op != "" {
		b.WriteString(" (")
		b.WriteString(e.op)
		b.WriteString(")")
	} else if e.class == ErrInvalidMessage {
		b.WriteString(", not sent")
	} else {
		b.WriteString(", message not sent")
	}
	if e.what != "" {
		b.WriteString(": ")
		b.WriteString(e.what)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

func (e *sendError) Unwrap() error { return e.cause }

func (e *sendError) Is(target error) bool {
	return target == e.class || (e.also != nil && target == e.also)
}

// unavailable is an ErrUnavailable for a send, with its cause.
func unavailable(cause error) error {
	var se *sendError
	if errors.As(cause, &se) && se.op == "" && cause == error(se) {
		return cause // already classed
	}
	return &sendError{class: ErrUnavailable, cause: cause}
}

// closedErr is ErrPoolClosed for a send.
var closedErr error = &sendError{class: ErrPoolClosed}

// forOp rewords a send's error for another operation (Ping, Lease).
func forOp(op string, err error) error {
	var se *sendError
	if errors.As(err, &se) && err == error(se) {
		c := *se
		c.op = op
		return &c
	}
	return err
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
