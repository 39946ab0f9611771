package fxkafka

import (
	"context"
	"errors"
	"fmt"
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
	// wired: the sinks write their own produce requests (wireUsable).
	wired bool

	// load counts records placed on this producer and not yet finished: the
	// routing key, and what close waits for.
	load atomic.Int64

	flushing atomic.Int32 // > 0: no linger (its close waits; the pool's flushing is Flush's)
	aborted  atomic.Bool  // fail what is left instead of retrying: Close ran out of time
	retired  atomic.Bool  // takes no new records
	dead     atomic.Bool  // broken: retries nothing, is being replaced

	topics sync.Map // string -> *topicState
	// lastTopic is the last topic topic returned, loaded without error
	// (such a state is never replaced): a stream to one topic skips the map.
	lastTopic atomic.Pointer[topicState]
	refresh   chan struct{}
	stop      chan struct{}      // closed by shutdown: the producer's goroutines exit
	gone      chan struct{}      // closed when shutdown has finished: nothing of the producer runs
	ctx       context.Context    // cancelled by shutdown
	cancel    context.CancelFunc //
	wg        sync.WaitGroup     // the producer's goroutines
	nlanes    atomic.Int32       // len(lanes), read without mu

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
		wired:      wireUsable(&p.set, conf),
		refresh:    make(chan struct{}, 1),
		stop:       make(chan struct{}),
		gone:       make(chan struct{}),
		sinks:      make(map[int32]*sink),
		lanes:      []*lane{lane0},
		idle:       make(chan struct{}),
	}
	pr.nlanes.Store(1)
	if pr.wired {
		pr.pipe.ratio = wirePipelineRatio
	}
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

// broken marks the producer for replacement: the pool stops routing to it
// and closes it. The first cause is kept.
func (pr *producer) broken(cause error) {
	if pr.dead.CompareAndSwap(false, true) {
		// It sends nothing more (cutLocked): what waits on it fails now,
		// unsent, whether or not the pool is closing.
		pr.failAll(fmt.Errorf("producer %d broken: %w", pr.id, cause))
		pr.pool.retireBroken(pr, cause)
	}
}

// settleLate fails records placed on the producer after it was found
// broken or aborted: the enqueue raced broken's or abort's failAll, which
// may not have seen them, and nothing will send them.
func (pr *producer) settleLate() {
	if pr.dead.Load() || pr.aborted.Load() {
		pr.failAll(errGaveUp)
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
	for i, r := range recs {
		ts, err := pr.topic(ctx, r.topic) // at once when it is the record before's
		if err != nil {
			return refusedIn(recs, i, err)
		}
		if err := pr.partition(ts, r, laneIdx >= 0); err != nil {
			return refusedIn(recs, i, err)
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
	// Only linger and the pipelined hold (holdFor) need the clock. A
	// Produce call's record (it counts in a flush epoch) is not held: its
	// batches fill while its goroutine waits for buffer space, and a clock
	// read per record cost that goroutine 7% at 5 ms (2.05-2.13M msgs/s
	// against 2.21-2.38M, 4 interleaved runs of BenchmarkProducePool).
	if pr.set.linger > 0 || pr.set.hold > 0 && recs[0].epoch == nil && pr.pipe.pipelining() {
		now = time.Now()
	}
	for _, r := range recs {
		r.enqueued = now
		r.prodID = int32(pr.id)
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
		overdue := !ready && pr.heldPastLocked(ps, lp, now)
		ps.mu.Unlock()
		if ready {
			s.addReady(ps)
		} else if overdue {
			s.poke()
		}
	}
	pr.settleLate()
	return nil
}

// heldPastLocked reports whether lp, a lane of ps (whose lock is held),
// now has a batch listed on its sink whose first record waited longer than
// the pipelined hold (holdFor), with a record just placed behind it: the
// sink's timer may wake up to a millisecond late, so the placing call
// wakes the sink. It does not ask whether the batch is held for that or
// waits for a request slot: a sink woken for nothing returns at once.
func (pr *producer) heldPastLocked(ps *partState, lp *lanePart, now time.Time) bool {
	return pr.set.hold > 0 && !now.IsZero() && ps.sink != nil && ps.inReady && lp.inflight == nil &&
		len(lp.pending) > 1 && !now.Before(lp.pending[0].enqueued.Add(pr.set.hold))
}

// refusedAt is the error of a call that enqueue placed none of because
// record index was refused (its topic does not exist, or
// a partitioner chose a partition it does not have).
type refusedAt struct {
	index int
	err   error
}

func (e *refusedAt) Error() string { return e.err.Error() }
func (e *refusedAt) Unwrap() error { return e.err }

// refusedIn is err, the failure to resolve recs[i], told apart when it
// refuses that record, so that a SendMessages call (of one message or
// more) can name it; single sends take err itself (plainRefusal).
func refusedIn(recs []*record, i int, err error) error {
	if ErrorClass(err) == ClassInvalid {
		return &refusedAt{index: i, err: err}
	}
	return err
}

// plainRefusal is err without the index refusedIn added.
func plainRefusal(err error) error {
	if ra, ok := err.(*refusedAt); ok {
		return ra.err
	}
	return err
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
	pr.eachPartition(func(ps *partState) {
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
	// What never left fails now (a partition without a leader would
	// otherwise wait for a refresh nobody asks for); what is in flight
	// fails as its aborted connection answers.
	pr.failAll(errGaveUp)
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
			if s.wire != nil {
				s.wire.close() // closed by the abort already, its reader gone: this ends it in the wire's own terms
			}
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
func (pr *producer) failAll(cause error) { pr.failWaiting(cause, nil) }

// failWaiting is failAll for the partitions where only (under the
// partition's lock) holds, or every partition if only is nil.
func (pr *producer) failWaiting(cause error, only func(*partState) bool) {
	notSent := pr.notSent(cause)
	pr.eachPartition(func(ps *partState) {
		ps.mu.Lock()
		var out []*record
		var bs []*batch
		if only == nil || only(ps) {
			out, bs = ps.takeAllLocked(pr.idempotent, notSent)
		}
		ps.mu.Unlock()
		// A lane's batch waiting to be sent again is older than the
		// records given up on behind it, and they than its records never
		// sent: outcomes come in that order.
		for _, b := range bs {
			pr.failBatch(b, cause)
			for _, g := range b.behind {
				pr.failUnsent(g.recs, g.err)
			}
		}
		pr.failUnsent(out, notSent)
	})
}

// eachPartition calls f for every partition of the topics the producer
// has loaded.
func (pr *producer) eachPartition(f func(*partState)) {
	pr.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		select {
		case <-ts.loaded:
			for _, ps := range ts.partitions() {
				f(ps)
			}
		default:
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
