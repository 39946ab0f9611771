package fxkafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// reqHead is what a broker's side of a connection read of one request: its
// API key and version.
type reqHead struct{ key, version int16 }

// tamperFn rewrites one answer a kfake broker writes (its whole frame,
// length first) to the request h. It returns the bytes to write instead
// and whether to close the connection after writing them.
type tamperFn func(h reqHead, frame []byte) (out []byte, closeAfter bool)

// tamperListener is a kfake broker's listener whose connections let a
// test rewrite the broker's answers (tamper), or stop reading what the
// pool writes (stall): a broker that answers garbage, the wrong
// correlation id, half an answer, or that stops reading.
type tamperListener struct {
	net.Listener
	tamper         atomic.Pointer[tamperFn]
	mu             sync.Mutex
	conns          []*tamperConn
	free           chan struct{} // closed by unstall
	read           atomic.Int64  // bytes the broker read, on every connection
	produceVersion atomic.Int32  // of the last produce request read
	once           sync.Once
}

func (l *tamperListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// A small receive buffer, so that a broker that stops reading
		// stops the pool's writes soon.
		_ = tc.SetReadBuffer(4096)
	}
	tc := &tamperConn{Conn: c, l: l, reqs: make(map[int32]reqHead), eof: make(chan struct{})}
	l.mu.Lock()
	l.conns = append(l.conns, tc)
	l.mu.Unlock()
	return tc, nil
}

// set makes fn rewrite the broker's answers from now on (nil: none).
func (l *tamperListener) set(fn tamperFn) {
	if fn == nil {
		l.tamper.Store(nil)
		return
	}
	l.tamper.Store(&fn)
}

// stall makes the connections open now read nothing more (kfake's
// reader blocks in Read) until unstall; connections accepted later read.
func (l *tamperListener) stall() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.stalled.Store(true)
	}
}

// unstall lets every stalled connection read again.
func (l *tamperListener) unstall() { l.once.Do(func() { close(l.free) }) }

// tamperConn is the broker's side of one connection: it follows the
// requests read (their headers) so that an answer can be matched to its
// request by correlation id.
type tamperConn struct {
	net.Conn
	l       *tamperListener
	stalled atomic.Bool   // reads nothing more until the listener's unstall
	eof     chan struct{} // closed when a read fails: the broker has read all it will
	eofOnce sync.Once

	mu   sync.Mutex // protects following
	head []byte     // the header of the request being read, up to 12 bytes
	skip int        // bytes of the current request's body still to come
	reqs map[int32]reqHead
}

func (c *tamperConn) Read(b []byte) (int, error) {
	if c.stalled.Load() {
		<-c.l.free
	}
	n, err := c.Conn.Read(b)
	c.l.read.Add(int64(n))
	c.follow(b[:n])
	if err != nil {
		c.eofOnce.Do(func() { close(c.eof) })
	}
	return n, err
}

// follow reads the request headers in the bytes b the broker read.
func (c *tamperConn) follow(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(b) > 0 {
		if c.skip > 0 {
			k := min(c.skip, len(b))
			c.skip -= k
			b = b[k:]
			continue
		}
		k := min(12-len(c.head), len(b))
		c.head = append(c.head, b[:k]...)
		b = b[k:]
		if len(c.head) < 12 {
			return
		}
		size := int(binary.BigEndian.Uint32(c.head))
		key := int16(binary.BigEndian.Uint16(c.head[4:]))
		version := int16(binary.BigEndian.Uint16(c.head[6:]))
		corr := int32(binary.BigEndian.Uint32(c.head[8:]))
		c.reqs[corr] = reqHead{key, version}
		if key == int16(kmsg.Produce) {
			c.l.produceVersion.Store(int32(version))
		}
		c.skip = size - 8
		c.head = c.head[:0]
	}
}

func (c *tamperConn) Write(b []byte) (int, error) {
	fn := c.l.tamper.Load()
	if fn == nil || len(b) < 8 {
		return c.Conn.Write(b)
	}
	corr := int32(binary.BigEndian.Uint32(b[4:]))
	c.mu.Lock()
	h, ok := c.reqs[corr]
	delete(c.reqs, corr)
	c.mu.Unlock()
	if !ok {
		return c.Conn.Write(b)
	}
	out, closeAfter := (*fn)(h, b)
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	if closeAfter {
		_ = c.Conn.Close()
		return 0, net.ErrClosed
	}
	return len(b), nil
}

// startTamperBroker starts a one-broker kfake cluster serving topic (3
// partitions) on a tamperListener.
func startTamperBroker(t *testing.T, opts ...kfake.Opt) (*kfake.Cluster, *tamperListener) {
	t.Helper()
	var tl *tamperListener
	opts = append(opts, kfake.NumBrokers(1), kfake.SeedTopics(3, topic), kfake.ListenFn(func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		tl = &tamperListener{Listener: ln, free: make(chan struct{})}
		return tl, nil
	}))
	c, err := kfake.NewCluster(opts...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	t.Cleanup(tl.unstall) // before the cluster closes: its readers return
	return c, tl
}

