package fxkafka

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"
)

// errRetired is returned by producer.enqueue when the producer no longer
// takes records: nothing of the call was placed, so it may go to another.
var errRetired = errors.New("fxkafka: producer retired")

// producer is one member of the pool: a sarama.Client (its own connections,
// through its own dialer, and the cluster's metadata) and the pool's send
// machinery on top of it — a sink per broker that builds produce requests
// from the records waiting on the partitions that broker leads, with several
// requests in flight per connection.
//
// A partition's records wait in lanes. A lane has at most one batch in
// flight per partition, so a lane keeps the order of what it carries across
// retries; several lanes let unordered sends to one partition leave without
// waiting for the batch ahead. With idempotence each lane has a producer id
// of its own, whose sequence numbers the broker checks per partition.
//
// Its goroutines (a sink per broker, the metadata refresher) belong to wg
// and stop when stop is closed; the pool's WaitGroup counts the producer as
// one until close has finished.
type producer struct {
	id     int
	pool   *ProducerPool
	set    *settings
	client sarama.Client
	conf   *sarama.Config
	dialer *dialer
	txnID  string // non-empty: transactional (a lease)
	// idempotent: batches carry a producer id and sequence numbers
	// (Config.Idempotent, or transactional).
	idempotent bool

	// load counts records placed on this producer and not yet finished: the
	// routing key, and what close waits for.
	load atomic.Int64

	flushing atomic.Int32 // > 0: no linger (a Flush or close waits)
	aborted  atomic.Bool  // fail what is left instead of retrying: Close ran out of time
	retired  atomic.Bool  // takes no new records
	dead     atomic.Bool  // broken: retries nothing, is being replaced

	topics  sync.Map // string -> *topicState
	refresh chan struct{}
	stop    chan struct{}      // closed by shutdown: the producer's goroutines exit
	gone    chan struct{}      // closed when shutdown has finished: nothing of the producer runs
	ctx     context.Context    // cancelled by shutdown
	cancel  context.CancelFunc //
	wg      sync.WaitGroup     // the producer's goroutines
	nlanes  atomic.Int32       // len(lanes), read without mu

	saturated atomic.Int32 // sinks with every request slot in flight and more to send
	pipe      pipeGauge    // whether requests pipeline on a connection

	mu         sync.Mutex // protects following
	sinks      map[int32]*sink
	oldBrokers []*sarama.Broker // brokers a sink used before the client replaced them
	lanes      []*lane
	growing    bool
	nextGrow   time.Time     // after a lane's producer id could not be had, none is asked for before this
	growFails  int           // consecutive failures to open a lane
	idle       chan struct{} // closed and replaced when load reaches 0 while someone waits
	txn        *txnState     // transactional producers only
	stopOnce   sync.Once
}

// lane is one sequence of batches: with idempotence, one producer id.
type lane struct {
	idx   int
	pid   int64
	epoch int16
}

// topicState is what a producer knows of one topic.
type topicState struct {
	name   string
	loaded chan struct{}                // closed when parts or err is set
	err    error                        // the topic cannot be written: no such topic, or no metadata
	at     time.Time                    // when err was set: a missing topic is looked up again later
	parts  atomic.Pointer[[]*partState] // by partition id; only ever grows
	sticky atomic.Int32                 // the partition keyless records go to now
	stuck  atomic.Int64                 // bytes sent to it since it became sticky

	pmu  sync.Mutex // guards part, the user's partitioner (WithSaramaConfig)
	part sarama.Partitioner
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
	return pr.set.maxInFlight - int(s.flying.Load())
}

// leastFlying returns the partition with the fewest batches in flight,
// from a random start; from if none has fewer.
func (ts *topicState) leastFlying(from int32) int32 {
	n := int32(len(ts.partitions()))
	best, fewest := from, ts.partitions()[from].flying.Load()
	start := rand.Int32N(n)
	for i := range n {
		q := (start + i) % n
		if f := ts.partitions()[q].flying.Load(); f < fewest {
			best, fewest = q, f
		}
	}
	return best
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

// defaultRegrow is how often a producer looks for partitions added to its
// topics when sarama's own metadata refresh (Metadata.RefreshFrequency) is
// off.
const defaultRegrow = 10 * time.Minute

// regrowAll fetches the metadata of the producer's topics and adds the
// partitions they gained.
func (pr *producer) regrowAll() {
	var loaded []*topicState
	var names []string
	pr.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
			if ts.err == nil {
				loaded = append(loaded, ts)
				names = append(names, ts.name)
			}
		default:
		}
		return true
	})
	if len(names) == 0 {
		return
	}
	_ = pr.client.RefreshMetadata(names...) // what came is stored; what did not stays as it was
	for _, ts := range loaded {
		pr.grow(ts)
	}
}

