package fxkafka

import (
	"encoding/binary"
	"reflect"
	"sync"
	"unsafe"

	"github.com/IBM/sarama"
)

// The pool encodes an uncompressed batch's records itself, in one pass into
// a buffer it recycles, and hands sarama the bytes. Sarama's own path
// encodes every record twice (once to measure, once to write) into a fresh
// buffer per request, which it then copies into the request: at 0 ms of
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

type encodedRecordsFields struct {
	ok           bool
	raw, rawLen  uintptr // offsets of compressedRecords and recordsLen
	nilRecordsMu sync.Mutex
	nilRecords   []*sarama.Record // shared, never written: only its length is read
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

// placeholders is a slice of n nil records, shared by every batch: sarama
// reads only its length once the records are encoded.
func (f *encodedRecordsFields) placeholders(n int) []*sarama.Record {
	f.nilRecordsMu.Lock()
	defer f.nilRecordsMu.Unlock()
	if len(f.nilRecords) < n {
		f.nilRecords = make([]*sarama.Record, max(n, 2*len(f.nilRecords), 1024))
	}
	return f.nilRecords[:n:n]
}

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
	if cap(b) == 0 || cap(b) > maxPooledRecordsBuf {
		return
	}
	b = b[:0]
	recordsBufPool.Put(&b)
}

// appendRecord appends r's encoding in a record batch (magic 2), with its
// offset delta and its timestamp delta in milliseconds (tsDeltaMillis),
// exactly as sarama's Record.encode writes it.
func appendRecord(buf []byte, r *sarama.Record, offsetDelta, tsDeltaMillis int64) []byte {
	ts := tsDeltaMillis
	body := 1 + varintLen(ts) + varintLen(offsetDelta) +
		varbytesLen(r.Key) + varbytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		body += varbytesLen(h.Key) + varbytesLen(h.Value)
	}
	buf = binary.AppendVarint(buf, int64(body))
	buf = append(buf, 0) // attributes
	buf = binary.AppendVarint(buf, ts)
	buf = binary.AppendVarint(buf, offsetDelta)
	buf = appendVarbytes(buf, r.Key)
	buf = appendVarbytes(buf, r.Value)
	buf = binary.AppendVarint(buf, int64(len(r.Headers)))
	for _, h := range r.Headers {
		buf = appendVarbytes(buf, h.Key)
		buf = appendVarbytes(buf, h.Value)
	}
	return buf
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