// onceOnProduce is a tamperFn that rewrites the first produce answer with
// fn and lets every other answer through.
func onceOnProduce(fn tamperFn) tamperFn {
	var done atomic.Bool
	return func(h reqHead, frame []byte) ([]byte, bool) {
		if h.key != int16(kmsg.Produce) || !done.CompareAndSwap(false, true) {
			return frame, false
		}
		return fn(h, frame)
	}
}

// wrongAnswers are ways a broker can answer a produce request the pool
// cannot read. The broker stored the batch before answering.
var wrongAnswers = []struct {
	name string
	give tamperFn
}{
	{"another correlation id", func(_ reqHead, f []byte) ([]byte, bool) {
		out := append([]byte(nil), f...)
		binary.BigEndian.PutUint32(out[4:], binary.BigEndian.Uint32(f[4:])+1)
		return out, false
	}},
	{"half an answer, then the connection closes", func(_ reqHead, f []byte) ([]byte, bool) {
		return f[:len(f)/2], true
	}},
	{"only the length, then the connection closes", func(_ reqHead, f []byte) ([]byte, bool) {
		return f[:4], true
	}},
	{"a body that is no produce answer", func(_ reqHead, f []byte) ([]byte, bool) {
		out := append([]byte(nil), f[:8]...)
		out = binary.BigEndian.AppendUint32(out, 0x7fffffff) // topics, and nothing after
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		return out, false
	}},
	{"a negative topic count", func(_ reqHead, f []byte) ([]byte, bool) {
		out := append([]byte(nil), f[:8]...)
		out = binary.BigEndian.AppendUint32(out, 0xffffffff)
		out = binary.BigEndian.AppendUint32(out, 0) // throttle
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		return out, false
	}},
	{"an answer for a partition not asked", func(_ reqHead, f []byte) ([]byte, bool) {
		out := append([]byte(nil), f[:8]...)
		out = binary.BigEndian.AppendUint32(out, 1) // one topic
		out = appendString(out, topic)
		out = binary.BigEndian.AppendUint32(out, 1) // one partition
		out = binary.BigEndian.AppendUint32(out, 99)
		out = binary.BigEndian.AppendUint16(out, 0)
		out = binary.BigEndian.AppendUint64(out, 0)
		out = binary.BigEndian.AppendUint64(out, ^uint64(0)) // log append time -1
		out = binary.BigEndian.AppendUint64(out, 0)          // log start offset
		out = binary.BigEndian.AppendUint32(out, 0)          // record errors
		out = binary.BigEndian.AppendUint16(out, 0xffff)     // error message
		out = binary.BigEndian.AppendUint32(out, 0)          // throttle
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		return out, false
	}},
}

// TestAProduceAnswerThePoolCannotReadIsOutcomeUnknownAndNeverSentAgain:
// for every kind of unreadable answer to a request the broker stored, a
// producer without idempotence reports the message as may-have-been-written
// (never as not sent, never as delivered), never writes it again, and its
// next send goes through on a fresh connection.
func TestAProduceAnswerThePoolCannotReadIsOutcomeUnknownAndNeverSentAgain(t *testing.T) {
	for _, tt := range wrongAnswers {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			c, tl := startTamperBroker(t)
			p := newTestPool(t, testConfig(c.ListenAddrs()...))
			require.True(t, wireUsable(&p.set, p.base.config), "the test needs the pool's own connections")
			tl.set(onceOnProduce(tt.give))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m := msg("first")
			m.Partition = 0
			_, _, err := p.SendMessage(ctx, m)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrDeliveryUnknown, "the request was written: %v", err)
			assert.NotErrorIs(t, err, ErrUnavailable)

			_, _, err = p.SendMessage(ctx, msg("second"))
			require.NoError(t, err, "the next send goes on a fresh connection")
			require.NoError(t, p.Close(ctx))
			got := countValues(readBack(t, c, topic))
			assert.Equal(t, map[string]int{"first": 1, "second": 1}, got, "the pool wrote nothing twice")
			st := p.Stats()
			assert.EqualValues(t, 1, st.FailedUnknown)
			assert.EqualValues(t, 0, st.FailedUnavailable)
		})
	}
}

// TestAnIdempotentProducerRetriesAnUnreadableAnswerAndStoresOnce: with
// idempotence the same answers make the pool send the batch again, which
// the broker recognises: the send succeeds and the message is stored once.
func TestAnIdempotentProducerRetriesAnUnreadableAnswerAndStoresOnce(t *testing.T) {
	for _, tt := range wrongAnswers {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			c, tl := startTamperBroker(t)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.Idempotent = true
			p := newTestPool(t, cfg)
			_, _, err := p.SendMessage(context.Background(), msg("warm"))
			require.NoError(t, err)
			tl.set(onceOnProduce(tt.give))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _, err = p.SendMessage(ctx, msg("first"))
			require.NoError(t, err, "sent again on a fresh connection")
			_, _, err = p.SendMessage(ctx, msg("second"))
			require.NoError(t, err)
			require.NoError(t, p.Close(ctx))
			got := countValues(readBack(t, c, topic))
			assert.Equal(t, 1, got["second"])
			assert.Equal(t, 1, got["first"], "stored once")
		})
	}
}

