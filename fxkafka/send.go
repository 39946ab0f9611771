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
	completed atomic.Bool // set after the fields above are written
}

// batch counts the messages of one call still outstanding.
type batch struct {
	pending atomic.Int64
	done    chan struct{} // size 1: the last completion sends once, never blocks
}

func (r *sendReq) prepare(m *sarama.ProducerMessage, b *batch) {
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
	r.completed.Store(false)
}

// complete records the outcome; run by a drainer, or by the caller for a
// message that was never handed off.
func (r *sendReq) complete(partition int32, offset int64, err error) {
	r.partition, r.offset, r.err = partition, offset, err
	r.timestamp = r.msg.Timestamp
	r.completed.Store(true)
	if r.batch.pending.Add(-1) == 0 {
		r.batch.done <- struct{}{}
	}
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
	if err := ctx.Err(); err != nil {
		return -1, -1, p.count(unavailable(err))
	}
	c := callPool.Get().(*call)
	c.req.prepare(msg, &c.batch)
	c.batch.pending.Store(1)
	if _, err := p.dispatch(ctx, c.reqs[:], route); err != nil {
		c.release()
		return -1, -1, p.count(err)
	}
	select {
	case <-c.batch.done:
	case <-ctx.Done():
		select {
		case <-c.batch.done:
		default:
			return -1, -1, p.count(&DeliveryError{Topic: msg.Topic, Err: ctx.Err()})
		}
	}
	r := &c.req
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
		reqs[i].prepare(msgs[i], b)
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
	}
	var errs SendErrors
	for i := range reqs {
		r := &reqs[i]
		switch {
		case !r.completed.Load():
			errs = append(errs, &MessageError{Index: i, Err: p.count(&DeliveryError{Topic: msgs[i].Topic, Err: ctx.Err()})})
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
