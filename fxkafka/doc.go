// Package fxkafka is a lazily provisioned, capped pool of Kafka producers
// behind a context-aware send API, wired into the Uber Fx lifecycle. It
// builds its own batches and writes its own produce requests (uncompressed
// batches on connections without SASL), and speaks the rest of Kafka
// (metadata, producer ids, transactions, SASL) through IBM/sarama's
// protocol layer.
//
// A service that builds its Kafka producer at startup fails to start while
// Kafka is down: sarama dials and fetches metadata in its constructor. A
// [ProducerPool] dials nothing until the first send, so the service starts;
// sends during an outage fail fast with [ErrUnavailable]; the pool recovers
// by itself when the brokers return; and [ProducerPool.Close] (the Fx OnStop
// hook) flushes what it holds.
//
//	app := fx.New(
//		fxkafka.Module, // Config from KAFKA_BROKERS etc., *ProducerPool, Producer
//		fx.Provide(NewHandler), // func NewHandler(p fxkafka.Producer) *Handler
//	)
//
// Without Fx, [New] a pool from a [Config] and Close it when done. Send
// synchronously with [ProducerPool.SendMessage] and
// [ProducerPool.SendMessages] (the [Producer] interface), or asynchronously
// with [ProducerPool.Produce] and [ProducerPool.Flush].
//
// # How a send travels
//
// A send validates the message and copies its key, value and headers into a
// record of the pool's own (calling the key's and value's Encode once, on
// the caller's goroutine), so sarama never reads the caller's memory. The
// record joins a partition of a producer: a key is hashed as
// Config.KeyHash says ("fnv1a", where sarama's NewHashPartitioner puts it,
// or "murmur2", where Kafka's Java client, franz-go and librdkafka put it);
// a keyless record goes to the topic's sticky partition (Config.Partitioner
// "sticky", the default) or a random one ("hash"). msg.Partition is not
// read unless a partitioner set with [WithSaramaConfig] reads it.
//
// Within a partition, records wait in lanes. A lane has at most one batch in
// flight, which is how a lane keeps its order across retries; several lanes
// let unordered sends to one partition leave without waiting for the batch
// ahead. A sink per broker cuts batches (up to Config.MaxBatchBytes, after
// Config.Linger if one is set) from the partitions that broker leads, one
// batch per partition per produce request, and sends them on the producer's
// connection to that broker: while requests pipeline and the connection
// has a slot to spare, a request carries one partition's batch, so that
// each partition's next batch leaves as soon as its own answer comes.
//
// For uncompressed batches (Config.Compression "none", the default) on
// connections without SASL, that connection is the sink's own: dialled
// with the producer's dialer (TLS, the framing checks on every answer, the
// check for a connection the broker closed while idle, and Close's abort
// all apply), it carries only produce requests, of at most version 8
// (Kafka 2.4; lower if Config.Version or the broker's ApiVersions answer
// says so), each
// encoded from the records straight into one buffer the connection reuses,
// and its answers are read in order as sarama reads them. Through sarama's
// Broker, which compressed batches, SASL connections (sarama logs in, and
// logs in again when the broker's session ends) and brokers before Kafka
// 0.11 keep, each request is encoded a second time into a fresh buffer the
// size of the request. The pool does not wait out a broker's throttle time
// before its next request, as sarama does: the broker mutes a throttled
// connection itself (Kafka 2.0 and later). sarama's client also opens its
// own connection to each leader the pool asks it for (it does so on every
// Leader call), which then stays idle beside the sink's: a producer holds
// up to two connections to each broker it sends to.
//
// Whether a second request leaves while one is in flight is measured, not
// configured: each producer compares the shortest recent round trip with the
// shortest time it took to build and write a request. When the round trip is
// twenty times that cost or more on the sink's own connection (ten times
// through sarama's Broker, whose requests cost the client twice as much;
// about 200 µs either way), as for a broker a millisecond away, requests are
// pipelined, and how many a connection carries follows the broker's queue,
// as TCP Vegas sizes a window: up to Net.MaxOpenRequests (16 by default),
// down to 2 while requests wait at the broker. When it is not (a broker on
// loopback), one request is in flight per connection, the records that
// arrive meanwhile make the next batch larger, and keyless records stay on
// one partition for 64 KiB. While requests pipeline and 64 or more
// messages are in flight (Stats.InFlight), a batch of synchronous sends
// whose connection already carries a request waits about 50 µs for more
// records (Config.Linger), so that the broker answers fewer, fuller
// requests.
//
// While requests pipeline, a keyless synchronous send goes to a partition
// where a lane and a request slot are free, so records spread rather than
// queue. Produce's keyless records take one lane (one batch in flight per
// partition, so that they keep their order): they fill one partition with
// its share of the buffer (Config.MaxBufferedMessages and MaxBufferedBytes
// over twice the partitions, at most a batch), then the next, in turn, so
// that each partition's records gather while its batch is in flight. The
// turn passes over a partition without a leader, and over one whose last
// share still waits behind its batch in flight (a slow broker). Without
// pipelining, keyless records leave a sticky partition that has lost its
// leader for the next one that has one.
//
// # Provisioning
//
// A producer is a sarama client of its own (its own dialer, connections and
// metadata) with the pool's batching on top. The pool holds every producer,
// from the start of its provisioning until it has closed, as one slot in one
// table: shared, leased, idle lease, retiring, or being provisioned. One
// place starts attempts, and it checks, in order: the pool is open; an
// attempt is under way (the caller joins it: one attempt at a time, for
// sends, leases and [ProducerPool.Ping] alike); fewer slots than
// Config.MaxProducers exist, every slot counted (so the cap holds while a
// producer is still being made or still closing); the backoff after a
// failure has passed. An attempt dials, fetches metadata and, with
// idempotence or a transactional id, a producer id, in a goroutine of the
// pool's, bounded by Config.ProvisionTimeout and by Close. Callers wait for
// it as long as their context allows; an attempt a caller stopped waiting
// for finishes, and its producer is kept. [Stats].Provisioning counts the
// attempt under way.
//
// After a failed attempt the pool pauses, from a tenth of
// Config.ProvisionBackoffMax and doubling up to it, half fixed and half
// random so that a fleet does not retry in step. Meanwhile a send that finds
// no producer open fails at once with ErrUnavailable and dials nothing; the
// first send after the pause tries again, so returning brokers are noticed
// within ProvisionBackoffMax (1s).
//
// # Growth
//
// Sends go to the least-loaded shared producer. One producer carries any
// number of concurrent sends, and a second one splits the batches a single
// one would build, so another is provisioned only when the least-loaded one
// is busy, and the cap allows: one of its connections has every request
// slot in flight with records still waiting while requests pipeline (the
// queueing a second connection would remove), or it carries
// Config.ProducerBusyAt records. [ProducerPool.Produce] keeps to the oldest
// shared producer (see Ordering) and never asks for another: one more would
// carry none of its streams.
//
// # Delivery and errors
//
// A nil error means the brokers acknowledged the message with
// Config.RequiredAcks. Every error says whether the message may have been
// written, and matches one of (see [ErrorClass]):
//
//	ErrInvalidMessage   refused, not written: by the pool's checks or by the broker
//	ErrPoolClosed       not sent: the pool is closed or closing
//	ErrUnavailable      not sent, and never sent later: retrying is safe
//	*DeliveryError      sent, not acknowledged: it may have been written
//
// [ErrUnavailable]: no producer could be had (no broker reachable, the pool
// backing off, [ErrNoFreeProducer] when lease producers hold the cap), the
// caller's context ended before the message left in a request, or the
// brokers had no leader for it until the retries ran out. A synchronous send whose
// caller stops waiting before its message was cut into a batch withdraws
// the message, so it is never written later.
//
// [ErrInvalidMessage]: nil, no topic, a timestamp Kafka cannot store,
// headers before Kafka 0.11, larger than Config.MaxMessageBytes (counted as
// the broker counts it), a topic that does not exist (remembered for a
// second, so a caller looping on a typo costs one metadata request a
// second), or a batch the broker refused for what it holds
// (MESSAGE_TOO_LARGE, INVALID_RECORD, not authorised...). One caller's bad
// record never fails another's: when the broker refuses a batch of several
// records for one record's sake (its size, its content, its timestamp), the
// records it names fail and the rest go back to the front of their lane; if
// it names none, they are sent again in halves until the bad one is alone.
// (A batch an earlier attempt of which may have been stored is not split,
// which could store it twice: it fails whole, as a DeliveryError.)
// [ProducerPool.SendMessages] runs the pool's checks on every message first
// and sends nothing if one fails them.
//
// [*DeliveryError] ([ErrDeliveryUnknown]): the caller's context ended while
// the message was in flight, or an attempt's outcome was unknown (a lost
// connection, a timeout, an error code the pool does not know). Without
// Idempotent such a batch is failed at once, never sent again; with it, it
// is retried (Producer.Retry.Max, 3, with jittered pauses of
// Producer.Retry.Backoff, 100ms), the broker dropping a stored copy, and
// fails so when the retries run out. The pool never sends a message twice.
//
// A broker's answer is read per partition. Leader moves (NOT_LEADER and its
// kin) send the batch to the new leader; passing conditions are retried; a
// refusal splits the batch as above. Only a producer-wide failure retires a
// producer: its producer id rejected or fenced (a broker that lost its
// state), its sequence numbers unknown (see Idempotence), or metadata it
// cannot fetch after its retries. A retired producer takes no new records,
// retries nothing, fails those waiting on it unsent with ErrUnavailable,
// lets what is in flight be answered, and closes in the background; the
// next send provisions a fresh one. A lost connection alone is not fatal:
// the sink reconnects.
//
// # Idempotence
//
// With Config.Idempotent each lane has a producer id of its own, fetched
// when the lane opens, and numbers its batches per partition as Kafka
// checks them; a retry resends the same batch with the same numbers, so the
// broker stores it once. Since a lane has one batch in flight, Kafka's limit
// of five in flight per producer id never binds; an idempotent producer
// opens at most ten lanes (ten producer ids, state every broker keeps),
// and a connection carries up to sixteen requests. A lane whose batch failed with its outcome
// unknown no longer knows which number comes next: its producer is retired
// and replaced rather than guess.
//
// # Ordering
//
// Concurrent synchronous sends have no order among themselves: a
// SendMessage may take any lane. The messages of one SendMessages call take
// one lane of one producer, so those to one partition are stored in the
// order given. [ProducerPool.Produce] sends on lane 0 of the oldest shared
// producer, so the messages a goroutine produces to one partition (one key,
// with a key hash) are stored in the order produced, across retries, leader
// moves and the replacement of a broken producer: the stream moves to the
// next producer only once the old one has finished (a retired producer
// retries nothing; Produce waits for it within its context). The limits:
//
//   - A message that failed is not stored, and the ones after it may be:
//     a caller that retries it puts it after them.
//   - Without Idempotent the broker cannot tell a retry from a new batch, so
//     a batch whose attempt timed out or lost its connection is not sent
//     again: it fails as outcome unknown, and may or may not be stored,
//     before the batches after it on its lane.
//
// # Produce, Flush and backpressure
//
// [ProducerPool.Produce] returns once the message is placed on a producer;
// its promise is called exactly once with the outcome, in the classes above.
// Config.MaxBufferedMessages and Config.MaxBufferedBytes bound what waits in
// the pool: a full buffer makes Produce block until space frees or its
// context ends (the promise then gets ErrUnavailable). A message holds its
// space until its promise has returned. [ProducerPool.Flush] waits for every
// message produced before it, promises included, and sends lingering
// batches at once.
//
// Promises run on one goroutine of the pool's, in the order outcomes arrive
// (for one partition, the order produced), never on the caller's or the
// network's: a slow promise delays the promises after it and, by holding
// buffer space, Produce, but never a request. A promise that panics is
// recovered and logged with its stack at error level; the next promise
// runs. A promise may start work, call SendMessage, or Produce with a
// context that ends; it must not call Flush (it would wait for itself),
// Close (the same, whatever Close's context), or Produce with a context that
// never ends (on a full buffer it would wait for space only it can free).
//
// # Close
//
// [ProducerPool.Close] refuses new sends with ErrPoolClosed at once, cancels
// provisioning under way, sends what lingers, waits for every message
// accepted to be acknowledged or to fail, closes the producers, runs the
// promises still due, and returns when the pool's goroutines have exited.
// If its context ends first, it aborts the connections: messages in flight
// fail with a DeliveryError, those not yet sent with ErrPoolClosed, and
// Close returns an error wrapping the context's. Every promise has run when
// Close returns (a Produce after Close gets its promise on a goroutine of
// its own), unless a promise is still running two seconds after the context
// ended: then Close returns an error saying so, and the promise goroutine
// runs the rest when it returns. Close is safe to call more than once and
// concurrently.
//
// # Leases and transactions
//
// [ProducerPool.Lease] hands one producer to one caller until
// [Lease.Release], counted against Config.MaxProducers with the shared ones
// and provisioned through the same single attempt and backoff. A released
// producer is kept, idle, for the next Lease, until a shared send finds the
// cap taken: then an idle plain producer becomes a shared one, and an idle
// transactional one is closed to free its slot. Shared sends fail with
// ErrNoFreeProducer only while leases hold every slot. With
// Config.TransactionalID set, leased producers are transactional, each with
// the id "<TransactionalID>-<n>" (n the lowest free slot, so a restarted
// service reuses its ids and fences its predecessor's), one lane and one
// producer id. The pool runs the transaction itself: it adds each new
// partition to the transaction before the first record for it is placed,
// [Lease.CommitTxn] waits for every message of the transaction and commits
// only if none failed, and [Lease.AbortTxn] aborts. Release aborts a
// transaction left open; a producer whose transaction state is unknown is
// replaced rather than reused; Close aborts the transactions of leases not
// released.
//
// # Hooks
//
// [WithHook] registers a [Hook]; the pool calls the Hook* interfaces it
// implements. [HookSendStart] runs once per accepted message on the caller's
// goroutine, before the message is placed, with the pool's copy (headers it
// adds are sent). [HookSendEnd] runs once per message that hook saw, on the
// goroutine that learned the outcome: for a broker's answer the one reading
// that connection, for a send that failed before it was placed or whose
// caller stopped waiting the caller's; it has returned before the send
// returns or the promise is called. [HookProvision] runs on the
// provisioning goroutine, [HookRetire] on the goroutine that closed the
// producer. Hooks run on the send path: keep them fast, never block.
//
// # sarama settings
//
// New builds one *sarama.Config from the Config, runs [WithSaramaConfig]'s
// funcs on it, and gives every producer a copy. The pool owns, and New
// refuses a func that changes:
//
//   - Net.Proxy.* and the dial settings (DialTimeout 3s, KeepAlive,
//     LocalAddr): the pool's dialer makes every connection, so it can close
//     them (sarama's blocking calls take no context: that is how a hung
//     broker's provisioning ends at ProvisionTimeout or Close, and how a
//     Close out of time gives up).
//   - Net.TLS.*: the dialer does TLS itself (see Security).
//   - Net.ReadTimeout and WriteTimeout 10s (sarama: 30s): they bound how long
//     a broker that never answers holds a request; Producer.Timeout (the
//     broker's wait for replicas, 5s) must stay below them.
//   - Metadata.Full (provisioning fetches metadata as the proof that a broker
//     answers) and Metadata.Timeout (Config.ProvisionTimeout).
//   - The Retry.BackoffFunc of Metadata, Producer and Producer.Transaction:
//     no pause while provisioning (the pool's backoff paces attempts) or
//     once a producer is being abandoned.
//   - Producer.Transaction.ID, Producer.Return.*, and MetricRegistry, a no-op
//     registry per producer (go-metrics starts a goroutine that never exits;
//     the pool reports Stats).
//
// It refuses too a change to a producer setting its send path does not use
// (Producer.Flush.Bytes, Messages, MaxMessages, Producer.Retry.MaxBuffer*,
// Producer.Interceptors, Producer.Transaction.Timeout and Retry.*,
// ChannelBufferSize). It honours, and a func may change (WithSaramaConfig
// lists them all): ClientID, RackID, Version, Net.MaxOpenRequests (the most requests in flight per connection
// when pipelining, 16 by default, fewer while the broker queues them; 16 with
// idempotence, whatever is set), Net.SASL.*,
// Metadata.Retry.*, RefreshFrequency and AllowAutoTopicCreation, and of
// the producer settings RequiredAcks, Timeout, MaxMessageBytes, Compression,
// CompressionLevel, Flush.Frequency (the linger), Partitioner (then called
// with a message holding only Topic, Key and Partition), Idempotent,
// Retry.Max and Retry.Backoff. What a func sets wins over the Config field.
//
// # Security
//
// Config's TLS fields (a CA file, a client certificate and key, a server
// name, and an insecure-skip-verify switch that New logs as a warning) and
// SASL fields (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or OAUTHBEARER with
// [WithTokenProvider]) are parsed once, in New, which reads the files and
// returns a [*ConfigError] for what cannot work; the password is a
// [Secret], which never prints. The dialer makes the TLS handshake (TLS 1.2
// or later), so it sees Kafka's framing in plain text and refuses a response
// whose announced length no Kafka response has (under 4 bytes; over 1 MiB
// for the answer to ApiVersions, a connection's first; over
// sarama.MaxResponseSize) before sarama allocates it: an address of another service (SSH, Redis, a TLS port dialled in
// plain text) fails an attempt cheaply. SASL uses handshake v1, which
// frames every exchange.
//
// # What the caller owns
//
// SendMessage and SendMessages copy what they send before they return or
// hand anything on: once they return, whatever the outcome, msg and every
// byte it points to are the caller's again; during the call msg must not
// change. On success they set msg.Partition, Offset and Timestamp, as
// sarama's SyncProducer does. Produce copies the bytes before it returns,
// so buffers are the caller's again at once; the message itself is the
// pool's until its promise runs, which receives it with Partition, Offset
// and Timestamp set. A message sent without a Timestamp is stamped when the
// pool cuts it into a batch, with one clock read per batch (sarama's
// producers read the clock per message), and Timestamp then tells that
// time. msg.Metadata is never touched: a promise may keep its context there.
//
// # Fx
//
// [Module] provides [Config] (from the environment, as [ConfigFromEnv]
// reads it), [*ProducerPool] and [Producer]. It uses the application's
// *zap.Logger if there is one, and logs nothing otherwise. Set the
// configuration with fx.Replace, or adjust the environment's with
// fx.Decorate; give options with [ModuleOptions].
package fxkafka