// TestAWireReadingAnApiVersionsAnswerWithAHugeCountFailsAtOnce: a peer
// answering ApiVersions with an array length of 2^31-1 and nothing after
// it is refused as soon as the bytes run out, not after counting through
// the array.
func TestAWireReadingAnApiVersionsAnswerWithAHugeCountFailsAtOnce(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	w := &wire{conn: client, addr: "pipe", clientID: "fxkafka", readTimeout: 5 * time.Second, writeTimeout: 5 * time.Second}
	go func() {
		var req [64]byte
		_, _ = server.Read(req[:])
		ans := binary.BigEndian.AppendUint32(nil, 0)      // length, below
		ans = binary.BigEndian.AppendUint32(ans, 0)       // correlation id
		ans = binary.BigEndian.AppendUint16(ans, 0)       // error code
		ans = binary.BigEndian.AppendUint32(ans, 1<<31-1) // APIs, none given
		binary.BigEndian.PutUint32(ans, uint32(len(ans)-4))
		_, _ = server.Write(ans)
	}()
	start := time.Now()
	_, err := w.produceVersions()
	require.Error(t, err)
	var we *wireError
	assert.ErrorAs(t, err, &we)
	assert.Less(t, time.Since(start), 100*time.Millisecond, "the answer was refused once its bytes ran out")
}

// FuzzDecodeProduceResponse: whatever bytes a broker answers, the pool's
// decoder returns an answer or an error, never panics, and when franz-go's
// decoder reads the same bytes too, both read the same blocks.
func FuzzDecodeProduceResponse(f *testing.F) {
	for v := int16(3); v <= maxWireProduceVersion; v++ {
		resp := kmsg.NewPtrProduceResponse()
		resp.Version = v
		resp.ThrottleMillis = 3
		msg := "bad"
		for _, name := range []string{"a", ""} {
			tp := kmsg.NewProduceResponseTopic()
			tp.Topic = name
			for id := int32(0); id < 2; id++ {
				part := kmsg.NewProduceResponseTopicPartition()
				part.Partition = id
				part.BaseOffset = 10 * int64(id)
				part.LogAppendTime = -1
				if id == 1 {
					part.ErrorCode = int16(sarama.ErrInvalidRecord)
					part.ErrorMessage = &msg
					part.ErrorRecords = []kmsg.ProduceResponseTopicPartitionErrorRecord{{RelativeOffset: 0}, {RelativeOffset: 2, ErrorMessage: &msg}}
				}
				tp.Partitions = append(tp.Partitions, part)
			}
			resp.Topics = append(resp.Topics, tp)
		}
		body := resp.AppendTo(nil)
		f.Add(uint8(v), body)
		f.Add(uint8(v), body[:len(body)/2])
	}
	f.Add(uint8(8), []byte{0x7f, 0xff, 0xff, 0xff})
	f.Add(uint8(8), []byte{0, 0, 0, 1, 0, 1, 'a', 0x7f, 0xff, 0xff, 0xff})
	f.Add(uint8(8), []byte{0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v uint8, body []byte) {
		version := 3 + int16(v)%(maxWireProduceVersion-2)
		got, err := decodeProduceResponse(body, version)
		if err != nil {
			return
		}
		require.NotNil(t, got)
		want := kmsg.NewPtrProduceResponse()
		want.Version = version
		if want.ReadFrom(body) != nil {
			return
		}
		// Each topic's last list wins in a map; compare what franz-go
		// read last for each partition.
		blocks := map[string]map[int32]kmsg.ProduceResponseTopicPartition{}
		for _, tp := range want.Topics {
			blocks[tp.Topic] = map[int32]kmsg.ProduceResponseTopicPartition{}
			for _, part := range tp.Partitions {
				blocks[tp.Topic][part.Partition] = part
			}
		}
		require.Len(t, got.Blocks, len(blocks))
		for name, parts := range blocks {
			require.Len(t, got.Blocks[name], len(parts), "topic %q", name)
			for id, part := range parts {
				b := got.Blocks[name][id]
				require.NotNil(t, b, "%s/%d", name, id)
				assert.EqualValues(t, part.ErrorCode, b.Err)
				assert.Equal(t, part.BaseOffset, b.Offset)
				if version >= 5 {
					assert.Equal(t, part.LogStartOffset, b.StartOffset)
				}
				if version >= 8 {
					assert.Equal(t, part.ErrorMessage, b.ErrorMessage)
					assert.Len(t, b.RecordErrors, len(part.ErrorRecords))
				}
			}
		}
		assert.Equal(t, time.Duration(want.ThrottleMillis)*time.Millisecond, got.ThrottleTime)
	})
}

