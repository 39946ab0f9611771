package fxkafka

import (
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// partState is one partition of a topic, as one producer sends to it.
type partState struct {
	topic *topicState
	id    int32

	mu      sync.Mutex  // protects following
	sink    *sink       // its leader's sink; nil while the leader is unknown
	lanes   []*lanePart // by lane index
	inReady bool        // listed in sink.ready
	// maxBatch > 0 is the largest batch, in record bytes, to build for the
	// partition: half of one its broker refused as too large.
	maxBatch int

	flying  atomic.Int32         // batches in flight, read without mu to place keyless records
	sinkNow atomic.Pointer[sink] // sink, read without mu to place keyless records
	// sent counts the batches that left (first attempts and retries, of
	// every lane), and filledAt is what it was when Produce's keyless
	// records last began to fill the partition (producer.fillPartition).
	// A partition also carrying synchronous sends' batches in other lanes
	// may so look less behind than it is: it takes one share too many.
	sent, filledAt atomic.Int32
}

// led reports whether ps has a leader now; it reads an atomic only.
func (ps *partState) led() bool { return ps.sinkNow.Load() != nil }

// setSinkLocked moves ps to sink s (nil: its leader is unknown).
func (ps *partState) setSinkLocked(s *sink) {
	ps.sink = s
	ps.sinkNow.Store(s)
	ps.topic.followLeaders(ps, s != nil)
}

// lanePart is one lane's share of a partition: the records waiting, the
// batch in flight (at most one, so the lane keeps its order), and a batch
// to send again before anything else.
type lanePart struct {
	pending      []*record
	pendingBytes int
	inflight     *batch
	retry        *batch
	notBefore    time.Time // retry backoff
	seq          int32     // the next sequence number (idempotence)
	splitLimit   int       // > 0: cut at most this many records (a batch the broker refused for one of them)
	// behind are records given up on (takeAllLocked) while a finisher
	// delivered the outcome of the lane's last batch (finishing counts
	// those at work): they fail once it has (producer.finished), so that
	// their outcomes follow its, as produced.
	behind    []given
	finishing int
}

// given is records given up on before they were sent, to fail with err
// once the outcome of the batch ahead of them is delivered.
type given struct {
	recs []*record
	err  error
}

// batch is the records of one lane and partition that go in one request.
type batch struct {
	ps           *partState
	lane         int
	recs         []*record
	seq          int32
	bytes        int
	attempts     int
	maybeWritten bool // an attempt's outcome is unknown: it may be stored
	rb           *sarama.RecordBatch
	encoded      []byte // non-nil iff rb carries records the pool encoded: that buffer, recycled once the broker stores them
	set          *sarama.MessageSet
	pidFixed     bool  // pid and epoch are fixed: the batch was written on a wire once
	pid          int64 // the producer id a wire writes it with (-1: none)
	epoch        int16
	behind       []given // records of its lane given up on while it was in flight: they fail after its outcome
}

func (ps *partState) laneLocked(i int) *lanePart {
	for len(ps.lanes) <= i {
		ps.lanes = append(ps.lanes, nil)
	}
	if ps.lanes[i] == nil {
		ps.lanes[i] = &lanePart{}
	}
	return ps.lanes[i]
}

// pickLaneLocked chooses the lane an unordered record joins. When requests
// do not pipeline that is lane 0. Else it is one whose records leave next
// (nothing in flight), else an idle one, else a new lane if the producer
// may open one, else the one with the least waiting.
func (ps *partState) pickLaneLocked(pr *producer) int {
	if !pr.pipe.pipelining() {
		return 0 // one batch at a time: records wait for it and batch up
	}
	best, bestBytes := 0, math.MaxInt
	for i, lp := range ps.lanes {
		if lp == nil {
			if i < pr.nLanes() {
				return i
			}
			continue
		}
		if lp.inflight == nil && lp.retry == nil {
			return i
		}
		if lp.pendingBytes < bestBytes {
			best, bestBytes = i, lp.pendingBytes
		}
	}
	n := len(ps.lanes)
	if n < pr.nLanes() || pr.usableLanes(true) > n {
		return n
	}
	return best
}

// hasWorkLocked reports whether some lane has something to send.
func (ps *partState) hasWorkLocked() bool {
	for _, lp := range ps.lanes {
		if lp != nil && lp.inflight == nil && (lp.retry != nil || len(lp.pending) > 0) {
			return true
		}
	}
	return false
}

// takeAllLocked removes what waits on the partition and is not in flight,
// for the caller to fail with err: records never sent, and batches waiting
// to be sent again (with the records given up on behind them). A lane's
// records behind a batch in flight, or behind one whose outcome a finisher
// is delivering, are kept to fail with err after it (batch.behind,
// lanePart.behind).
func (ps *partState) takeAllLocked(idempotent bool, err error) (recs []*record, again []*batch) {
	for _, lp := range ps.lanes {
		if lp == nil {
			continue
		}
		switch {
		case len(lp.pending) == 0:
		case lp.inflight != nil:
			lp.inflight.behind = append(lp.inflight.behind, given{lp.pending, err})
		case lp.finishing > 0:
			lp.behind = append(lp.behind, given{lp.pending, err})
		default:
			recs = append(recs, lp.pending...)
		}
		lp.pending, lp.pendingBytes = nil, 0
		if b := lp.retry; b != nil {
			// A retry batch never written gives its sequence numbers back
			// (nothing was cut after it): the lane's next batch takes them,
			// as the broker expects.
			if idempotent && !b.maybeWritten {
				lp.seq = b.seq
			}
			again = append(again, b)
			lp.retry = nil
		}
	}
	return recs, again
}

// cutLocked takes from ps at most one batch for the request being built
// (a request carries one batch per partition). It reports whether ps has
// more to send at once, and when something held back by linger or backoff
// becomes sendable.
func (ps *partState) cutLocked(pr *producer, now time.Time) (b *batch, more bool, wakeAt time.Time) {
	if pr.dead.Load() {
		// A broken producer sends nothing more: what waits on it fails
		// unsent when it closes (a send racing its retirement may have
		// placed records after the retirement failed the others).
		return nil, false, time.Time{}
	}
	set := pr.set
	// wait is how long a lane's records may wait for more: the linger, or
	// without one the pipelined hold; nothing while a Flush or Close waits
	// or a Produce waits for buffer space.
	var wait time.Duration
	switch {
	case pr.flushing.Load() > 0 || pr.pool.flushing.Load() > 0 || pr.pool.buf.starved():
	case set.linger > 0:
		wait = set.linger
	default:
		wait = pr.holdFor(ps)
	}
	soonest := func(t time.Time) {
		if wakeAt.IsZero() || t.Before(wakeAt) {
			wakeAt = t
		}
	}
	for i, lp := range ps.lanes {
		if lp == nil || lp.inflight != nil {
			continue
		}
		if lp.retry != nil {
			switch {
			case now.Before(lp.notBefore) && !pr.aborted.Load():
				soonest(lp.notBefore)
			case b != nil:
				more = true
			default:
				b, lp.retry = lp.retry, nil
				lp.inflight = b
				ps.flying.Add(1)
				ps.sent.Add(1)
			}
			continue
		}
		if len(lp.pending) == 0 {
			continue
		}
		if wait > 0 && lp.pendingBytes < set.maxBatchBytes {
			if due := lp.pending[0].enqueued.Add(wait); now.Before(due) {
				soonest(due)
				continue
			}
		}
		if b != nil {
			more = true
			continue
		}
		b = lp.cut(pr, ps, i)
		if b == nil {
			continue // every record was withdrawn
		}
		lp.inflight = b
		ps.flying.Add(1)
		ps.sent.Add(1)
	}
	return b, more, wakeAt
}

// cut moves the records at the front of the lane into a new batch, up to
// the batch size limit. Records their callers withdrew are dropped.
func (lp *lanePart) cut(pr *producer, ps *partState, lane int) *batch {
	limit := pr.set.maxBatchBytes - pr.pool.batchHeader()
	if ps.maxBatch > 0 {
		limit = min(limit, ps.maxBatch)
	}
	b := &batch{ps: ps, lane: lane}
	// Room for the records that fit (withdrawn ones too, so it is an
	// estimate): growing the slice record by record cost more than
	// counting them first, which is needed only when not all fit.
	want := len(lp.pending)
	if lp.pendingBytes > limit || lp.splitLimit > 0 {
		want = 0
		bytes := 0
		for _, r := range lp.pending {
			if !lp.fits(want, bytes, r.size, limit) {
				break
			}
			want++
			bytes += r.size
		}
	}
	b.recs = make([]*record, 0, want)
	n := 0
	var dropped []*record
	var now time.Time // one clock read per batch, for the records without a timestamp
	for n < len(lp.pending) {
		r := lp.pending[n]
		if !lp.fits(len(b.recs), b.bytes, r.size, limit) {
			break
		}
		n++
		lp.pendingBytes -= r.size
		if !r.state.CompareAndSwap(stQueued, stSent) {
			dropped = append(dropped, r)
			continue
		}
		if r.ts.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			r.ts = now
		}
		b.recs = append(b.recs, r)
		b.bytes += r.size
	}
	// Keep the slice's room for the next records: move the rest down.
	rest := copy(lp.pending, lp.pending[n:])
	clear(lp.pending[rest:])
	lp.pending = lp.pending[:rest]
	lp.splitLimit = 0
	if len(dropped) > 0 {
		pr.dropWithdrawn(dropped)
	}
	if len(b.recs) == 0 {
		return nil
	}
	if pr.idempotent {
		b.seq = lp.seq
		lp.seq = addSeq(lp.seq, len(b.recs))
	}
	ps.topic.unstick(ps.id, b.bytes, pr.pipe.pipelining())
	return b
}

