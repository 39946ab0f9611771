package fxkafka

// The hardening suite's message tests (issue 9): what a send writes, what it
// refuses before anything is sent, and how the broker's refusals are told.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// countProduce counts the produce requests c receives from now on.
func countProduce(c *kfake.Cluster) *kfake.FaultHandle {
	return c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Count: -1, Observe: true})
}

// batchOf is one partition's batch inside a produce request.
type batchOf struct {
	topic     string
	partition int32
	values    []string
	bytes     int // the batch as the broker measures it
}

// batchesOf decodes the batches of a produce request. It runs on the
// cluster's goroutine, so it reports a failure without stopping the test.
func batchesOf(t *testing.T, req kmsg.Request) []batchOf {
	var out []batchOf
	for _, rt := range req.(*kmsg.ProduceRequest).Topics {
		for _, rp := range rt.Partitions {
			var rb kmsg.RecordBatch
			if err := rb.ReadFrom(rp.Records); err != nil {
				t.Errorf("decode batch: %v", err)
				continue
			}
			recs, err := kfake.BatchRecords(rb)
			if err != nil {
				t.Errorf("decode records: %v", err)
				continue
			}
			b := batchOf{topic: rt.Topic, partition: rp.Partition, bytes: len(rp.Records)}
			for _, r := range recs {
				b.values = append(b.values, string(r.Value))
			}
			out = append(out, b)
		}
	}
	return out
}

// refuseProduce answers every batch of req with the error code verdict
// gives it, naming the records at fault (record_errors); nothing is stored.
func refuseProduce(req kmsg.Request, batches []batchOf, verdict func(batchOf) (code int16, bad []int32)) kmsg.Response {
	pr := req.(*kmsg.ProduceRequest)
	resp := pr.ResponseKind().(*kmsg.ProduceResponse)
	topics := map[string]int{} // one entry per topic, as a broker answers
	for _, b := range batches {
		code, bad := verdict(b)
		rp := kmsg.NewProduceResponseTopicPartition()
		rp.Partition = b.partition
		rp.ErrorCode = code
		rp.BaseOffset = -1
		for _, i := range bad {
			rp.ErrorRecords = append(rp.ErrorRecords, kmsg.ProduceResponseTopicPartitionErrorRecord{RelativeOffset: i})
		}
		i, ok := topics[b.topic]
		if !ok {
			i = len(resp.Topics)
			topics[b.topic] = i
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = b.topic
			resp.Topics = append(resp.Topics, rt)
		}
		resp.Topics[i].Partitions = append(resp.Topics[i].Partitions, rp)
	}
	return resp
}

func TestSendsWithAContextThatHasEndedWriteNothing(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	// A producer with the topic's metadata exists: a send has nothing to
	// wait for but the hand-off.
	_, _, err := p.SendMessage(context.Background(), msg("warm"))
	require.NoError(t, err)
	l, err := p.Lease(context.Background())
	require.NoError(t, err)
	defer l.Release()
	_, _, err = l.SendMessage(context.Background(), msg("warm lease"))
	require.NoError(t, err)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	batch := func(i int) []*sarama.ProducerMessage {
		return []*sarama.ProducerMessage{msg(value(3 * i)), msg(value(3*i + 1)), msg(value(3*i + 2))}
	}
	notSent := func(what string, err error) {
		t.Helper()
		require.ErrorIs(t, err, ErrUnavailable, what)
		require.NotErrorIs(t, err, ErrDeliveryUnknown, what)
	}
	var promised sync.WaitGroup
	for i := range 200 {
		oneNs, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		for _, ctx := range []context.Context{cancelled, oneNs} {
			notSent("SendMessages", p.SendMessages(ctx, batch(i)))
			notSent("Lease.SendMessages", l.SendMessages(ctx, batch(i)))
			_, _, err := p.SendMessage(ctx, msg(value(i)))
			notSent("SendMessage", err)
			promised.Add(1)
			p.Produce(ctx, msg(value(i)), func(_ *sarama.ProducerMessage, err error) {
				defer promised.Done()
				notSent("Produce", err)
			})
		}
		cancel()
	}
	promised.Wait()
	l.Release()
	require.NoError(t, p.Close(context.Background()))
	assert.Equal(t, map[string]int{"warm": 1, "warm lease": 1}, countValues(readBack(t, c, topic)), "nothing sent with an ended context was stored")
}

