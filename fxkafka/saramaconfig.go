package fxkafka

import (
	"time"

	"github.com/IBM/sarama"
)

// sarama settings the pool fixes; the package doc explains each.
const (
	dialTimeout      = 3 * time.Second
	keepAlive        = 30 * time.Second
	readTimeout      = 10 * time.Second
	writeTimeout     = 10 * time.Second
	brokerAckTimeout = 5 * time.Second // Producer.Timeout: below readTimeout
	metadataRetries  = 1
	metadataBackoff  = 100 * time.Millisecond
	produceRetries   = 3
	produceBackoff   = 100 * time.Millisecond
	maxOpenRequests  = 5           // Kafka's limit for in-flight batches of one idempotent producer per partition
	txnTimeout       = time.Minute // transaction.timeout.ms of transactional producers
	txnRetryPause    = 20 * time.Millisecond
)

// saramaConfig builds the sarama configuration of one producer. The package
// doc explains each setting.
func (p *ProducerPool) saramaConfig(d *dialer, txnID string) *sarama.Config {
	c := p.cfg
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	if c.Version != "" {
		sc.Version, _ = sarama.ParseKafkaVersion(c.Version) // checked by Validate
	}
	sc.MetricRegistry = nopRegistry{}
	p.sec.apply(c, sc)

	sc.Net.Proxy.Enable = true
	sc.Net.Proxy.Dialer = d
	sc.Net.DialTimeout = dialTimeout
	sc.Net.ReadTimeout = readTimeout
	sc.Net.WriteTimeout = writeTimeout
	sc.Net.KeepAlive = keepAlive

	// sarama's retry pauses are skipped while provisioning (the pool's own
	// backoff paces attempts, and a caller may be waiting) and once the
	// producer is being abandoned.
	pause := func(normal time.Duration) func(int, int) time.Duration {
		return func(int, int) time.Duration {
			if !d.ready.Load() || d.aborted.Load() {
				return 0
			}
			return normal
		}
	}
	sc.Metadata.Full = true
	sc.Metadata.Retry.Max = metadataRetries
	sc.Metadata.Retry.BackoffFunc = pause(metadataBackoff)
	sc.Metadata.Timeout = c.ProvisionTimeout

	sc.Producer.RequiredAcks, _ = parseAcks(c.RequiredAcks) // checked by Validate
	sc.Producer.Timeout = brokerAckTimeout
	sc.Producer.MaxMessageBytes = c.MaxMessageBytes
	sc.Producer.Retry.Max = produceRetries
	sc.Producer.Retry.BackoffFunc = pause(produceBackoff)
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	// The pool builds and sends the batches itself (idempotence and
	// transactions included); sarama's producer settings do not apply, and
	// Net.MaxOpenRequests is the requests in flight per connection.
	sc.Net.MaxOpenRequests = maxOpenRequests
	return sc
}