// fits reports whether a record of size joins a batch of n records and
// bytes: a first record always does.
func (lp *lanePart) fits(n, bytes, size, limit int) bool {
	return n == 0 || bytes+size <= limit && (lp.splitLimit == 0 || n < lp.splitLimit)
}

// addSeq advances a sequence number; Kafka's wrap from MaxInt32 to 0.
func addSeq(seq int32, n int) int32 {
	return int32((int64(seq) + int64(n)) % (math.MaxInt32 + 1))
}

// sink sends the batches of the partitions one broker leads, for one
// producer: it builds produce requests, keeps up to limit() of them in
// flight on the broker's connection, and takes their responses.
type sink struct {
	pr   *producer
	wake chan struct{} // size 1

	mu        sync.Mutex // protects following
	broker    *sarama.Broker
	wire      *wire // the connection the sink writes its own requests on (producer.wired), nil until the first
	ready     []*partState
	inflight  int
	reconnect bool // the connection failed, or the broker's address moved: close it once nothing is in flight
	saturated bool // counted in producer.saturated

	flying atomic.Int32 // inflight, read without mu to place keyless records
	depth  depthGauge   // how many requests the connection carries while pipelining
}

// limit is how many requests the sink may have in flight now.
func (s *sink) limit() int { return s.depth.limit(s.pr.pipe.pipelining(), s.pr.set.maxInFlight) }