// TestAcksNoneOnThePoolsOwnConnectionsStoresEveryMessageOnce: with
// RequiredAcks "none" the pool writes requests no answer follows: every
// send returns, every message is stored once, and Close leaves no reader
// waiting for an answer.
func TestAcksNoneOnThePoolsOwnConnectionsStoresEveryMessageOnce(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.RequiredAcks = "none"
	p := newTestPool(t, cfg)
	require.True(t, wireUsable(&p.set, p.base.config))
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, _, err := p.SendMessage(context.Background(), msg(value(i)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, p.Close(context.Background()))
	// kfake stores what it read; the pool wrote it all before Close
	// returned, and kfake reads a connection to its end.
	var got map[string]int
	waitFor(t, 5*time.Second, "kfake to store every request written", func() bool {
		var total int64
		for _, pi := range c.PartitionInfos(topic) {
			total += pi.HighWatermark
		}
		return total >= n
	})
	got = countValues(readBack(t, c, topic))
	require.Len(t, got, n)
	for v, k := range got {
		require.Equal(t, 1, k, "value %s", v)
	}
}

// TestAcksNoneAfterTheBrokerDroppedAnIdleConnectionGoesOnAFreshOne: with
// no answer to learn from, the stale check is all that tells the pool its
// connection is gone: the message goes on a fresh one and is stored.
func TestAcksNoneAfterTheBrokerDroppedAnIdleConnectionGoesOnAFreshOne(t *testing.T) {
	checkLeaks(t)
	c, tl := startTamperBroker(t)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.RequiredAcks = "none"
	p := newTestPool(t, cfg)
	_, _, err := p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the first message to be stored", func() bool {
		return c.PartitionInfos(topic)[0].HighWatermark+c.PartitionInfos(topic)[1].HighWatermark+c.PartitionInfos(topic)[2].HighWatermark == 1
	})
	before := connsOf(p)
	waitAccepted(t, before, func() []net.Conn {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		out := make([]net.Conn, len(tl.conns))
		for i, tc := range tl.conns {
			out[i] = tc
		}
		return out
	})
	tl.mu.Lock()
	for _, tc := range tl.conns {
		_ = tc.Close()
	}
	tl.mu.Unlock()
	waitClosedByPeer(t, p, before)
	_, _, err = p.SendMessage(context.Background(), msg("after"))
	require.NoError(t, err)
	waitFor(t, 5*time.Second, "the second message to be stored", func() bool {
		var total int64
		for _, pi := range c.PartitionInfos(topic) {
			total += pi.HighWatermark
		}
		return total == 2
	})
	require.Equal(t, map[string]int{"before": 1, "after": 1}, countValues(readBack(t, c, topic)))
}

// TestCloseWithProduceRequestsInFlightOnTheWireTellsEveryPromiseOnce: a
// broker holding every produce request while Close runs out of time:
// every promise is called exactly once, before Close returns, with nil or
// an error of a documented class, and no goroutine is left.
func TestCloseWithProduceRequestsInFlightOnTheWireTellsEveryPromiseOnce(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("warm"))
	require.NoError(t, err)
	h := holdRequests(t, c, kmsg.Produce)
	const n = 500
	var calls [n]atomic.Int32
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range n {
		p.Produce(context.Background(), msg(value(i)), func(_ *sarama.ProducerMessage, err error) {
			calls[i].Add(1)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				outcomes["nil"]++
			case errors.Is(err, ErrDeliveryUnknown):
				outcomes["unknown"]++
			case errors.Is(err, ErrPoolClosed):
				outcomes["closed"]++
			case errors.Is(err, ErrUnavailable):
				outcomes["unavailable"]++
			default:
				outcomes[err.Error()]++
			}
		})
	}
	<-h.seen
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = p.Close(ctx)
	assert.Less(t, time.Since(start), 300*time.Millisecond+abortGrace+time.Second, "Close returned about when its context ended")
	for i := range n {
		require.EqualValues(t, 1, calls[i].Load(), "promise %d called once before Close returned", i)
	}
	mu.Lock()
	total := 0
	for class, k := range outcomes {
		assert.Contains(t, []string{"nil", "unknown", "closed", "unavailable"}, class)
		total += k
	}
	mu.Unlock()
	assert.Equal(t, n, total)
	assert.NotZero(t, outcomes["unknown"], "the requests held were in flight: %v", outcomes)
	h.release()
}

