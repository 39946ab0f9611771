package fxkafka

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"go.fxkafka.dev/internal/nopmetrics"
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
	// pipelineDepth is the most produce requests a connection carries at
	// once when requests pipeline (Net.MaxOpenRequests; sarama's default is
	// 5, Kafka's Java client's 5, librdkafka's unlimited); a connection's
	// depthGauge carries fewer while the broker queues them. A request carries one
	// batch per partition, so with keyless records on one partition at a
	// time it is also how many batches of a broker can be in flight: against
	// a broker 5 ms away, 256 senders got 34.8k sends/s with 5 and 36.2k with
	// 16; 20 ms away, 8.5k and 10.6k (measured before the delay line's
	// timerfd, which took up to a millisecond off every kfake round trip).
	pipelineDepth = 16
	// pipelinedHold is how long a batch waits for more records, without a
	// linger, when its connection already carries a request and at least
	// holdSends messages are in flight (Stats.InFlight; producer.holdFor): then records come
	// faster than requests are answered, and one request carrying several
	// costs the broker less than several carrying one each. 256 senders
	// got, 1 ms from librdkafka's mock cluster, 133-142k sends/s at a p50
	// of 1.67-1.83 ms instead of 110-113k at 1.96-2.01 ms, and 1 ms from
	// kfake 180k at 1.33 ms instead of 143-146k at 1.60 ms; 5 ms away,
	// 41-43k against 40-41k (mock) and 46-47k against 45k (kfake). 16
	// senders, which holdSends leaves alone, measured the same either way
	// (single runs of BenchmarkSend). The wait is short enough that a late
	// timer matters: a record placed on a held batch past its time sends it.
	pipelinedHold = 50 * time.Microsecond
	holdSends     = 64
	// idempotentLanes caps the lanes, hence the producer ids, of an
	// idempotent producer: each id is state every broker keeps. Against a
	// broker 5 ms away, 256 idempotent senders got 30.8k sends/s with 5,
	// 38.2k with 10 (as many as without idempotence) and 38.8k with 16.
	idempotentLanes = 10
	txnTimeout      = time.Minute // transaction.timeout.ms of transactional producers
	txnRetryPause   = 20 * time.Millisecond
)

// saramaBase is the sarama configuration New builds once, and the
// [WithSaramaConfig] funcs it runs while building it.
type saramaBase struct {
	funcs  []func(*sarama.Config) // from the options, in order
	config *sarama.Config         // set by New; read-only after
}

// saramaConfig returns the sarama configuration of one producer: a copy of
// the one New built, with the producer's dialer, the retry pauses that
// depend on it. A transactional lease's id is the pool's own to send (the
// client needs none of it). The package doc explains each setting.
func (p *ProducerPool) saramaConfig(d *dialer) *sarama.Config {
	sc := *p.base.config // nothing in it is written after New: sharing its pointers is safe
	sc.Net.Proxy.Dialer = d

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
	sc.Metadata.Retry.BackoffFunc = pause(sc.Metadata.Retry.Backoff)
	sc.Producer.Retry.BackoffFunc = pause(sc.Producer.Retry.Backoff)
	return &sc
}

// makeTransactional turns sc into the config of a transactional lease.
func makeTransactional(sc *sarama.Config, txnID string) {
	sc.Producer.Transaction.ID = txnID
	sc.Producer.Idempotent = true
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Net.MaxOpenRequests = 1
}

// validateSarama runs sarama's Validate on sc and, with a TransactionalID,
// on the config of a transactional lease made from it: the configs
// sarama.NewClient will be given.
func validateSarama(sc *sarama.Config, transactionalID string) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	if transactionalID == "" {
		return nil
	}
	lease := *sc
	makeTransactional(&lease, transactionalID+"-0")
	return lease.Validate()
}