// reusable is a caller's message whose key, value and header value live in
// buffers the caller reuses once the send returns.
type reusable struct {
	i                  int
	key, value, header []byte
}

func newReusable(i int) *reusable {
	return &reusable{i: i, key: []byte(fmt.Sprintf("key-%04d", i)), value: []byte(value(i)), header: []byte(fmt.Sprintf("hdr-%04d", i))}
}

func (r *reusable) msg() *sarama.ProducerMessage {
	return &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.ByteEncoder(r.key),
		Value:   sarama.ByteEncoder(r.value),
		Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: r.header}},
	}
}

// scribble overwrites every byte the caller owns, as a caller reusing its
// buffers does.
func (r *reusable) scribble() {
	for _, b := range [][]byte{r.key, r.value, r.header} {
		for i := range b {
			b[i] = 'X'
		}
	}
}

// checkStoredUnchanged reads back topic and checks that every record holds
// the bytes its caller sent, none of the bytes written after.
func checkStoredUnchanged(t *testing.T, c *kfake.Cluster, want map[string]bool) {
	t.Helper()
	got := readRecords(t, c, topic)
	require.Len(t, got, len(want))
	for _, r := range got {
		v := string(r.Value)
		require.True(t, want[v], "stored value %q is one the caller sent", v)
		var i int
		_, err := fmt.Sscanf(v, "v%06d", &i)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("key-%04d", i), string(r.Key))
		require.Len(t, r.Headers, 1)
		assert.Equal(t, fmt.Sprintf("hdr-%04d", i), string(r.Headers[0].Value))
		assert.False(t, bytes.Contains(r.Value, []byte("X")))
	}
}

func TestTheCallerOwnsItsMessageAgainAfterAnyOutcome(t *testing.T) {
	checkLeaks(t)

	t.Run("Produce returns before the batch is built", func(t *testing.T) {
		c := startBroker(t, "", topic)
		cfg := testConfig(c.ListenAddrs()...)
		cfg.Linger = time.Hour // the batch is built only when Flush asks
		p := newTestPool(t, cfg)
		want := map[string]bool{}
		var wg sync.WaitGroup
		for i := range 50 {
			r := newReusable(i)
			want[string(r.value)] = true
			wg.Add(1)
			p.Produce(context.Background(), r.msg(), func(_ *sarama.ProducerMessage, err error) {
				defer wg.Done()
				assert.NoError(t, err)
			})
			r.scribble() // at once: Produce has returned
		}
		require.NoError(t, p.Flush(context.Background()))
		wg.Wait()
		require.NoError(t, p.Close(context.Background()))
		checkStoredUnchanged(t, c, want)
	})

	t.Run("a DeliveryError, and the batch sent again after it", func(t *testing.T) {
		c := startBroker(t, "", topic)
		p := newTestPool(t, testConfig(c.ListenAddrs()...))
		want := map[string]bool{}

		// The first produce request is held until its callers have given
		// up and reused their buffers; then the broker answers
		// NOT_LEADER_FOR_PARTITION, and the pool sends the batch again.
		// One control for every round (kfake races a control it pops
		// against one being added): a round arms it for its first request.
		var armed atomic.Pointer[held]
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			h := armed.Swap(nil)
			if h == nil {
				return nil, nil, false
			}
			h.sleep(c)
			return refuseProduce(req, batchesOf(t, req), func(batchOf) (int16, []int32) {
				return kerr.NotLeaderForPartition.Code, nil
			}), nil, true
		})
		// send returns each message's error.
		sendAbandoned := func(send func(ctx context.Context, rs []*reusable) []error, rs []*reusable) {
			h := newHeld(t)
			armed.Store(h)
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-h.seen; cancel() }() // the caller gives up once its request is at the broker
			errs := send(ctx, rs)
			require.ErrorIs(t, errs[0], ErrDeliveryUnknown, "the first message was sent, no answer yet")
			for i, r := range rs {
				switch ErrorClass(errs[i]) {
				case ClassUnknown:
					want[value(r.i)] = true
				case ClassUnavailable: // still queued when the caller gave up: never sent
				default:
					t.Fatalf("message %d: %v", i, errs[i])
				}
				r.scribble()
			}
			h.release()
			for _, pr := range p.allProducers() {
				require.NoError(t, pr.drained(context.Background()), "the batch sent again was stored")
			}
		}
		var rs []*reusable
		for i := range 10 {
			rs = append(rs, newReusable(i))
		}
		sendAbandoned(func(ctx context.Context, rs []*reusable) []error {
			msgs := make([]*sarama.ProducerMessage, len(rs))
			for i, r := range rs {
				msgs[i] = r.msg()
			}
			errs := make([]error, len(rs))
			var se SendErrors
			require.ErrorAs(t, p.SendMessages(ctx, msgs), &se)
			for _, me := range se {
				errs[me.Index] = me.Err
			}
			return errs
		}, rs)
		sendAbandoned(func(ctx context.Context, rs []*reusable) []error {
			_, _, err := p.SendMessage(ctx, rs[0].msg())
			return []error{err}
		}, []*reusable{newReusable(10)})

		require.NoError(t, p.Close(context.Background()), "Close waits for the batches sent again")
		checkStoredUnchanged(t, c, want)
	})
}

