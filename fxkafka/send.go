package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
)

// Producer is the synchronous send API of a [ProducerPool] (and of a
// [Lease]). Handlers that depend on it rather than on *ProducerPool can be
// unit-tested with a fake; [Module] provides it.
type Producer interface {
	SendMessage(ctx context.Context, msg *sarama.ProducerMessage) (partition int32, offset int64, err error)
	SendMessages(ctx context.Context, msgs []*sarama.ProducerMessage) error
}

var _ Producer = (*ProducerPool)(nil)

// SendMessage sends msg and waits until the brokers acknowledge it (with
// Config.RequiredAcks), returning its partition and offset; like sarama's
// SyncProducer it also sets msg.Partition, msg.Offset and msg.Timestamp. The
// pool copies msg's key, value and headers before it returns or hands
// anything on, so the caller owns msg and every byte it points to again as
// soon as SendMessage returns, whatever the outcome; msg.Metadata is never
// touched. msg must not be modified during the call.
//
// ctx bounds how long the caller waits, not the work already started. The
// error tells what happened to the message:
//   - [ErrInvalidMessage]: msg cannot be written (see the error); not sent.
//   - [ErrPoolClosed]: the pool is closed or closing; not sent.
//   - [ErrUnavailable]: no producer could take it (no broker reachable, the
//     pool backing off after a failed attempt), ctx ended before it left in a
//     request, or the brokers had no leader for it until the retries ran
//     out. Not written, and never written later: retrying is safe.
//   - [*DeliveryError] ([ErrDeliveryUnknown]): it was sent and ctx ended
//     before the answer, or the brokers did not confirm it before the
//     retries ran out. It may have been written; the pool will not send it
//     again.
func (p *ProducerPool) SendMessage(ctx context.Context, msg *sarama.ProducerMessage) (partition int32, offset int64, err error) {
	return p.sendOne(ctx, msg, nil)
}

// SendMessages sends msgs and waits for all of them, like
// [ProducerPool.SendMessage] does for one. Every message is checked first:
// if one is invalid (by the pool's checks, or its topic does not exist),
// the call returns that message's [*MessageError] matching
// [ErrInvalidMessage] and sends nothing; if ctx has ended already, nothing
// is sent either. Otherwise every message is placed on one producer and one
// lane, so that the messages of the call to one partition are stored in the
// order given. On success each message's Partition, Offset and Timestamp
// are set. If some fail, the error is a [SendErrors] holding one
// [*MessageError] per failed message, in the classes SendMessage documents
// (errors.Is looks through all of them); the other messages were delivered.
func (p *ProducerPool) SendMessages(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	return p.sendBatch(ctx, msgs, nil)
}

// accept validates msg and makes the pool's record of it, running the
// send-start hooks on the pool's copy (so headers they add are sent).
func (p *ProducerPool) accept(ctx context.Context, msg *sarama.ProducerMessage) (*record, error) {
	if !p.hooks.onSend() {
		return p.newRecord(msg)
	}
	// What its own fields refuse ends its hooks at once; what fails only
	// with the headers they add (its size) ends them too.
	if err := p.precheck(msg); err != nil {
		p.hookRefused(ctx, msg, err)
		return nil, err
	}
	hr := p.hookStart(ctx, msg)
	r, err := p.newRecord(hr.msg)
	if err != nil {
		p.hookEnd(hr, -1, -1, 0, 0, err)
		return nil, err
	}
	r.hook = hr
	hr.readCopies(r)
	return r, nil
}

// readCopies points the hooks' message at r's copies of its key, value
// and header bytes: the caller's are the caller's again once the send is
// accepted (Produce returns at once), and OnSendEnd must not read what
// the caller wrote there since. r outlives every OnSendEnd call.
func (hr *hookRecord) readCopies(r *record) {
	m := hr.msg
	m.Key, m.Value = nil, nil
	if k := r.key(); k != nil {
		m.Key = sarama.ByteEncoder(k)
	}
	if v := r.value(); v != nil {
		m.Value = sarama.ByteEncoder(v)
	}
	if len(r.hdrs) > 0 {
		m.Headers = append(m.Headers[:0:0], r.hdrs...)
	}
}

