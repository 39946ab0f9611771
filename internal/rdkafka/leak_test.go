package rdkafka

import (
	"testing"

	"go.uber.org/goleak"
)

// ignoreBreaker: sarama's circuit breakers start a timer goroutine when they
// open that nothing stops; it outlives the producer by up to 10s and holds
// nothing of the pool's.
var ignoreBreaker = goleak.IgnoreAnyFunction("github.com/eapache/go-resiliency/breaker.(*Breaker).timer")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, ignoreBreaker) }
