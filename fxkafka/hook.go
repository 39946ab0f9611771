package fxkafka

import (
	"context"
	"errors"
	"time"

	"github.com/IBM/sarama"
)

// Hook observes a pool: its sends, its provisioning and the retirement of
// its producers. A Hook is any value; the pool calls the methods of the
// Hook* interfaces below that it implements and ignores the rest, as
// franz-go's kgo does, so a hook implements only what it needs and new
// events never break an existing hook. Register hooks with [WithHook].
//
// Hooks run on the send path: they must be fast and must never block
// (hand slow work to a goroutine of your own). A panicking hook is not
// recovered. The pool calls each send hook exactly once per message, even
// when the message is routed again to another producer.
type Hook any

// HookSendStart is called once per message when a send accepts it ([ProducerPool.SendMessage],
// [ProducerPool.SendMessages], [ProducerPool.Produce] and a [Lease]'s sends), before the pool hands it to
// a producer, on the caller's goroutine. A message the pool refuses at once (nil, no topic, too large,
// or beside such a message in one SendMessages call) is seen too, its [HookSendEnd] following at
// once with class "invalid"; a nil message is seen as an empty one (no topic, no value), so a hook
// must not assume msg.Value is set (a tombstone has none either).
//
// msg is the pool's own copy of the caller's message, Headers slice included: the hook may add,
// remove or replace headers (to propagate a trace context, say), and they are sent while the
// caller's message stays as it was. The bytes a header points to are still the caller's: replace a
// header's Key or Value with new bytes, never edit them in place. Once OnSendStart has returned
// and the pool has copied the message, it sets msg's Key and Value to [sarama.ByteEncoder]s and
// its Headers to a slice of their own, all of the pool's copies (what is sent), so a caller
// reusing its own bytes after [ProducerPool.Produce] returned changes nothing a hook reads; a hook
// that keeps msg between its two calls must not read it from another goroutine meanwhile. It must
// not keep msg after [HookSendEnd.OnSendEnd]. The context returned replaces ctx for this message's
// [HookSendEnd.OnSendEnd] call (a tracing hook returns the context holding its span); it never
// changes how long the caller waits.
type HookSendStart interface {
	OnSendStart(ctx context.Context, msg *sarama.ProducerMessage) context.Context
}

// HookSendEnd is called once per message that [HookSendStart] saw, when its outcome is known: acknowledged
// (info.Err nil), refused, failed, or abandoned because the caller's context ended. It runs on the
// goroutine that learned the outcome: for a broker's answer, the goroutine reading that connection's
// responses; the caller's for a
// send that failed before hand-off or whose caller stopped waiting. ctx is the one OnSendStart
// returned; msg is the pool's copy, with Partition, Offset and Timestamp set when acknowledged.
//
// info.Err is the error the caller gets for this message (for [ProducerPool.SendMessages], the
// [MessageError]'s Err), so a hook and the caller never disagree on the outcome. OnSendEnd has
// returned before the send that carried the message returns (before [ProducerPool.Produce]'s
// promise is called), so a trace or a test sees the outcome as soon as the caller does.
//
// When the caller stopped waiting (info.Err a [*DeliveryError] holding ctx's error), the pool may
// still be sending msg: read its Topic, Key, Value and Headers only, and take the rest from info.
type HookSendEnd interface {
	OnSendEnd(ctx context.Context, msg *sarama.ProducerMessage, info SendInfo)
}

// HookProvision is called when a provisioning attempt ends, successful or not, on the pool goroutine
// that ran it.
type HookProvision interface {
	OnProvision(info ProvisionInfo)
}

// HookRetire is called when the pool takes a producer out of use for good: found broken, closed
// by [ProducerPool.Close], or an idle lease producer closed to free its slot for shared sends. It
// runs on the goroutine that retired the producer.
type HookRetire interface {
	OnRetire(info RetireInfo)
}

// SendInfo is what [HookSendEnd] learns of one message.
type SendInfo struct {
	Partition int32         // the partition written to; -1 if not written
	Offset    int64         // its offset; -1 if not written
	Err       error         // nil if acknowledged; else in the classes SendMessage documents
	Class     string        // ErrorClass(Err): "ok", "unavailable", "closed", "invalid" or "unknown"
	Duration  time.Duration // from OnSendStart to the outcome
	Producer  int           // the id of the producer that carried it; 0 if none did
	Batch     int           // messages in the record batch it was written in; 0 if not written
}

