package fxkafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sentMsg is one message of a recycling sequence: what the caller sends (in
// buffers it owns and scribbles after the send) and whether the pool must
// refuse it.
type sentMsg struct {
	key, val []byte // nil: null
	hdrs     []sarama.RecordHeader
	badVal   bool // the value's encoder fails
	refused  bool
}

func (a *sentMsg) msg(topic string) *sarama.ProducerMessage {
	m := &sarama.ProducerMessage{Topic: topic}
	if a.key != nil {
		m.Key = sarama.ByteEncoder(a.key)
	}
	switch {
	case a.badVal:
		m.Value = failingEncoder{}
	case a.val != nil:
		m.Value = sarama.ByteEncoder(a.val)
	}
	if a.hdrs != nil {
		m.Headers = append([]sarama.RecordHeader(nil), a.hdrs...)
	}
	return m
}

func cloneNil(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// storedWant is what must be stored (and what hooks must see), copied
// before anything is scribbled.
type storedWant struct {
	key, val []byte
	hdrs     []sarama.RecordHeader
}

func (a *sentMsg) want() storedWant {
	w := storedWant{key: cloneNil(a.key), val: cloneNil(a.val)}
	for _, h := range a.hdrs {
		w.hdrs = append(w.hdrs, sarama.RecordHeader{Key: cloneNil(h.Key), Value: cloneNil(h.Value)})
	}
	return w
}

func (a *sentMsg) scribble() {
	for _, b := range [][]byte{a.key, a.val} {
		for i := range b {
			b[i] = 'X'
		}
	}
	for _, h := range a.hdrs {
		for i := range h.Key {
			h.Key[i] = 'X'
		}
		for i := range h.Value {
			h.Value[i] = 'X'
		}
	}
}

// recycleSequence is messages that recycle records into each other's stale state.
func recycleSequence(legacy bool) []*sentMsg {
	b := func(s string) []byte { return []byte(s) }
	big := bytes.Repeat([]byte("B"), 100<<10)
	seq := []*sentMsg{
		{key: b("k0"), val: b("v0"), hdrs: []sarama.RecordHeader{{Key: b("h1"), Value: b("x")}, {Key: b(""), Value: nil}, {Key: b("h3"), Value: b("")}}},
		{},                       // null key, null value, no headers
		{key: b(""), val: b("")}, // empty key and value
		{key: b("k3"), val: big, hdrs: []sarama.RecordHeader{{Key: b("big"), Value: bytes.Repeat([]byte("H"), 1024)}}},
		{val: b("v4")}, // no key after a keyed one
		{key: b(""), hdrs: []sarama.RecordHeader{{Key: b("h"), Value: nil}}}, // empty key, null value
		{key: b("k6"), badVal: true, refused: true},
		{key: b("k7")}, // null value after a failed fill
		{key: b("k8"), val: bytes.Repeat([]byte("Z"), 2<<20), refused: true}, // too large
		{val: b("")},
		{key: b("k10"), val: b("v10")},
		{},
	}
	if legacy {
		for _, m := range seq {
			m.hdrs = nil
		}
	}
	// Each message owns its buffers.
	for _, m := range seq {
		m.key, m.val = cloneNil(m.key), cloneNil(m.val)
		for i := range m.hdrs {
			m.hdrs[i].Key, m.hdrs[i].Value = cloneNil(m.hdrs[i].Key), cloneNil(m.hdrs[i].Value)
		}
	}
	return seq
}

// endsHook copies what OnSendEnd sees of each message.
type endsHook struct {
	mu   sync.Mutex
	ends []storedWant
}

func (h *endsHook) OnSendEnd(_ context.Context, m *sarama.ProducerMessage, info SendInfo) {
	var w storedWant
	if m.Key != nil {
		k, _ := m.Key.Encode()
		w.key = cloneNil(k)
	}
	if m.Value != nil {
		if v, err := m.Value.Encode(); err == nil {
			w.val = cloneNil(v)
		}
	}
	for _, hd := range m.Headers {
		w.hdrs = append(w.hdrs, sarama.RecordHeader{Key: cloneNil(hd.Key), Value: cloneNil(hd.Value)})
	}
	h.mu.Lock()
	if info.Err == nil {
		h.ends = append(h.ends, w)
	}
	h.mu.Unlock()
}

func requireSameBytes(t *testing.T, want, got []byte, what string) {
	t.Helper()
	require.Equal(t, want == nil, got == nil, "%s: null %v, got null %v", what, want == nil, got == nil)
	require.True(t, bytes.Equal(want, got), "%s: want %q got %q", what, trunc(want), trunc(got))
}

func trunc(b []byte) string {
	if len(b) > 20 {
		return string(b[:20]) + "..."
	}
	return string(b)
}

func compareWant(t *testing.T, i int, w storedWant, key, val []byte, hk []string, hv [][]byte) {
	t.Helper()
	requireSameBytes(t, w.key, key, fmt.Sprintf("record %d key", i))
	requireSameBytes(t, w.val, val, fmt.Sprintf("record %d value", i))
	require.Len(t, hk, len(w.hdrs), "record %d headers", i)
	for j, h := range w.hdrs {
		require.Equal(t, string(h.Key), hk[j], "record %d header %d key", i, j)
		requireSameBytes(t, h.Value, hv[j], fmt.Sprintf("record %d header %d value", i, j))
	}
}

// hookedPool is a pool for cfg, with an endsHook registered if hooked (the
// hook is returned either way).
func hookedPool(t *testing.T, cfg Config, hooked bool) (*ProducerPool, *endsHook) {
	h := &endsHook{}
	var opts []Option
	if hooked {
		opts = append(opts, WithHook(h))
	}
	return newTestPool(t, cfg, opts...), h
}

// forget drops the ends h has seen.
func (h *endsHook) forget() {
	h.mu.Lock()
	h.ends = nil
	h.mu.Unlock()
}

// compareStored checks stored record i, r, against w.
func compareStored(t *testing.T, i int, w storedWant, r *kgo.Record) {
	t.Helper()
	var hk []string
	var hv [][]byte
	for _, hd := range r.Headers {
		hk = append(hk, hd.Key)
		hv = append(hv, hd.Value)
	}
	compareWant(t, i, w, r.Key, r.Value, hk, hv)
}

// requireEnds checks that the hooks saw wants end, in order, their headers
// too if withHeaders.
func (h *endsHook) requireEnds(t *testing.T, wants []storedWant, withHeaders bool) {
	t.Helper()
	h.mu.Lock()
	ends := slices.Clone(h.ends)
	h.mu.Unlock()
	require.Len(t, ends, len(wants))
	for i, e := range ends {
		var hk []string
		var hv [][]byte
		if withHeaders {
			for _, hd := range e.hdrs {
				hk = append(hk, string(hd.Key))
				hv = append(hv, hd.Value)
			}
		}
		compareWant(t, i, wants[i], e.key, e.val, hk, hv)
	}
}

// TestRecycledRecordsCarryNothingIntoTheNextMessage sends a sequence of messages
// built to recycle records into each other's stale state, through every
// send path, with each codec and with send hooks, and checks what is
// stored and what the hooks saw.
func TestRecycledRecordsCarryNothingIntoTheNextMessage(t *testing.T) {
	checkLeaks(t)
	paths := []string{"SendMessage", "SendMessages1", "SendMessagesAll", "Produce"}
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		for _, hooked := range []bool{false, true} {
			name := fmt.Sprintf("%s/hooks=%v", codec, hooked)
			t.Run(name, func(t *testing.T) {
				var topics []string
				for _, p := range paths {
					topics = append(topics, "t-"+p)
				}
				c, err := kfake.NewCluster(kfake.SeedTopics(1, topics...))
				require.NoError(t, err)
				t.Cleanup(c.Close)
				cfg := testConfig(c.ListenAddrs()...)
				cfg.Compression = codec
				cfg.MaxMessageBytes = 1 << 20
				p, h := hookedPool(t, cfg, hooked)
				for _, path := range paths {
					t.Run(path, func(t *testing.T) {
						h.forget()
						tp := "t-" + path
						seq := recycleSequence(false)
						wants := runSequence(t, p, tp, path, seq)
						got := readRecords(t, c, tp)
						require.Len(t, got, len(wants))
						for i, r := range got {
							compareStored(t, i, wants[i], r)
						}
						if hooked {
							h.requireEnds(t, wants, true)
						}
					})
				}
			})
		}
	}
}

// runSequence sends seq to topic one message at a time on path (or all at
// once for SendMessagesAll, without the refused ones), scribbling the
// caller's buffers as soon as the send returns, and returns what must be
// stored, in order.
func runSequence(t *testing.T, p *ProducerPool, topic, path string, seq []*sentMsg) []storedWant {
	t.Helper()
	ctx := context.Background()
	var wants []storedWant
	if path == "SendMessagesAll" {
		var msgs []*sarama.ProducerMessage
		var ok []*sentMsg
		for _, a := range seq {
			if a.refused {
				continue
			}
			wants = append(wants, a.want())
			msgs = append(msgs, a.msg(topic))
			ok = append(ok, a)
		}
		require.NoError(t, p.SendMessages(ctx, msgs))
		for _, a := range ok {
			a.scribble()
		}
		return wants
	}
	for i, a := range seq {
		w := a.want()
		m := a.msg(topic)
		var err error
		switch path {
		case "SendMessage":
			_, _, err = p.SendMessage(ctx, m)
			a.scribble()
		case "SendMessages1":
			err = p.SendMessages(ctx, []*sarama.ProducerMessage{m})
			a.scribble()
		case "Produce":
			done := make(chan error, 1)
			p.Produce(ctx, m, func(_ *sarama.ProducerMessage, err error) { done <- err })
			a.scribble()
			err = <-done
		}
		if a.refused {
			require.True(t, errors.Is(err, ErrInvalidMessage), "message %d: %v", i, err)
			continue
		}
		require.NoError(t, err, "message %d", i)
		wants = append(wants, w)
	}
	return wants
}

// legacyBroker answers the produce requests of Kafka before 0.11 (which
// kfake does not take) itself, storing the messages of each topic in order.
type legacyBroker struct {
	mu     sync.Mutex
	stored map[string][]storedWant
}

func startLegacyBroker(t *testing.T, topics ...string) (*kfake.Cluster, *legacyBroker) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.SeedTopics(1, topics...))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	lb := &legacyBroker{stored: map[string][]storedWant{}}
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.ProduceRequest)
		if req.Version >= 3 {
			return nil, nil, false
		}
		resp := answerProduce(req, 0)
		lb.mu.Lock()
		defer lb.mu.Unlock()
		for i, rt := range req.Topics {
			for j, rp := range rt.Partitions {
				resp.Topics[i].Partitions[j].BaseOffset = int64(len(lb.stored[rt.Topic]))
				msgs, err := legacyMessages(rp.Records)
				if err != nil {
					return nil, err, true
				}
				lb.stored[rt.Topic] = append(lb.stored[rt.Topic], msgs...)
			}
		}
		return resp, nil, true
	})
	return c, lb
}