func (s *sink) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// addReady lists ps, whose inReady the caller set, and wakes the sink.
func (s *sink) addReady(ps *partState) {
	s.mu.Lock()
	s.ready = append(s.ready, ps)
	s.mu.Unlock()
	s.poke()
}

// markReady lists ps unless it is listed already.
func (s *sink) markReady(ps *partState) {
	ps.mu.Lock()
	add := !ps.inReady && ps.sink == s
	if add {
		ps.inReady = true
	}
	ps.mu.Unlock()
	if add {
		s.addReady(ps)
	}
}

// loop is the sink's goroutine, owned by its producer.
func (s *sink) loop() {
	defer s.pr.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-s.wake:
		case <-timer.C:
		case <-s.pr.stop:
			return
		}
		if wakeAt := s.run(); !wakeAt.IsZero() {
			timer.Reset(max(time.Until(wakeAt), 0))
		}
	}
}

// run sends requests while the connection has room and partitions have
// batches to send. It returns when it must look again if nothing wakes it.
func (s *sink) run() (wakeAt time.Time) {
	pr := s.pr
	for {
		s.mu.Lock()
		if s.reconnect && s.inflight == 0 {
			s.reconnect = false
			b, w := s.broker, s.wire
			s.wire = nil
			s.mu.Unlock()
			switch {
			case pr.wired:
				// sarama's client keeps b, its own: only the sink's
				// connection, if it has one, goes.
				if w != nil {
					w.close() // the next send dials again
				}
			default:
				_ = b.Close() // the next send opens it again
			}
			s.mu.Lock()
		}
		limit := s.limit()
		if full := s.inflight >= limit && len(s.ready) > 0; full != s.saturated {
			s.saturated = full
			if full {
				pr.saturated.Add(1)
			} else {
				pr.saturated.Add(-1)
			}
		}
		if s.inflight >= limit || len(s.ready) == 0 || s.reconnect {
			s.mu.Unlock()
			return wakeAt
		}
		parts := s.ready
		s.ready = nil
		// While the connection has a slot to spare beside this request,
		// the request carries one partition's batch, and the others go in
		// the next (alone). A request's partitions are answered together,
		// so partitions sent together once would leave together again,
		// each waiting for the slowest; sent alone, each partition's next
		// batch leaves when its own answer comes. The request taking the
		// last slot carries every partition it can, so a broker leading
		// more partitions than its connection carries requests still sends
		// them all. One producing goroutine 5 ms from kfake, measured with
		// a fixed fill share of 4096 (a scratch build, 3 interleaved runs):
		// 2.62-2.76M messages/s against 2.49-2.59M with several partitions
		// a request; synchronous sends (16 and 256 senders, 1 and 5 ms,
		// kfake and librdkafka's mock cluster) measured the same either
		// way.
		alone := pr.pipe.pipelining() && s.inflight+1 < limit
		s.mu.Unlock()

		now := time.Now()
		var batches []*batch
		var again []*partState
		// A request carries one batch per partition; the batches of a
		// broker leading many partitions could together pass the largest
		// request sarama sends, so a request takes no more batches once the
		// next one might not fit: the partitions left go in the next.
		set := pr.set
		largest := max(set.maxBatchBytes, set.maxMessageBytes) + requestBatchOverhead
		total := 0
		for k, ps := range parts {
			if total > 0 && (alone || total+largest > set.maxRequestBytes) {
				// The partitions left (still listed) go first in the
				// next request, before those this one served: a
				// partition with batches in several lanes does not
				// hold the others back.
				again = append(slices.Clip(parts[k:]), again...)
				break
			}
			ps.mu.Lock()
			if ps.sink != s {
				// It moved to another leader while listed here, and
				// that sink skipped it as listed: hand it over, or
				// its records wait for a send that may never come.
				ps.inReady = false
				moved := ps.sink
				work := moved != nil && ps.hasWorkLocked()
				ps.mu.Unlock()
				if work {
					moved.markReady(ps)
				}
				continue
			}
			b, more, at := ps.cutLocked(pr, now)
			if more || !at.IsZero() {
				again = append(again, ps) // stays listed
			} else {
				ps.inReady = false
			}
			ps.mu.Unlock()
			if b != nil {
				batches = append(batches, b)
				total += b.bytes + requestBatchOverhead
			}
			if !at.IsZero() && (wakeAt.IsZero() || at.Before(wakeAt)) {
				wakeAt = at
			}
		}
		s.mu.Lock()
		s.ready = append(again, s.ready...)
		if len(batches) > 0 {
			s.inflight++
			s.flying.Store(int32(s.inflight))
		}
		s.mu.Unlock()
		if len(batches) == 0 {
			// Only held-back partitions remain: wait for their time.
			return wakeAt
		}
		s.send(batches)
	}
}

