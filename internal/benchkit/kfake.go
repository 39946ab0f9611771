package benchkit

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"go.fxkafka.dev/internal/netdelay"
)

// Kfake starts a kfake cluster of [Brokers] brokers on loopback, with
// [Topic] of [Partitions] partitions (partition p led by broker p mod
// Brokers), behind a delay line of rtt on every connection
// (internal/netdelay; none at 0), closed at tb's cleanup. It answers produce
// requests without storing the records (kfake.BlackholeProduce, which still
// checks idempotent sequences), so that the broker's memory stays out of the
// clients' measurements.
func Kfake(tb testing.TB, rtt time.Duration) Target {
	tb.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(Brokers),
		kfake.SeedTopics(Partitions, Topic),
		kfake.BlackholeProduce(),
		kfake.ListenFn(netdelay.ListenFunc(rtt)),
	)
	if err != nil {
		tb.Fatalf("benchkit: start kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	for p := range int32(Partitions) {
		if want := p % Brokers; c.LeaderFor(Topic, p) != want {
			if err := c.MoveTopicPartition(Topic, p, want); err != nil {
				tb.Fatalf("benchkit: lead %s/%d from broker %d: %v", Topic, p, want, err)
			}
		}
	}
	return Target{Addrs: c.ListenAddrs()}
}