// legacyMessages decodes a message set (magic 0 or 1) into its messages'
// keys and values.
func legacyMessages(set []byte) ([]storedWant, error) {
	var msgs []storedWant
	for len(set) > 0 {
		size := int(binary.BigEndian.Uint32(set[8:12]))
		entry := set[:12+size]
		set = set[12+size:]
		var key, val []byte
		if entry[16] == 0 { // magic
			var m kmsg.MessageV0
			if err := m.ReadFrom(entry); err != nil {
				return nil, err
			}
			key, val = m.Key, m.Value
		} else {
			var m kmsg.MessageV1
			if err := m.ReadFrom(entry); err != nil {
				return nil, err
			}
			key, val = m.Key, m.Value
		}
		msgs = append(msgs, storedWant{key: cloneNil(key), val: cloneNil(val)})
	}
	return msgs, nil
}

// TestLegacyMessageSetsCarryEachMessagesOwnBytes is TestRecycledRecordsCarryNothingIntoTheNextMessage
// for Kafka before 0.11, whose batches are message sets sarama encodes.
func TestLegacyMessageSetsCarryEachMessagesOwnBytes(t *testing.T) {
	checkLeaks(t)
	paths := []string{"SendMessage", "SendMessages1", "SendMessagesAll", "Produce"}
	for _, version := range []string{"0.9.0.0", "0.10.2.0"} {
		for _, hooked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/hooks=%v", version, hooked), func(t *testing.T) {
				var topics []string
				for _, p := range paths {
					topics = append(topics, "t-"+p)
				}
				c, lb := startLegacyBroker(t, topics...)
				cfg := testConfig(c.ListenAddrs()...)
				cfg.Version = version
				cfg.MaxMessageBytes = 1 << 20
				cfg.RequiredAcks = "leader"
				p, h := hookedPool(t, cfg, hooked)
				for _, path := range paths {
					t.Run(path, func(t *testing.T) {
						h.forget()
						tp := "t-" + path
						wants := runSequence(t, p, tp, path, recycleSequence(true))
						lb.mu.Lock()
						got := lb.stored[tp]
						lb.mu.Unlock()
						require.Len(t, got, len(wants))
						for i, g := range got {
							compareWant(t, i, wants[i], g.key, g.val, nil, nil)
						}
						if hooked {
							h.requireEnds(t, wants, false)
						}
					})
				}
			})
		}
	}
}