// hookStart runs the send-start hooks on the pool's copy of msg (an empty
// message for a nil one) and returns what their send-end needs.
func (p *ProducerPool) hookStart(ctx context.Context, msg *sarama.ProducerMessage) *hookRecord {
	var cp sarama.ProducerMessage
	if msg != nil {
		cp = *msg
		cp.Headers = append([]sarama.RecordHeader(nil), msg.Headers...)
		cp.Metadata = nil
	}
	hr := &hookRecord{ctx: ctx, msg: &cp, start: time.Now()}
	for _, h := range p.hooks.sendStart {
		if c := h.OnSendStart(hr.ctx, &cp); c != nil {
			hr.ctx = c
		}
	}
	return hr
}

// hookRefused runs the send hooks, start then end, for a message refused
// before it became a record, so hooks see every message a send is given.
func (p *ProducerPool) hookRefused(ctx context.Context, msg *sarama.ProducerMessage, err error) {
	if p.hooks.onSend() {
		p.hookEnd(p.hookStart(ctx, msg), -1, -1, 0, 0, err)
	}
}

// notSentWith is the outcome of a SendMessages message not sent because
// message i of the call is invalid.
func notSentWith(i int) error {
	return invalid(fmt.Sprintf("message %d of the call is invalid; nothing of it was sent", i))
}

// tell reports the outcome of r to the counters and the send-end hooks,
// once: the first of the caller (giving up) and the producer (the broker's
// answer) to get there.
func (p *ProducerPool) tell(r *record, err error) {
	if p.told(r, err) {
		p.inFlight.Add(-1)
	}
}

// told is tell without the InFlight count, which its caller keeps; it
// reports whether it told.
func (p *ProducerPool) told(r *record, err error) bool {
	if !r.told.CompareAndSwap(false, true) {
		return false
	}
	if err != nil {
		p.count(err)
	}
	if r.hook != nil {
		part, off := int32(-1), int64(-1)
		n := 0
		if err == nil {
			part, off, n = r.partition, r.offset, int(r.batchN)
			r.hook.msg.Timestamp = r.ts // as the caller's message gets it
		}
		p.hookEnd(r.hook, part, off, n, int(r.prodID), err)
	}
	return true
}

// completeAll is the producer's report of the outcomes of recs, set on
// them: it tells their callers (or queues their promises) and the
// counters, once per batch where it can.
func (p *ProducerPool) completeAll(recs []*record) {
	var ok, told int64
	promised := 0
	for _, r := range recs {
		if r.err == nil {
			ok++
		}
		if p.told(r, r.err) {
			told++
		}
		if r.own.promise != nil {
			promised++
		}
	}
	p.sent.Add(ok)
	p.inFlight.Add(-told)
	if promised == len(recs) {
		for _, r := range recs {
			r.state.Store(stDone)
		}
		p.promises.pushAll(recs)
		return
	}
	for _, r := range recs {
		r.state.Store(stDone)
		if r.own.promise != nil {
			p.promises.push(r)
			continue
		}
		if c := r.call; c.pending.Add(-1) == 0 {
			c.done <- struct{}{}
		}
	}
}

// route finds the producer a call goes to: the lease's; for an ordered
// send (Produce) the oldest shared producer, so that one stream's messages
// to a partition share a lane; else the least-loaded shared producer. It
// provisions one if none is open.
func (p *ProducerPool) route(ctx context.Context, l *Lease, lane int) (*producer, error) {
	if l != nil {
		return l.producer()
	}
	return p.acquire(ctx, lane >= 0)
}