// requestBatchOverhead bounds what a batch adds to a produce request beside
// its records: its header, its size and partition, and its topic's name
// (length and at most 249 bytes).
const requestBatchOverhead = batchOverhead + 4 + 4 + 2 + 249

// produceVersion is the ProduceRequest version sarama's own producer uses
// for a Kafka version.
func produceVersion(v sarama.KafkaVersion) int16 {
	switch {
	case v.IsAtLeast(sarama.V3_7_0_0):
		return 10
	case v.IsAtLeast(sarama.V2_8_0_0):
		return 9
	case v.IsAtLeast(sarama.V2_4_0_0):
		return 8
	case v.IsAtLeast(sarama.V2_1_0_0):
		return 7
	case v.IsAtLeast(sarama.V2_0_0_0):
		return 6
	case v.IsAtLeast(sarama.V1_0_0_0):
		return 5
	case v.IsAtLeast(sarama.V0_11_0_0):
		return 3
	case v.IsAtLeast(sarama.V0_10_0_0):
		return 2
	}
	return 0
}

// send builds one request from batches and hands it to the broker; the
// response comes back in answer's callback. s.inflight already counts it.
func (s *sink) send(batches []*batch) {
	pr := s.pr
	if pr.wired {
		s.sendWire(batches)
		return
	}
	set := pr.set
	req := &sarama.ProduceRequest{
		RequiredAcks: set.acks,
		Timeout:      int32(set.ackTimeout / time.Millisecond),
		Version:      produceVersion(set.version),
	}
	if pr.txnID != "" {
		req.TransactionalID = &pr.txnID
	}
	for _, b := range batches {
		b.attempts++
		if req.Version >= 3 {
			req.AddBatch(b.ps.topic.name, b.ps.id, b.recordBatch(pr))
		} else {
			req.AddSet(b.ps.topic.name, b.ps.id, b.messageSet(pr))
		}
	}
	broker := s.openBroker()
	if set.acks == sarama.NoResponse {
		err := broker.AsyncProduce(req, nil)
		s.done(batches, nil, err, false)
		return
	}
	start := time.Now()
	var cost atomic.Int64 // written after AsyncProduce returns, read by the callback
	err := broker.AsyncProduce(req, s.answer(batches, &start, &cost))
	cost.Store(int64(time.Since(start)))
	if err != nil {
		s.done(batches, nil, err, false)
	}
}