// TestRetriedAndSplitBatchesKeepTheirRecords refuses the first
// attempt of a batch (retriably, or as too large, so it is split), with
// each codec, while other sends recycle records, and checks that a retry
// sends the first attempt's bytes and that what is stored is what was sent,
// null and empty keys, values and header values included.
func TestRetriedAndSplitBatchesKeepTheirRecords(t *testing.T) {
	checkLeaks(t)
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		for _, code := range []int16{kerr.NotEnoughReplicas.Code, kerr.MessageTooLarge.Code} {
			t.Run(fmt.Sprintf("%s/%d", codec, code), func(t *testing.T) {
				const other = "other-topic"
				c, err := kfake.NewCluster(kfake.SeedTopics(1, topic, other))
				require.NoError(t, err)
				t.Cleanup(c.Close)
				attempts, refused := refuseFirstAttempt(t, c, code)
				cfg := testConfig(c.ListenAddrs()...)
				cfg.Compression = codec
				p := newTestPool(t, cfg, WithSaramaConfig(func(sc *sarama.Config) {
					// Room for the other sends to recycle records while the
					// batch waits for its retry; were they slower, what is
					// stored would still be checked, the recycling less so.
					sc.Producer.Retry.Backoff = 200 * time.Millisecond
				}))
				ctx := context.Background()
				var msgs []*sarama.ProducerMessage
				var wants []storedWant
				for i := range 40 {
					a := &sentMsg{}
					switch i % 4 {
					case 0:
						a.key, a.val = []byte(value(i)), []byte(value(i))
						a.hdrs = []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(value(i))}, {Key: []byte(""), Value: nil}}
					case 1:
						a.val = []byte(value(i))
					case 2:
						a.key, a.val = []byte{}, []byte(value(i))
						a.hdrs = []sarama.RecordHeader{{Key: []byte("e"), Value: []byte{}}}
					case 3:
						a.key = []byte(value(i)) // a tombstone
					}
					wants = append(wants, a.want())
					msgs = append(msgs, a.msg(topic))
				}
				sent := make(chan error, 1)
				go func() { sent <- p.SendMessages(ctx, msgs) }()
				<-refused
				for i := range 20 {
					_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: other, Key: sarama.ByteEncoder(bytes.Repeat([]byte{'K'}, 9)),
						Value:   sarama.ByteEncoder(bytes.Repeat([]byte{byte(i)}, 2000)),
						Headers: []sarama.RecordHeader{{Key: []byte("zz"), Value: []byte("stale")}}})
					require.NoError(t, err)
				}
				require.NoError(t, <-sent)
				tries := attempts()
				require.GreaterOrEqual(t, len(tries), 2)
				if code == kerr.NotEnoughReplicas.Code {
					require.True(t, bytes.Equal(tries[0], tries[1]), "the retry sent other bytes than the first attempt")
				}
				got := readRecords(t, c, topic)
				require.Len(t, got, len(wants))
				byVal := map[string]storedWant{}
				for _, w := range wants {
					byVal[string(w.val)+"|"+string(w.key)] = w
				}
				for i, r := range got {
					w, ok := byVal[string(r.Value)+"|"+string(r.Key)]
					require.True(t, ok, "stored %q/%q", r.Key, r.Value)
					compareStored(t, i, w, r)
				}
			})
		}
	}
}

