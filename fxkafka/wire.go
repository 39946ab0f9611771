package fxkafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// The pool writes its own produce requests when it encodes the records
// itself (uncompressed batches) and the connection needs no SASL: a
// connection of its own to each broker, from the producer's dialer (so TLS,
// the framing checks, the stale-connection check and abort all hold), on
// which it writes each request from one buffer it reuses and reads the
// answers in order. Through sarama's Broker every request is encoded
// twice (once to measure it) into a fresh buffer the size of the request,
// the records copied in again: at 0 ms of round trip, with one goroutine
// producing, that buffer was a fifth of the bytes the process allocated.
// Compressed batches, SASL connections (sarama logs in, and logs in again
// when the broker's session ends) and brokers before Kafka 0.11 keep
// sarama's Broker.
//
// The pool sends produce requests of at most version 8 (Kafka 2.4), the
// last before the protocol's flexible encoding: version 9 and later add
// nothing the pool reads (version 10's leader hint aside).
const maxWireProduceVersion = 8

// apiKeyProduce is the Kafka protocol's key of Produce.
const apiKeyProduce = 0

// crc32c is the CRC a record batch carries (Castagnoli).
var crc32c = crc32.MakeTable(crc32.Castagnoli)

// maxKeptWireBuffer bounds the request buffer a connection keeps between
// requests, so that one huge request does not stay pinned.
const maxKeptWireBuffer = 4 << 20

// errWireClosed fails the requests still in flight on a connection the
// pool closed (the producer is shutting down).
var errWireClosed = errors.New("fxkafka: connection closed with the request in flight")

// wireError is an answer the pool could not read as a produce response.
// Like any error that is not a Kafka error code, it makes the sink close
// the connection and open another.
type wireError struct{ msg string }

func (e *wireError) Error() string { return "fxkafka: " + e.msg }

// wire is one connection of a sink's, on which it writes produce requests.
// The sink's goroutine writes; the wire's reader goroutine (owned by the
// producer's wait group) reads the answers in the order written and hands
// each to its callback, as sarama's receiving goroutine does.
type wire struct {
	conn         net.Conn
	addr         string
	version      int16
	clientID     string
	readTimeout  time.Duration
	writeTimeout time.Duration
	calls        chan wireCall // requests written and not yet answered, in order
	quit         chan struct{} // closed by close
	closeOnce    sync.Once

	mu   sync.Mutex // protects following; held across a write
	corr int32
	err  error  // set once the connection failed: every later write returns it
	buf  []byte // the request being written, kept for the next

	rbuf []byte // the answer being read: the reader's alone
}

// wireCall is a request written on a wire, waiting for its answer.
type wireCall struct {
	corr int32
	done func(*sarama.ProduceResponse, error)
}

// wireUsable reports whether a producer's sinks write their own requests
// (see maxWireProduceVersion): uncompressed batches the pool encodes, no
// SASL, and a Kafka version that takes record batches.
func wireUsable(set *settings, conf *sarama.Config) bool {
	return set.codec == sarama.CompressionNone && !conf.Net.SASL.Enable && produceVersion(set.version) >= 3
}

// dialWire opens a connection to addr with the producer's dialer and, as
// sarama does unless told not to, asks the broker which produce versions
// it takes. It starts the wire's reader.
func (pr *producer) dialWire(addr string) (*wire, error) {
	conn, err := pr.dialer.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	w := &wire{
		conn:         conn,
		addr:         addr,
		version:      min(produceVersion(pr.set.version), maxWireProduceVersion),
		clientID:     pr.conf.ClientID,
		readTimeout:  pr.conf.Net.ReadTimeout,
		writeTimeout: pr.conf.Net.WriteTimeout,
		calls:        make(chan wireCall, pr.set.maxInFlight+1),
		quit:         make(chan struct{}),
	}
	if pr.conf.ApiVersionsRequest {
		top, err := w.produceVersions()
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("ask broker %s for its API versions: %w", addr, err)
		}
		if top < 3 {
			_ = conn.Close()
			return nil, fmt.Errorf("fxkafka: broker %s takes produce requests only up to version %d, without record batches: set Config.Version to its Kafka version: %w", addr, top, sarama.ErrUnsupportedVersion)
		}
		w.version = min(w.version, top)
	}
	pr.wg.Add(1)
	go w.read(pr)
	return w, nil
}