// dispatch places recs on a producer, routing again if the one chosen
// retired before taking them (they were never placed, so sending them
// elsewhere cannot duplicate them).
func (p *ProducerPool) dispatch(ctx context.Context, recs []*record, lane int, l *Lease) error {
	for {
		pr, err := p.route(ctx, l, lane)
		if err != nil {
			return err
		}
		err = pr.enqueue(ctx, recs, lane)
		if !errors.Is(err, errRetired) {
			return err
		}
		if l != nil {
			if p.closed.Load() {
				return closedErr
			}
			return errLeaseBroken
		}
	}
}

func (p *ProducerPool) sendOne(ctx context.Context, msg *sarama.ProducerMessage, l *Lease) (int32, int64, error) {
	r, err := p.accept(ctx, msg)
	if err != nil {
		p.count(err)
		return -1, -1, err
	}
	p.inFlight.Add(1)
	if err := ctx.Err(); err != nil {
		err = unavailable(err)
		p.tell(r, err)
		r.release()
		return -1, -1, err
	}
	c := &r.own
	if c.done == nil {
		c.done = make(chan struct{}, 1)
	}
	c.pending.Store(1)
	r.call = c
	if err := p.dispatch(ctx, r.self(), -1, l); err != nil {
		err = plainRefusal(err)
		p.tell(r, err)
		r.release()
		return -1, -1, err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		if r.withdraw() {
			err := unavailable(ctx.Err()) // still queued: never sent
			p.tell(r, err)
			return -1, -1, err
		}
		select {
		case <-c.done:
		default:
			err := &DeliveryError{Topic: msg.Topic, Err: ctx.Err()}
			p.tell(r, err)
			return -1, -1, err
		}
	}
	partition, offset, err := r.partition, r.offset, r.err
	if err != nil {
		r.release()
		return -1, -1, err
	}
	msg.Partition, msg.Offset, msg.Timestamp = partition, offset, r.ts
	r.release()
	return partition, offset, nil
}

func (p *ProducerPool) sendBatch(ctx context.Context, msgs []*sarama.ProducerMessage, l *Lease) error {
	// What the messages' own fields refuse fails the call before any
	// message becomes a record: the hooks see each message start and end
	// (the refused one with its error, the others not sent either). What
	// fails only with the headers hooks add ends the hooks of the messages
	// before it likewise.
	for i, m := range msgs {
		if err := p.precheck(m); err != nil {
			for j, m := range msgs {
				p.count(err) // every message of the call: each is refused
				if j == i {
					p.hookRefused(ctx, m, err)
				} else {
					p.hookRefused(ctx, m, notSentWith(i))
				}
			}
			return &MessageError{Index: i, Err: err}
		}
	}
	recs := make([]*record, len(msgs))
	for i, m := range msgs {
		r, err := p.accept(ctx, m)
		if err != nil {
			for range msgs {
				p.count(err) // every message of the call: each is refused
			}
			for _, r := range recs[:i] {
				if r.hook != nil {
					p.hookEnd(r.hook, -1, -1, 0, 0, notSentWith(i))
				}
				r.release()
			}
			for _, m := range msgs[i+1:] {
				p.hookRefused(ctx, m, notSentWith(i))
			}
			return &MessageError{Index: i, Err: err}
		}
		recs[i] = r
	}
	if len(msgs) == 0 {
		return nil
	}
	p.inFlight.Add(int64(len(recs)))
	c := &call{done: make(chan struct{}, 1)}
	c.pending.Store(int64(len(recs)))
	for _, r := range recs {
		r.call = c
	}
	fail := func(err error) error {
		errs := make(SendErrors, len(recs))
		for i, r := range recs {
			p.tell(r, err)
			errs[i] = &MessageError{Index: i, Err: err}
		}
		return errs
	}
	if err := ctx.Err(); err != nil {
		return fail(unavailable(err))
	}
	if err := p.dispatch(ctx, recs, -1, l); err != nil {
		var ra *refusedAt
		if errors.As(err, &ra) { // nothing placed, for one message's sake
			for i, r := range recs {
				if i == ra.index {
					p.tell(r, ra.err)
				} else {
					p.tell(r, notSentWith(ra.index))
				}
			}
			return &MessageError{Index: ra.index, Err: ra.err}
		}
		return fail(err)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
	}
	var errs SendErrors
	for i, r := range recs {
		var err error
		switch {
		case r.withdraw():
			err = unavailable(ctx.Err())
			p.tell(r, err)
		case r.state.Load() != stDone:
			err = &DeliveryError{Topic: msgs[i].Topic, Err: ctx.Err()}
			p.tell(r, err)
		case r.err != nil:
			err = r.err
		default:
			msgs[i].Partition, msgs[i].Offset, msgs[i].Timestamp = r.partition, r.offset, r.ts
		}
		if err != nil {
			errs = append(errs, &MessageError{Index: i, Err: err})
		}
	}
	if errs != nil {
		return errs
	}
	return nil
}