// partitions returns the topic's partitions, by id.
func (ts *topicState) partitions() []*partState {
	if p := ts.parts.Load(); p != nil {
		return *p
	}
	return nil
}

// grow adds the partitions the topic gained since it was loaded (Kafka
// only ever adds): keyed records then hash over the new count, as the
// other clients do.
func (pr *producer) grow(ts *topicState) {
	ids, err := pr.client.Partitions(ts.name)
	old := ts.partitions()
	if err != nil || len(ids) <= len(old) {
		return
	}
	parts := append(append(make([]*partState, 0, len(ids)), old...), make([]*partState, len(ids)-len(old))...)
	for i := len(old); i < len(parts); i++ {
		parts[i] = &partState{topic: ts, id: int32(i)}
	}
	ts.parts.Store(&parts)
	for _, ps := range parts[len(old):] {
		pr.placeOnLeader(ps)
	}
}

// missingTopicTTL is how long a producer remembers that a topic does not
// exist: sends to it fail at once meanwhile, and a caller looping on a typo
// costs at most one metadata request per interval.
const missingTopicTTL = time.Second

// newProducerOn starts the machinery of a producer on a client that
// provisioning made; lane 0's producer id, if any, comes with it.
func (p *ProducerPool) newProducerOn(client sarama.Client, conf *sarama.Config, d *dialer, txnID string, lane0 *lane) *producer {
	ctx, cancel := context.WithCancel(context.Background())
	pr := &producer{
		ctx:        ctx,
		cancel:     cancel,
		pool:       p,
		set:        &p.set,
		client:     client,
		conf:       conf,
		dialer:     d,
		txnID:      txnID,
		idempotent: p.set.idempotent || txnID != "",
		refresh:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
		gone:       make(chan struct{}),
		sinks:      make(map[int32]*sink),
		lanes:      []*lane{lane0},
		idle:       make(chan struct{}),
	}
	pr.nlanes.Store(1)
	if txnID != "" {
		pr.txn = &txnState{parts: make(map[topicPartition]bool)}
	}
	pr.wg.Add(1)
	go pr.refresher()
	return pr
}

// maxLanes is how many lanes a producer opens at most. A produce request
// carries one batch per partition, and a connection has set.maxInFlight
// requests in flight, so more lanes than that could not all be in flight.
// A transactional producer has one producer id, hence one lane; an
// idempotent one at most idempotentLanes.
func (pr *producer) maxLanes() int {
	switch {
	case pr.txnID != "":
		return 1
	case pr.idempotent:
		return max(1, min(pr.set.maxInFlight, idempotentLanes))
	}
	return max(1, pr.set.maxInFlight)
}

// topic returns the state of a topic, loading it on first use. It waits for
// the load as long as ctx allows.
func (pr *producer) topic(ctx context.Context, name string) (*topicState, error) {
	for {
		v, ok := pr.topics.Load(name)
		if !ok {
			ts := &topicState{name: name, loaded: make(chan struct{})}
			if v, ok = pr.topics.LoadOrStore(name, ts); !ok {
				pr.askRefresh()
			}
		}
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
		default:
			select {
			case <-ts.loaded:
			case <-ctx.Done():
				return nil, unavailable(fmt.Errorf("metadata for topic %s: %w", name, ctx.Err()))
			case <-pr.stop:
				return nil, errRetired
			}
		}
		if ts.err == nil {
			return ts, nil
		}
		if time.Since(ts.at) < missingTopicTTL || pr.retired.Load() {
			return nil, ts.err
		}
		// Look it up again: it may have been created since.
		pr.topics.CompareAndDelete(name, ts)
	}
}