// saramaFromConfig is the sarama configuration c (with its defaults) makes,
// before any WithSaramaConfig func: what c sets, and what the pool owns.
func (c Config) saramaFromConfig(sec security) *sarama.Config {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	if c.Version != "" {
		sc.Version, _ = sarama.ParseKafkaVersion(c.Version) // checked by check
	}
	sc.Producer.RequiredAcks, _ = parseAcks(c.RequiredAcks) // checked by check
	sc.Producer.MaxMessageBytes = c.MaxMessageBytes
	sc.Producer.Compression, _ = parseCompression(c.Compression) // checked by check
	sc.Producer.CompressionLevel = saramaLevel(c.CompressionLevel)
	sc.Producer.Flush.Frequency = max(c.Linger, 0)
	sc.Producer.Partitioner, _ = partitionerFor(c.Partitioner, c.KeyHash) // checked by check
	sc.Producer.Timeout = brokerAckTimeout
	sc.Producer.Retry.Max = produceRetries
	sc.Producer.Retry.Backoff = produceBackoff
	sc.Net.MaxOpenRequests = pipelineDepth
	sc.Metadata.Retry.Max = metadataRetries
	sc.Metadata.Retry.Backoff = metadataBackoff
	if c.Idempotent {
		sc.Producer.Idempotent = true
		sc.Producer.RequiredAcks = sarama.WaitForAll
		sc.Net.MaxOpenRequests = 1
	}
	sec.apply(c, sc)

	// The pool's own, which WithSaramaConfig may not change (ownedSettings).
	sc.MetricRegistry = nopmetrics.Registry{} // the pool reports its own Stats; no cost per request, no goroutine outliving it
	sc.Net.Proxy.Enable = true
	sc.Net.DialTimeout = dialTimeout
	sc.Net.ReadTimeout = readTimeout
	sc.Net.WriteTimeout = writeTimeout
	sc.Net.KeepAlive = keepAlive
	sc.Metadata.Full = true
	sc.Metadata.Timeout = c.ProvisionTimeout
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	return sc
}

// saramaSetting is one sarama setting a WithSaramaConfig func must leave as
// it found it, and why.
type saramaSetting struct {
	name string
	get  func(*sarama.Config) any
	why  string
}

// ownedSettings are the sarama settings the pool owns: its guarantees rest
// on them. The package doc lists them; keep the two in step.
var ownedSettings = []saramaSetting{
	{"Net.Proxy.Enable", func(c *sarama.Config) any { return c.Net.Proxy.Enable }, dialerOwns},
	{"Net.Proxy.Dialer", func(c *sarama.Config) any { return c.Net.Proxy.Dialer }, dialerOwns},
	{"Net.DialTimeout", func(c *sarama.Config) any { return c.Net.DialTimeout }, dialerOwns},
	{"Net.KeepAlive", func(c *sarama.Config) any { return c.Net.KeepAlive }, dialerOwns},
	{"Net.LocalAddr", func(c *sarama.Config) any { return c.Net.LocalAddr }, dialerOwns},
	{"Net.TLS.Enable", func(c *sarama.Config) any { return c.Net.TLS.Enable }, tlsOwns},
	{"Net.TLS.Config", func(c *sarama.Config) any { return c.Net.TLS.Config }, tlsOwns},
	{"Net.ReadTimeout", func(c *sarama.Config) any { return c.Net.ReadTimeout }, "it bounds how long a broker that never answers holds a request"},
	{"Net.WriteTimeout", func(c *sarama.Config) any { return c.Net.WriteTimeout }, "it bounds how long a broker that never reads holds a request"},
	{"Metadata.Full", func(c *sarama.Config) any { return c.Metadata.Full }, "provisioning fetches the cluster's metadata as the proof that a broker answers"},
	{"Metadata.Timeout", func(c *sarama.Config) any { return c.Metadata.Timeout }, "it is Config.ProvisionTimeout"},
	{"Metadata.Retry.BackoffFunc", func(c *sarama.Config) any { return c.Metadata.Retry.BackoffFunc }, pausesOwn + "; set Metadata.Retry.Backoff"},
	{"Producer.Retry.BackoffFunc", func(c *sarama.Config) any { return c.Producer.Retry.BackoffFunc }, pausesOwn + "; set Producer.Retry.Backoff"},
	{"Producer.Transaction.Retry.BackoffFunc", func(c *sarama.Config) any { return c.Producer.Transaction.Retry.BackoffFunc }, pausesOwn},
	{"Producer.Transaction.ID", func(c *sarama.Config) any { return c.Producer.Transaction.ID }, "it is Config.TransactionalID and the lease's slot"},
	{"Producer.Return.Successes", func(c *sarama.Config) any { return c.Producer.Return.Successes }, "the pool waits for every message's result"},
	{"Producer.Return.Errors", func(c *sarama.Config) any { return c.Producer.Return.Errors }, "the pool waits for every message's result"},
	{"MetricRegistry", func(c *sarama.Config) any { return c.MetricRegistry }, "go-metrics starts a goroutine that never exits; the pool reports Stats instead"},
}