// keySeer is a partitioner that writes down the key of each message.
type keySeer struct {
	mu   sync.Mutex
	keys [][]byte
}

func (k *keySeer) Partition(m *sarama.ProducerMessage, n int32) (int32, error) {
	var key []byte
	if m.Key != nil {
		b, err := m.Key.Encode()
		if err != nil {
			return 0, err
		}
		key = cloneNil(b)
		if key == nil {
			key = []byte{}
		}
	}
	k.mu.Lock()
	k.keys = append(k.keys, key)
	k.mu.Unlock()
	return 0, nil
}
func (k *keySeer) RequiresConsistency() bool { return true }

// TestACustomPartitionerSeesEachMessagesOwnKey sends keyed, keyless
// and empty-keyed messages on recycled records through a partitioner of
// the user's.
func TestACustomPartitionerSeesEachMessagesOwnKey(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	ks := &keySeer{}
	p := newTestPool(t, testConfig(c.ListenAddrs()...), WithSaramaConfig(func(sc *sarama.Config) {
		sc.Producer.Partitioner = func(string) sarama.Partitioner { return ks }
	}))
	ctx := context.Background()
	keys := [][]byte{[]byte("key-a"), nil, {}, []byte("key-b"), nil, nil, []byte("k"), {}}
	for i, k := range keys {
		m := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value(i))}
		if k != nil {
			m.Key = sarama.ByteEncoder(append([]byte{}, k...))
		}
		done := make(chan error, 1)
		switch i % 3 {
		case 0:
			_, _, err := p.SendMessage(ctx, m)
			done <- err
		case 1:
			done <- p.SendMessages(ctx, []*sarama.ProducerMessage{m})
		case 2:
			p.Produce(ctx, m, func(_ *sarama.ProducerMessage, err error) { done <- err })
		}
		require.NoError(t, <-done)
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	require.Len(t, ks.keys, len(keys))
	for i, k := range keys {
		requireSameBytes(t, k, ks.keys[i], fmt.Sprintf("key %d", i))
	}
}

