package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// sendReq is one message on its way through a producer. The pool copies the
// caller's message into msg, so sarama never writes to (or holds) the
// caller's message: a caller whose context ends may reuse its message at once.
type sendReq struct {
	msg       sarama.ProducerMessage
	batch     *batch
	partition int32
	offset    int64
	timestamp time.Time
	err       error

	// The hooks' view of the message; hooks is nil when no send hook is
	// registered, and then nothing below is used.
	hooks    *hookSet
	hookCtx  context.Context // what the OnSendStart hooks returned
	start    time.Time
	producer int         // id of the producer it was handed to; 0 if none
	ended    atomic.Bool // the outcome is decided: by a drainer, or by the caller giving up
}

// batch counts the messages of one call still outstanding.
type batch struct {
	pending atomic.Int64
	done    chan struct{} // size 1: the last completion sends once, never blocks
}

func (r *sendReq) prepare(m *sarama.ProducerMessage, b *batch, hs *hookSet) {
	r.msg = sarama.ProducerMessage{
		Topic:     m.Topic,
		Key:       m.Key,
		Value:     m.Value,
		Headers:   m.Headers,
		Partition: m.Partition,
		Timestamp: m.Timestamp,
		Metadata:  r,
	}
	r.batch = b
	r.err = nil
	r.ended.Store(false)
	r.producer = 0
	r.hooks = nil
	if hs.onSend() {
		r.hooks = hs
	}
}

// startHooks runs the OnSendStart hooks on the caller's goroutine, before
// hand-off. A hook may add or change headers: they go into a copy of the
// caller's slice (none is needed if it is empty: an append allocates), so
// the caller's message is never written to.
func (r *sendReq) startHooks(ctx context.Context) {
	if r.hooks == nil {
		return
	}
	if len(r.hooks.sendStart) > 0 && len(r.msg.Headers) > 0 {
		r.msg.Headers = append(make([]sarama.RecordHeader, 0, len(r.msg.Headers)+2), r.msg.Headers...)
	}
	r.start = time.Now()
	for _, h := range r.hooks.sendStart {
		if c := h.OnSendStart(ctx, &r.msg); c != nil {
			ctx = c
		}
	}
	r.hookCtx = ctx
}

// decide records the outcome and runs the OnSendEnd hooks, unless the
// outcome was decided already (the caller gave up, or a drainer got there
// first): exactly one of a drainer and the caller wins. It reports whether
// this call decided. The hooks run before the caller is woken, so they
// have returned when the send does.
func (r *sendReq) decide(partition int32, offset int64, err error) bool {
	if !r.ended.CompareAndSwap(false, true) {
		return false
	}
	r.partition, r.offset, r.err = partition, offset, err
	if err == nil {
		r.timestamp = r.msg.Timestamp // sarama is done with msg only once it answered
	}
	if r.hooks != nil {
		info := SendInfo{
			Partition: partition,
			Offset:    offset,
			Err:       err,
			Class:     ErrorClass(err),
			Duration:  time.Since(r.start),
			Producer:  r.producer,
			// Batch stays 0: sarama's AsyncProducer does not say which
			// batch a message travelled in.
		}
		for _, h := range r.hooks.sendEnd {
			h.OnSendEnd(r.hookCtx, &r.msg, info)
		}
	}
	return true
}

// complete records the outcome and counts the message off its batch; run by
// a drainer, by the caller for a message that was never handed off, or by a
// caller that stopped waiting (err is then its DeliveryError). A message
// whose outcome was decided already is left alone.
func (r *sendReq) complete(partition int32, offset int64, err error) bool {
	if !r.decide(partition, offset, err) {
		return false
	}
	if r.batch.pending.Add(-1) == 0 {
		r.batch.done <- struct{}{}
	}
	return true
}

// writeBack copies the broker-assigned fields to the caller's message, as
// sarama's SyncProducer does.
func (r *sendReq) writeBack(m *sarama.ProducerMessage) {
	m.Partition, m.Offset, m.Timestamp = r.partition, r.offset, r.timestamp
}

