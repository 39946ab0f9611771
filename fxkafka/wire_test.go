package fxkafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// wireBatch is a batch of records made from msgs, as the pool makes them,
// for partition id of topic.
func wireBatch(t *testing.T, p *ProducerPool, topic string, id int32, msgs ...*sarama.ProducerMessage) *batch {
	t.Helper()
	b := &batch{ps: &partState{topic: &topicState{name: topic}, id: id}, seq: 17}
	for _, m := range msgs {
		m.Topic = topic
		r, err := p.newRecord(m)
		require.NoError(t, err)
		b.recs = append(b.recs, r)
		b.bytes += r.size
	}
	return b
}

// wireMessages are messages over every field's edge: nil and empty keys
// and values, headers with nil values, timestamps earlier than the first,
// sub-millisecond and years later.
func wireMessages() []*sarama.ProducerMessage {
	first := time.UnixMilli(1_700_000_000_123)
	msgs := []*sarama.ProducerMessage{
		{Value: sarama.StringEncoder("v"), Timestamp: first},
		{Key: sarama.ByteEncoder{}, Value: sarama.ByteEncoder{}, Timestamp: first.Add(999 * time.Microsecond)},
		{Key: sarama.StringEncoder("key"), Timestamp: first.Add(-1500 * time.Millisecond)},
		{Key: sarama.StringEncoder("k"), Value: sarama.ByteEncoder(bytes.Repeat([]byte("x"), 300)), Timestamp: first.Add(3 * 365 * 24 * time.Hour),
			Headers: []sarama.RecordHeader{{Key: []byte("h1"), Value: []byte("one")}, {Key: []byte("h2")}, {Key: []byte{}, Value: []byte{}}}},
		{Value: sarama.ByteEncoder(bytes.Repeat([]byte("y"), 70_000)), Timestamp: first.Add(time.Millisecond)},
	}
	for i := range 300 {
		msgs = append(msgs, &sarama.ProducerMessage{Key: sarama.StringEncoder(fmt.Sprint(i % 5)), Value: sarama.StringEncoder("value"), Timestamp: first.Add(time.Duration(i) * time.Millisecond)})
	}
	return msgs
}

// TestThePoolWritesProduceRequestsAsSaramaDoes holds the produce requests
// the pool writes on its own connections to sarama's, byte for byte, for a
// batch of records over every field's edge: plain, idempotent (producer
// id, epoch, sequence) and transactional; and checks that a retry writes
// the same request.
func TestThePoolWritesProduceRequestsAsSaramaDoes(t *testing.T) {
	p := newTestPool(t, testConfig("127.0.0.1:1"))
	for _, tc := range []struct {
		name       string
		idempotent bool
		txnID      string
	}{
		{"plain", false, ""},
		{"idempotent", true, ""},
		{"transactional", true, "txn-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := p.set
			set.acks, set.ackTimeout, set.version = sarama.WaitForAll, 1500*time.Millisecond, sarama.V2_4_0_0
			pr := &producer{set: &set, idempotent: tc.idempotent, txnID: tc.txnID, lanes: []*lane{{pid: 42, epoch: 3}}}
			b := wireBatch(t, p, "t", 5, wireMessages()...)
			req := &sarama.ProduceRequest{RequiredAcks: set.acks, Timeout: 1500, Version: maxWireProduceVersion}
			if tc.txnID != "" {
				req.TransactionalID = &tc.txnID
			}
			req.AddBatch("t", 5, b.recordBatch(pr))
			want := saramaRequest(t, req)

			w := &wire{version: maxWireProduceVersion, clientID: sarama.NewConfig().ClientID}
			got := w.appendHeader(nil, apiKeyProduce, w.version, 0)
			got = pr.appendProduceBody(got, []*batch{b})
			require.Equal(t, len(want), len(got)-4, "request sizes differ")
			require.True(t, bytes.Equal(want, got[4:]), "the pool's request differs from sarama's")

			pr.lanes[0].pid, pr.lanes[0].epoch = 7, 9 // a retry keeps the first attempt's
			again := pr.appendProduceBody(w.appendHeader(nil, apiKeyProduce, w.version, 0), []*batch{b})
			require.True(t, bytes.Equal(got, again), "a retry's request differs")
		})
	}
}