const (
	dialerOwns = "the pool's dialer makes every connection: it aborts those a hung broker holds, and dials with its own timeout"
	tlsOwns    = "the pool's dialer does TLS, from Config's TLS fields"
	pausesOwn  = "the pool skips sarama's retry pauses while provisioning and when it abandons a producer"
)

// unhonouredSettings are sarama producer settings the pool's send path does
// not use: changing one would do nothing, so it is refused instead.
var unhonouredSettings = []saramaSetting{
	{"Producer.Flush.Bytes", func(c *sarama.Config) any { return c.Producer.Flush.Bytes }, batchesOwn},
	{"Producer.Flush.Messages", func(c *sarama.Config) any { return c.Producer.Flush.Messages }, batchesOwn},
	{"Producer.Flush.MaxMessages", func(c *sarama.Config) any { return c.Producer.Flush.MaxMessages }, batchesOwn},
	{"Producer.Retry.MaxBufferLength", func(c *sarama.Config) any { return c.Producer.Retry.MaxBufferLength }, buffersOwn},
	{"Producer.Retry.MaxBufferBytes", func(c *sarama.Config) any { return c.Producer.Retry.MaxBufferBytes }, buffersOwn},
	{"Producer.Interceptors", func(c *sarama.Config) any { return c.Producer.Interceptors }, "the pool calls no sarama interceptor; observe sends with WithHook"},
	{"Producer.Transaction.Timeout", func(c *sarama.Config) any { return c.Producer.Transaction.Timeout }, "the pool's leases do not use it"},
	{"Producer.Transaction.Retry.Max", func(c *sarama.Config) any { return c.Producer.Transaction.Retry.Max }, "the pool's leases do not use it"},
	{"Producer.Transaction.Retry.Backoff", func(c *sarama.Config) any { return c.Producer.Transaction.Retry.Backoff }, "the pool's leases do not use it"},
	{"ChannelBufferSize", func(c *sarama.Config) any { return c.ChannelBufferSize }, "the pool's send path has no sarama channels"},
}

const (
	batchesOwn = "the pool builds batches by Config.Linger (Producer.Flush.Frequency) and Config.MaxBatchBytes"
	buffersOwn = "the pool bounds what it holds with Config.MaxBufferedMessages and MaxBufferedBytes"
)

// tune runs the WithSaramaConfig funcs on sc, built from Config, and refuses
// what they did that the pool cannot honour: a change to a setting it owns
// or does not use, or a config sarama's Validate or the pool's own checks
// refuse. It reports whether a func replaced Producer.Partitioner.
func tune(sc *sarama.Config, funcs []func(*sarama.Config), d Config) (customPartitioner bool, err error) {
	guarded := append(append([]saramaSetting(nil), ownedSettings...), unhonouredSettings...)
	before := make([]any, len(guarded))
	for i, s := range guarded {
		before[i] = s.get(sc)
	}
	partitioner := sc.Producer.Partitioner
	for _, f := range funcs {
		f(sc)
	}
	for i, s := range guarded {
		if !sameSetting(before[i], s.get(sc)) {
			verb := "owns"
			if i >= len(ownedSettings) {
				verb = "does not use"
			}
			return false, hatchError("changes %s, which the pool %s: %s", s.name, verb, s.why)
		}
	}
	if err := validateSarama(sc, d.TransactionalID); err != nil {
		return false, hatchError("sarama refuses the result: %w", err)
	}
	if name, err := checkPoolLimits(sc); err != nil {
		return false, hatchError("%s: %w", name, err)
	}
	return !sameSetting(partitioner, sc.Producer.Partitioner), nil
}