// call is the reusable state of one SendMessage. It goes back to callPool
// only when its message was acknowledged; one abandoned by its caller's
// context, or failed, is left to the garbage collector.
type call struct {
	batch batch
	req   sendReq
	reqs  [1]*sendReq
}

var callPool = sync.Pool{New: func() any {
	c := &call{}
	c.batch.done = make(chan struct{}, 1)
	c.reqs[0] = &c.req
	return c
}}

func (c *call) release() {
	c.req.msg = sarama.ProducerMessage{} // drop the caller's key and value
	c.req.err = nil
	c.req.hookCtx = nil
	callPool.Put(c)
}

// SendMessage sends msg and waits until the brokers acknowledge it (with
// Config.RequiredAcks), returning its partition and offset; like sarama's
// SyncProducer it also sets msg.Partition, msg.Offset and msg.Timestamp. The
// pool copies msg before handing it to a producer, so the caller owns msg
// again as soon as SendMessage returns, whatever the outcome; msg.Metadata is
// never touched. msg must not be modified during the call.
//
// ctx bounds how long the caller waits, not the work already started. The
// error tells what happened to the message:
//   - [ErrInvalidMessage]: msg is nil, has no topic, or is too large; not sent.
//   - [ErrPoolClosed]: the pool is closed or closing; not sent.
//   - [ErrUnavailable]: no producer could be had (no broker reachable, the
//     pool backing off after a failed attempt, or ctx ended while waiting for
//     one); not sent and never sent later: retrying is safe.
//   - [*DeliveryError] ([ErrDeliveryUnknown]): the message was handed to a
//     producer and ctx ended first, or sarama gave up after its retries. It
//     may have been written; the pool will not send it again.
func (p *ProducerPool) SendMessage(ctx context.Context, msg *sarama.ProducerMessage) (partition int32, offset int64, err error) {
	return p.sendOne(ctx, msg, p.acquire)
}

// router picks the producer for n messages and reserves them on its load:
// the pool's least-loaded routing, or a lease's own producer.
type router func(ctx context.Context, n int) (*producer, error)

func (p *ProducerPool) sendOne(ctx context.Context, msg *sarama.ProducerMessage, route router) (partition int32, offset int64, err error) {
	if err := p.checkMessage(msg); err != nil {
		return -1, -1, err
	}
	c := callPool.Get().(*call)
	r := &c.req
	r.prepare(msg, &c.batch, &p.hooks)
	r.startHooks(ctx)
	if err := ctx.Err(); err != nil {
		err = unavailable(err)
		r.decide(-1, -1, err)
		c.release()
		return -1, -1, p.count(err)
	}
	c.batch.pending.Store(1)
	if _, err := p.dispatch(ctx, c.reqs[:], route); err != nil {
		r.decide(-1, -1, err)
		c.release()
		return -1, -1, p.count(err)
	}
	select {
	case <-c.batch.done:
	case <-ctx.Done():
		if r.complete(-1, -1, &DeliveryError{Topic: msg.Topic, Err: ctx.Err()}) {
			// Given up; the call is left to the GC, as sarama still holds
			// its message.
			return -1, -1, p.count(r.err)
		}
		<-c.batch.done // a drainer decided first and is delivering the outcome
	}
	partition, offset, err = r.partition, r.offset, r.err
	if err != nil {
		// Not reused: sarama reads a message once more after returning it
		// on Errors() (partitionProducer.updateLeaderIfBrokerProducerIsNil
		// backs off by msg.retries), so a failed call is left to the GC.
		return -1, -1, p.count(err)
	}
	r.writeBack(msg)
	c.release()
	return partition, offset, nil
}

