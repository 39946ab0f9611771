package fxkafka

import (
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"

	"github.com/IBM/sarama"
)

// The pool encodes an uncompressed batch's records itself. On its own
// connections (wire.go) it writes them straight into the request; where
// sarama's Broker writes the request (SASL connections), it encodes them in
// one pass into a buffer it recycles, and hands sarama the bytes. Sarama's own path
// encodes every record twice (once to measure, once to write) into a fresh
// buffer per batch, which it then copies into the request: at 0 ms of
// round trip, with one goroutine producing, the two passes were a tenth of
// the whole process's CPU and the buffer a fifth of the bytes it allocated.
//
// Sarama keeps a batch's encoded records in RecordBatch fields it does not
// export (compressedRecords, and recordsLen for its compression-ratio
// metric); it writes them as they are when they are set, and counts the
// records by len(Records). encodedRecords finds those fields once, by
// name and type, and if a sarama release renames or retypes them the pool
// leaves encoding to sarama, as it does for compressed batches
// (TestThePoolEncodesRecordsAsSaramaDoes holds the pinned release to the
// fast path and checks its bytes against sarama's).
var encodedRecords = findEncodedRecords()

// encodedRecordsFields is where sarama.RecordBatch keeps encoded records,
// and the shared placeholders a pool-encoded batch counts its records by.
type encodedRecordsFields struct {
	ok          bool
	raw, rawLen uintptr          // offsets of compressedRecords and recordsLen
	mu          sync.Mutex       // protects following
	nilRecords  []*sarama.Record // shared, never written: only its length is read
}

func findEncodedRecords() *encodedRecordsFields {
	f := new(encodedRecordsFields)
	t := reflect.TypeFor[sarama.RecordBatch]()
	raw, ok1 := t.FieldByName("compressedRecords")
	n, ok2 := t.FieldByName("recordsLen")
	recs, ok3 := t.FieldByName("Records")
	f.ok = ok1 && ok2 && ok3 &&
		raw.Type == reflect.TypeFor[[]byte]() &&
		n.Type == reflect.TypeFor[int]() &&
		recs.Type == reflect.TypeFor[[]*sarama.Record]()
	f.raw, f.rawLen = raw.Offset, n.Offset
	return f
}

// set makes rb carry raw, the encoding of n records, as if sarama had
// encoded them.
func (f *encodedRecordsFields) set(rb *sarama.RecordBatch, raw []byte, n int) {
	*(*[]byte)(unsafe.Add(unsafe.Pointer(rb), f.raw)) = raw
	*(*int)(unsafe.Add(unsafe.Pointer(rb), f.rawLen)) = len(raw)
	rb.Records = f.placeholders(n)
}

// placeholders is a slice of n nil records, shared by every batch of up to
// maxSharedPlaceholders records (a larger one gets its own, so that one
// huge batch does not pin a huge slice): sarama reads only its length once
// the records are encoded.
func (f *encodedRecordsFields) placeholders(n int) []*sarama.Record {
	if n > maxSharedPlaceholders {
		return make([]*sarama.Record, n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nilRecords) < n {
		f.nilRecords = make([]*sarama.Record, min(max(n, 2*len(f.nilRecords), 1024), maxSharedPlaceholders))
	}
	return f.nilRecords[:n:n]
}

// maxSharedPlaceholders bounds the shared placeholders: 512 KiB of nil
// pointers (a batch of the default MaxBatchBytes holds more records only if
// they average under 16 bytes).
const maxSharedPlaceholders = 1 << 16

// recordsBufPool recycles the buffers of batches the broker acknowledged.
var recordsBufPool sync.Pool // of *[]byte

// maxPooledRecordsBuf bounds the buffers kept for reuse, so that one huge
// batch does not stay pinned.
const maxPooledRecordsBuf = 4 << 20

func getRecordsBuf(size int) []byte {
	if v, ok := recordsBufPool.Get().(*[]byte); ok && cap(*v) >= size {
		return (*v)[:0]
	}
	return make([]byte, 0, size)
}

func putRecordsBuf(b []byte) {
	if !poolable(b) {
		return
	}
	b = b[:0]
	recordsBufPool.Put(&b)
}

// poolable reports whether b is worth keeping for another batch.
func poolable(b []byte) bool { return cap(b) > 0 && cap(b) <= maxPooledRecordsBuf }

// appendRecord appends the encoding of a record of key, value and hdrs in
// a record batch (magic 2) with the offset delta and timestamp delta (in
// milliseconds) given, byte for byte what sarama's Record.encode writes
// for such a record with those deltas and no attributes (a record's
// attributes are unused in magic 2).
func appendRecord(buf, key, value []byte, hdrs []sarama.RecordHeader, offsetDelta, ts int64) []byte {
	body := 1 + varintLen(ts) + varintLen(offsetDelta) + recordBody(key, value, hdrs)
	buf = binary.AppendVarint(buf, int64(body))
	buf = append(buf, 0) // attributes
	buf = binary.AppendVarint(buf, ts)
	buf = binary.AppendVarint(buf, offsetDelta)
	buf = appendVarbytes(buf, key)
	buf = appendVarbytes(buf, value)
	buf = binary.AppendVarint(buf, int64(len(hdrs)))
	for _, h := range hdrs {
		buf = appendVarbytes(buf, h.Key)
		buf = appendVarbytes(buf, h.Value)
	}
	return buf
}

// recordBody is the bytes of a record's key, value and headers in a
// record batch (magic 2), with their lengths: all of its body but the
// attributes and the deltas.
func recordBody(key, value []byte, hdrs []sarama.RecordHeader) int {
	n := varbytesLen(key) + varbytesLen(value) + varintLen(int64(len(hdrs)))
	for _, h := range hdrs {
		n += varbytesLen(h.Key) + varbytesLen(h.Value)
	}
	return n
}

// appendVarbytes appends b with its varint length, -1 for nil.
func appendVarbytes(buf, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(buf, -1)
	}
	buf = binary.AppendVarint(buf, int64(len(b)))
	return append(buf, b...)
}

// recycle frees the buffer of b's encoded records once the broker has
// stored b: nothing sends b again. A batch that ends any other way leaves
// its buffer to the garbage collector.
func (b *batch) recycle() {
	if b.encoded != nil {
		putRecordsBuf(b.encoded)
		b.encoded, b.rb = nil, nil
	}
}
