// Package fxkafka is a lazily provisioned, capped pool of IBM/sarama
// producers behind a context-aware send API, wired into the Uber Fx
// lifecycle.
//
// A service that builds its sarama producer at startup fails to start while
// Kafka is down, because sarama dials and fetches metadata in its
// constructor. fxkafka's [ProducerPool] dials nothing until the first send,
// so the service starts; sends made during an outage fail fast with
// [ErrUnavailable]; the pool recovers by itself when the brokers return; and
// [ProducerPool.Close] (the Fx OnStop hook) flushes and closes every producer
// it made.
//
//	app := fx.New(
//		fxkafka.Module, // Config from KAFKA_BROKERS etc., *ProducerPool, Producer
//		fx.Provide(NewHandler), // func NewHandler(p fxkafka.Producer) *Handler
//	)
//
// Without Fx, [New] a pool from a [Config] and [ProducerPool.Close] it when
// done.
//
// # Guarantees
//
//   - Startup: [New] and the OnStart hook never touch the network.
//   - Lazy and capped: the first send provisions the first producer; another
//     is provisioned only when every open producer is busy
//     (Config.ProducerBusyAt in-flight messages) and fewer than
//     Config.MaxProducers exist. Producers are shared, not locked per send:
//     each send goes to the least-loaded one.
//   - Deadlines: every send honours its context, even against a broker that
//     accepts connections and never answers. Provisioning runs one attempt at
//     a time in a goroutine of the pool's, bounded by Config.ProvisionTimeout;
//     callers wait for it only as long as their context allows. An attempt a
//     caller stopped waiting for finishes, and its producer is kept.
//   - Outage: with no producer to be had, a send fails at once with an error
//     wrapping [ErrUnavailable] and the cause. Such a message was never handed
//     to Kafka and is never delivered later, so retrying it is safe. After a
//     failed attempt the pool backs off (from a tenth of
//     Config.ProvisionBackoffMax, doubling, jittered) and sends fail without
//     dialing until the pause ends.
//   - Recovery: the first send after the pause provisions again, so the pool
//     notices returning brokers within Config.ProvisionBackoffMax (1s).
//   - Delivery: a nil error means the brokers acknowledged the message with
//     Config.RequiredAcks. A [*DeliveryError] ([ErrDeliveryUnknown]) means the
//     message was handed to a producer and not acknowledged: it may have been
//     written. The pool never drops a message it accepted and never sends one
//     twice: only a message that never reached sarama is ever routed again.
//     sarama's own retries (Producer.Retry.Max) may store a message twice
//     unless Config.Idempotent is set, with which the broker stores each
//     acknowledged message once.
//   - Broken producers: a producer whose errors show it cannot recover by
//     itself (no broker reachable, its connection lost, its circuit breaker
//     open, its producer id rejected or fenced after a broker restart) is
//     taken out of routing at once and closed in the background; the next
//     send provisions a fresh one. sarama's circuit breaker would otherwise
//     fail a share of sends for 10s after the broker is back.
//   - Stop: [ProducerPool.Close] refuses new sends with [ErrPoolClosed],
//     cancels provisioning under way, lets handed-off messages finish,
//     flushes and closes every producer, and returns within its context with
//     none of the pool's goroutines left. A send racing Close ends in nil or
//     ErrPoolClosed.
//
// # Errors
//
// Every error a send returns says whether the message may have been written:
//
//	ErrInvalidMessage   not sent: nil, no topic, or larger than MaxMessageBytes
//	ErrPoolClosed       not sent: the pool is closed or closing
//	ErrUnavailable      not sent: no broker reachable, or ctx ended before a producer took it
//	*DeliveryError      handed to a producer, not acknowledged: may have been written
//
// The errors wrap their causes (dial errors, [sarama.KError] values, context
// errors), which [errors.Is] and [errors.As] reach.
//
// # sarama settings
//
// Each producer gets its own sarama.Config; these are chosen on purpose:
//
//   - Net.Proxy.Dialer is a dialer of the pool's that keeps every connection
//     it opened. sarama's blocking calls take no context; closing those
//     connections is how the pool ends a provisioning attempt against a
//     broker that never answers (at ProvisionTimeout, or on Close) and how a
//     Close whose context ended abandons in-flight requests.
//   - Net.DialTimeout 3s (sarama: 30s): an unreachable address fails an
//     attempt in seconds, not half a minute. A refused connection fails at once.
//   - Net.ReadTimeout and WriteTimeout 10s (sarama: 30s), above
//     Producer.Timeout 5s (sarama: 10s), the time the broker may wait for
//     replicas before answering: a hung broker holds sarama's requests for at
//     most 10s. Callers never wait that long unless their context allows it.
//   - Metadata.Retry.Max 1 with a 100ms pause (sarama: 3 × 250ms), and no
//     pause at all while provisioning: with nothing listening an attempt fails
//     in about a millisecond, and the pool's jittered backoff, not sarama's,
//     paces the next one. Metadata.Timeout is ProvisionTimeout.
//   - Metadata.Full true (sarama's default): provisioning fetches the
//     cluster's metadata, which is the proof that a broker answers.
//   - Producer.Retry.Max 3 with 100ms pauses (sarama's defaults): leader moves
//     and transient broker errors are retried inside sarama. Once the pool
//     abandons a producer the pauses drop to zero so it winds down at once.
//   - Producer.RequiredAcks from Config.RequiredAcks, default WaitForAll (all
//     in-sync replicas, Kafka's own default since 3.0; sarama's is the
//     leader only).
//   - Producer.Return.Successes and Errors true: each send waits for its own
//     message's result, drained by goroutines the pool owns (eight for
//     successes: sarama feeds them from one goroutine per broker through an
//     unbuffered channel, which one receiver cannot keep up with).
//   - Producer.Partitioner is sticky for keyless messages (a run of 256 to
//     one partition, then another) and sarama's hash for keyed ones; see
//     Config.Partitioner.
//   - With Config.Idempotent: Producer.Idempotent, RequiredAcks WaitForAll
//     and Net.MaxOpenRequests 1, as sarama requires.
//   - MetricRegistry is a per-producer no-op registry: sarama's go-metrics
//     cost a little on every request and start a process-wide goroutine that
//     never exits; the pool reports [Stats] instead. Nothing global is set.
//
// # Security, readiness, metrics
//
// Config's TLS fields (a CA file, a client certificate and key, a server
// name, and an insecure-skip-verify switch that is logged as a warning) and
// SASL fields (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) are checked when the pool
// is made; the password is a [Secret], which never prints.
// [ProducerPool.Ping] reports whether a broker answers, for readiness
// probes. [ProducerPool.Stats] is a snapshot like sql.DBStats; the
// fxkafkaprom package exports it to Prometheus.
//
// # Leases and transactions
//
// [ProducerPool.Lease] hands one producer to one caller until
// [Lease.Release], counted against Config.MaxProducers. With
// Config.TransactionalID set, leased producers are transactional, each with
// its own transactional id, and [Lease.BeginTxn], [Lease.CommitTxn] and
// [Lease.AbortTxn] frame their sends. Close aborts the transactions of
// leases not released.
//
// # Fx
//
// [Module] provides [Config] (from [ConfigFromEnv]), [*ProducerPool] and
// [Producer]. It uses the application's *zap.Logger if there is one, and
// logs nothing otherwise. Override the configuration with fx.Replace, or
// adjust the environment's with fx.Decorate.
package fxkafka