// answer returns the callback that takes the answer to a request of
// batches written at *start (set before the request is written, so before
// any answer): it feeds the pipelining gauges (with the cost of the write,
// once known) and settles the batches. It runs on the connection's
// receiving goroutine: it never calls the connection.
func (s *sink) answer(batches []*batch, start *time.Time, cost *atomic.Int64) func(*sarama.ProduceResponse, error) {
	pr := s.pr
	return func(resp *sarama.ProduceResponse, err error) {
		if err == nil {
			if c := cost.Load(); c > 0 {
				now := time.Now()
				rtt := now.Sub(*start)
				pr.pipe.observeAt(now.UnixNano(), rtt, time.Duration(c))
				s.depth.observeAt(now.UnixNano(), rtt, pr.pipe.pipelining(), pr.set.maxInFlight)
			}
		}
		s.done(batches, resp, err, true)
	}
}

// sendWire is send on the sink's own connection (producer.wired): the
// batches are encoded from their records straight into the request.
func (s *sink) sendWire(batches []*batch) {
	pr := s.pr
	for _, b := range batches {
		b.attempts++
	}
	w, err := s.openWire()
	if err != nil {
		s.done(batches, nil, err, false)
		return
	}
	body := func(buf []byte) []byte { return pr.appendProduceBody(buf, batches) }
	var start time.Time // set by produce: the cost is the request's building and writing
	if pr.set.acks == sarama.NoResponse {
		err := w.produce(body, &start, nil)
		s.done(batches, nil, err, false) // written is all there is; an error: not sent
		return
	}
	var cost atomic.Int64 // written after the write returns, read by the callback
	err = w.produce(body, &start, s.answer(batches, &start, &cost))
	cost.Store(int64(time.Since(start)))
	if err != nil {
		s.done(batches, nil, err, false)
	}
}

