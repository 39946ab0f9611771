package benchkit

import (
	"runtime/metrics"
	"sync"
	"time"
)

// PeakHeap starts sampling the heap (runtime/metrics'
// /memory/classes/heap/objects:bytes: live objects and garbage not yet
// swept, which is what the process must have memory for) every millisecond,
// without stopping the world. The returned function stops the sampling and
// returns the largest value seen.
func PeakHeap() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var (
		peak = read()
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				peak = max(peak, read())
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return max(peak, read())
	}
}
