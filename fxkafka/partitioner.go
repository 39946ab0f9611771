package fxkafka

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// hashPartition places a keyed record as the clients a service's other
// producers use do, so that a key lands on the same partition whichever
// client wrote it: "fnv1a" as sarama's NewHashPartitioner (its default),
// "murmur2" as Kafka's Java client, franz-go's StickyKeyPartitioner and
// librdkafka's murmur2_random.
func hashPartition(hash string, key []byte, n int32) int32 {
	if hash == "murmur2" {
		return int32(murmur2(key)&0x7fffffff) % n
	}
	h := uint32(2166136261) // FNV-1a, 32 bits
	for _, b := range key {
		h ^= uint32(b)
		h *= 16777619
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}

// murmur2 is Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils),
// seed 0x9747b28c.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	n := len(data) / 4
	for i := range n {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := data[n*4:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// partition sets r.partition: the user's partitioner (WithSaramaConfig),
// the key's hash, or for a keyless record the topic's sticky partition.
func (pr *producer) partition(ts *topicState, r *record, ordered bool) error {
	n := int32(len(ts.partitions()))
	if ts.part != nil {
		m := &sarama.ProducerMessage{Topic: r.topic, Partition: r.partition}
		if k := r.key(); k != nil {
			m.Key = sarama.ByteEncoder(k)
		}
		ts.pmu.Lock()
		p, err := ts.part.Partition(m, n)
		ts.pmu.Unlock()
		if err != nil {
			return invalid(fmt.Sprintf("partitioner: %v", err))
		}
		if p < 0 || p >= n {
			return invalid(fmt.Sprintf("partitioner chose partition %d of %d", p, n))
		}
		r.partition = p
		return nil
	}
	piped := pr.pipe.pipelining()
	switch {
	case r.hasKey:
		r.partition = hashPartition(pr.set.keyHash, r.key(), n)
	case pr.set.sticky && ordered && piped:
		r.partition = pr.fillPartition(ts, r.size)
	case pr.set.sticky && (ordered || !piped):
		r.partition = ts.sticky.Load() % n
	case pr.set.sticky:
		p := ts.sticky.Load() % n
		if !pr.canLeave(ts.partitions()[p]) {
			// A record there would wait a round trip (every lane of the
			// partition, or every request slot of its broker, is in
			// flight): stick to the partition that can send soonest.
			if q := pr.soonest(ts, p); q != p {
				ts.sticky.CompareAndSwap(p, q)
				p = q
			}
		}
		r.partition = p
	default:
		r.partition = rand.Int32N(n)
	}
	return nil
}

// unstick moves the topic's keyless records on from partition id, which a
// batch of bytes just left: at once when requests pipeline (so that with
// several batches in flight keyless records spread over the partitions
// instead of queueing on one, as Kafka's Java client does, KIP-480), else
// once stickyBytes have gone there (so that they fill large batches, as
// franz-go's default partitioner does).
func (ts *topicState) unstick(id int32, bytes int, piped bool) {
	n := int32(len(ts.partitions()))
	if n < 2 || ts.sticky.Load() != id {
		return
	}
	if !piped && ts.stuck.Add(int64(bytes)) < stickyBytes {
		return
	}
	ts.stuck.Store(0)
	// The next partition with nothing in flight, from a random start, so
	// that the records leave at once; else a random one.
	start := id + 1 + rand.Int32N(n-1)
	next := start % n
	for i := range n - 1 {
		if q := (start + i) % n; q != id && ts.partitions()[q].flying.Load() == 0 {
			next = q
			break
		}
	}
	ts.sticky.CompareAndSwap(id, next)
}

// followLeaders keeps the sticky partition on a partition with a leader:
// ps, whose lock is held, just gained one (led) or lost it. One losing it
// hands the sticky partition to the next that has one, since nothing sends
// from it and unstick, which moves it as batches leave, would never run;
// one gaining it takes the sticky partition from one that has none (a
// topic loaded during an election). It runs as leaders change, not as
// records are placed.
func (ts *topicState) followLeaders(ps *partState, led bool) {
	parts := ts.partitions()
	n := int32(len(parts))
	cur := ts.sticky.Load()
	if ps.id >= n || cur >= n {
		return // the topic is still being loaded or grown
	}
	if led {
		if cur != ps.id && !parts[cur].led() {
			ts.sticky.CompareAndSwap(cur, ps.id)
		}
		return
	}
	if cur != ps.id {
		return
	}
	for i := int32(1); i < n; i++ {
		if q := (ps.id + i) % n; parts[q].led() {
			ts.sticky.CompareAndSwap(cur, q)
			return
		}
	}
}

// canLeave reports whether a record placed on ps now could leave at once:
// a lane of it and a request slot of its broker are free. It reads atomics
// only; a stale answer costs a round trip, never correctness.
func (pr *producer) canLeave(ps *partState) bool {
	return int(ps.flying.Load()) < pr.maxLanes() && pr.slotsFree(ps) > 0
}

// slotsFree is how many requests ps's broker could take now.
func (pr *producer) slotsFree(ps *partState) int {
	s := ps.sinkNow.Load()
	if s == nil {
		return 0
	}
	return s.limit() - int(s.flying.Load())
}

// fillPartition returns the partition of ts an ordered keyless record
// (Produce's) of size joins while requests pipeline. Such records take lane
// 0, which has one batch in flight at a time, so they fill one partition
// with its share of the buffer, then the next, in turn: each partition's
// records gather while its batch is in flight, and leave together as soon
// as it is answered. A partition's share is what the buffer holds over
// twice the partitions (one batch in flight and one gathering on each), at
// most a batch (the record that passes it still joins). Moving instead to
// a partition with nothing in flight sent there the few records placed
// before its sink ran, and the records behind them waited its round trip
// (the README's benchmarks section has the figures).
//
// The turn passes over a partition without a leader (nothing could send
// its records) and one whose last share still waits behind its batch in
// flight (a broker slow to answer, or not answering, gets no more of the
// buffer while others can take it): fillNext. A turn is one value, so a
// caller that read the last one adds to it, harmlessly, and never to the
// next.
func (pr *producer) fillPartition(ts *topicState, size int) int32 {
	parts := ts.partitions()
	n := int32(len(parts))
	turn := ts.fill.Load()
	p := turn.p % n
	placed := turn.filled.Add(1<<filledMsgsShift | int64(size))
	msgs, bytes := pr.pool.fillShare(n)
	leaderless := !parts[p].led()
	if placed>>filledMsgsShift < msgs && placed&(1<<filledMsgsShift-1) < bytes && !leaderless {
		return p
	}
	next := fillNext(parts, p)
	if ts.fill.CompareAndSwap(turn, &fillTurn{p: next}) {
		parts[next].filledAt.Store(parts[next].sent.Load())
	}
	if leaderless {
		return next
	}
	return p
}

// fillTurn is one partition's turn at Produce's keyless records: p, and
// what they placed there in this turn, messages<<filledMsgsShift | bytes.
type fillTurn struct {
	p      int32
	filled atomic.Int64
}

// fillNext returns the partition after p whose turn it is: the first, in
// turn, with a leader and not behind (nothing in flight, or a batch sent
// since it was last filled); else the first with a leader; else p, if it
// has one; else the one after p.
func fillNext(parts []*partState, p int32) int32 {
	n := int32(len(parts))
	led := int32(-1)
	for i := int32(1); i < n; i++ {
		q := parts[(p+i)%n]
		if !q.led() {
			continue
		}
		if q.flying.Load() == 0 || q.sent.Load() != q.filledAt.Load() {
			return q.id
		}
		if led < 0 {
			led = q.id
		}
	}
	switch {
	case led >= 0:
		return led
	case parts[p].led():
		return p
	}
	return (p + 1) % n
}

// filledMsgsShift places the messages above the bytes in fillTurn.filled
// (bytes up to a terabyte).
const filledMsgsShift = 40

// fillShare is one partition's share of the buffer, in messages and bytes,
// for a topic of n partitions (fillPartition).
func (p *ProducerPool) fillShare(n int32) (msgs, bytes int64) {
	set := &p.set
	msgs = max(int64(set.maxBufferedMessages)/(2*int64(n)), 1)
	bytes = max(min(int64(set.maxBufferedBytes)/(2*int64(n)), int64(set.maxBatchBytes)), 1)
	return msgs, bytes
}

// soonest returns the partition of ts a keyless record should go to when
// from cannot send at once: the one whose broker has the most free request
// slots, then the fewest batches in flight, from a random start.
func (pr *producer) soonest(ts *topicState, from int32) int32 {
	n := int32(len(ts.partitions()))
	best, bestSlots, bestFlying := from, pr.slotsFree(ts.partitions()[from]), ts.partitions()[from].flying.Load()
	start := rand.Int32N(n)
	for i := range n {
		q := (start + i) % n
		slots, flying := pr.slotsFree(ts.partitions()[q]), ts.partitions()[q].flying.Load()
		if slots > bestSlots || slots == bestSlots && flying < bestFlying {
			best, bestSlots, bestFlying = q, slots, flying
		}
	}
	return best
}

// stickyBytes is how much of keyless records one partition takes in a row
// when requests do not pipeline.
const stickyBytes = 64 << 10