// openWire returns the sink's connection, dialling it if it has none. A
// connection that failed returns its error (nothing is written) until the
// answers of its requests in flight are in and run closes it, as a sarama
// broker's does: no request goes on a new connection while outcomes of the
// old one are still being delivered.
//
// sinkFor may replace the broker (its address moved) while the dial is
// under way, and finds no connection to mark for reconnecting: a
// connection dialled for a broker found replaced is closed, and the
// current one's address dialled, as openBroker does. Kept, it would carry
// every request after to whatever now listens at the old address. (The
// request in hand may still go there: sinkFor may move the broker between
// this check and the write; its answer, or its failure, then comes from
// the old address, and the move marks the connection for reconnecting.)
func (s *sink) openWire() (*wire, error) {
	for {
		s.mu.Lock()
		w, b := s.wire, s.broker
		s.mu.Unlock()
		if w != nil {
			return w, w.failure()
		}
		w, err := s.pr.dialWire(b.Addr())
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		current := s.broker == b
		if current {
			s.wire = w
		}
		s.mu.Unlock()
		if current {
			return w, nil
		}
		w.close()
	}
}

// openBroker returns the sink's broker, opened (a closed connection
// reopens; an open one says so). sinkFor may meanwhile replace the broker
// and close the old one: an old one reopened after that close would keep
// its connection and receiving goroutine until shutdown closes
// oldBrokers. So a broker found replaced after opening it is closed again,
// and the current one taken.
func (s *sink) openBroker() *sarama.Broker {
	for {
		s.mu.Lock()
		b := s.broker
		s.mu.Unlock()
		_ = b.Open(s.pr.conf)
		s.mu.Lock()
		current := s.broker == b
		s.mu.Unlock()
		if current {
			return b
		}
		_ = b.Close()
	}
}

// recordBatch returns the batch's record batch, built on its first attempt
// and sent unchanged after (sarama keeps its encoded records, so a retry
// reads nothing of the records again).
func (b *batch) recordBatch(pr *producer) *sarama.RecordBatch {
	if b.rb != nil {
		return b.rb
	}
	first := b.recs[0].ts
	rb := &sarama.RecordBatch{
		Version:          2,
		Codec:            pr.set.codec,
		CompressionLevel: pr.set.codecLevel,
		FirstTimestamp:   first,
		ProducerID:       -1,
		ProducerEpoch:    -1,
		FirstSequence:    -1,
		IsTransactional:  pr.txnID != "",
		LastOffsetDelta:  int32(len(b.recs) - 1),
	}
	// The pool encodes uncompressed records itself (encode.go); sarama
	// encodes, and compresses, the others.
	own := pr.set.codec == sarama.CompressionNone && encodedRecords.ok
	var buf []byte
	var recs []sarama.Record // sarama's records, for it to encode: one allocation a batch
	if own {
		buf = getRecordsBuf(b.bytes)
	} else {
		rb.Records = make([]*sarama.Record, len(b.recs))
		recs = make([]sarama.Record, len(b.recs))
	}
	rb.MaxTimestamp = first
	for i, r := range b.recs {
		delta := millisAfter(r.ts, first)
		if own {
			buf = appendRecord(buf, r.key(), r.value(), r.hdrs, int64(i), delta)
		} else {
			recs[i] = sarama.Record{
				Key:            r.key(),
				Value:          r.value(),
				Headers:        headerPtrs(r.hdrs),
				OffsetDelta:    int64(i),
				TimestampDelta: time.Duration(delta) * time.Millisecond,
			}
			rb.Records[i] = &recs[i]
		}
		if r.ts.After(rb.MaxTimestamp) {
			rb.MaxTimestamp = r.ts
		}
	}
	if own {
		encodedRecords.set(rb, buf, len(b.recs))
		b.encoded = buf
	}
	if pr.idempotent {
		l := pr.laneAt(b.lane)
		rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = l.pid, l.epoch, b.seq
	}
	b.rb = rb
	return rb
}