// endsByOffset copies what OnSendEnd sees of each acknowledged message, by
// partition and offset.
type endsByOffset struct {
	mu   sync.Mutex
	seen map[[2]int64]storedWant
}

func (h *endsByOffset) OnSendEnd(_ context.Context, m *sarama.ProducerMessage, info SendInfo) {
	if info.Err != nil {
		return
	}
	var w storedWant
	if m.Key != nil {
		k, _ := m.Key.Encode()
		w.key = cloneNil(k)
	}
	if m.Value != nil {
		v, _ := m.Value.Encode()
		w.val = cloneNil(v)
	}
	for _, hd := range m.Headers {
		w.hdrs = append(w.hdrs, sarama.RecordHeader{Key: cloneNil(hd.Key), Value: cloneNil(hd.Value)})
	}
	h.mu.Lock()
	h.seen[[2]int64{int64(info.Partition), info.Offset}] = w
	h.mu.Unlock()
}

// randomSent is message i of goroutine g: null, empty or filled keys and
// values, sometimes large, and 0 to 3 headers, some with null values.
func randomSent(g, i int, legacy bool) *sentMsg {
	x := uint32(g*7919 + i*104729)
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	a := &sentMsg{}
	switch x % 3 {
	case 1:
		a.key = []byte{}
	case 2:
		a.key = []byte(fmt.Sprintf("k-%d-%d", g, i))
	}
	switch (x / 3) % 5 {
	case 1:
		a.val = []byte{}
	case 2, 3:
		a.val = []byte(fmt.Sprintf("v-%d-%d", g, i))
	case 4:
		a.val = bytes.Repeat([]byte{byte('a' + i%26)}, 70<<10+i)
	}
	if !legacy {
		for j := range int((x / 15) % 4) {
			h := sarama.RecordHeader{Key: []byte(fmt.Sprintf("h%d", j))}
			if (x/60+uint32(j))%2 == 0 {
				h.Value = []byte(fmt.Sprintf("hv-%d-%d-%d", g, i, j))
			}
			if j == 2 {
				h.Key = []byte{}
			}
			a.hdrs = append(a.hdrs, h)
		}
	}
	if x%37 == 0 {
		a.badVal, a.refused = true, true
	}
	return a
}