// produceVersions sends ApiVersions (version 0, which every broker since
// 0.10 answers) and returns the highest produce version the broker takes.
func (w *wire) produceVersions() (int16, error) {
	req := w.appendHeader(nil, apiKeyAPIVersions, 0, 0) // version 0 has no body
	binary.BigEndian.PutUint32(req, uint32(len(req)-4))
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		return 0, err
	}
	if _, err := w.conn.Write(req); err != nil {
		return 0, err
	}
	body, err := w.readFrame(0)
	if err != nil {
		return 0, err
	}
	d := wireDecoder{b: body}
	code := d.int16()
	n := d.int32()
	top := int16(-1)
	for range max(n, 0) {
		key, _, hi := d.int16(), d.int16(), d.int16()
		if d.err != nil {
			break // a count past the answer's end: stop at its end, not at the count
		}
		if key == apiKeyProduce {
			top = hi
		}
	}
	if d.err != nil {
		return 0, &wireError{fmt.Sprintf("broker %s: unreadable ApiVersions answer: %v", w.addr, d.err)}
	}
	if code != 0 && code != int16(sarama.ErrUnsupportedVersion) {
		return 0, sarama.KError(code)
	}
	if top < 0 {
		return 0, &wireError{fmt.Sprintf("broker %s lists no produce API", w.addr)}
	}
	return top, nil
}

// appendHeader appends a request's length (filled in by the caller once the
// request is whole) and header (version 1: key, version, correlation id,
// client id).
func (w *wire) appendHeader(buf []byte, key, version int16, corr int32) []byte {
	buf = binary.BigEndian.AppendUint32(buf, 0)
	buf = binary.BigEndian.AppendUint16(buf, uint16(key))
	buf = binary.BigEndian.AppendUint16(buf, uint16(version))
	buf = binary.BigEndian.AppendUint32(buf, uint32(corr))
	return appendString(buf, w.clientID)
}

// produce writes one produce request, its body appended by body, and, if
// done is not nil, queues done for its answer. It sets *start as it
// begins to build the request. An error means the request was not sent:
// a write that failed sent nothing the broker can take. Before its first
// byte (a stale connection, the connection already failed) nothing went,
// and after it (a broker that stopped reading, past the write timeout) the
// request went cut short, on a connection closed at once, and a broker
// never reads a frame cut short as a request. sarama's Broker says the
// same of a failed write (AsyncProduce returns its error).
func (w *wire) produce(body func([]byte) []byte, start *time.Time, done func(*sarama.ProduceResponse, error)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	*start = time.Now()
	corr := w.corr
	w.corr++
	buf := w.appendHeader(w.buf[:0], apiKeyProduce, w.version, corr)
	buf = body(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	if cap(buf) <= maxKeptWireBuffer {
		w.buf = buf
	} else {
		w.buf = nil
	}
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.writeTimeout)); err != nil {
		w.failLocked(err)
		return err
	}
	if _, err := w.conn.Write(buf); err != nil {
		w.failLocked(err)
		return err
	}
	if done != nil {
		// Never blocks: the sink keeps at most maxInFlight requests in
		// flight, and the channel holds one more.
		w.calls <- wireCall{corr: corr, done: done}
	}
	return nil
}

// failLocked marks the connection failed and closes it: the reader fails
// what is queued. A failed connection closes at once, as the dialer's abort
// closes one: under TLS a close would first write a close_notify alert,
// which waits up to 5 s on a broker that stopped reading.
func (w *wire) failLocked(err error) {
	if w.err == nil {
		w.err = err
	}
	w.closeConn(err)
}