// TestABrokerTakingProduceOnlyBelowVersion3RefusesTheSendAsNotSent: a
// broker whose ApiVersions answer lists Produce only up to version 2 (no
// record batches) while Config.Version says 2.4: the pool's own
// connection writes nothing, and the send fails as not sent, naming the
// unsupported version, within its deadline; nothing is stored.
func TestABrokerTakingProduceOnlyBelowVersion3RefusesTheSendAsNotSent(t *testing.T) {
	checkLeaks(t)
	vs := kversion.V2_4_0()
	vs.SetMaxKeyVersion(int16(kmsg.Produce), 2)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic), kfake.MaxVersions(vs))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Version = "2.4.0"
	p := newTestPool(t, cfg)
	produced := countProduce(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err = p.SendMessage(ctx, msg("v"))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrUnavailable, "%v", err)
	assert.NotErrorIs(t, err, ErrDeliveryUnknown)
	assert.ErrorIs(t, err, sarama.ErrUnsupportedVersion)
	assert.NoError(t, ctx.Err(), "failed before the deadline")
	assert.Zero(t, produced.Hits(), "no produce request was written")
	require.NoError(t, p.Close(ctx))
	assert.Empty(t, readBack(t, c, topic))
}

// setTimeouts shortens the read and write timeouts the pool's connections
// take (the pool's own settings, which WithSaramaConfig may not change),
// before p provisions its first producer.
func setTimeouts(p *ProducerPool, read, write time.Duration) {
	p.base.config.Net.ReadTimeout = read
	p.base.config.Net.WriteTimeout = write
}

// TestABrokerThatStopsReadingFailsTheSendByTheWriteTimeout: a broker that
// stops reading while a large request is being written: each write gives
// up at the write timeout, part of the request written, and the send
// fails as not sent well before its deadline; the pool sends again on a
// fresh connection once the broker reads, and nothing is stored twice.
func TestABrokerThatStopsReadingFailsTheSendByTheWriteTimeout(t *testing.T) {
	checkLeaks(t)
	c, tl := startTamperBroker(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(16 << 20)}))
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxMessageBytes = 16 << 20
	p := newTestPool(t, cfg, WithSaramaConfig(func(sc *sarama.Config) { sc.Producer.Retry.Max = 0 }))
	setTimeouts(p, 2*time.Second, 300*time.Millisecond)
	_, _, err := p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)

	tl.stall()
	big := msg("big")
	big.Value = sarama.ByteEncoder(make([]byte, 12<<20)) // past any socket buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = p.SendMessage(ctx, big)
	require.Error(t, err)
	assert.NoError(t, ctx.Err(), "failed by the write timeout, not the deadline: %v", err)
	// Only part of the request reached the broker, on a connection the
	// pool then closed: a frame cut short is never read as a request, so
	// the message was not written, as a write failing through sarama's
	// Broker says too.
	assert.ErrorIs(t, err, ErrUnavailable, "%v", err)
	assert.NotErrorIs(t, err, ErrDeliveryUnknown)
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "the cause is the write's timeout: %v", err)

	// A fresh connection, which the broker reads, takes the next.
	_, _, err = p.SendMessage(ctx, msg("after"))
	require.NoError(t, err)
	require.NoError(t, p.Close(ctx))
	tl.unstall()
	got := countValues(readBack(t, c, topic))
	assert.Equal(t, 1, got["before"])
	assert.Equal(t, 1, got["after"])
	assert.Zero(t, got[string(make([]byte, 12<<20))], "the request cut short was not stored")
}

// TestABrokerThatNeverAnswersFailsTheSendAtTheReadTimeoutAsOutcomeUnknown:
// a produce request the broker holds past the read timeout is outcome
// unknown (it was written), is not sent again, and the next send goes on
// a fresh connection.
func TestABrokerThatNeverAnswersFailsTheSendAtTheReadTimeoutAsOutcomeUnknown(t *testing.T) {
	checkLeaks(t)
	c := startBroker(t, "", topic)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	setTimeouts(p, 500*time.Millisecond, time.Second)
	_, _, err := p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)
	h := holdRequests(t, c, kmsg.Produce)
	produced := countProduce(c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = p.SendMessage(ctx, msg("held"))
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrDeliveryUnknown, "%v", err)
	assert.NoError(t, ctx.Err())
	h.release()
	_, _, err = p.SendMessage(ctx, msg("after"))
	require.NoError(t, err)
	require.NoError(t, p.Close(ctx))
	assert.Equal(t, 2, produced.Hits(), "the held request was not written again")
	got := countValues(readBack(t, c, topic))
	assert.Equal(t, 1, got["after"])
	assert.LessOrEqual(t, got["held"], 1)
}

// trapProxy is a broker's address that another broker takes over: it
// forwards connections to to, except that a connection opened while trap
// is set whose first request is ApiVersions version 0 (the pool's own
// connection asking) waits for release, and then reaches takenBy.
type trapProxy struct {
	ln          net.Listener
	to, takenBy string
	trap        atomic.Bool
	trapped     chan struct{} // a value per connection caught
	release     chan struct{}
	done        chan struct{}
	mu          sync.Mutex
	conns       []net.Conn
	wg          sync.WaitGroup
}