// headerPtrs is hdrs as sarama's records hold them, nil if there are none.
func headerPtrs(hdrs []sarama.RecordHeader) []*sarama.RecordHeader {
	if len(hdrs) == 0 {
		return nil
	}
	ptrs := make([]*sarama.RecordHeader, len(hdrs))
	for i := range hdrs {
		ptrs[i] = &hdrs[i]
	}
	return ptrs
}

// millisAfter is how many milliseconds the record stamped t is stored
// after the batch's first timestamp: the difference of the two as the batch
// stores them (whole milliseconds since the epoch), so that each record
// keeps its own millisecond whatever the first record's sub-millisecond
// part. The difference of the exact times truncated to milliseconds is off
// by one when the two sub-millisecond parts differ the wrong way: a record
// after the first and earlier in its millisecond is stored a millisecond
// early, one before the first and later in its millisecond a millisecond
// late.
func millisAfter(t, first time.Time) int64 { return t.UnixMilli() - first.UnixMilli() }

// messageSet is the batch in the message format of brokers before 0.11,
// uncompressed (Validate refuses compression on those versions).
func (b *batch) messageSet(pr *producer) *sarama.MessageSet {
	if b.set != nil {
		return b.set
	}
	v := int8(0)
	if pr.set.version.IsAtLeast(sarama.V0_10_0_0) {
		v = 1
	}
	set := &sarama.MessageSet{}
	for _, r := range b.recs {
		m := &sarama.Message{Key: r.key(), Value: r.value(), Timestamp: r.ts, Version: v}
		set.Messages = append(set.Messages, &sarama.MessageBlock{Msg: m})
	}
	b.set = set
	return set
}

// done takes the outcome of one request: the response, or the error that
// kept it from being sent (sent false) or answered.
func (s *sink) done(batches []*batch, resp *sarama.ProduceResponse, err error, sent bool) {
	pr := s.pr
	var fin finisher
	for _, b := range batches {
		var block *sarama.ProduceResponseBlock
		switch {
		case err != nil:
		case resp == nil: // acks none: written to the socket is all there is
			block = &sarama.ProduceResponseBlock{Offset: -1}
		default:
			block = resp.GetBlock(b.ps.topic.name, b.ps.id)
			if block == nil {
				block = &sarama.ProduceResponseBlock{Err: sarama.ErrUnknown} // no answer for this partition
			}
		}
		pr.settle(b, block, err, sent, &fin)
	}
	s.mu.Lock()
	s.inflight--
	s.flying.Store(int32(s.inflight))
	if err != nil && sent || isConnectionError(err) {
		s.reconnect = true
	}
	s.mu.Unlock()
	s.poke()
	fin.run(pr)
}

// isConnectionError reports whether err means the connection to a broker
// is gone or could not be made.
func isConnectionError(err error) bool {
	if err == nil {
		return false
	}
	var ke sarama.KError
	return !errors.As(err, &ke)
}

// holdFor is how long a batch of ps, whose lock is held, waits for more
// records from its first record's placement before it leaves
// (pipelinedHold): while requests pipeline, ps's connection carries one
// already and holdSends messages are in flight (Stats.InFlight); otherwise
// 0, it leaves at once. A Produce record, placed without a clock, is not
// held.
func (pr *producer) holdFor(ps *partState) time.Duration {
	hold := pr.set.hold
	if hold <= 0 || !pr.pipe.pipelining() || pr.pool.inFlight.Load() < holdSends {
		return 0
	}
	if s := ps.sink; s == nil || s.flying.Load() == 0 {
		return 0
	}
	return hold
}
