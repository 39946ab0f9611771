package fxkafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"go.fxkafka.dev/internal/nopmetrics"
)

// wireRequest is the bytes of the produce request a sarama Broker writes
// for a batch of records on partition 0 of topic "t": what the broker
// receives, from the request header on.
func wireRequest(t *testing.T, rb *sarama.RecordBatch) []byte {
	t.Helper()
	req := &sarama.ProduceRequest{RequiredAcks: sarama.NoResponse, Timeout: 1000, Version: 10}
	req.AddBatch("t", 0, rb)
	return saramaRequest(t, req)
}

// saramaRequest is the bytes a sarama Broker writes for req, from the
// request header on (correlation id 0, client id "sarama").
func saramaRequest(t *testing.T, req *sarama.ProduceRequest) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	conf := sarama.NewConfig()
	conf.Version = sarama.V3_7_0_0
	conf.ApiVersionsRequest = false // the first request written is the produce request
	conf.MetricRegistry = nopmetrics.Registry{}
	br := sarama.NewBroker(ln.Addr().String())
	require.NoError(t, br.Open(conf))
	defer br.Close()
	conn, err := ln.Accept()
	require.NoError(t, err)
	defer conn.Close()
	var cb sarama.ProduceCallback
	if req.RequiredAcks != sarama.NoResponse {
		cb = func(*sarama.ProduceResponse, error) {} // the connection closes unanswered
	}
	require.NoError(t, br.AsyncProduce(req, cb))
	var size [4]byte
	_, err = io.ReadFull(conn, size[:])
	require.NoError(t, err)
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	_, err = io.ReadFull(conn, body)
	require.NoError(t, err)
	return body
}

// TestThePoolEncodesRecordsAsSaramaDoes holds the pool's own record
// encoding to sarama's, byte for byte on the wire, over records that
// exercise every field's edge: nil and empty keys and values, headers with
// nil values, timestamp deltas negative, sub-millisecond and years long,
// and enough records for offset deltas of several bytes. It also holds the
// pinned sarama release to the fast path: if a release renames the fields
// the pool writes, this fails instead of quietly slowing every send.
func TestThePoolEncodesRecordsAsSaramaDoes(t *testing.T) {
	require.True(t, encodedRecords.ok, "sarama.RecordBatch no longer has the fields the pool's encoder fills (compressedRecords []byte, recordsLen int)")

	first := time.UnixMilli(1_700_000_000_123)
	type rec struct {
		r  sarama.Record
		ts time.Time
	}
	var recs []rec
	add := func(key, value []byte, hdrs []*sarama.RecordHeader, ts time.Time) {
		recs = append(recs, rec{r: sarama.Record{Key: key, Value: value, Headers: hdrs}, ts: ts})
	}
	add(nil, []byte("v"), nil, first)
	add([]byte{}, []byte{}, nil, first.Add(999*time.Microsecond)) // rounds down to the same millisecond
	add([]byte("key"), nil, nil, first.Add(-1500*time.Millisecond))
	add([]byte("k"), bytes.Repeat([]byte("x"), 300), []*sarama.RecordHeader{
		{Key: []byte("h1"), Value: []byte("one")},
		{Key: []byte("h2"), Value: nil},
		{Key: []byte{}, Value: []byte{}},
	}, first.Add(3*365*24*time.Hour))
	add(nil, bytes.Repeat([]byte("y"), 70_000), nil, first.Add(time.Millisecond))
	for i := range 300 {
		add([]byte(strings.Repeat("k", i%5)), []byte("value"), nil, first.Add(time.Duration(i)*time.Millisecond))
	}

	batch := func() *sarama.RecordBatch {
		return &sarama.RecordBatch{
			Version: 2, FirstTimestamp: first, MaxTimestamp: first.Add(3 * 365 * 24 * time.Hour),
			ProducerID: 42, ProducerEpoch: 3, FirstSequence: 17,
			LastOffsetDelta: int32(len(recs) - 1),
		}
	}
	theirs := batch()
	for i := range recs {
		r := &recs[i].r
		r.OffsetDelta, r.TimestampDelta = int64(i), time.Duration(millisAfter(recs[i].ts, first))*time.Millisecond
		theirs.Records = append(theirs.Records, r)
	}
	ours := batch()
	var raw []byte
	for i := range recs {
		raw = appendRecord(raw, recs[i].r.Key, recs[i].r.Value, headerValues(recs[i].r.Headers), int64(i), millisAfter(recs[i].ts, first))
	}
	encodedRecords.set(ours, raw, len(recs))

	want := wireRequest(t, theirs)
	got := wireRequest(t, ours)
	require.Equal(t, len(want), len(got), "request sizes differ")
	require.True(t, bytes.Equal(want, got), "the pool's encoding differs from sarama's")
	// Sent again, as a retry is, the batch writes the same bytes.
	require.True(t, bytes.Equal(want, wireRequest(t, ours)), "a retry's encoding differs")
}