func TestConfigThatCanNeverWorkFromTheEnvironmentIsRefusedAtNew(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"a client id with a space before 1.0", map[string]string{"KAFKA_CLIENT_ID": "order service", "KAFKA_VERSION": "0.11.0.0"}, "ClientID"},
		{"a client id with a non-ASCII letter before 1.0", map[string]string{"KAFKA_CLIENT_ID": "bestellungen-ü", "KAFKA_VERSION": "0.10.2.0"}, "ClientID"},
		{"a message above sarama's request limit", map[string]string{"KAFKA_MAX_MESSAGE_BYTES": fmt.Sprint(100<<20 + 1)}, "MaxMessageBytes"},
		{"a message far above it", map[string]string{"KAFKA_MAX_MESSAGE_BYTES": fmt.Sprint(200 << 20)}, "MaxMessageBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("KAFKA_BROKERS", "kafka:9092")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := ConfigFromEnv()
			var ce *ConfigError
			require.ErrorAs(t, err, &ce, "ConfigFromEnv")
			assert.Equal(t, tt.field, ce.Field)

			cfg, err := readEnv() // what the Fx module reads before New validates
			require.NoError(t, err)
			p, err := New(cfg)
			require.ErrorAs(t, err, &ce, "New, rather than every send failing as kafka unavailable")
			assert.Nil(t, p)
			assert.Equal(t, tt.field, ce.Field)
			assert.Equal(t, envVars[tt.field], ce.EnvVar)
			assert.Contains(t, err.Error(), envVars[tt.field], "the error names the variable")
		})
	}
}

// failingEncoder is a key or value whose encoding fails.
type failingEncoder struct{}

func (failingEncoder) Encode() ([]byte, error) { return nil, errors.New("cannot encode") }
func (failingEncoder) Length() int             { return 1 }