// closeConn closes the connection for err: at once for a failure, with a
// close (and TLS's close_notify) for errWireClosed, an idle connection the
// sink or the producer's shutdown closes. Safe to call more than once, and
// beside a write or a read, which it makes return.
func (w *wire) closeConn(err error) {
	if tc, ok := w.conn.(*trackedConn); ok && !errors.Is(err, errWireClosed) {
		tc.closeRaw()
		return
	}
	_ = w.conn.Close()
}

// failure is why the connection failed, nil while it has not.
func (w *wire) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// close closes the connection; the reader fails the requests still in
// flight and exits.
func (w *wire) close() {
	w.closeOnce.Do(func() { close(w.quit) })
	w.fail(errWireClosed)
}

// read is the wire's reader: it takes each answer in the order the requests
// were written and hands it to its callback. It exits when an answer
// fails, the wire is closed, or the producer stops, failing every request
// still queued with the error. (A failed write queues nothing; the wire
// then waits for the sink to close it.)
func (w *wire) read(pr *producer) {
	defer pr.wg.Done()
	for {
		var c wireCall
		select {
		case c = <-w.calls:
		case <-w.quit:
			w.drain(errWireClosed)
			return
		case <-pr.stop:
			w.drain(errWireClosed)
			return
		}
		resp, err := w.readResponse(c.corr)
		if err != nil {
			// Failed before the callback runs: the send it may set off
			// must not go into this connection.
			w.fail(err)
			c.done(nil, err)
			w.drain(err)
			return
		}
		c.done(resp, nil)
	}
}

