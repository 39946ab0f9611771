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
)

// topicState is what a producer knows of one topic.
type topicState struct {
	name   string
	loaded chan struct{}                // closed when parts or err is set
	err    error                        // the topic cannot be written: no such topic, or no metadata
	at     time.Time                    // when err was set: a missing topic is looked up again later
	parts  atomic.Pointer[[]*partState] // by partition id; only ever grows
	sticky atomic.Int32                 // the partition keyless records go to now
	stuck  atomic.Int64                 // bytes sent to it since it became sticky
	fill   atomic.Pointer[fillTurn]     // the partition Produce's keyless records fill while requests pipeline

	pmu  sync.Mutex // guards part, the user's partitioner (WithSaramaConfig)
	part sarama.Partitioner
}

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
	leaderless := false
	for _, ps := range parts[len(old):] {
		if !pr.placeOnLeader(ps) {
			leaderless = true
		}
	}
	if leaderless {
		// An election under way: the refresher looks again, as for a
		// lost leader, and fails what waits there if none comes.
		pr.askRefresh()
	}
}

// missingTopicTTL is how long a producer remembers that a topic does not
// exist: sends to it fail at once meanwhile, and a caller looping on a typo
// costs at most one metadata request per interval.
const missingTopicTTL = time.Second

// topic returns the state of a topic, loading it on first use. It waits for
// the load as long as ctx allows.
func (pr *producer) topic(ctx context.Context, name string) (*topicState, error) {
	if ts := pr.lastTopic.Load(); ts != nil && ts.name == name {
		return ts, nil
	}
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
			if pr.lastTopic.Load() != ts {
				pr.lastTopic.Store(ts)
			}
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

// refresher loads topics, finds the leaders of partitions that lost
// theirs, and adds partitions topics gain. It is the pool's only goroutine
// fetching metadata for a producer (sarama's client also refreshes in the
// background, at Metadata.RefreshFrequency); fetches block on the network,
// and Close's abort of the dialer ends them.
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
	refreshErr := pr.client.RefreshMetadata(names...)
	if refreshErr != nil && (errors.Is(refreshErr, sarama.ErrOutOfBrokers) || errors.Is(refreshErr, sarama.ErrClosedClient) || isConnectionError(refreshErr) && !isMetadataRefusal(refreshErr)) {
		return false, refreshErr
	}
	// The topics the answer held: one it lacked does not exist, or may not
	// be written. Asking sarama for its partitions would fetch again (and
	// retry), holding up every other topic's metadata.
	known := map[string]bool{}
	if topics, err := pr.client.Topics(); err == nil {
		for _, t := range topics {
			known[t] = true
		}
	}
	for _, ts := range loading {
		if !known[ts.name] {
			what, cause := "topic "+ts.name+" does not exist", error(sarama.ErrUnknownTopicOrPartition)
			if errors.Is(refreshErr, sarama.ErrTopicAuthorizationFailed) {
				what, cause = "topic "+ts.name+" does not exist or may not be written", sarama.ErrTopicAuthorizationFailed
			}
			pr.loadFailed(ts, &sendError{class: ErrInvalidMessage, what: what, cause: cause})
			continue
		}
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
		ts.fill.Store(&fillTurn{p: rand.Int32N(int32(len(parts)))})
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
			if s.wire != nil {
				s.reconnect = true // dial the new address once the old connection's answers are in
			}
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
	pr.failWaiting(cause, func(ps *partState) bool { return ps.sink == nil })
}