func TestOneCallersBadMessageNeverFailsAnother(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	produced := countProduce(c)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Linger = 5 * time.Millisecond // the good senders' messages share batches
	p := newTestPool(t, cfg)

	at := func(ts time.Time) *sarama.ProducerMessage {
		m := msg("bad timestamp " + ts.String())
		m.Timestamp = ts
		return m
	}
	bad := []*sarama.ProducerMessage{
		at(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)),
		at(time.UnixMilli(-1)),
		at(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)),
		at(time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC)),
		at(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)),
		{Topic: topic, Value: failingEncoder{}},
		{Topic: topic, Key: failingEncoder{}, Value: sarama.StringEncoder("bad key")},
	}
	// Nothing is sent for a bad message: not even a provisioning attempt.
	for _, m := range bad {
		_, _, err := p.SendMessage(context.Background(), m)
		require.ErrorIs(t, err, ErrInvalidMessage, "%v %v", m.Timestamp, m.Value)
	}
	assert.Zero(t, p.Stats().ProvisionAttempts)

	var wg sync.WaitGroup
	var good []string
	var mu sync.Mutex
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				v := fmt.Sprintf("good-%02d-%02d", g, i)
				_, _, err := p.SendMessage(context.Background(), msg(v))
				assert.NoError(t, err)
				mu.Lock()
				good = append(good, v)
				mu.Unlock()
			}
		})
	}
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				m := bad[(g+i)%len(bad)]
				_, _, err := p.SendMessage(context.Background(), m)
				assert.ErrorIs(t, err, ErrInvalidMessage)
				// A bad message inside a call: nothing of the call is sent.
				err = p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("beside a bad one"), m})
				assert.ErrorIs(t, err, ErrInvalidMessage)
				var me *MessageError
				if assert.ErrorAs(t, err, &me) {
					assert.Equal(t, 1, me.Index)
				}
			}
		})
	}
	wg.Wait()

	// The edges Kafka stores are taken, and stored as given.
	edges := []time.Time{time.UnixMilli(0), time.UnixMilli(maxTimestamp.UnixMilli())}
	for _, ts := range edges {
		m := at(ts)
		_, _, err := p.SendMessage(context.Background(), m)
		require.NoError(t, err, "%v", ts)
		good = append(good, "bad timestamp "+ts.String())
	}
	require.NoError(t, p.Close(context.Background()))
	stored := readRecords(t, c, topic)
	var values []string
	for _, r := range stored {
		values = append(values, string(r.Value))
		for _, ts := range edges {
			if string(r.Value) == "bad timestamp "+ts.String() {
				assert.Equal(t, ts.UnixMilli(), r.Timestamp.UnixMilli(), "stored with its own timestamp")
			}
		}
	}
	assert.ElementsMatch(t, good, values, "every good message stored, nothing else")
	assert.Positive(t, produced.Hits())
}

func TestAHeaderBeforeKafka011RefusesTheWholeCall(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	produced := countProduce(c)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Version = "0.10.2.0"
	p := newTestPool(t, cfg)

	withHeader := msg("with a header")
	withHeader.Headers = []sarama.RecordHeader{{Key: []byte("trace"), Value: []byte("abc")}}
	err := p.SendMessages(context.Background(), []*sarama.ProducerMessage{msg("before"), withHeader, msg("after")})
	require.ErrorIs(t, err, ErrInvalidMessage)
	assert.ErrorContains(t, err, "0.11")
	var me *MessageError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, 1, me.Index)
	_, _, err = p.SendMessage(context.Background(), withHeader)
	require.ErrorIs(t, err, ErrInvalidMessage)

	s := p.Stats()
	assert.Zero(t, s.ProvisionAttempts, "nothing of the call was sent: the pool did not even connect")
	assert.Zero(t, produced.Hits())
	assert.EqualValues(t, 4, s.FailedInvalid, "every message of the refused call, and the single send")
}

func TestTheSizeLimitCountsWhatTheBrokerCounts(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic) // kfake refuses a batch above Kafka's default 1048588 bytes
	tests := []struct {
		name            string
		maxMessageBytes int
		largest         int // the largest value (no key, no header) a batch of one holds within it
	}{
		// 61 bytes of batch header and 11 of record framing.
		{"the default MaxMessageBytes (1 MiB)", 0, DefaultMaxMessageBytes - 72},
		{"Kafka's default max.message.bytes", 1048588, 1048588 - 72},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(c.ListenAddrs()...)
			cfg.MaxMessageBytes = tt.maxMessageBytes
			p := newTestPool(t, cfg)
			_, _, err := p.SendMessage(context.Background(), msg("warm"))
			require.NoError(t, err)

			produced := countProduce(c)
			defer produced.Remove()
			sizes := []int{tt.largest + 1, tt.largest + 2}
			for n := 1048517; n <= 1048540; n++ { // what the broker refused before
				if n > tt.largest {
					sizes = append(sizes, n)
				}
			}
			for _, n := range sizes {
				_, _, err := p.SendMessage(context.Background(), msg(string(make([]byte, n))))
				require.ErrorIs(t, err, ErrInvalidMessage, "a value of %d bytes", n)
				require.ErrorContains(t, err, "MaxMessageBytes", "refused by the pool's check")
			}
			assert.Zero(t, produced.Hits(), "refused by the pool, not the broker")

			_, _, err = p.SendMessage(context.Background(), msg(string(make([]byte, tt.largest))))
			require.NoError(t, err, "a value of %d bytes fits", tt.largest)
			assert.Equal(t, 1, produced.Hits())
		})
	}
}