func startTrapProxy(t *testing.T, to, takenBy string) *trapProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	x := &trapProxy{ln: ln, to: to, takenBy: takenBy, trapped: make(chan struct{}, 8), release: make(chan struct{}), done: make(chan struct{})}
	x.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			x.track(c)
			x.wg.Go(func() { x.serve(c) })
		}
	})
	t.Cleanup(x.close)
	return x
}

func (x *trapProxy) addr() string { return x.ln.Addr().String() }

func (x *trapProxy) track(c net.Conn) {
	x.mu.Lock()
	x.conns = append(x.conns, c)
	x.mu.Unlock()
}

func (x *trapProxy) serve(c net.Conn) {
	head := make([]byte, 12)
	if _, err := io.ReadFull(c, head); err != nil {
		return
	}
	key, version := binary.BigEndian.Uint16(head[4:]), binary.BigEndian.Uint16(head[6:])
	target := x.to
	if x.trap.Load() && key == apiKeyAPIVersions && version == 0 {
		x.trapped <- struct{}{}
		select {
		case <-x.release:
		case <-x.done:
			return
		}
		target = x.takenBy
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		_ = c.Close()
		return
	}
	x.track(up)
	if _, err := up.Write(head); err != nil {
		return
	}
	x.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close(); _ = c.Close() })
	_, _ = io.Copy(c, up)
	_ = up.Close()
	_ = c.Close()
}

// dropAll closes every connection through the proxy.
func (x *trapProxy) dropAll() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, c := range x.conns {
		_ = c.Close()
	}
	x.conns = nil
}

func (x *trapProxy) close() {
	select {
	case <-x.done:
		return
	default:
	}
	close(x.done)
	_ = x.ln.Close()
	x.dropAll()
	x.wg.Wait()
}

// advertiseAt is a tamperFn that rewrites every broker's address in the
// metadata a broker answers to the one *at holds.
func advertiseAt(t *testing.T, at *atomic.Pointer[string]) tamperFn {
	return func(h reqHead, frame []byte) ([]byte, bool) {
		if h.key != int16(kmsg.Metadata) {
			return frame, false
		}
		resp := kmsg.NewPtrMetadataResponse()
		resp.Version = h.version
		start := 8
		if resp.IsFlexible() {
			start = 9 // the response header's tagged fields
		}
		if err := resp.ReadFrom(frame[start:]); err != nil {
			t.Errorf("kfake's metadata answer: %v", err)
			return frame, false
		}
		host, port, _ := net.SplitHostPort(*at.Load())
		n, _ := strconv.Atoi(port)
		for i := range resp.Brokers {
			resp.Brokers[i].Host, resp.Brokers[i].Port = host, int32(n)
		}
		out := resp.AppendTo(append([]byte(nil), frame[:start]...))
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		return out, false
	}
}

// sinkAddr is the address of the broker p's producer's sink for broker
// id sends to now ("" if there is none).
func sinkAddr(p *ProducerPool, id int32) string {
	for _, pr := range p.allProducers() {
		pr.mu.Lock()
		s := pr.sinks[id]
		pr.mu.Unlock()
		if s != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.broker.Addr()
		}
	}
	return ""
}

// TestAConnectionDialledToABrokersOldAddressIsNotKept: the pool's own
// connection to a broker is being opened to its address when the metadata
// says the broker moved (another broker took the old address over). The
// pool must not keep that connection: what it carries would go to the
// broker now at the old address. Every message is stored by the cluster
// the pool was given, none by the other.
func TestAConnectionDialledToABrokersOldAddressIsNotKept(t *testing.T) {
	checkLeaks(t)
	const other = "other"
	c, tl := startTamperBroker(t, kfake.SeedTopics(3, other))
	stranger := startBroker(t, "", topic, other) // the cluster that takes the old address over
	x := startTrapProxy(t, c.ListenAddrs()[0], stranger.ListenAddrs()[0])
	var at atomic.Pointer[string]
	old, moved := x.addr(), c.ListenAddrs()[0]
	at.Store(&old)
	tl.set(advertiseAt(t, &at))

	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)
	require.Equal(t, old, sinkAddr(p, 0))

	// The connections at the old address drop; the next send finds its
	// connection dead before writing, and dials the old address again:
	// that dial is caught.
	var before []*trackedConn
	for _, tc := range connsOf(p) {
		if tc.addr == old {
			before = append(before, tc)
		}
	}
	require.NotEmpty(t, before)
	waitAccepted(t, before, func() []net.Conn {
		x.mu.Lock()
		defer x.mu.Unlock()
		return slices.Clone(x.conns)
	})
	x.trap.Store(true)
	x.dropAll()
	waitClosedByPeer(t, p, before)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sent := make(chan error, 2)
	go func() {
		_, _, err := p.SendMessage(ctx, msg("during"))
		sent <- err
	}()
	select {
	case <-x.trapped:
	case <-ctx.Done():
		t.Fatal("the pool did not dial the old address again")
	}

	// Meanwhile the broker moves: a new topic's metadata says so.
	at.Store(&moved)
	go func() {
		_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: other, Value: sarama.StringEncoder("other")})
		sent <- err
	}()
	waitFor(t, 5*time.Second, "the sink to learn the broker's new address", func() bool { return sinkAddr(p, 0) == moved })
	close(x.release)
	for range 2 {
		assert.NoError(t, <-sent)
	}
	_, _, err = p.SendMessage(ctx, msg("after"))
	require.NoError(t, err)
	require.NoError(t, p.Close(ctx))
	x.close()

	assert.Empty(t, readBack(t, stranger, topic), "nothing went to the broker at the old address")
	assert.Empty(t, readBack(t, stranger, other), "nothing went to the broker at the old address")
	assert.Equal(t, map[string]int{"before": 1, "during": 1, "after": 1}, countValues(readBack(t, c, topic)))
	assert.Equal(t, map[string]int{"other": 1}, countValues(readBack(t, c, other)))
}

