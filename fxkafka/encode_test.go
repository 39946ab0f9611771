package fxkafka

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"go.fxkafka.dev/internal/nopmetrics"
)

// wireRequest is the bytes of the produce request a sarama Broker writes
// for a batch of records on partition 0 of topic "t": what the broker
// receives, from the request header on.
func wireRequest(t *testing.T, rb *sarama.RecordBatch) []byte {
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
	req := &sarama.ProduceRequest{RequiredAcks: sarama.NoResponse, Timeout: 1000, Version: 10}
	req.AddBatch("t", 0, rb)
	require.NoError(t, br.AsyncProduce(req, nil))
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
		raw = appendRecord(raw, &sarama.Record{Key: recs[i].r.Key, Value: recs[i].r.Value, Headers: recs[i].r.Headers}, int64(i), millisAfter(recs[i].ts, first))
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

	putRecordsBuf(make([]byte, 0, maxPooledRecordsBuf+1))
	require.LessOrEqual(t, cap(getRecordsBuf(1)), maxPooledRecordsBuf)
}
