package netdelay

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timers are the timers a delay line may use here.
func timers() map[string]func() timer {
	return map[string]func() timer{
		"real":    realClock{}.newTimer,
		"goTimer": func() timer { return goTimer{} },
	}
}

func TestATimerNeverWakesBeforeItsTime(t *testing.T) {
	for name, newTimer := range timers() {
		t.Run(name, func(t *testing.T) {
			tm := newTimer()
			defer tm.stop()
			for _, d := range []time.Duration{0, 100 * time.Microsecond, time.Millisecond, 3 * time.Millisecond} {
				at := time.Now().Add(d)
				require.True(t, tm.sleepUntil(at, nil))
				assert.False(t, time.Now().Before(at), "woke before %v", d)
			}
		})
	}
}

func TestStoppingATimerEndsItsWait(t *testing.T) {
	tm := realClock{}.newTimer()
	woke := make(chan bool)
	go func() { woke <- tm.sleepUntil(time.Now().Add(time.Hour), nil) }()
	tm.stop() // before the wait or during it: either way it ends
	assert.False(t, <-woke, "a stopped timer reported its time had come")
	assert.False(t, tm.sleepUntil(time.Now().Add(time.Hour), nil), "a stopped timer waits no more")
}

func TestAWaitWithACancelledChannelReturnsAtOnce(t *testing.T) {
	cancel := make(chan struct{})
	close(cancel)
	for name, newTimer := range timers() {
		t.Run(name, func(t *testing.T) {
			tm := newTimer()
			defer tm.stop()
			assert.False(t, tm.sleepUntil(time.Now().Add(time.Hour), cancel))
		})
	}
}

// BenchmarkTimerLateness reports how late each timer wakes (median and p90
// of b.N waits) for waits shorter and longer than a millisecond: the
// evidence for the delay line's choice of timer.
func BenchmarkTimerLateness(b *testing.B) {
	for _, d := range []time.Duration{300 * time.Microsecond, 1300 * time.Microsecond} {
		for name, newTimer := range timers() {
			b.Run(fmt.Sprintf("Wait=%dus/Timer=%s", d.Microseconds(), name), func(b *testing.B) {
				tm := newTimer()
				defer tm.stop()
				var late []time.Duration
				for b.Loop() {
					at := time.Now().Add(d)
					tm.sleepUntil(at, nil)
					late = append(late, time.Since(at))
				}
				sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
				b.ReportMetric(float64(late[len(late)/2].Microseconds()), "late-p50-µs")
				b.ReportMetric(float64(late[len(late)*9/10].Microseconds()), "late-p90-µs")
			})
		}
	}
}