func (pr *producer) askRefresh() {
	select {
	case pr.refresh <- struct{}{}:
	default:
	}
}

// refresher loads topics and finds the leaders of partitions that lost
// theirs. It is the only goroutine that makes the client fetch metadata,
// which blocks on the network (Close's abort of the dialer ends that).
func (pr *producer) refresher() {
	defer pr.wg.Done()
	failures := 0
	var retry <-chan time.Time
	every := pr.conf.Metadata.RefreshFrequency
	if every <= 0 {
		every = defaultRegrow
	}
	regrow := time.NewTicker(every)
	defer regrow.Stop()
	for {
		select {
		case <-pr.refresh:
		case <-retry:
		case <-regrow.C:
			pr.regrowAll()
			continue
		case <-pr.stop:
			return
		}
		retry = nil
		more, err := pr.refreshOnce()
		switch {
		case err != nil && pr.aborted.Load():
			pr.failLeaderless(errGaveUp)
		case err != nil:
			failures++
			if failures > pr.set.retries {
				pr.broken(fmt.Errorf("fetch metadata: %w", err))
				pr.failLeaderless(err)
				failures = 0
				continue
			}
			retry = time.After(pr.retryPause())
		case more:
			failures++
			if failures > pr.set.retries {
				pr.failLeaderless(sarama.ErrLeaderNotAvailable)
				failures = 0
			}
			retry = time.After(pr.retryPause())
		default:
			failures = 0
		}
	}
}

func (pr *producer) retryPause() time.Duration {
	if pr.aborted.Load() {
		return 0
	}
	b := pr.set.retryBackoff
	return b/2 + rand.N(b/2+1)
}

// refreshOnce fetches the metadata the producer needs now. It reports
// whether some partition still has no leader.
func (pr *producer) refreshOnce() (more bool, err error) {
	var loading, moving []*topicState
	pr.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
			for _, ps := range ts.partitions() {
				ps.mu.Lock()
				lost := ps.sink == nil
				ps.mu.Unlock()
				if lost {
					moving = append(moving, ts)
					break
				}
			}
		default:
			loading = append(loading, ts)
		}
		return true
	})
	if len(loading) == 0 && len(moving) == 0 {
		return false, nil
	}
	names := make([]string, 0, len(loading)+len(moving))
	for _, ts := range append(loading, moving...) {
		names = append(names, ts.name)
	}
	// Only a failure to reach the brokers is the producer's. sarama also
	// returns an error for metadata that came back with a partition
	// without a leader (an election under way, a broker down) or a topic
	// missing, having stored what did come: those are per topic and per
	// partition, and Partitions and Leader below tell them apart.
	if err := pr.client.RefreshMetadata(names...); err != nil && (errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrClosedClient) || isConnectionError(err) && !isMetadataRefusal(err)) {
		return false, err
	}
	for _, ts := range loading {
		ids, err := pr.client.Partitions(ts.name)
		switch {
		case errors.Is(err, sarama.ErrUnknownTopicOrPartition) || (err == nil && len(ids) == 0):
			pr.loadFailed(ts, &sendError{class: ErrInvalidMessage, what: "topic " + ts.name + " does not exist", cause: sarama.ErrUnknownTopicOrPartition})
			continue
		case err != nil:
			pr.loadFailed(ts, unavailable(fmt.Errorf("metadata for topic %s: %w", ts.name, err)))
			continue
		}
		parts := make([]*partState, len(ids))
		for _, id := range ids {
			if int(id) >= len(parts) || id < 0 {
				pr.loadFailed(ts, unavailable(fmt.Errorf("metadata for topic %s: partition ids are not 0..%d", ts.name, len(ids)-1)))
				parts = nil
				break
			}
			parts[id] = &partState{topic: ts, id: id}
		}
		if parts == nil {
			continue
		}
		ts.parts.Store(&parts)
		ts.sticky.Store(rand.Int32N(int32(len(parts))))
		if c := pr.set.partitioner; c != nil {
			ts.part = c(ts.name)
		}
		close(ts.loaded)
		moving = append(moving, ts)
	}
	for _, ts := range moving {
		for _, ps := range ts.partitions() {
			if !pr.placeOnLeader(ps) {
				more = true
			}
		}
	}
	return more, nil
}