// SendMessages sends msgs and waits for all of them, like
// [ProducerPool.SendMessage] does for one. Every message is checked first: if
// one is invalid, the call returns a [*MessageError] matching
// [ErrInvalidMessage] and sends nothing. Otherwise the messages go to one
// producer in order. On success each message's Partition, Offset and
// Timestamp are set. If some fail, the error is a [SendErrors] holding one
// [*MessageError] per failed message, in the classes SendMessage documents
// (errors.Is looks through all of them); the other messages were delivered.
func (p *ProducerPool) SendMessages(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	return p.sendBatch(ctx, msgs, p.acquire)
}

func (p *ProducerPool) sendBatch(ctx context.Context, msgs []*sarama.ProducerMessage, route router) error {
	for i, m := range msgs {
		if err := p.checkMessage(m); err != nil {
			return &MessageError{Index: i, Err: err}
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	b := &batch{done: make(chan struct{}, 1)}
	b.pending.Store(int64(len(msgs)))
	reqs := make([]sendReq, len(msgs))
	ptrs := make([]*sendReq, len(msgs))
	for i := range reqs {
		reqs[i].prepare(msgs[i], b, &p.hooks)
		reqs[i].startHooks(ctx)
		ptrs[i] = &reqs[i]
	}
	if handed, err := p.dispatch(ctx, ptrs, route); err != nil {
		for _, r := range ptrs[handed:] {
			r.complete(-1, -1, err)
		}
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		// Give up on every message still outstanding; those a drainer
		// decided first are being delivered, and b.done follows at once.
		for i := range reqs {
			reqs[i].complete(-1, -1, &DeliveryError{Topic: msgs[i].Topic, Err: ctx.Err()})
		}
		<-b.done
	}
	var errs SendErrors
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.err != nil:
			errs = append(errs, &MessageError{Index: i, Err: p.count(r.err)})
		default:
			r.writeBack(msgs[i])
		}
	}
	if errs != nil {
		return errs
	}
	return nil
}

// dispatch hands reqs to producers, re-routing the rest if a producer retires
// mid-way (those were never handed off, so sending them elsewhere cannot
// duplicate them). It returns how many were handed off; the error, if any,
// applies to the rest.
func (p *ProducerPool) dispatch(ctx context.Context, reqs []*sendReq, route router) (int, error) {
	handed := 0
	for {
		pr, err := route(ctx, len(reqs)-handed)
		if err != nil {
			return handed, err
		}
		n, err := pr.handoff(ctx, reqs[handed:])
		if rest := len(reqs) - handed - n; rest > 0 {
			pr.load.Add(-int64(rest))
		}
		handed += n
		switch {
		case err == nil:
			return handed, nil
		case errors.Is(err, errRetired):
			continue
		default:
			return handed, unavailable(err)
		}
	}
}

// count adds a failed message to the counter of err's class and returns err.
func (p *ProducerPool) count(err error) error {
	switch {
	case errors.Is(err, ErrPoolClosed):
		p.failedClosed.Add(1)
	case errors.Is(err, ErrUnavailable):
		p.failedUnavailable.Add(1)
	case errors.Is(err, ErrInvalidMessage):
		p.failedInvalid.Add(1)
	case errors.Is(err, ErrDeliveryUnknown):
		p.failedUnknown.Add(1)
	}
	return err
}

// checkMessage refuses a message that cannot be sent, before anything is.
func (p *ProducerPool) checkMessage(m *sarama.ProducerMessage) error {
	var err error
	switch {
	case m == nil:
		err = fmt.Errorf("%w: nil message", ErrInvalidMessage)
	case m.Topic == "":
		err = fmt.Errorf("%w: message has no Topic", ErrInvalidMessage)
	default:
		if size := m.ByteSize(2); size > p.cfg.MaxMessageBytes {
			err = fmt.Errorf("%w: message of %d bytes exceeds MaxMessageBytes (%d)", ErrInvalidMessage, size, p.cfg.MaxMessageBytes)
		}
	}
	if err != nil {
		p.failedInvalid.Add(1)
	}
	return err
}