// acquire returns the producer a shared send should use: the least-loaded,
// or with oldest the one provisioned first. With none open it
// starts or joins a provisioning attempt and waits for it as long as ctx
// allows; while the pool backs off after a failure it fails at once with
// ErrUnavailable.
func (p *ProducerPool) acquire(ctx context.Context, oldest bool) (*producer, error) {
	var waitStart time.Time
	defer func() {
		if !waitStart.IsZero() {
			p.waiting.Add(-1)
			p.waitCount.Add(1)
			p.waitDuration.Add(int64(time.Since(waitStart)))
		}
	}()
	for {
		if p.closed.Load() {
			return nil, closedErr
		}
		prods := *p.shared.Load()
		pr := leastLoaded(prods)
		if oldest && pr != nil {
			pr = prods[0]
			// Streams move to a new producer only once the one before has
			// finished: what it still carries (in flight, or answered
			// late) must not land after their next records.
			for cur := p.ordered.Load(); cur != pr; cur = p.ordered.Load() {
				if cur != nil {
					select {
					case <-cur.gone:
					case <-ctx.Done():
						return nil, unavailable(fmt.Errorf("wait for the producer before to finish: %w", ctx.Err()))
					case <-p.closing:
						return nil, closedErr
					}
				}
				p.ordered.CompareAndSwap(cur, pr)
			}
		}
		if pr != nil {
			// Another producer takes load off the busy one only for sends
			// that may go to any producer; ordered ones stay on the first.
			if !oldest && len(prods) < p.cfg.MaxProducers && pr.busy() {
				p.provisionMore()
			}
			return pr, nil
		}
		p.mu.Lock()
		var a *attempt
		var err error
		var freed chan struct{}
		if len(*p.shared.Load()) == 0 {
			a, err = p.reserveLocked(false)
			if errors.Is(err, errFull) {
				switch reclaimed, wait := p.reclaimIdleLocked(); {
				case reclaimed:
					err = nil // an idle lease producer takes shared sends now
				case wait:
					err, freed = nil, p.leaseFreed // a slot frees when its producer has closed
				}
			}
		}
		p.mu.Unlock()
		switch {
		case errors.Is(err, errFull):
			return nil, &sendError{class: ErrUnavailable, also: ErrNoFreeProducer,
				what: fmt.Sprintf("every producer MaxProducers (%d) allows is held by a Lease", p.cfg.MaxProducers)}
		case err != nil:
			return nil, err
		case a == nil && freed == nil:
			continue // a producer appeared
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
			p.waiting.Add(1)
		}
		var done chan struct{}
		if a != nil {
			done = a.done
		}
		select {
		case <-done:
			if a.err != nil && !errors.Is(a.err, ErrPoolClosed) {
				return nil, unavailable(a.err)
			}
		case <-freed:
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		case <-p.closing:
			return nil, closedErr
		}
	}
}