func (pr *producer) loadFailed(ts *topicState, err error) {
	ts.err, ts.at = err, time.Now()
	close(ts.loaded)
}

// placeOnLeader moves ps to its leader's sink if it has none. It reports
// whether ps has a leader now.
func (pr *producer) placeOnLeader(ps *partState) bool {
	ps.mu.Lock()
	has := ps.sink != nil
	ps.mu.Unlock()
	if has {
		return true
	}
	b, err := pr.client.Leader(ps.topic.name, ps.id)
	if err != nil || b == nil {
		return false
	}
	s := pr.sinkFor(b)
	if s == nil {
		return false
	}
	ps.mu.Lock()
	ps.setSinkLocked(s)
	work := ps.hasWorkLocked()
	ps.mu.Unlock()
	if work {
		s.markReady(ps)
	}
	return true
}

// sinkFor returns the sink of broker b, starting it on first use; nil once
// the producer is stopping.
func (pr *producer) sinkFor(b *sarama.Broker) *sink {
	pr.mu.Lock()
	select {
	case <-pr.stop:
		pr.mu.Unlock()
		return nil
	default:
	}
	s := pr.sinks[b.ID()]
	var old *sarama.Broker
	if s == nil {
		s = &sink{pr: pr, broker: b, wake: make(chan struct{}, 1)}
		pr.sinks[b.ID()] = s
		pr.wg.Add(1)
		go s.loop()
	} else {
		s.mu.Lock()
		if s.broker != b {
			old = s.broker
			s.broker = b // the client may have replaced the broker's object (its address moved)
			// The sink may have reopened it, or may still: the client no
			// longer will close it, so shutdown does.
			pr.oldBrokers = append(pr.oldBrokers, old)
		}
		s.mu.Unlock()
	}
	pr.mu.Unlock()
	if old != nil {
		// Not under pr.mu: Close waits for the answers in flight on old,
		// whose callbacks take pr.mu (unload).
		_ = old.Close()
	}
	return s
}

// failLeaderless fails the records waiting on partitions with no leader,
// for cause.
func (pr *producer) failLeaderless(cause error) {
	pr.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
		default:
			return true
		}
		for _, ps := range ts.partitions() {
			ps.mu.Lock()
			var out []*record
			var bs []*batch
			if ps.sink == nil {
				out, bs = ps.takeAllLocked(pr.idempotent)
			}
			ps.mu.Unlock()
			pr.failUnsent(out, pr.notSent(cause))
			for _, b := range bs {
				pr.failBatch(b, cause)
			}
		}
		return true
	})
}

// broken marks the producer for replacement: the pool stops routing to it
// and closes it. The first cause is kept.
func (pr *producer) broken(cause error) {
	if pr.dead.CompareAndSwap(false, true) {
		pr.pool.retireBroken(pr, cause)
	}
}

// enqueue places recs on the producer's lanes: all of them, or none (with
// errRetired) if the producer no longer takes records. laneIdx is the lane
// every record of the call takes, or -1 to let each record take the lane
// that sends it soonest. ctx bounds the wait for topic metadata.
func (pr *producer) enqueue(ctx context.Context, recs []*record, laneIdx int) error {
	if pr.retired.Load() {
		return errRetired
	}
	// Resolve every topic and partition before placing anything, so that
	// a call is placed whole or not at all.
	var last *topicState
	for _, r := range recs {
		ts := last
		if ts == nil || ts.name != r.topic {
			var err error
			if ts, err = pr.topic(ctx, r.topic); err != nil {
				return err
			}
			last = ts
		}
		if err := pr.partition(ts, r, laneIdx >= 0); err != nil {
			return err
		}
		r.ps = ts.partitions()[r.partition]
	}
	if pr.txn != nil {
		if err := pr.addToTxn(ctx, recs); err != nil {
			return err
		}
	}
	pr.load.Add(int64(len(recs)))
	if pr.retired.Load() {
		pr.unload(int64(len(recs)))
		return errRetired
	}
	if laneIdx < 0 && len(recs) > 1 {
		laneIdx = pr.laneFor(recs[0].ps)
	}
	var now time.Time
	if pr.set.linger > 0 {
		now = time.Now() // only linger needs it
	}
	for _, r := range recs {
		r.enqueued = now
		r.prodID = pr.id
		ps := r.ps
		ps.mu.Lock()
		li := laneIdx
		if li < 0 {
			li = ps.pickLaneLocked(pr)
		}
		lp := ps.laneLocked(li)
		lp.pending = append(lp.pending, r)
		lp.pendingBytes += r.size
		s := ps.sink
		ready := s != nil && !ps.inReady && lp.inflight == nil
		if ready {
			ps.inReady = true
		}
		ps.mu.Unlock()
		if ready {
			s.addReady(ps)
		}
	}
	return nil
}