// rejectionCase is a broker refusal injected on batches holding several
// callers' records.
type rejectionCase struct {
	name  string
	named bool // the refusal names the bad record (record_errors): no halving needed
	// install makes c refuse what it must, calling refused with the
	// number of records of each batch refused; bad is the value of the
	// record it refuses alone.
	install func(t *testing.T, c *kfake.Cluster, refused func(records int)) (bad string)
}

var rejectionCases = []rejectionCase{
	{"INVALID_RECORD naming the bad record", true, func(t *testing.T, c *kfake.Cluster, refused func(int)) string {
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			bs := batchesOf(t, req)
			for _, b := range bs {
				if slices.Contains(b.values, "bad") {
					refused(len(b.values))
					return refuseProduce(req, bs, func(b batchOf) (int16, []int32) {
						return kerr.InvalidRecord.Code, []int32{int32(slices.Index(b.values, "bad"))}
					}), nil, true
				}
			}
			return nil, nil, false
		})
		return "bad"
	}},
	{"INVALID_TIMESTAMP for a batch holding the bad record", false, func(t *testing.T, c *kfake.Cluster, refused func(int)) string {
		c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.InvalidTimestamp, Count: -1, When: func(req kmsg.Request) bool {
			for _, b := range batchesOf(t, req) {
				if slices.Contains(b.values, "bad") {
					refused(len(b.values))
					return true
				}
			}
			return false
		}})
		return "bad"
	}},
	{"MESSAGE_TOO_LARGE for batches above 4 records or 3000 bytes", false, func(t *testing.T, c *kfake.Cluster, refused func(int)) string {
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			bs := batchesOf(t, req)
			for _, b := range bs {
				if len(b.values) > 4 || b.bytes > 3000 {
					refused(len(b.values))
					return refuseProduce(req, bs, func(batchOf) (int16, []int32) { return kerr.MessageTooLarge.Code, nil }), nil, true
				}
			}
			return nil, nil, false
		})
		return "large " + string(bytes.Repeat([]byte("x"), 4000))
	}},
}

func TestABrokerRefusingOneRecordFailsOnlyThatRecord(t *testing.T) {
	checkLeaks(t)
	for _, idempotent := range []bool{false, true} {
		for _, tt := range rejectionCases {
			t.Run(fmt.Sprintf("%s/Idempotent=%v", tt.name, idempotent), func(t *testing.T) {
				c, err := kfake.NewCluster(kfake.SeedTopics(1, topic)) // one partition: one batch per request
				require.NoError(t, err)
				t.Cleanup(c.Close)
				var mu sync.Mutex
				var refused []int
				bad := tt.install(t, c, func(n int) {
					mu.Lock()
					defer mu.Unlock()
					refused = append(refused, n)
				})
				cfg := testConfig(c.ListenAddrs()...)
				cfg.Idempotent = idempotent
				cfg.Linger = time.Hour // the batch leaves when Flush asks: every caller's record is in it
				p := newTestPool(t, cfg)

				// 16 callers, the ninth with the bad record, one batch.
				const n = 16
				errs := make([]error, n)
				var wg sync.WaitGroup
				var want []string
				for i := range n {
					v := value(i)
					if i == 8 {
						v = bad
					} else {
						want = append(want, v)
					}
					wg.Add(1)
					p.Produce(context.Background(), msg(v), func(_ *sarama.ProducerMessage, err error) {
						defer wg.Done()
						errs[i] = err
					})
				}
				require.NoError(t, p.Flush(context.Background()))
				wg.Wait()
				for i, err := range errs {
					if i == 8 {
						require.ErrorIs(t, err, ErrInvalidMessage, "the bad record: refused, not written")
						require.NotErrorIs(t, err, ErrDeliveryUnknown)
						continue
					}
					require.NoError(t, err, "caller %d's good record", i)
				}
				s := p.Stats()
				assert.EqualValues(t, 1, s.FailedInvalid)
				assert.Zero(t, s.FailedUnknown)
				assert.Zero(t, s.ProducersRetired)
				mu.Lock()
				t.Logf("batches refused, by records: %v", refused)
				assert.Equal(t, n, refused[0], "the first batch refused held every caller's record")
				if tt.named {
					assert.Len(t, refused, 1, "the others were sent again at once")
				} else {
					assert.Contains(t, refused, 1, "halved down to the bad record alone")
				}
				mu.Unlock()
				require.NoError(t, p.Close(context.Background()))
				var stored []string
				for _, r := range readBack(t, c, topic) {
					stored = append(stored, r.Value)
				}
				assert.Equal(t, want, stored, "every other record stored once, in the order produced")
			})
		}
	}
}