// TestABrokerWhoseAddressMovesIsSentToAtItsNewAddress: once the metadata
// says a broker moved, the sink's connection to its old address closes
// (its answers in) and the next request goes on one to the new address.
func TestABrokerWhoseAddressMovesIsSentToAtItsNewAddress(t *testing.T) {
	checkLeaks(t)
	const other = "other"
	c, tl := startTamperBroker(t, kfake.SeedTopics(3, other))
	x := startTrapProxy(t, c.ListenAddrs()[0], "")
	var at atomic.Pointer[string]
	old, moved := x.addr(), c.ListenAddrs()[0]
	at.Store(&old)
	tl.set(advertiseAt(t, &at))
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	_, _, err := p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)
	addrs := func() map[string]int {
		m := map[string]int{}
		for _, tc := range connsOf(p) {
			m[tc.addr]++
		}
		return m
	}
	require.NotZero(t, addrs()[old], "the pool's connections go to the old address")

	at.Store(&moved)
	_, _, err = p.SendMessage(context.Background(), &sarama.ProducerMessage{Topic: other, Value: sarama.StringEncoder("other")})
	require.NoError(t, err)
	require.Equal(t, moved, sinkAddr(p, 0))
	_, _, err = p.SendMessage(context.Background(), msg("after"))
	require.NoError(t, err)
	assert.Zero(t, addrs()[old], "no connection to the old address is left open: %v", addrs())
	require.NoError(t, p.Close(context.Background()))
	assert.Equal(t, map[string]int{"before": 1, "after": 1}, countValues(readBack(t, c, topic)))
}