// partition sets r.partition: the user's partitioner (WithSaramaConfig),
// the key's hash, or for a keyless record the topic's sticky partition.
func (pr *producer) partition(ts *topicState, r *record, ordered bool) error {
	n := int32(len(ts.partitions()))
	if ts.part != nil {
		m := &sarama.ProducerMessage{Topic: r.topic, Partition: r.partition}
		if r.rec.Key != nil {
			m.Key = sarama.ByteEncoder(r.rec.Key)
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
	switch {
	case r.rec.Key != nil:
		r.partition = hashPartition(pr.set.keyHash, r.rec.Key, n)
	case pr.set.sticky && ordered:
		// An ordered record takes lane 0: where nothing is in flight it
		// leaves at once.
		p := ts.sticky.Load() % n
		if pr.pipe.pipelining() && ts.partitions()[p].flying.Load() > 0 {
			if q := ts.leastFlying(p); q != p {
				ts.sticky.CompareAndSwap(p, q)
				p = q
			}
		}
		r.partition = p
	case pr.set.sticky:
		p := ts.sticky.Load() % n
		if pr.pipe.pipelining() && !pr.canLeave(ts.partitions()[p]) {
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

// laneFor picks the lane a multi-record call takes: the one its first
// record's partition would send soonest.
func (pr *producer) laneFor(ps *partState) int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.pickLaneLocked(pr)
}

// usableLanes returns how many lanes may take records now; it starts
// fetching another lane's producer id when want exceeds them.
func (pr *producer) usableLanes(want bool) int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	n := len(pr.lanes)
	if want && n < pr.maxLanes() && !pr.growing && !pr.dead.Load() && !time.Now().Before(pr.nextGrow) {
		if !pr.idempotent {
			pr.lanes = append(pr.lanes, &lane{idx: n, pid: -1, epoch: -1})
			pr.nlanes.Store(int32(n + 1))
			return n + 1
		}
		pr.growing = true
		pr.wg.Add(1)
		go pr.growLane()
	}
	return n
}

// growLane fetches a producer id for one more lane.
func (pr *producer) growLane() {
	defer pr.wg.Done()
	l, err := pr.newLane()
	pr.mu.Lock()
	pr.growing = false
	if err != nil {
		pr.growFails++
		pr.nextGrow = time.Now().Add(backoff(pr.growFails, pr.pool.cfg.ProvisionBackoffMax))
	} else {
		pr.growFails = 0
	}
	if err == nil {
		l.idx = len(pr.lanes)
		pr.lanes = append(pr.lanes, l)
		pr.nlanes.Store(int32(len(pr.lanes)))
	}
	pr.mu.Unlock()
	if err != nil {
		pr.pool.log.Debug("open another lane", zap.Int("producer", pr.id), zap.Error(err))
	}
}

func (pr *producer) nLanes() int { return int(pr.nlanes.Load()) }

func (pr *producer) laneAt(i int) *lane {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.lanes[i]
}

// unload takes n finished records off the producer's load, waking a close
// or flush waiting for it to drain.
func (pr *producer) unload(n int64) {
	if pr.load.Add(-n) == 0 {
		pr.mu.Lock()
		if pr.load.Load() == 0 {
			close(pr.idle)
			pr.idle = make(chan struct{})
		}
		pr.mu.Unlock()
	}
}

// drained waits until nothing is placed on the producer or ctx ends.
func (pr *producer) drained(ctx context.Context) error {
	pr.flushing.Add(1)
	defer pr.flushing.Add(-1)
	pr.wakeAll()
	for {
		pr.mu.Lock()
		idle := pr.idle
		empty := pr.load.Load() == 0
		pr.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wakeAll makes every sink look at its partitions again (linger off).
func (pr *producer) wakeAll() {
	pr.mu.Lock()
	sinks := make([]*sink, 0, len(pr.sinks))
	for _, s := range pr.sinks {
		sinks = append(sinks, s)
	}
	pr.mu.Unlock()
	pr.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
		default:
			return true
		}
		for _, ps := range ts.partitions() {
			ps.mu.Lock()
			s := ps.sink
			mark := s != nil && !ps.inReady && ps.hasWorkLocked()
			if mark {
				ps.inReady = true
			}
			ps.mu.Unlock()
			if mark {
				s.addReady(ps)
			}
		}
		return true
	})
	for _, s := range sinks {
		s.poke()
	}
}

// close flushes the producer and closes it: it waits for every record on it
// to finish, as long as ctx allows; then (or at once, if ctx ended) it
// aborts what is left, stops its goroutines and closes the client and every
// connection. It runs once, on a goroutine of the pool's.
func (pr *producer) close(ctx context.Context) {
	pr.retired.Store(true)
	if err := pr.drained(ctx); err != nil {
		pr.abort()
		// Aborted connections fail what was in flight at once; what
		// never left fails with ErrPoolClosed. Wait for that, briefly.
		pr.failAll(errGaveUp)
		wait, cancel := context.WithTimeout(context.Background(), abortGrace)
		_ = pr.drained(wait)
		cancel()
	}
	pr.shutdown()
}

// abortGrace bounds how long close waits, after aborting the connections,
// for the callbacks of requests in flight (they fail at once).
const abortGrace = 2 * time.Second

func (pr *producer) abort() {
	pr.aborted.Store(true)
	pr.dialer.abort()
	pr.wakeAll()
}

// shutdown stops the producer's goroutines and closes its client. Records
// still on it (only if close's grace ran out) are failed.
func (pr *producer) shutdown() {
	pr.stopOnce.Do(func() {
		pr.mu.Lock()
		close(pr.stop)
		pr.mu.Unlock()
		pr.cancel()
		pr.dialer.abort() // what still blocks on the network returns
		pr.wg.Wait()
		pr.failAll(errGaveUp)
		// sarama's client closes its brokers in the background; close them
		// here, so that none of their goroutines outlives the producer.
		for _, b := range pr.client.Brokers() {
			_ = b.Close()
		}
		if err := pr.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
			pr.pool.log.Debug("close client", zap.Int("producer", pr.id), zap.Error(err))
		}
		// A sink may hold a broker the client no longer lists (its
		// metadata moved on) and reopened it: close those too.
		for _, s := range pr.sinks {
			_ = s.broker.Close()
		}
		for _, b := range pr.oldBrokers {
			_ = b.Close()
		}
		pr.dialer.abort()
		close(pr.gone)
	})
}

// failAll fails every record waiting on the producer and not in flight,
// for cause: those never sent as not sent, those of a batch waiting to be
// sent again as their attempts tell.
func (pr *producer) failAll(cause error) {
	pr.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
		default:
			return true
		}
		for _, ps := range ts.partitions() {
			ps.mu.Lock()
			out, bs := ps.takeAllLocked(pr.idempotent)
			ps.mu.Unlock()
			pr.failUnsent(out, pr.notSent(cause))
			for _, b := range bs {
				pr.failBatch(b, cause)
			}
		}
		return true
	})
}

// busy reports whether the producer is saturated: a connection has every
// request slot in flight with records still waiting. That is
// queueing the pool can measure, and the signal to add a producer; so is a
// load at Config.ProducerBusyAt.
func (pr *producer) busy() bool {
	if pr.load.Load() >= int64(pr.pool.cfg.ProducerBusyAt) {
		return true
	}
	if !pr.pipe.pipelining() {
		return false // another connection would split batches, not save a wait
	}
	return pr.saturated.Load() > 0
}

func (pr *producer) isBroken() bool {
	return pr.dead.Load()
}