// fail marks the connection failed with err (unless it failed already)
// and closes it.
func (w *wire) fail(err error) {
	// Closed before taking mu: a write blocked on a broker that stopped
	// reading holds mu until its deadline (Net.WriteTimeout), and the
	// close makes it return now, failed and not sent.
	w.closeConn(err)
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// drain fails the connection with err, then every request queued on it.
// Nothing is queued after the failure is set, and everything queued before
// is in the channel.
func (w *wire) drain(err error) {
	w.fail(err)
	for {
		select {
		case c := <-w.calls:
			c.done(nil, err)
		default:
			return
		}
	}
}

// readFrame reads one answer and checks its correlation id, returning the
// rest of it (valid until the next read).
func (w *wire) readFrame(corr int32) ([]byte, error) {
	if err := w.conn.SetReadDeadline(time.Now().Add(w.readTimeout)); err != nil {
		return nil, err
	}
	var head [8]byte
	if _, err := io.ReadFull(w.conn, head[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(head[:4])) - 4 // the dialer refuses lengths below 4; any other connection is checked here
	if n < 0 {
		return nil, &wireError{fmt.Sprintf("broker %s answered a frame of %d bytes, shorter than a correlation id", w.addr, n+4)}
	}
	if got := int32(binary.BigEndian.Uint32(head[4:])); got != corr {
		return nil, &wireError{fmt.Sprintf("broker %s answered correlation id %d, want %d", w.addr, got, corr)}
	}
	if cap(w.rbuf) < n {
		w.rbuf = make([]byte, n)
	}
	body := w.rbuf[:n]
	if _, err := io.ReadFull(w.conn, body); err != nil {
		return nil, err
	}
	if cap(w.rbuf) > maxKeptWireBuffer {
		w.rbuf = nil
	}
	return body, nil
}

// readResponse reads the answer to the produce request corr.
func (w *wire) readResponse(corr int32) (*sarama.ProduceResponse, error) {
	body, err := w.readFrame(corr)
	if err != nil {
		return nil, err
	}
	resp, err := decodeProduceResponse(body, w.version)
	if err != nil {
		return nil, &wireError{fmt.Sprintf("broker %s: unreadable produce answer: %v", w.addr, err)}
	}
	return resp, nil
}

// decodeProduceResponse decodes the body of a produce response of version
// 3 to 8 into sarama's type, as sarama's decoder fills it.
func decodeProduceResponse(body []byte, version int16) (*sarama.ProduceResponse, error) {
	d := wireDecoder{b: body}
	resp := &sarama.ProduceResponse{Version: version}
	topics := d.int32()
	if topics < 0 {
		return nil, errors.New("negative topic count")
	}
	resp.Blocks = make(map[string]map[int32]*sarama.ProduceResponseBlock, min(int(topics), 64))
	for range topics {
		name := d.string()
		parts := d.int32()
		if d.err != nil {
			break
		}
		if parts < 0 {
			return nil, errors.New("negative partition count")
		}
		blocks := make(map[int32]*sarama.ProduceResponseBlock, min(int(parts), 64))
		resp.Blocks[name] = blocks
		for range parts {
			id := d.int32()
			b := &sarama.ProduceResponseBlock{Err: sarama.KError(d.int16()), Offset: d.int64()}
			if millis := d.int64(); millis != -1 {
				b.Timestamp = time.UnixMilli(millis)
			}
			if version >= 5 {
				b.StartOffset = d.int64()
			}
			if version >= 8 {
				n := d.int32()
				for range max(n, 0) {
					re := sarama.ProduceResponseRecordError{BatchIndex: d.int32(), BatchIndexErrorMessage: d.nullableString()}
					if d.err != nil {
						break
					}
					b.RecordErrors = append(b.RecordErrors, re)
				}
				b.ErrorMessage = d.nullableString()
			}
			if d.err != nil {
				break
			}
			blocks[id] = b
		}
	}
	resp.ThrottleTime = time.Duration(d.int32()) * time.Millisecond
	if d.err != nil {
		return nil, d.err
	}
	return resp, nil
}

// wireDecoder reads Kafka's fixed-width encoding; the first short read
// sets err, and every read after it returns zero.
type wireDecoder struct {
	b   []byte
	err error
}

func (d *wireDecoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b) < n {
		d.err = io.ErrUnexpectedEOF
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *wireDecoder) int16() int16 {
	if v := d.take(2); v != nil {
		return int16(binary.BigEndian.Uint16(v))
	}
	return 0
}

func (d *wireDecoder) int32() int32 {
	if v := d.take(4); v != nil {
		return int32(binary.BigEndian.Uint32(v))
	}
	return 0
}

func (d *wireDecoder) int64() int64 {
	if v := d.take(8); v != nil {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func (d *wireDecoder) string() string {
	n := d.int16()
	return string(d.take(int(n)))
}

func (d *wireDecoder) nullableString() *string {
	n := d.int16()
	if n < 0 || d.err != nil {
		return nil
	}
	s := string(d.take(int(n)))
	if d.err != nil {
		return nil
	}
	return &s
}

// appendString appends s as a Kafka string (an int16 length, then s).
func appendString(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(s)))
	return append(buf, s...)
}

// appendProduceBody appends the body of a produce request (version 3 to 8)
// carrying batches: the transactional id, acks, timeout, and each topic's
// batches, encoded from their records.
func (pr *producer) appendProduceBody(buf []byte, batches []*batch) []byte {
	if pr.txnID != "" {
		buf = appendString(buf, pr.txnID)
	} else {
		buf = binary.BigEndian.AppendUint16(buf, 0xffff) // null
	}
	buf = binary.BigEndian.AppendUint16(buf, uint16(pr.set.acks))
	buf = binary.BigEndian.AppendUint32(buf, uint32(int32(pr.set.ackTimeout/time.Millisecond)))
	// Topics, each once, in the order their first batch comes.
	topics := 0
	for i := range batches {
		if firstOfTopic(batches, i) {
			topics++
		}
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(topics))
	for i, b := range batches {
		if !firstOfTopic(batches, i) {
			continue
		}
		name := b.ps.topic.name
		buf = appendString(buf, name)
		n := 0
		for _, o := range batches[i:] {
			if o.ps.topic.name == name {
				n++
			}
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(n))
		for _, o := range batches[i:] {
			if o.ps.topic.name == name {
				buf = binary.BigEndian.AppendUint32(buf, uint32(o.ps.id))
				buf = o.appendWire(buf, pr)
			}
		}
	}
	return buf
}

// firstOfTopic reports whether batches[i] is the first of its topic's.
func firstOfTopic(batches []*batch, i int) bool {
	name := batches[i].ps.topic.name
	for _, b := range batches[:i] {
		if b.ps.topic.name == name {
			return false
		}
	}
	return true
}

// Offsets in a record batch (magic 2) from its start.
const (
	batchLengthAt = 8  // after the base offset
	batchCRCAt    = 17 // after the length, the leader epoch and the magic byte
	batchAttrsAt  = 21 // what the CRC covers starts here
)

// appendWire appends b as a produce request carries it: its size, then the
// record batch, byte for byte what sarama writes for the batch recordBatch
// makes. The producer id, epoch and first timestamp are fixed on the first
// attempt, so a retry sends the same batch.
func (b *batch) appendWire(buf []byte, pr *producer) []byte {
	if !b.pidFixed {
		b.pidFixed = true
		b.pid, b.epoch = -1, -1
		if pr.idempotent {
			l := pr.laneAt(b.lane)
			b.pid, b.epoch = l.pid, l.epoch
		}
	}
	sizeAt := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, 0) // the batch's size, filled in below
	start := len(buf)
	first := b.recs[0].ts
	maxTS := first
	for _, r := range b.recs[1:] {
		if r.ts.After(maxTS) {
			maxTS = r.ts
		}
	}
	seq := int32(-1)
	if pr.idempotent {
		seq = b.seq
	}
	attrs := uint16(0)
	if pr.txnID != "" {
		attrs |= 0x10 // transactional
	}
	buf = binary.BigEndian.AppendUint64(buf, 0)                         // base offset
	buf = binary.BigEndian.AppendUint32(buf, 0)                         // length, filled in below
	buf = binary.BigEndian.AppendUint32(buf, 0)                         // partition leader epoch, as sarama sends it
	buf = append(buf, 2)                                                // magic
	buf = binary.BigEndian.AppendUint32(buf, 0)                         // CRC, filled in below
	buf = binary.BigEndian.AppendUint16(buf, attrs)                     // attributes
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b.recs)-1))     // last offset delta
	buf = binary.BigEndian.AppendUint64(buf, uint64(wireMillis(first))) // first timestamp
	buf = binary.BigEndian.AppendUint64(buf, uint64(wireMillis(maxTS))) // max timestamp
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.pid))
	buf = binary.BigEndian.AppendUint16(buf, uint16(b.epoch))
	buf = binary.BigEndian.AppendUint32(buf, uint32(seq))
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(b.recs)))
	for i, r := range b.recs {
		buf = appendRecord(buf, r.key(), r.value(), r.hdrs, int64(i), millisAfter(r.ts, first))
	}
	binary.BigEndian.PutUint32(buf[sizeAt:], uint32(len(buf)-start))
	binary.BigEndian.PutUint32(buf[start+batchLengthAt:], uint32(len(buf)-start-12))
	binary.BigEndian.PutUint32(buf[start+batchCRCAt:], crc32.Checksum(buf[start+batchAttrsAt:], crc32c))
	return buf
}

// wireMillis is t as a record batch stores it, as sarama's encoder writes
// it: milliseconds since the epoch, -1 for the zero time.
func wireMillis(t time.Time) int64 {
	if t.Before(time.Unix(0, 0)) {
		return -1
	}
	return t.UnixNano() / int64(time.Millisecond)
}