// TestAProduceRequestCarriesEachTopicOnce: batches of several topics and
// partitions, in any order, make a request that lists each topic once
// with all its partitions, every batch whole (checked by franz-go's
// decoder).
func TestAProduceRequestCarriesEachTopicOnce(t *testing.T) {
	p := newTestPool(t, testConfig("127.0.0.1:1"))
	set := p.set
	set.acks, set.ackTimeout = sarama.WaitForLocal, time.Second
	pr := &producer{set: &set, lanes: []*lane{{}}}
	m := func(v string) *sarama.ProducerMessage {
		return &sarama.ProducerMessage{Value: sarama.StringEncoder(v), Timestamp: time.UnixMilli(1_700_000_000_000)}
	}
	batches := []*batch{
		wireBatch(t, p, "a", 0, m("a0"), m("a0'")),
		wireBatch(t, p, "b", 3, m("b3")),
		wireBatch(t, p, "a", 2, m("a2")),
		wireBatch(t, p, "c", 1, m("c1")),
		wireBatch(t, p, "b", 0, m("b0")),
	}
	body := pr.appendProduceBody(nil, batches)
	req := kmsg.NewPtrProduceRequest()
	req.Version = maxWireProduceVersion
	require.NoError(t, req.ReadFrom(body))
	assert.Nil(t, req.TransactionID)
	assert.EqualValues(t, sarama.WaitForLocal, req.Acks)
	assert.EqualValues(t, 1000, req.TimeoutMillis)
	got := map[string][]string{}
	var order []string
	for _, tp := range req.Topics {
		order = append(order, tp.Topic)
		for _, part := range tp.Partitions {
			var rb kmsg.RecordBatch
			require.NoError(t, rb.ReadFrom(part.Records))
			assert.Len(t, part.Records, int(rb.Length)+12, "the batch fills its bytes")
			recs := rb.NumRecords
			got[tp.Topic] = append(got[tp.Topic], fmt.Sprintf("%d:%d", part.Partition, recs))
		}
	}
	assert.Equal(t, []string{"a", "b", "c"}, order, "each topic once, in the order of its first batch")
	assert.Equal(t, map[string][]string{"a": {"0:2", "2:1"}, "b": {"3:1", "0:1"}, "c": {"1:1"}}, got)
}

// TestTheWireDecodesProduceResponsesAsSaramaDoes decodes answers of every
// produce version the pool sends, written by franz-go's encoder: offsets,
// error codes, log append and start offsets, and (version 8) the records
// the broker refused with its message.
func TestTheWireDecodesProduceResponsesAsSaramaDoes(t *testing.T) {
	for v := int16(3); v <= maxWireProduceVersion; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			resp := kmsg.NewPtrProduceResponse()
			resp.Version = v
			resp.ThrottleMillis = 25
			msg := "record 1 is bad"
			for _, topic := range []string{"a", "b"} {
				tp := kmsg.NewProduceResponseTopic()
				tp.Topic = topic
				for id := int32(0); id < 2; id++ {
					part := kmsg.NewProduceResponseTopicPartition()
					part.Partition = id
					part.BaseOffset = 100 + int64(id)
					part.LogAppendTime = -1
					part.LogStartOffset = 7
					if topic == "b" && id == 1 {
						part.ErrorCode = int16(sarama.ErrInvalidRecord)
						part.BaseOffset = -1
						part.LogAppendTime = 1_700_000_000_000
						part.ErrorMessage = &msg
						part.ErrorRecords = []kmsg.ProduceResponseTopicPartitionErrorRecord{{RelativeOffset: 1, ErrorMessage: &msg}}
					}
					tp.Partitions = append(tp.Partitions, part)
				}
				resp.Topics = append(resp.Topics, tp)
			}
			got, err := decodeProduceResponse(resp.AppendTo(nil), v)
			require.NoError(t, err)
			assert.Equal(t, 25*time.Millisecond, got.ThrottleTime)
			require.Len(t, got.Blocks, 2)
			ok := got.GetBlock("a", 1)
			require.NotNil(t, ok)
			assert.Equal(t, sarama.ErrNoError, ok.Err)
			assert.EqualValues(t, 101, ok.Offset)
			assert.True(t, ok.Timestamp.IsZero(), "no log append time")
			bad := got.GetBlock("b", 1)
			require.NotNil(t, bad)
			assert.Equal(t, sarama.ErrInvalidRecord, bad.Err)
			assert.EqualValues(t, -1, bad.Offset)
			assert.Equal(t, time.UnixMilli(1_700_000_000_000), bad.Timestamp)
			if v >= 5 {
				assert.EqualValues(t, 7, bad.StartOffset)
			}
			if v >= 8 {
				require.NotNil(t, bad.ErrorMessage)
				assert.Equal(t, msg, *bad.ErrorMessage)
				require.Len(t, bad.RecordErrors, 1)
				assert.EqualValues(t, 1, bad.RecordErrors[0].BatchIndex)
				assert.Equal(t, &msg, bad.RecordErrors[0].BatchIndexErrorMessage)
			} else {
				assert.Nil(t, bad.ErrorMessage)
				assert.Empty(t, bad.RecordErrors)
			}
		})
	}
}

// TestATruncatedProduceResponseIsAnError: an answer cut anywhere fails to
// decode instead of yielding blocks read past its end.
func TestATruncatedProduceResponseIsAnError(t *testing.T) {
	resp := kmsg.NewPtrProduceResponse()
	resp.Version = maxWireProduceVersion
	tp := kmsg.NewProduceResponseTopic()
	tp.Topic = "a"
	tp.Partitions = append(tp.Partitions, kmsg.NewProduceResponseTopicPartition())
	resp.Topics = append(resp.Topics, tp)
	full := resp.AppendTo(nil)
	_, err := decodeProduceResponse(full, maxWireProduceVersion)
	require.NoError(t, err)
	for n := range len(full) {
		_, err := decodeProduceResponse(full[:n], maxWireProduceVersion)
		require.Error(t, err, "cut at %d of %d bytes", n, len(full))
	}
}

