package fxkafka

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// record is one message inside the pool, from the send that accepted it to
// its outcome. It holds the pool's own copy of the message's key, value and
// headers, so sarama never reads the caller's memory and the caller owns its
// message again when the send returns. It is kept to four cache lines
// (248 bytes, in a 256-byte size class): four goroutines touch each record
// in turn (the sender, the sink, the broker's answer, the promises), and
// each line of it moves between cores as they do.
type record struct {
	// The outcome, written before call learns of it.
	offset int64
	err    error

	partition int32 // set when the record joins a partition
	// state orders the caller giving up against the sink sending: whoever
	// moves it out of stQueued decides whether the record was ever sent.
	state  atomic.Int32
	told   atomic.Bool // the outcome reached the counters and hooks
	hasKey bool        // false: the key is null
	hasVal bool        // false: the value is null (a tombstone)
	spaced bool        // a Produce message holds buffer space until its promise has returned (all but one failed before it took any)

	ts    time.Time   // the message's timestamp; if it has none, the time its first batch was made
	size  int         // bytes it adds to a batch, as the broker counts them
	epoch *flushEpoch // a Produce message's flush epoch, until its promise has returned
	own   call        // the call of a single-message send
	call  *call       // the synchronous send its outcome reaches (own, or a SendMessages call's); nil for Produce, whose own.promise takes it
	hook  *hookRecord // non-nil only when send hooks are registered

	// The first two lines, above, are what the outcome and the promise
	// goroutine read, and most of what reset clears (it also drops the
	// partition, the headers and a large buffer); fill sets the message's
	// fields, the send path the rest.
	ps     *partState // the partition it joined
	klen   int32      // the key's bytes at the start of buf, the value's after it
	batchN int32      // records in the batch that carried it
	prodID int32      // the producer that carried it

	topic    string
	enqueued time.Time // when it joined a lane: linger and queueing delay
	buf      []byte    // key then value
	hdrs     []sarama.RecordHeader
	one      [1]*record // the record itself, as the slice a single-message send dispatches
}

// key is the record's key, nil if it has none.
func (r *record) key() []byte {
	if !r.hasKey {
		return nil
	}
	return r.buf[:r.klen:r.klen]
}

// value is the record's value, nil if it is null.
func (r *record) value() []byte {
	if !r.hasVal {
		return nil
	}
	return r.buf[r.klen:]
}

// Record states.
const (
	stQueued    = iota // waiting in a lane; may still be withdrawn
	stSent             // cut into a batch: it may reach the broker
	stWithdrawn        // its caller stopped waiting before it was sent: never sent
	stDone             // its outcome is set
)

// hookRecord is what the send hooks need of one record.
type hookRecord struct {
	ctx   context.Context
	msg   *sarama.ProducerMessage // the pool's copy the hooks see
	start time.Time
}

// call is how the outcome of one or more records reaches their sender: the
// caller of SendMessage or SendMessages waits on done; Produce has a promise.
type call struct {
	pending atomic.Int64
	done    chan struct{}                        // size 1: the last outcome signals once, never blocks
	promise func(*sarama.ProducerMessage, error) // Produce only
	msg     *sarama.ProducerMessage              // Produce only: the caller's message
}

// recordPool recycles the records (and their buffers) of sends that were
// acknowledged and whose caller has read the outcome; any other record is
// left to the garbage collector, as something may still refer to it.
var recordPool = sync.Pool{New: func() any { return new(record) }}

func (r *record) release() {
	r.reset()
	recordPool.Put(r)
}

// reset readies r for its next use, on the goroutine that read its
// outcome (the promise goroutine, or the sender): it clears what fill does
// not set, most of it in the record's first two cache lines, which that
// goroutine has just read. Those hold what refers to the caller's memory
// or the pool's (the message, the promise, the error, the hooks' record);
// with the partition, the header bytes and a large buffer dropped too, a
// recycled record pins nothing but its topic's name. fill clears the rest,
// on the goroutine that takes the record next and writes those lines
// anyway (TestAResetRecordIsReusedAsNew).
func (r *record) reset() {
	select {
	case <-r.own.done: // never left full; drained for the next use
	default:
	}
	r.err, r.epoch, r.call, r.hook = nil, nil, nil, nil
	r.own.pending.Store(0)
	r.own.promise, r.own.msg = nil, nil
	r.told.Store(false)
	r.spaced = false
	// Beyond the first two lines, what would pin the pool (the partition
	// leads to its producer), the last message's header bytes or a large
	// buffer.
	r.ps = nil
	if len(r.hdrs) > 0 {
		clear(r.hdrs)
		r.hdrs = r.hdrs[:0]
	}
	if cap(r.buf) > 64<<10 {
		r.buf = nil
	}
}

// Kafka's record batch (magic 2) header, counted by the broker against
// max.message.bytes together with its records, and the legacy message set
// entries (magic 0 and 1) older brokers take.
const (
	batchOverhead      = 61
	legacyEntryV0      = 8 + 4 + 4 + 1 + 1 + 4 + 4 // offset, size, crc, magic, attributes, key and value lengths
	legacyEntryV1      = legacyEntryV0 + 8         // and a timestamp
	maxRecordTimestamp = math.MaxInt64 / int64(time.Millisecond)
)

var (
	minTimestamp = time.UnixMilli(0)
	// maxTimestamp is the latest time sarama's encoders represent without
	// overflowing (they go through UnixNano).
	maxTimestamp = time.Unix(0, math.MaxInt64)
)

