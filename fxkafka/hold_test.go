package fxkafka

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestABatchIsHeldBrieflyOnlyWhileSendsComeFasterThanAnswers drives one
// partition's cut by hand, on a clock of its own: a batch waits
// pipelinedHold from its first record's placement only while requests
// pipeline, its connection carries a request already and holdSends sends
// are in progress; it leaves at once when any of these is missing, while a
// Flush waits, when a linger is set (which governs instead) or Linger is
// negative, and once the hold is over.
func TestABatchIsHeldBrieflyOnlyWhileSendsComeFasterThanAnswers(t *testing.T) {
	checkLeaks(t)
	placed := time.Unix(1_700_000_000, 0)
	type world struct {
		piped    bool // requests pipeline
		carrying int  // requests the partition's connection carries
		sends    int  // messages in flight in the pool (Stats.InFlight)
		flushing bool
		linger   time.Duration // Config.Linger
	}
	busy := world{piped: true, carrying: 1, sends: holdSends}
	// cut cuts, at now, a partition whose one record was placed at
	// placedAt (zero: placed without a clock, as Produce's records are).
	cut := func(t *testing.T, w world, placedAt, now time.Time) (sent bool, wakeAt time.Time) {
		cfg := testConfig(freeAddr(t))
		cfg.Linger = w.linger
		p := newTestPool(t, cfg)
		pr := &producer{pool: p, set: &p.set, stop: make(chan struct{}), idle: make(chan struct{})}
		pr.nlanes.Store(1)
		pr.pipe.piped.Store(w.piped)
		s := &sink{pr: pr, wake: make(chan struct{}, 1)}
		s.flying.Store(int32(w.carrying))
		ps := &partState{topic: &topicState{name: topic}, sink: s}
		r := &record{size: 10, enqueued: placedAt, ts: placed}
		r.state.Store(stQueued)
		ps.mu.Lock()
		lp := ps.laneLocked(0)
		lp.pending, lp.pendingBytes = []*record{r}, r.size
		ps.mu.Unlock()
		p.inFlight.Store(int64(w.sends))
		if w.flushing {
			p.flushing.Add(1)
		}
		ps.mu.Lock()
		b, _, at := ps.cutLocked(pr, now)
		ps.mu.Unlock()
		p.inFlight.Store(0) // Close waits for nothing of this hand-made producer
		if w.flushing {
			p.flushing.Add(-1)
		}
		return b != nil, at
	}
	early := placed.Add(pipelinedHold / 2)

	t.Run("held while busy", func(t *testing.T) {
		sent, at := cut(t, busy, placed, early)
		assert.False(t, sent, "the batch waits for more records")
		assert.Equal(t, placed.Add(pipelinedHold), at, "the sink looks again when the hold is over")
	})
	t.Run("sent at once: placed without a clock (Produce's)", func(t *testing.T) {
		sent, _ := cut(t, busy, time.Time{}, early)
		assert.True(t, sent)
	})
	t.Run("sent once the hold is over", func(t *testing.T) {
		sent, _ := cut(t, busy, placed, placed.Add(pipelinedHold))
		assert.True(t, sent)
	})
	for name, w := range map[string]world{
		"requests do not pipeline":    {piped: false, carrying: 1, sends: holdSends},
		"the connection carries none": {piped: true, carrying: 0, sends: holdSends},
		"few messages in flight":      {piped: true, carrying: 1, sends: holdSends - 1},
		"a Flush waits":               {piped: true, carrying: 1, sends: holdSends, flushing: true},
		"Linger is negative":          {piped: true, carrying: 1, sends: holdSends, linger: -1},
	} {
		t.Run("sent at once: "+name, func(t *testing.T) {
			sent, at := cut(t, w, placed, early)
			assert.True(t, sent)
			assert.True(t, at.IsZero(), "nothing left to look at again")
		})
	}
	t.Run("a linger governs instead", func(t *testing.T) {
		w := busy
		w.linger = time.Second
		sent, at := cut(t, w, placed, early)
		assert.False(t, sent)
		assert.Equal(t, placed.Add(time.Second), at, "the linger's time, not the hold's")
	})
}

// TestABatchHeldPastItsTimeIsSentByTheNextRecord checks when a record
// placed on a held batch wakes the sink itself rather than leave the batch
// to the sink's timer, which may wake late: only once the hold is over, for
// a batch listed on its sink with nothing in flight on its lane.
func TestABatchHeldPastItsTimeIsSentByTheNextRecord(t *testing.T) {
	checkLeaks(t)
	p := newTestPool(t, testConfig(freeAddr(t)))
	pr := &producer{pool: p, set: &p.set, stop: make(chan struct{}), idle: make(chan struct{})}
	placed := time.Unix(1_700_000_000, 0)
	lane := func(listed bool, inflight bool, n int) (*partState, *lanePart) {
		ps := &partState{topic: &topicState{name: topic}, sink: &sink{pr: pr, wake: make(chan struct{}, 1)}, inReady: listed}
		ps.mu.Lock()
		defer ps.mu.Unlock()
		lp := ps.laneLocked(0)
		for range n {
			lp.pending = append(lp.pending, &record{enqueued: placed})
		}
		if inflight {
			lp.inflight = &batch{}
		}
		return ps, lp
	}
	past := placed.Add(pipelinedHold)
	// The partitions are the test's own, on its goroutine: heldPastLocked
	// reads them without their lock.
	ps, lp := lane(true, false, 2)
	assert.True(t, pr.heldPastLocked(ps, lp, past), "held past its time: the placing call sends it")
	assert.False(t, pr.heldPastLocked(ps, lp, placed.Add(pipelinedHold-1)), "still within its hold")
	assert.False(t, pr.heldPastLocked(ps, lp, time.Time{}), "placed without a clock (no hold then)")
	ps, lp = lane(false, false, 2)
	assert.False(t, pr.heldPastLocked(ps, lp, past), "not listed: the placing call lists it")
	ps, lp = lane(true, true, 2)
	assert.False(t, pr.heldPastLocked(ps, lp, past), "a batch in flight: its answer wakes the sink")
	ps, lp = lane(true, false, 1)
	assert.False(t, pr.heldPastLocked(ps, lp, past), "the record placed is the first: nothing was held")
}
