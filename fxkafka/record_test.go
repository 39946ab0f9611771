package fxkafka

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

// dirty sets every field of v, however deep, to a value other than its
// zero, so that a field reset leaves behind shows.
func dirty(v reflect.Value) {
	v = reflect.NewAt(v.Type(), unsafe.Pointer(v.UnsafeAddr())).Elem() // settable, exported or not
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(7)
	case reflect.String:
		v.SetString("stale")
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	case reflect.Chan:
		ch := reflect.MakeChan(v.Type(), 1)
		ch.Send(reflect.Zero(v.Type().Elem())) // a signal left in it
		v.Set(ch)
	case reflect.Func:
		v.Set(reflect.MakeFunc(v.Type(), func([]reflect.Value) []reflect.Value { panic("stale func called") }))
	case reflect.Interface:
		v.Set(reflect.ValueOf(errors.New("stale")))
	case reflect.Struct:
		for i := range v.NumField() {
			dirty(v.Field(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			dirty(v.Index(i))
		}
	default:
		panic("dirty: no case for " + v.Kind().String())
	}
}

// alike makes what two records differ in only by the memory they reuse
// compare equal: empty slices as nil, the signal channel (which must have
// been drained) as nil.
func alike(t *testing.T, r *record) *record {
	t.Helper()
	if r.own.done != nil {
		require.Zero(t, len(r.own.done), "a reused record's signal channel was not drained")
		r.own.done = nil
	}
	if len(r.buf) == 0 {
		r.buf = nil
	}
	if len(r.hdrs) == 0 {
		r.hdrs = nil
	}
	return r
}

func TestAResetRecordIsReusedAsNew(t *testing.T) {
	p := &ProducerPool{set: settings{version: sarama.V3_0_0_0, maxMessageBytes: 1 << 20}}
	msgs := map[string]*sarama.ProducerMessage{
		"key, value and headers": {Topic: "t", Partition: 3, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder("v"),
			Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("x")}}, Timestamp: time.UnixMilli(42)},
		"value only": {Topic: "t", Value: sarama.ByteEncoder("v")},
		"empty":      {Topic: "t"},
	}
	for name, m := range msgs {
		t.Run(name, func(t *testing.T) {
			used := new(record)
			dirty(reflect.ValueOf(used).Elem())
			used.reset()
			require.NoError(t, p.fill(used, m))
			fresh := new(record)
			require.NoError(t, p.fill(fresh, m))
			require.Equal(t, alike(t, fresh), alike(t, used))
		})
	}
	t.Run("a large buffer is not kept", func(t *testing.T) {
		r := &record{buf: make([]byte, 1<<20)}
		r.reset()
		require.Nil(t, r.buf, "a recycled record pins its last message's large buffer")
	})
	t.Run("a refused message is not copied", func(t *testing.T) {
		r := new(record)
		err := p.fill(r, &sarama.ProducerMessage{Topic: "t", Value: sarama.ByteEncoder(make([]byte, 2<<20))})
		require.ErrorIs(t, err, ErrInvalidMessage)
		require.Zero(t, cap(r.buf), "the refused message was copied")
	})
	t.Run("header bytes are not kept", func(t *testing.T) {
		hb := make([]byte, 2)
		r := &record{hdrs: []sarama.RecordHeader{{Key: hb[:1], Value: hb[1:]}}}
		r.reset()
		require.Zero(t, r.hdrs[:1][0], "a kept header would pin the last message's header bytes")
	})
	t.Run("nothing of the caller's or the pool's is kept but the topic", func(t *testing.T) {
		r := new(record)
		dirty(reflect.ValueOf(r).Elem())
		r.reset()
		require.Nil(t, r.ps, "the partition leads to the producer and the pool")
		require.Zero(t, r.hdrs[:1][0], "the last message's header bytes")
		require.Nil(t, r.own.msg)
		require.Nil(t, r.own.promise)
		require.Nil(t, r.err)
		require.Nil(t, r.hook)
		require.Nil(t, r.call)
		require.Nil(t, r.epoch)
	})
}

// TestAnEmptyKeyOrValueStaysEmpty checks that a key or value of zero bytes
// is stored as empty, not as null (a null value is a tombstone), for a new
// record as for a recycled one, and that nil ones stay null.
func TestAnEmptyKeyOrValueStaysEmpty(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))

	// A new record, whose buffer is nil: what a send takes when the
	// garbage collector has emptied the records kept for reuse.
	r := new(record)
	require.NoError(t, p.fill(r, &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder{}, Value: sarama.ByteEncoder{}}))
	require.NotNil(t, r.key(), "an empty key became null")
	require.NotNil(t, r.value(), "an empty value became null")
	require.Empty(t, r.key())
	require.Empty(t, r.value())
	r = new(record)
	require.NoError(t, p.fill(r, &sarama.ProducerMessage{Topic: topic}))
	require.Nil(t, r.key())
	require.Nil(t, r.value())
	// A recycled record, whose buffer holds an earlier message's bytes.
	require.NoError(t, p.fill(r, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("key"), Value: sarama.StringEncoder("value")}))
	r.reset()
	require.NoError(t, p.fill(r, &sarama.ProducerMessage{Topic: topic, Key: sarama.ByteEncoder{}, Value: sarama.ByteEncoder{}}))
	require.NotNil(t, r.key(), "a recycled record's empty key became null")
	require.NotNil(t, r.value(), "a recycled record's empty value became null")
	require.Empty(t, r.key())
	require.Empty(t, r.value())
	r.reset()
	require.NoError(t, p.fill(r, &sarama.ProducerMessage{Topic: topic}))
	require.Nil(t, r.key(), "a recycled record's nil key must stay null")
	require.Nil(t, r.value(), "a recycled record's nil value must stay null")

	ctx := context.Background()
	sends := []*sarama.ProducerMessage{
		{Topic: topic, Key: sarama.ByteEncoder{}, Value: sarama.ByteEncoder{}},
		{Topic: topic, Key: sarama.StringEncoder(""), Value: sarama.StringEncoder("")},
		{Topic: topic},
	}
	for _, m := range sends {
		_, _, err := p.SendMessage(ctx, m)
		require.NoError(t, err)
	}
	// The partitions hold them in any order: count each kind.
	var emptyKeys, emptyValues, nullKeys, nullValues int
	for _, rec := range readRecords(t, c, topic) {
		require.Empty(t, rec.Key)
		require.Empty(t, rec.Value)
		if rec.Key == nil {
			nullKeys++
		} else {
			emptyKeys++
		}
		if rec.Value == nil {
			nullValues++
		} else {
			emptyValues++
		}
	}
	require.Equal(t, [4]int{2, 2, 1, 1}, [4]int{emptyKeys, emptyValues, nullKeys, nullValues},
		"empty keys, empty values, null keys, null values")
}