// newRecord validates m and copies it into a record, refusing what no
// broker would store before anything is sent. It never keeps m.
func (p *ProducerPool) newRecord(m *sarama.ProducerMessage) (*record, error) {
	if err := p.precheck(m); err != nil {
		return nil, err
	}
	r := recordPool.Get().(*record)
	if err := p.fill(r, m); err != nil {
		r.release()
		return nil, err
	}
	return r, nil
}

// fill copies m into r, a new or reset record.
func (p *ProducerPool) fill(r *record, m *sarama.ProducerMessage) error {
	var key, value []byte
	var err error
	if m.Key != nil {
		if key, err = m.Key.Encode(); err != nil {
			return invalid(fmt.Sprintf("encode key: %v", err))
		}
	}
	if m.Value != nil {
		if value, err = m.Value.Encode(); err != nil {
			return invalid(fmt.Sprintf("encode value: %v", err))
		}
	}
	// Measured before anything is copied: a refused message is not.
	size, alone := p.recordSizes(key, value, m.Headers)
	if alone += p.batchHeader(); alone > p.set.maxMessageBytes {
		return invalid(fmt.Sprintf("message of %d bytes (as the broker counts it, with its batch header) exceeds MaxMessageBytes (%d)", alone, p.set.maxMessageBytes))
	}
	r.size = size
	// What reset left for the goroutine that uses the record next.
	r.enqueued, r.one[0], r.batchN, r.prodID = time.Time{}, nil, 0, 0
	buf := append(append(r.buf[:0], key...), value...)
	if buf == nil {
		// An empty key or value must stay empty, not become null (a null
		// value is a tombstone): slices of a nil buffer are nil.
		buf = []byte{}
	}
	r.buf = buf
	r.klen, r.hasKey, r.hasVal = int32(len(key)), key != nil, value != nil
	r.hdrs = r.hdrs[:0]
	if n := len(m.Headers); n > 0 {
		hbytes := 0
		for _, h := range m.Headers {
			hbytes += len(h.Key) + len(h.Value)
		}
		hb := make([]byte, 0, hbytes)
		for _, h := range m.Headers {
			k0 := len(hb)
			hb = append(hb, h.Key...)
			v0 := len(hb)
			hb = append(hb, h.Value...)
			rh := sarama.RecordHeader{Key: hb[k0:v0:v0], Value: hb[v0:len(hb):len(hb)]}
			if h.Value == nil {
				rh.Value = nil
			}
			r.hdrs = append(r.hdrs, rh)
		}
	}
	r.topic = m.Topic
	r.partition = m.Partition
	r.ts = m.Timestamp // if zero, cut stamps the record once for its batch
	r.offset, r.err = -1, nil
	r.state.Store(stQueued)
	return nil
}

// precheck refuses what the fields of m alone make unsendable; newRecord
// runs it, and the send path runs it before the send hooks see m.
func (p *ProducerPool) precheck(m *sarama.ProducerMessage) error {
	switch {
	case m == nil:
		return invalid("nil message")
	case m.Topic == "":
		return invalid("message has no Topic")
	case len(m.Topic) > 249:
		return invalid("topic name longer than 249 characters")
	}
	if !m.Timestamp.IsZero() && (m.Timestamp.Before(minTimestamp) || m.Timestamp.After(maxTimestamp)) {
		return invalid(fmt.Sprintf("timestamp %v is outside 1970 to 2262, which Kafka stores", m.Timestamp))
	}
	if !p.set.version.IsAtLeast(sarama.V0_11_0_0) && len(m.Headers) > 0 {
		return invalid(fmt.Sprintf("headers need Kafka 0.11 or later; Version is %s", p.set.version))
	}
	return nil
}

// batchHeader is what a batch adds to its records.
func (p *ProducerPool) batchHeader() int {
	if p.set.version.IsAtLeast(sarama.V0_11_0_0) {
		return batchOverhead
	}
	return 0
}

// recordSizes returns the bytes r adds to a batch: inBatch bounds it in
// any batch the pool builds, alone is its exact encoding alone in a batch
// (deltas of 1 byte each: what the broker counts against
// max.message.bytes). inBatch gives the offset and timestamp deltas 10
// bytes together: an offset delta takes at most 3 (a batch of up to 2^20
// records, which any batch under 7 MiB is) and a timestamp delta at most 7
// (the timestamps the pool accepts lie between 1970 and 2262). For the
// legacy message set the two sizes are the same.
func (p *ProducerPool) recordSizes(key, value []byte, hdrs []sarama.RecordHeader) (inBatch, alone int) {
	if !p.set.version.IsAtLeast(sarama.V0_11_0_0) {
		n := legacyEntryV0
		if p.set.version.IsAtLeast(sarama.V0_10_0_0) {
			n = legacyEntryV1
		}
		n += len(key) + len(value)
		return n, n
	}
	body := 1 + recordBody(key, value, hdrs) // attributes; the deltas are added below
	in, one := body+10, body+2
	return varintLen(int64(in)) + in, varintLen(int64(one)) + one
}

// varintLen is the length of v as a zig-zag varint.
func varintLen(v int64) int {
	u := uint64(v<<1) ^ uint64(v>>63)
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

func varbytesLen(b []byte) int {
	if b == nil {
		return 1 // -1
	}
	return varintLen(int64(len(b))) + len(b)
}

// invalid is an ErrInvalidMessage for what the pool's checks refused.
func invalid(why string) error {
	return &sendError{class: ErrInvalidMessage, what: why}
}

// withdraw is called by a caller that stops waiting: it reports whether the
// record was still queued, in which case it is never sent.
func (r *record) withdraw() bool {
	return r.state.CompareAndSwap(stQueued, stWithdrawn)
}

// self is r as a one-record slice, without an allocation.
func (r *record) self() []*record {
	r.one[0] = r
	return r.one[:]
}