func hatchError(format string, args ...any) *ConfigError {
	return &ConfigError{Field: "WithSaramaConfig", Err: fmt.Errorf(format, args...)}
}

// checkPoolLimits checks what sarama's Validate does not and the send path
// needs, on settings a WithSaramaConfig func may change. It names the sarama
// setting at fault.
func checkPoolLimits(sc *sarama.Config) (string, error) {
	if mb := sc.Producer.MaxMessageBytes; mb > MaxRequestBytes {
		return "Producer.MaxMessageBytes", fmt.Errorf("%d is above %d (MaxRequestBytes)", mb, MaxRequestBytes)
	}
	if sc.Net.SASL.Enable && sc.Net.SASL.Version != sarama.SASLHandshakeV1 {
		return "Net.SASL.Version", fmt.Errorf("is %d: SASL v0 sends raw tokens, and the pool's dialer refuses what is not framed as Kafka's protocol; keep SASLHandshakeV1", sc.Net.SASL.Version)
	}
	if sc.Producer.Timeout >= readTimeout {
		return "Producer.Timeout", fmt.Errorf("%v is not below the pool's Net.ReadTimeout (%v): the broker's answer would come after the pool stopped waiting", sc.Producer.Timeout, readTimeout)
	}
	if c := sc.Producer.Compression; c < sarama.CompressionNone || c > sarama.CompressionZSTD {
		// Checked first: sarama's CompressionCodec.String panics on it.
		return "Producer.Compression", fmt.Errorf("%d is not a codec sarama knows", int(c))
	}
	if err := checkCodecLevel(sc.Producer.Compression, sc.Producer.CompressionLevel); err != nil {
		return "Producer.CompressionLevel", err
	}
	return "", nil
}

// sameSetting reports whether a sarama setting kept its value: funcs by
// their code (a func literal made again compares equal, a different one
// does not), comparable values with ==, others deeply.
func sameSetting(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if !va.IsValid() || !vb.IsValid() {
		return va.IsValid() == vb.IsValid()
	}
	if va.Type() != vb.Type() {
		return false
	}
	if va.Kind() == reflect.Func {
		return va.Pointer() == vb.Pointer()
	}
	if va.Comparable() && vb.Comparable() {
		return va.Equal(vb)
	}
	return reflect.DeepEqual(a, b)
}

// saramaFields maps sarama's complaints about the configuration Config made
// to the Config field that made it: a backstop behind check, which refuses
// each of them first with a clearer message. The first match wins.
var saramaFields = []struct{ says, field string }{
	{"ClientID", "ClientID"},
	{"does not work with level", "CompressionLevel"},
	{"compression", "Compression"},
	{"Idempotent producer requires Version", "Version"},
	{"Idempotent producer requires Producer.RequiredAcks", "RequiredAcks"},
	{"Transactional", "TransactionalID"},
	{"Idempotent", "Idempotent"},
	{"SASL", "SASLMechanism"},
	{"AccessTokenProvider", "SASLMechanism"},
	{"SCRAMClientGeneratorFunc", "SASLMechanism"},
	{"MaxMessageBytes", "MaxMessageBytes"},
	{"RequiredAcks", "RequiredAcks"},
	{"Flush.Frequency", "Linger"},
	{"Metadata.Timeout", "ProvisionTimeout"},
}

// saramaConfigError turns sarama's Validate error on the configuration
// Config made into a *ConfigError naming the field responsible.
func saramaConfigError(err error) *ConfigError {
	var ce sarama.ConfigurationError
	msg := err.Error()
	if errors.As(err, &ce) {
		msg = string(ce)
	}
	for _, m := range saramaFields {
		if strings.Contains(msg, m.says) {
			return configError(m.field, "sarama refuses it: %s", msg)
		}
	}
	return &ConfigError{Field: "Config", Err: fmt.Errorf("sarama refuses the configuration it makes: %w", err)}
}