// TestConcurrentSendsOnRecycledRecordsStoreWhatWasSent has goroutines send random
// messages through every path at once, records moving between them, and
// checks each stored record, and what the hooks saw, by its offset.
func TestConcurrentSendsOnRecycledRecordsStoreWhatWasSent(t *testing.T) {
	checkLeaks(t)
	for _, codec := range []string{"none", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.SeedTopics(3, topic))
			require.NoError(t, err)
			t.Cleanup(c.Close)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.Compression = codec
			h := &endsByOffset{seen: map[[2]int64]storedWant{}}
			p := newTestPool(t, cfg, WithHook(h))
			ctx := context.Background()
			var mu sync.Mutex
			wants := map[[2]int64]storedWant{}
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 120; i++ {
						path := (g + i) % 3
						if path == 1 { // SendMessages of three
							var as []*sentMsg
							var ms []*sarama.ProducerMessage
							for j := range 3 {
								a := randomSent(g, i+j*1000, false)
								a.badVal, a.refused = false, false
								as = append(as, a)
								ms = append(ms, a.msg(topic))
							}
							ws := make([]storedWant, len(as))
							for j, a := range as {
								ws[j] = a.want()
							}
							err := p.SendMessages(ctx, ms)
							for _, a := range as {
								a.scribble()
							}
							if err != nil {
								errs <- err
								return
							}
							mu.Lock()
							for j, m := range ms {
								wants[[2]int64{int64(m.Partition), m.Offset}] = ws[j]
							}
							mu.Unlock()
							continue
						}
						a := randomSent(g, i, false)
						w := a.want()
						m := a.msg(topic)
						var err error
						if path == 0 {
							_, _, err = p.SendMessage(ctx, m)
							a.scribble()
						} else {
							done := make(chan error, 1)
							p.Produce(ctx, m, func(_ *sarama.ProducerMessage, err error) { done <- err })
							a.scribble()
							err = <-done
						}
						if a.refused {
							if !errors.Is(err, ErrInvalidMessage) {
								errs <- fmt.Errorf("refused message: %v", err)
								return
							}
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						mu.Lock()
						wants[[2]int64{int64(m.Partition), m.Offset}] = w
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			got := readRecords(t, c, topic)
			require.Len(t, got, len(wants))
			for i, r := range got {
				k := [2]int64{int64(r.Partition), r.Offset}
				w, ok := wants[k]
				require.True(t, ok)
				compareStored(t, i, w, r)
				h.mu.Lock()
				e, ok := h.seen[k]
				h.mu.Unlock()
				require.True(t, ok, "hook saw %v", k)
				var hk []string
				var hv [][]byte
				for _, hd := range e.hdrs {
					hk = append(hk, string(hd.Key))
					hv = append(hv, hd.Value)
				}
				compareWant(t, i, w, e.key, e.val, hk, hv)
			}
		})
	}
}