// TestAPartitionWhoseLeaderMovesWhileListedIsHandedToItsNewSink drives two
// sinks by hand: a partition listed on its old leader's sink moves to a new
// one, whose markReady skips it as listed; the old sink must hand it over
// when it finds it no longer leads it. Before, its records waited for a
// send that might never come (the chaos suite's Close during leadership
// moves then ran out its context).
func TestAPartitionWhoseLeaderMovesWhileListedIsHandedToItsNewSink(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, testConfig(freeAddr(t)))
	pr := &producer{pool: p, set: &p.set, stop: make(chan struct{}), idle: make(chan struct{})}
	pr.nlanes.Store(1)
	ps := &partState{topic: &topicState{name: topic}, id: 0}
	oldSink := &sink{pr: pr, wake: make(chan struct{}, 1)}
	newSink := &sink{pr: pr, wake: make(chan struct{}, 1)}

	ps.mu.Lock()
	ps.sink = oldSink
	ps.laneLocked(0).pending = []*record{{}} // a record waits to be sent
	ps.mu.Unlock()
	oldSink.markReady(ps)

	ps.mu.Lock()
	ps.sink = newSink // the refresher found the new leader
	ps.mu.Unlock()
	newSink.markReady(ps) // listed on the old sink still: skipped

	oldSink.run()
	newSink.mu.Lock()
	defer newSink.mu.Unlock()
	assert.Contains(t, newSink.ready, ps, "the new leader's sink will send its records")
}

func TestAProducerRetiredAsBrokenDoesNotSendAgainWhatItHadInFlight(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), keyed("before"))
	require.NoError(t, err)

	// The next produce request is held, then answered
	// NOT_LEADER_FOR_PARTITION: a batch the producer would send again.
	h := newHeld(t)
	var armed atomic.Bool
	armed.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !armed.CompareAndSwap(true, false) {
			return nil, nil, false
		}
		h.sleep(c)
		return refuseProduce(req, batchesOf(t, req), func(batchOf) (int16, []int32) {
			return kerr.NotLeaderForPartition.Code, nil
		}), nil, true
	})
	// One goroutine's stream, ordered per partition (one key).
	outcome := func(ch chan error) func(*sarama.ProducerMessage, error) {
		return func(_ *sarama.ProducerMessage, err error) { ch <- err }
	}
	inFlight, after := make(chan error, 1), make(chan error, 1)
	p.Produce(context.Background(), keyed("in flight"), outcome(inFlight))
	<-h.seen

	// Meanwhile the producer is found broken; then the broker answers.
	old := p.allProducers()
	require.Len(t, old, 1)
	old[0].broken(errors.New("test: broken"))
	h.release()
	err = <-inFlight
	require.ErrorIs(t, err, ErrUnavailable, "a broken producer sends nothing again: not written, and never later")

	// A fresh producer takes what comes next.
	p.Produce(context.Background(), keyed("after"), outcome(after))
	require.NoError(t, <-after)
	require.NoError(t, p.Flush(context.Background()))
	require.NoError(t, p.Close(context.Background()))
	var stored []string
	for _, r := range readBack(t, c, topic) {
		stored = append(stored, r.Value)
	}
	assert.Equal(t, []string{"before", "after"}, stored)
	assert.EqualValues(t, 2, p.Stats().ProvisionAttempts)
}