// ProvisionInfo is what [HookProvision] learns of one provisioning attempt.
type ProvisionInfo struct {
	Producer int           // the new producer's id; 0 if the attempt failed
	Leased   bool          // made for a [Lease] rather than for shared sends
	Duration time.Duration // how long the attempt took
	Err      error         // nil on success; wraps the cause otherwise
}

// RetireInfo is what [HookRetire] learns of one retired producer.
type RetireInfo struct {
	Producer int   // the producer's id
	Cause    error // why, for logs: the error that showed it broken, ErrPoolClosed when Close closed it, or a text for an idle lease producer whose slot shared sends needed
}

// Error classes, as [ErrorClass] names them and [SendInfo.Class] and fxkafka's metrics report them.
const (
	ClassOK          = "ok"          // acknowledged
	ClassUnavailable = "unavailable" // ErrUnavailable: not sent, never sent later
	ClassClosed      = "closed"      // ErrPoolClosed, or ErrLeaseReleased from a released lease: not accepted
	ClassInvalid     = "invalid"     // ErrInvalidMessage, or ErrNoTransaction from a lease with none open: refused, not written
	ClassUnknown     = "unknown"     // ErrDeliveryUnknown: may have been written
)

// ErrorClass names the class of an error a send returned: [ClassOK] for nil, [ClassUnavailable],
// [ClassClosed], [ClassInvalid] or [ClassUnknown]. A lease's refusals, which wrote nothing, take
// the class of the pool's that say so: [ErrLeaseReleased] is [ClassClosed], [ErrNoTransaction]
// [ClassInvalid]. An error of none of those classes (which the pool's sends do not return) is
// [ClassUnknown].
func ErrorClass(err error) string {
	switch {
	case err == nil:
		return ClassOK
	case errors.Is(err, ErrPoolClosed), errors.Is(err, ErrLeaseReleased):
		return ClassClosed
	case errors.Is(err, ErrUnavailable):
		return ClassUnavailable
	case errors.Is(err, ErrInvalidMessage), errors.Is(err, ErrNoTransaction):
		return ClassInvalid
	}
	return ClassUnknown
}

// WithHook registers a hook; see [Hook]. Give it several times for several hooks: they run in the
// order registered. A nil hook is ignored.
func WithHook(h Hook) Option {
	return optionFunc(func(p *ProducerPool) {
		if h != nil {
			p.hooks.add(h)
		}
	})
}

// hookSet holds the registered hooks split by interface, so the send path
// checks a slice length, never a type assertion.
type hookSet struct {
	sendStart []HookSendStart
	sendEnd   []HookSendEnd
	provision []HookProvision
	retire    []HookRetire
}

func (hs *hookSet) add(h Hook) {
	if x, ok := h.(HookSendStart); ok {
		hs.sendStart = append(hs.sendStart, x)
	}
	if x, ok := h.(HookSendEnd); ok {
		hs.sendEnd = append(hs.sendEnd, x)
	}
	if x, ok := h.(HookProvision); ok {
		hs.provision = append(hs.provision, x)
	}
	if x, ok := h.(HookRetire); ok {
		hs.retire = append(hs.retire, x)
	}
}

// onSend reports whether any send hook is registered: the send path copies
// the caller's message only then.
func (hs *hookSet) onSend() bool { return len(hs.sendStart)+len(hs.sendEnd) > 0 }

// hookEnd runs the send-end hooks for one message.
func (p *ProducerPool) hookEnd(hr *hookRecord, partition int32, offset int64, batch, producer int, err error) {
	if len(p.hooks.sendEnd) == 0 {
		return
	}
	if err == nil {
		hr.msg.Partition, hr.msg.Offset = partition, offset
	}
	info := SendInfo{
		Partition: partition,
		Offset:    offset,
		Err:       err,
		Class:     ErrorClass(err),
		Duration:  time.Since(hr.start),
		Producer:  producer,
		Batch:     batch,
	}
	for _, h := range p.hooks.sendEnd {
		h.OnSendEnd(hr.ctx, hr.msg, info)
	}
}

func (p *ProducerPool) hookProvision(pr *producer, leased bool, d time.Duration, err error) {
	if len(p.hooks.provision) == 0 {
		return
	}
	info := ProvisionInfo{Leased: leased, Duration: d, Err: err}
	if err == nil && pr != nil {
		info.Producer = pr.id
	}
	for _, h := range p.hooks.provision {
		h.OnProvision(info)
	}
}

func (p *ProducerPool) hookRetire(pr *producer, cause error) {
	for _, h := range p.hooks.retire {
		h.OnRetire(RetireInfo{Producer: pr.id, Cause: cause})
	}
}