// TestPlaceholderRecordsAreSharedAndSized checks that the record slice a
// pool-encoded batch gives sarama has the batch's length, grows when a
// batch outgrows it, and costs no allocation per batch.
func TestPlaceholderRecordsAreSharedAndSized(t *testing.T) {
	f := &encodedRecordsFields{}
	a := f.placeholders(3)
	require.Len(t, a, 3)
	require.Equal(t, 3, cap(a), "a batch must not append into the shared slice")
	big := f.placeholders(5000)
	require.Len(t, big, 5000)
	for _, r := range big {
		require.Nil(t, r)
	}
	require.Zero(t, testing.AllocsPerRun(100, func() { f.placeholders(4000) }))
	huge := f.placeholders(maxSharedPlaceholders + 1)
	require.Len(t, huge, maxSharedPlaceholders+1)
	require.LessOrEqual(t, len(f.nilRecords), maxSharedPlaceholders, "a huge batch must not grow the shared slice")
	require.Len(t, f.placeholders(maxSharedPlaceholders), maxSharedPlaceholders)
}

// TestAnAcknowledgedBatchRecyclesItsBuffer checks that a recycled batch's
// encoding buffer comes back for the next batch, and that a batch too
// large to keep is left to the garbage collector.
func TestAnAcknowledgedBatchRecyclesItsBuffer(t *testing.T) {
	b := &batch{encoded: make([]byte, 10, 1<<16), rb: &sarama.RecordBatch{}}
	b.recycle()
	require.Nil(t, b.encoded)
	require.Nil(t, b.rb)
	var got []byte
	for range 10 { // sync.Pool may drop an entry; it keeps most
		if got = getRecordsBuf(100); cap(got) == 1<<16 {
			break
		}
		putRecordsBuf(make([]byte, 0, 1<<16))
	}
	require.Equal(t, 1<<16, cap(got))
	require.Empty(t, got)

	require.True(t, poolable(make([]byte, 0, maxPooledRecordsBuf)))
	require.False(t, poolable(make([]byte, 0, maxPooledRecordsBuf+1)), "a huge batch's buffer must not stay pinned")
	require.False(t, poolable(nil))
}

// TestARetriedBatchSendsTheSameBytes refuses a batch once with a retriable
// error and, while its retry waits, sends other batches through the pool,
// so that its buffer, had it been recycled then, would be reused and
// overwritten: the retry's records are byte for byte the first attempt's,
// and what the broker stores is what was sent.
func TestARetriedBatchSendsTheSameBytes(t *testing.T) {
	checkLeaks(t)
	const other = "other-topic"
	c, err := kfake.NewCluster(kfake.SeedTopics(1, topic, other))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	attempts, refused := refuseFirstAttempt(t, c, kerr.NotEnoughReplicas.Code)
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Retry.Backoff = 200 * time.Millisecond // room for the other sends
	}))
	ctx := context.Background()
	var msgs []*sarama.ProducerMessage
	for i := range 50 {
		msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(value(i)), Value: sarama.StringEncoder(value(i)),
			Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(value(i))}}})
	}
	sent := make(chan error, 1)
	go func() { sent <- p.SendMessages(ctx, msgs) }()
	<-refused
	for i := range 20 {
		_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: other, Value: sarama.ByteEncoder(bytes.Repeat([]byte{byte(i)}, 2000))})
		require.NoError(t, err)
	}
	require.NoError(t, <-sent)

	// The messages may have left in more than one batch (the sink can cut
	// before the call has placed them all), but they share a lane, which
	// sends a batch to retry before anything else: the second attempt is
	// the first one's retry.
	tries := attempts()
	require.GreaterOrEqual(t, len(tries), 2)
	require.True(t, bytes.Equal(tries[0], tries[1]), "the retry sent other bytes than the first attempt")
	got := map[string]string{}
	for _, r := range readRecords(t, c, topic) {
		require.Len(t, r.Headers, 1)
		got[string(r.Key)] = string(r.Value) + "/" + string(r.Headers[0].Value)
	}
	require.Len(t, got, len(msgs))
	for i := range msgs {
		require.Equal(t, value(i)+"/"+value(i), got[value(i)])
	}
}

// headerValues is hdrs as the pool's records hold them.
func headerValues(hdrs []*sarama.RecordHeader) []sarama.RecordHeader {
	var vs []sarama.RecordHeader
	for _, h := range hdrs {
		vs = append(vs, *h)
	}
	return vs
}

// refuseFirstAttempt makes c refuse the first attempt of the batch to topic
// with code, and keeps the records of every attempt of it: attempts
// returns them so far; refused is closed once the first is refused.
func refuseFirstAttempt(t *testing.T, c *kfake.Cluster, code int16) (attempts func() [][]byte, refused <-chan struct{}) {
	var mu sync.Mutex
	var tries [][]byte
	first := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, rt := range req.(*kmsg.ProduceRequest).Topics {
			if rt.Topic != topic {
				continue
			}
			mu.Lock()
			tries = append(tries, bytes.Clone(rt.Partitions[0].Records))
			isFirst := len(tries) == 1
			mu.Unlock()
			if isFirst {
				close(first)
				return refuseProduce(req, batchesOf(t, req), func(batchOf) (int16, []int32) { return code, nil }), nil, true
			}
		}
		return nil, nil, false
	})
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(tries)
	}, first
}