// TestTheWireTakesTheBrokersProduceVersionsOrNone: a pool whose sarama
// config skips ApiVersions still sends (at the version its Config.Version
// gives), and one that asks sends at most what the broker takes.
func TestTheWireTakesTheBrokersProduceVersionsOrNone(t *testing.T) {
	checkLeaks(t)
	c, tl := startTamperBroker(t)
	for _, ask := range []bool{true, false} {
		t.Run(fmt.Sprintf("ApiVersionsRequest=%v", ask), func(t *testing.T) {
			cfg := testConfig(c.ListenAddrs()...)
			cfg.Version = "2.1.0" // produce v7: below the wire's v8, and what the broker takes
			p := newTestPool(t, cfg, WithSaramaConfig(func(sc *sarama.Config) { sc.ApiVersionsRequest = ask }))
			require.True(t, wireUsable(&p.set, p.base.config), "the pool writes its own requests")
			tl.produceVersion.Store(-1)
			_, _, err := p.SendMessage(context.Background(), msg("v"))
			require.NoError(t, err)
			assert.EqualValues(t, 7, tl.produceVersion.Load(), "the version Config.Version gives, asked or not")
		})
	}
}

// enteredConn signals each Write as it begins.
type enteredConn struct {
	net.Conn
	entered chan struct{}
}

func (c *enteredConn) Write(b []byte) (int, error) {
	c.entered <- struct{}{}
	return c.Conn.Write(b)
}

// TestAWireFailingUnblocksAWriteInProgress: a connection whose reader
// fails (an answer it cannot read) while a write is blocked on a broker
// that stopped reading closes at once: the write returns, failed and not
// sent, instead of holding the connection until its write timeout.
func TestAWireFailingUnblocksAWriteInProgress(t *testing.T) {
	checkLeaks(t)
	client, broker := net.Pipe() // the broker never reads: a write blocks
	defer broker.Close()
	conn := &enteredConn{Conn: client, entered: make(chan struct{}, 1)}
	w := &wire{conn: conn, writeTimeout: time.Hour, calls: make(chan wireCall, 2), quit: make(chan struct{})}
	wrote := make(chan error, 1)
	var start time.Time
	go func() {
		wrote <- w.produce(func(b []byte) []byte { return append(b, "body"...) }, &start, nil)
	}()
	<-conn.entered
	w.fail(errors.New("unreadable answer"))
	require.Error(t, <-wrote, "the write cut short fails (and so is not sent)")
	assert.Error(t, w.failure(), "the connection is failed: nothing more is written on it")
	assert.Error(t, w.produce(func(b []byte) []byte { return b }, &start, nil), "a write after the failure")
}

// TestAWireThatFailsFailsEveryRequestQueuedOnItInOrder: with three
// requests in flight, an answer the wire cannot read (another
// correlation id) fails the first with that error and then the two behind
// it, each callback once and in the order written, and the reader exits.
func TestAWireThatFailsFailsEveryRequestQueuedOnItInOrder(t *testing.T) {
	checkLeaks(t)
	client, broker := net.Pipe()
	defer broker.Close()
	pr := &producer{stop: make(chan struct{})}
	w := &wire{conn: client, addr: "pipe", readTimeout: time.Hour, writeTimeout: time.Hour, calls: make(chan wireCall, 4), quit: make(chan struct{})}
	pr.wg.Add(1)
	go w.read(pr)
	// The broker reads the three requests whole.
	requests := make(chan struct{}, 3)
	go func() {
		for {
			var size [4]byte
			if _, err := io.ReadFull(broker, size[:]); err != nil {
				return
			}
			if _, err := io.ReadFull(broker, make([]byte, binary.BigEndian.Uint32(size[:]))); err != nil {
				return
			}
			requests <- struct{}{}
		}
	}()
	var mu sync.Mutex
	var order []int
	var errs []error
	var start time.Time
	for i := range 3 {
		require.NoError(t, w.produce(func(b []byte) []byte { return append(b, "body"...) }, &start, func(resp *sarama.ProduceResponse, err error) {
			mu.Lock()
			defer mu.Unlock()
			order = append(order, i)
			errs = append(errs, err)
		}))
		<-requests
	}
	// An answer to correlation id 99 where 0 was asked.
	answer := binary.BigEndian.AppendUint32(nil, 8)
	answer = binary.BigEndian.AppendUint32(answer, 99)
	answer = append(answer, 0, 0, 0, 0)
	_, err := broker.Write(answer[:8])
	require.NoError(t, err)
	pr.wg.Wait() // the reader exits once the wire has failed
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []int{0, 1, 2}, order, "each callback once, in the order written")
	var we *wireError
	for i, err := range errs {
		require.ErrorAs(t, err, &we, "request %d", i)
	}
	assert.Error(t, w.failure())
}