// TestATransactionCommitsOnceAfterAnUnreadableProduceAnswer: a
// transactional lease whose produce answer the pool cannot read sends the
// batch again on a fresh connection (the lease is idempotent); the
// transaction commits, with each message once.
func TestATransactionCommitsOnceAfterAnUnreadableProduceAnswer(t *testing.T) {
	checkLeaks(t)
	c, tl := startTamperBroker(t)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TransactionalID = "wire-tx"
	p := newTestPool(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := p.Lease(ctx)
	require.NoError(t, err)
	defer l.Release()
	require.True(t, l.pr.wired, "the lease writes its own requests")
	require.NoError(t, l.BeginTxn())
	tl.set(onceOnProduce(wrongAnswers[1].give)) // half an answer, then the connection closes
	_, _, err = l.SendMessage(ctx, keyed("in-1"))
	require.NoError(t, err)
	_, _, err = l.SendMessage(ctx, keyed("in-2"))
	require.NoError(t, err)
	require.NoError(t, l.CommitTxn(ctx))
	l.Release()
	require.NoError(t, p.Close(ctx))
	assert.Equal(t, []string{"in-1", "in-2"}, readUntil(t, c, true, "in-1", "in-2"))
	var offsets int64
	for _, pi := range c.PartitionInfos(topic) {
		offsets += pi.HighWatermark
	}
	assert.EqualValues(t, 3, offsets, "two records and the commit's marker: nothing stored twice")
}

// everyNthProduce is a tamperFn that rewrites every nth produce answer
// with fn, cycling through the wrong answers.
func everyNthProduce(n int64) tamperFn {
	var count atomic.Int64
	return func(h reqHead, frame []byte) ([]byte, bool) {
		if h.key != int16(kmsg.Produce) {
			return frame, false
		}
		k := count.Add(1)
		if k%n != 0 {
			return frame, false
		}
		return wrongAnswers[(k/n)%int64(len(wrongAnswers))].give(h, frame)
	}
}

// TestEveryPromiseIsCalledOnceWhileTheBrokerGarblesAnswers: thousands of
// Produce calls while one produce answer in five cannot be read (requests
// pipelining on the pool's own connections, several in flight when one
// fails): every promise is called once, with nil or a documented class;
// what was acknowledged is stored once, what was not sent is not stored,
// nothing is stored twice; with idempotence every message is delivered.
func TestEveryPromiseIsCalledOnceWhileTheBrokerGarblesAnswers(t *testing.T) {
	for _, idem := range []bool{false, true} {
		t.Run(fmt.Sprintf("Idempotent=%v", idem), func(t *testing.T) {
			checkLeaks(t)
			c, tl := startTamperBroker(t)
			cfg := testConfig(c.ListenAddrs()...)
			cfg.Idempotent = idem
			p := newTestPool(t, cfg)
			_, _, err := p.SendMessage(context.Background(), msg("warm"))
			require.NoError(t, err)
			tl.set(everyNthProduce(5))
			const n = 3000
			var calls [n]atomic.Int32
			var mu sync.Mutex
			results := make(map[string]error, n)
			for i := range n {
				p.Produce(context.Background(), msg(value(i)), func(_ *sarama.ProducerMessage, err error) {
					calls[i].Add(1)
					mu.Lock()
					results[value(i)] = err
					mu.Unlock()
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, p.Flush(ctx))
			tl.set(nil)
			require.NoError(t, p.Close(ctx))
			for i := range n {
				require.EqualValues(t, 1, calls[i].Load(), "promise %d", i)
			}
			stored := countValues(readBack(t, c, topic))
			var unknown int
			for v, err := range results {
				switch {
				case err == nil:
					assert.Equal(t, 1, stored[v], "%s acknowledged", v)
				case errors.Is(err, ErrDeliveryUnknown):
					unknown++
					assert.LessOrEqual(t, stored[v], 1, "%s", v)
				case errors.Is(err, ErrUnavailable):
					assert.Zero(t, stored[v], "%s not sent: %v", v, err)
				default:
					t.Errorf("%s: an error of no documented class: %v", v, err)
				}
				if idem {
					assert.NoError(t, err, "%s", v)
				}
			}
			for v, k := range stored {
				assert.Equal(t, 1, k, "%s stored once", v)
			}
			t.Logf("unknown: %d of %d", unknown, n)
		})
	}
}

// TestCloseWhileAWriteIsBlockedOnABrokerThatStoppedReadingReturnsInTime: a
// write blocked on a broker that stopped reading (the write timeout is 10
// s) does not hold Close past its context and the abort's grace: the
// connection is aborted, the send ends as not sent or closed, and no
// goroutine is left.
func TestCloseWhileAWriteIsBlockedOnABrokerThatStoppedReadingReturnsInTime(t *testing.T) {
	checkLeaks(t)
	c, tl := startTamperBroker(t, kfake.BrokerConfigs(map[string]string{"message.max.bytes": strconv.Itoa(16 << 20)}))
	cfg := testConfig(c.ListenAddrs()...)
	cfg.MaxMessageBytes = 16 << 20
	p, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close(context.Background()) }) // after a failure; Close twice is safe
	_, _, err = p.SendMessage(context.Background(), msg("before"))
	require.NoError(t, err)
	tl.stall()
	big := msg("big")
	big.Value = sarama.ByteEncoder(make([]byte, 12<<20))
	sent := make(chan error, 1)
	// The broker reads the request's first bytes (kfake's reader was in a
	// Read already), and no more: the write blocks once the buffers fill.
	// Taken before the send starts, so that the first bytes count.
	read := tl.read.Load()
	go func() {
		_, _, err := p.SendMessage(context.Background(), big)
		sent <- err
	}()
	waitFor(t, 5*time.Second, "the big request to be written", func() bool { return tl.read.Load() > read })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = p.Close(ctx)
	assert.Less(t, time.Since(start), 300*time.Millisecond+abortGrace+500*time.Millisecond, "Close returned by its deadline and the abort's grace")
	err = <-sent
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrPoolClosed) || errors.Is(err, ErrUnavailable), "not sent: %v", err)
	tl.unstall()
	assert.Zero(t, countValues(readBack(t, c, topic))[string(make([]byte, 12<<20))])
}

// TestTheWireWritesTheHighestProduceVersionTheBrokerTakes: a broker whose
// ApiVersions answer lists produce up to version 5, below what
// Config.Version allows, gets version 5 requests, whose answers the pool
// reads (idempotent, so a misread answer would show as a failed send).
func TestTheWireWritesTheHighestProduceVersionTheBrokerTakes(t *testing.T) {
	checkLeaks(t)
	vs := kversion.V2_4_0()
	vs.SetMaxKeyVersion(int16(kmsg.Produce), 5)
	c, tl := startTamperBroker(t, kfake.MaxVersions(vs))
	cfg := testConfig(c.ListenAddrs()...)
	cfg.Version = "2.4.0"
	cfg.Idempotent = true
	p := newTestPool(t, cfg)
	for i := range 20 {
		part, off, err := p.SendMessage(context.Background(), msg(value(i)))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, off, int64(0), "partition %d", part)
	}
	assert.EqualValues(t, 5, tl.produceVersion.Load())
	require.NoError(t, p.Close(context.Background()))
	assert.Len(t, countValues(readBack(t, c, topic)), 20)
}
