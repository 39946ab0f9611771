package fxkafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Defaults applied by [New] to zero fields of [Config]. Each names its field.
const (
	DefaultClientID            = "fxkafka"        // Config.ClientID
	DefaultMaxProducers        = 4                // Config.MaxProducers
	DefaultProducerBusyAt      = 1024             // Config.ProducerBusyAt
	DefaultRequiredAcks        = "all"            // Config.RequiredAcks
	DefaultMaxMessageBytes     = 1024 * 1024      // Config.MaxMessageBytes
	DefaultProvisionTimeout    = 5 * time.Second  // Config.ProvisionTimeout
	DefaultProvisionBackoffMax = time.Second      // Config.ProvisionBackoffMax
	DefaultCompression         = "none"           // Config.Compression
	DefaultKeyHash             = "fnv1a"          // Config.KeyHash
	DefaultMaxBatchBytes       = 1024 * 1024      // Config.MaxBatchBytes (or MaxMessageBytes, if larger)
	DefaultMaxBufferedMessages = 50000            // Config.MaxBufferedMessages
	DefaultMaxBufferedBytes    = 64 * 1024 * 1024 // Config.MaxBufferedBytes (or MaxMessageBytes, if larger)

	// DefaultLinger is Config.Linger's default: how long a batch may wait
	// for more messages before it is sent. 0: a batch leaves as soon as the
	// connection can take it, but for the short hold under load that
	// Config.Linger describes.
	DefaultLinger time.Duration = 0
)

// MaxRequestBytes bounds Config.MaxMessageBytes and Config.MaxBatchBytes:
// sarama refuses to send a request larger than [sarama.MaxRequestSize]
// (100 MiB), and a produce request carries a batch plus its own headers, for
// which this leaves 10 KiB, as sarama's own producer does.
const MaxRequestBytes = 100*1024*1024 - 10*1024

// Config configures a [ProducerPool]. The zero value of every field except
// Brokers means "use the default"; [ConfigFromEnv] reads it from the
// environment and [Config.Validate] checks it. Each field names its
// environment variable (the field's `env` tag is where the name lives; the
// README's table and these comments are checked against it).
//
// A Config decodes from YAML and JSON with the field names of its tags;
// durations are strings such as "5s" (JSON also takes nanoseconds).
type Config struct {
	// Brokers are the seed brokers, as "host:port". Required.
	// Env: KAFKA_BROKERS, comma-separated.
	Brokers []string `json:"brokers" yaml:"brokers" env:"KAFKA_BROKERS"`

	// ClientID is sent to the brokers with every request. Default "fxkafka".
	// With a Version before 1.0.0 it may hold only ASCII letters, digits,
	// '.', '_' and '-' (brokers before KIP-190 refuse others).
	// Env: KAFKA_CLIENT_ID.
	ClientID string `json:"clientID" yaml:"clientID" env:"KAFKA_CLIENT_ID"`

	// MaxProducers caps how many producers (each a sarama client with its
	// own connections) the pool holds: shared and leased, those being
	// provisioned and those still closing all count.
	// 0 means DefaultMaxProducers (4); a negative value is an error.
	// Env: KAFKA_MAX_PRODUCERS.
	MaxProducers int `json:"maxProducers" yaml:"maxProducers" env:"KAFKA_MAX_PRODUCERS"`

	// ProducerBusyAt is the number of messages placed on a producer and not
	// yet answered at which it counts as busy: the pool provisions another
	// producer (up to MaxProducers) when the least-loaded one is busy. A
	// producer also counts as busy, whatever its load, when requests
	// pipeline and one of its connections has every request slot in flight
	// with records waiting. One producer batches concurrent sends, and extra
	// producers split its batches, so the default is high. 0 means
	// DefaultProducerBusyAt (1024). Env: KAFKA_PRODUCER_BUSY_AT.
	ProducerBusyAt int `json:"producerBusyAt" yaml:"producerBusyAt" env:"KAFKA_PRODUCER_BUSY_AT"`

	// Version is the Kafka protocol version to speak, such as "3.6.0".
	// Empty means sarama's default (2.8.0). Versions before 0.11 are valid
	// (old message formats), except with Idempotent or TransactionalID.
	// Env: KAFKA_VERSION.
	Version string `json:"version" yaml:"version" env:"KAFKA_VERSION"`

	// RequiredAcks is the acknowledgement a send waits for: "all" (every
	// in-sync replica, the default), "leader", or "none" (no response: a nil
	// error then means only that the message was written to the socket).
	// Env: KAFKA_REQUIRED_ACKS.
	RequiredAcks string `json:"requiredAcks" yaml:"requiredAcks" env:"KAFKA_REQUIRED_ACKS"`

	// Idempotent makes the broker store each message once even when the
	// pool sends its batch again (after a timeout or a lost connection):
	// each lane of a producer gets a producer id of its own and numbers its
	// batches. It requires (and sets) RequiredAcks "all" and a Version of at
	// least 0.11; setting RequiredAcks to anything else is an error. A lane
	// whose batch failed with its outcome unknown retires its producer,
	// which is replaced. Default false.
	// Env: KAFKA_IDEMPOTENT ("true" or "false").
	Idempotent bool `json:"idempotent" yaml:"idempotent" env:"KAFKA_IDEMPOTENT"`

	// Partitioner chooses the partition of a keyless message (a keyed one
	// is hashed with KeyHash either way):
	// "sticky" (the default) keeps keyless messages on one partition so
	// they batch together, moving on after each batch when requests
	// pipeline (Produce's, after that partition's share of the buffer:
	// MaxBufferedMessages and MaxBufferedBytes over twice the partitions,
	// at most a batch) and after 64 KiB when they do not; "hash" picks a
	// random partition for each, as sarama's default partitioner does.
	// Env: KAFKA_PARTITIONER.
	Partitioner string `json:"partitioner" yaml:"partitioner" env:"KAFKA_PARTITIONER"`

	// KeyHash is how a keyed message's partition is chosen: "fnv1a" (the
	// default) places keys where sarama's NewHashPartitioner does, so a
	// service moving from sarama keeps its keys' partitions; "murmur2"
	// places them where Kafka's Java client, franz-go and librdkafka's
	// murmur2_random do. Env: KAFKA_KEY_HASH.
	KeyHash string `json:"keyHash" yaml:"keyHash" env:"KAFKA_KEY_HASH"`

	// MaxMessageBytes is the largest message a send accepts, counted as the
	// broker counts it (the record and the overhead of the batch it travels
	// in); a larger one is refused before it reaches a producer. Keep it at
	// or below the topic's max.message.bytes. At most MaxRequestBytes.
	// 0 means DefaultMaxMessageBytes (1 MiB). Env: KAFKA_MAX_MESSAGE_BYTES.
	MaxMessageBytes int `json:"maxMessageBytes" yaml:"maxMessageBytes" env:"KAFKA_MAX_MESSAGE_BYTES"`

	// MaxBatchBytes is the largest record batch the pool builds for one
	// partition (before compression); at most MaxRequestBytes. A message
	// larger than it travels in a batch of its own (as with Java's
	// batch.size). The broker refuses a batch above the topic's
	// max.message.bytes, so keep it at or below that too. 0 means
	// DefaultMaxBatchBytes (1 MiB), or MaxMessageBytes if that is larger.
	// Env: KAFKA_MAX_BATCH_BYTES.
	MaxBatchBytes int `json:"maxBatchBytes" yaml:"maxBatchBytes" env:"KAFKA_MAX_BATCH_BYTES"`

	// Compression is the codec of the batches the pool sends, as the
	// broker stores them: "none" (the default), "gzip", "snappy", "lz4"
	// (needs a Version of at least 0.10) or "zstd" (at least 2.1.0).
	// Env: KAFKA_COMPRESSION.
	Compression string `json:"compression" yaml:"compression" env:"KAFKA_COMPRESSION"`

	// CompressionLevel is the codec's level: 1 (fastest) to 9 (smallest)
	// for gzip, 1 to 22 for zstd; snappy and lz4 have none. 0 means the
	// codec's default. Env: KAFKA_COMPRESSION_LEVEL.
	CompressionLevel int `json:"compressionLevel" yaml:"compressionLevel" env:"KAFKA_COMPRESSION_LEVEL"`

	// Linger is how long a batch may wait for more messages before it is
	// sent, trading latency for larger batches. Nothing lingers while a
	// Flush or Close waits, or a Produce waits for buffer space (which only
	// outcomes free). 0 means DefaultLinger; a
	// negative value means no wait at all, whatever the default. The wait
	// is a Go timer, which on Linux wakes an otherwise idle process at a
	// millisecond's granularity: a linger under a millisecond waits about
	// one. Without a linger (0, the default), a batch of synchronous sends
	// (Produce's fill while it waits for buffer space) still waits about
	// 50 µs for more messages while requests pipeline (a broker 1 ms away
	// or more), its connection already carries a request and 64 or more
	// messages are in flight (Stats.InFlight): records then come faster
	// than answers, and a broker answers one request carrying many sooner
	// than many carrying one (256 senders 1 ms from a broker got 23-26%
	// more sends/s on kfake and 18-29% on librdkafka's mock cluster, at a
	// lower p50). The next message placed behind such a
	// batch once its 50 µs are over sends it; if none comes, the timer
	// does, possibly a millisecond late. A negative Linger turns that off
	// too. Env: KAFKA_LINGER, a Go duration such as "5ms".
	Linger time.Duration `json:"linger" yaml:"linger" env:"KAFKA_LINGER"`

	// MaxBufferedMessages bounds the messages Produce has handed to the pool
	// whose promise has not yet returned; when it is reached, Produce waits
	// for space. 0 means DefaultMaxBufferedMessages (50000, as franz-go's
	// default: one goroutine producing to a kfake broker 5 ms away, two
	// interleaved runs of BenchmarkProducePool each, got 2.33-2.40M
	// messages/s with 40000 buffered at a peak heap of 92-97 MiB,
	// 2.52-2.57M with 50000 at 113-118 MiB, 2.52-2.57M with 80000 at
	// 166-167 MiB, and 2.38-2.43M with 100000 at 207 MiB: past 50000 the
	// larger batches take the broker longer and the process is short of
	// CPU, not of buffer). Env: KAFKA_MAX_BUFFERED_MESSAGES.
	MaxBufferedMessages int `json:"maxBufferedMessages" yaml:"maxBufferedMessages" env:"KAFKA_MAX_BUFFERED_MESSAGES"`

	// MaxBufferedBytes bounds the bytes of those messages. A message larger
	// than it waits until the buffer is empty (other messages wait behind
	// it) and is then the only one in it. 0 means
	// DefaultMaxBufferedBytes (64 MiB), or MaxMessageBytes if that is
	// larger. Env: KAFKA_MAX_BUFFERED_BYTES.
	MaxBufferedBytes int `json:"maxBufferedBytes" yaml:"maxBufferedBytes" env:"KAFKA_MAX_BUFFERED_BYTES"`

	// TLS encrypts connections to the brokers. Default false.
	// Env: KAFKA_TLS ("true" or "false").
	TLS bool `json:"tls" yaml:"tls" env:"KAFKA_TLS"`

	// TLSCAFile is a PEM file of the certificate authorities to trust;
	// empty means the system's. Needs TLS. Env: KAFKA_TLS_CA_FILE.
	TLSCAFile string `json:"tlsCAFile" yaml:"tlsCAFile" env:"KAFKA_TLS_CA_FILE"`

	// TLSCertFile and TLSKeyFile are the PEM client certificate and key, for
	// brokers that require one; set both or neither. Needs TLS.
	// Env: KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE.
	TLSCertFile string `json:"tlsCertFile" yaml:"tlsCertFile" env:"KAFKA_TLS_CERT_FILE"`
	TLSKeyFile  string `json:"tlsKeyFile" yaml:"tlsKeyFile" env:"KAFKA_TLS_KEY_FILE"`

	// TLSServerName overrides the name checked against the brokers'
	// certificates (default: the host of each broker address). Needs TLS.
	// Env: KAFKA_TLS_SERVER_NAME.
	TLSServerName string `json:"tlsServerName" yaml:"tlsServerName" env:"KAFKA_TLS_SERVER_NAME"`

	// TLSInsecureSkipVerify accepts any broker certificate. For development
	// only: New logs a warning when it is set. Needs TLS.
	// Env: KAFKA_TLS_INSECURE_SKIP_VERIFY.
	TLSInsecureSkipVerify bool `json:"tlsInsecureSkipVerify" yaml:"tlsInsecureSkipVerify" env:"KAFKA_TLS_INSECURE_SKIP_VERIFY"`

	// SASLMechanism authenticates with SASL: "PLAIN", "SCRAM-SHA-256",
	// "SCRAM-SHA-512", or "OAUTHBEARER" (tokens from [WithTokenProvider],
	// which New requires with it); empty means no SASL.
	// Env: KAFKA_SASL_MECHANISM.
	SASLMechanism string `json:"saslMechanism" yaml:"saslMechanism" env:"KAFKA_SASL_MECHANISM"`

	// SASLUser and SASLPassword are the SASL credentials, both required
	// with PLAIN and SCRAM, refused with OAUTHBEARER; taken from the
	// environment as they are (not trimmed). The password never appears in
	// logs, errors, %v or JSON.
	// Env: KAFKA_SASL_USER, KAFKA_SASL_PASSWORD.
	SASLUser     string `json:"saslUser" yaml:"saslUser" env:"KAFKA_SASL_USER,verbatim"`
	SASLPassword Secret `json:"saslPassword" yaml:"saslPassword" env:"KAFKA_SASL_PASSWORD,verbatim"`

	// TransactionalID makes leased producers ([ProducerPool.Lease])
	// transactional: each gets the id "<TransactionalID>-<n>", n its lease
	// slot. Leased producers are then idempotent with acks from all
	// in-sync replicas. Shared producers (SendMessage on the pool) are not
	// affected. Empty means leases are plain producers.
	// Env: KAFKA_TRANSACTIONAL_ID.
	TransactionalID string `json:"transactionalID" yaml:"transactionalID" env:"KAFKA_TRANSACTIONAL_ID"`

	// ProvisionTimeout bounds one provisioning attempt (dial, API versions,
	// metadata), whoever waits for it. 0 means DefaultProvisionTimeout (5s).
	// Env: KAFKA_PROVISION_TIMEOUT, a Go duration such as "5s".
	ProvisionTimeout time.Duration `json:"provisionTimeout" yaml:"provisionTimeout" env:"KAFKA_PROVISION_TIMEOUT"`

	// ProvisionBackoffMax caps the pause after failed provisioning attempts,
	// which doubles from a tenth of it with each failure and is jittered.
	// It bounds how long the pool takes to notice that the brokers are back.
	// 0 means DefaultProvisionBackoffMax (1s).
	// Env: KAFKA_PROVISION_BACKOFF_MAX, a Go duration.
	ProvisionBackoffMax time.Duration `json:"provisionBackoffMax" yaml:"provisionBackoffMax" env:"KAFKA_PROVISION_BACKOFF_MAX"`
}

// ErrInvalidConfig is matched (with [errors.Is]) by every [*ConfigError].
var ErrInvalidConfig = errors.New("fxkafka: invalid config")

// ConfigError reports a configuration value that cannot be used. It is
// returned by [ConfigFromEnv], [Config.Validate], [Config.UnmarshalJSON] and
// [New], and matches [ErrInvalidConfig]. A setting made by
// [WithSaramaConfig]'s func that the pool refuses has Field
// "WithSaramaConfig" and no EnvVar; Err names the sarama setting.
type ConfigError struct {
	Field  string // the Config field, such as "MaxProducers"
	EnvVar string // its environment variable, such as "KAFKA_MAX_PRODUCERS"
	Err    error  // what is wrong with it
}

func (e *ConfigError) Error() string {
	if e.EnvVar == "" {
		return fmt.Sprintf("fxkafka: invalid config %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("fxkafka: invalid config %s (%s): %v", e.Field, e.EnvVar, e.Err)
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

func configError(field string, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, EnvVar: envVars[field], Err: fmt.Errorf(format, args...)}
}

// Validate reports the first problem with c as a [*ConfigError] naming the
// field and its variable, or nil. Zero values are valid wherever a default
// exists; Brokers is required. It reads the TLS files c names, and checks
// the sarama configuration c makes with sarama's own
// [sarama.Config.Validate], so that a Config it accepts never fails a send
// for its settings.
func (c Config) Validate() error {
	if err := c.check(); err != nil {
		return err
	}
	sec, err := c.checkSecurity()
	if err != nil {
		return err
	}
	if sec.mechanism == SASLOAuthBearer {
		sec.tokens = noTokens{} // New requires WithTokenProvider, which Validate cannot see
	}
	_, err = c.build(sec, nil)
	return err
}

// check validates c's fields one by one and against each other, but for
// TLS and SASL (checkSecurity's, run next). build then lets sarama check
// the configuration they make.
func (c Config) check() error {
	if len(c.Brokers) == 0 {
		return configError("Brokers", "at least one broker is required")
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(strings.TrimSpace(b))
		if err != nil || host == "" {
			return configError("Brokers", "%q is not host:port", b)
		}
		if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return configError("Brokers", "%q has no valid port", b)
		}
	}
	nonNegative := []struct {
		field string
		v     int64
	}{
		{"MaxProducers", int64(c.MaxProducers)},
		{"ProducerBusyAt", int64(c.ProducerBusyAt)},
		{"MaxMessageBytes", int64(c.MaxMessageBytes)},
		{"MaxBatchBytes", int64(c.MaxBatchBytes)},
		{"MaxBufferedMessages", int64(c.MaxBufferedMessages)},
		{"MaxBufferedBytes", int64(c.MaxBufferedBytes)},
		{"ProvisionTimeout", int64(c.ProvisionTimeout)},
		{"ProvisionBackoffMax", int64(c.ProvisionBackoffMax)},
	}
	for _, f := range nonNegative {
		if f.v < 0 {
			return configError(f.field, "must not be negative, got %d", f.v)
		}
	}
	version := sarama.DefaultVersion
	if c.Version != "" {
		v, err := sarama.ParseKafkaVersion(c.Version)
		if err != nil {
			return configError("Version", "%q is not a Kafka version such as \"3.6.0\"", c.Version)
		}
		version = v
	}
	if !version.IsAtLeast(sarama.V1_0_0_0) && c.ClientID != "" && !validClientID.MatchString(c.ClientID) {
		return configError("ClientID", "%q may hold only ASCII letters, digits, '.', '_' and '-' with a Version before 1.0.0 (Version is %s)", c.ClientID, version)
	}
	acks, err := parseAcks(c.RequiredAcks)
	if err != nil {
		return configError("RequiredAcks", "%v", err)
	}
	if _, err := partitionerFor(c.Partitioner, ""); err != nil {
		return configError("Partitioner", "%v", err)
	}
	if _, err := partitionerFor("", c.KeyHash); err != nil {
		return configError("KeyHash", "%v", err)
	}
	d := c.withDefaults()
	for _, f := range []struct {
		field string
		v     int
	}{{"MaxMessageBytes", d.MaxMessageBytes}, {"MaxBatchBytes", d.MaxBatchBytes}} {
		if f.v > MaxRequestBytes {
			return configError(f.field, "%d is above %d (MaxRequestBytes): sarama sends no request of 100 MiB or more", f.v, MaxRequestBytes)
		}
	}
	codec, err := parseCompression(c.Compression)
	if err != nil {
		return configError("Compression", "%v", err)
	}
	if err := checkCodecVersion(codec, version); err != nil {
		return configError("Compression", "%v", err)
	}
	if c.CompressionLevel == sarama.CompressionLevelDefault {
		// sarama's spelling of "the codec's default", which Config spells 0:
		// checkCodecLevel would take it as that.
		return configError("CompressionLevel", "%d is no codec's level (0 for the codec's default)", c.CompressionLevel)
	}
	if err := checkCodecLevel(codec, saramaLevel(c.CompressionLevel)); err != nil {
		return configError("CompressionLevel", "%v", err)
	}
	// Idempotent producers, and the transactional ones leases get, need
	// acks from all in-sync replicas and Kafka 0.11.
	for _, needs := range []struct {
		on   bool
		name string
	}{{c.Idempotent, "Idempotent"}, {c.TransactionalID != "", "TransactionalID"}} {
		if !needs.on {
			continue
		}
		if acks != sarama.WaitForAll {
			return configError("RequiredAcks", "%q conflicts with %s, which needs \"all\"", c.RequiredAcks, needs.name)
		}
		if !version.IsAtLeast(sarama.V0_11_0_0) {
			return configError("Version", "%s is older than 0.11, which %s needs", c.Version, needs.name)
		}
	}
	return nil
}

// validClientID is sarama's rule for client ids sent to brokers before
// Kafka 1.0 (KIP-190), copied so the error can name the field.
var validClientID = regexp.MustCompile(`\A[A-Za-z0-9._-]+\z`)

func parseAcks(s string) (sarama.RequiredAcks, error) {
	switch strings.ToLower(s) {
	case "", "all", "-1":
		return sarama.WaitForAll, nil
	case "leader", "1":
		return sarama.WaitForLocal, nil
	case "none", "0":
		return sarama.NoResponse, nil
	}
	return 0, fmt.Errorf("%q is not one of all, leader, none", s)
}

// partitionerFor checks Config.Partitioner and Config.KeyHash and returns
// sarama's partitioner that hashes keys as KeyHash says: FNV-1a (sarama's)
// or murmur2 (Java's).
func partitionerFor(name, keyHash string) (sarama.PartitionerConstructor, error) {
	switch strings.ToLower(name) {
	case "", "sticky", "hash":
	default:
		return nil, fmt.Errorf("%q is not one of sticky, hash", name)
	}
	// The pool places records itself (partitioner.go); the sarama
	// constructor stands for the key hash, and a WithSaramaConfig func that
	// replaces it chooses partitions instead.
	switch strings.ToLower(keyHash) {
	case "", "fnv1a":
		return sarama.NewHashPartitioner, nil
	case "murmur2":
		return sarama.NewMurmur2Partitioner, nil
	}
	return nil, fmt.Errorf("%q is not one of fnv1a, murmur2", keyHash)
}

// parseCompression returns the sarama codec Config.Compression names.
func parseCompression(s string) (sarama.CompressionCodec, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return sarama.CompressionNone, nil
	case "gzip":
		return sarama.CompressionGZIP, nil
	case "snappy":
		return sarama.CompressionSnappy, nil
	case "lz4":
		return sarama.CompressionLZ4, nil
	case "zstd":
		return sarama.CompressionZSTD, nil
	}
	return 0, fmt.Errorf("%q is not one of none, gzip, snappy, lz4, zstd", s)
}

// checkCodecVersion refuses a codec the Kafka version cannot carry, as
// sarama's Validate does, and any codec before 0.11: the pool compresses
// record batches, which older brokers do not take.
func checkCodecVersion(codec sarama.CompressionCodec, v sarama.KafkaVersion) error {
	switch {
	case codec == sarama.CompressionLZ4 && !v.IsAtLeast(sarama.V0_10_0_0):
		return fmt.Errorf("lz4 needs a Version of at least 0.10.0.0, not %s", v)
	case codec == sarama.CompressionZSTD && !v.IsAtLeast(sarama.V2_1_0_0):
		return fmt.Errorf("zstd needs a Version of at least 2.1.0, not %s", v)
	case codec != sarama.CompressionNone && !v.IsAtLeast(sarama.V0_11_0_0):
		return fmt.Errorf("compression needs a Version of at least 0.11.0.0 with fxkafka, not %s", v)
	}
	return nil
}

// saramaLevel is Config.CompressionLevel as sarama spells it.
func saramaLevel(level int) int {
	if level == 0 {
		return sarama.CompressionLevelDefault
	}
	return level
}

// checkCodecLevel refuses a level (sarama's: CompressionLevelDefault for the
// codec's default) the codec has not. sarama checks only gzip's, and ignores
// a level for snappy and lz4: here that is an error rather than a setting
// silently dropped.
func checkCodecLevel(codec sarama.CompressionCodec, level int) error {
	if level == sarama.CompressionLevelDefault {
		return nil
	}
	switch codec {
	case sarama.CompressionGZIP:
		if level < 1 || level > 9 {
			return fmt.Errorf("%d is not a gzip level (1 to 9; 0 for the default)", level)
		}
	case sarama.CompressionZSTD:
		if level < 1 || level > 22 {
			return fmt.Errorf("%d is not a zstd level (1 to 22; 0 for the default)", level)
		}
	case sarama.CompressionNone:
		return fmt.Errorf("is %d, but Compression is none", level)
	default:
		return fmt.Errorf("is %d, but %s has no levels (0 for none)", level, codec)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default and the
// names of codecs, hashes and partitioners in lower case.
func (c Config) withDefaults() Config {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if c.MaxProducers == 0 {
		c.MaxProducers = DefaultMaxProducers
	}
	if c.ProducerBusyAt == 0 {
		c.ProducerBusyAt = DefaultProducerBusyAt
	}
	if c.RequiredAcks == "" {
		c.RequiredAcks = DefaultRequiredAcks
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = max(DefaultMaxBatchBytes, c.MaxMessageBytes)
	}
	if c.MaxBufferedMessages == 0 {
		c.MaxBufferedMessages = DefaultMaxBufferedMessages
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = max(DefaultMaxBufferedBytes, c.MaxMessageBytes)
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.Compression = strings.ToLower(c.Compression); c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.KeyHash = strings.ToLower(c.KeyHash); c.KeyHash == "" {
		c.KeyHash = DefaultKeyHash
	}
	if c.Partitioner = strings.ToLower(c.Partitioner); c.Partitioner == "" {
		c.Partitioner = "sticky"
	}
	if c.ProvisionTimeout == 0 {
		c.ProvisionTimeout = DefaultProvisionTimeout
	}
	if c.ProvisionBackoffMax == 0 {
		c.ProvisionBackoffMax = DefaultProvisionBackoffMax
	}
	c.Brokers = append([]string(nil), c.Brokers...)
	for i := range c.Brokers {
		c.Brokers[i] = strings.TrimSpace(c.Brokers[i])
	}
	return c
}

// UnmarshalJSON decodes a Config as encoding/json does, except that a
// duration (ProvisionTimeout, Linger, ...) may also be a string such as
// "5s", as in YAML and the environment; a number is nanoseconds, as
// encoding/json writes it. A duration string that does not parse is a
// [*ConfigError] naming the field.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config // without this method
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return json.Unmarshal(b, (*plain)(c)) // not an object (or null): encoding/json's answer
	}
	for key, raw := range fields {
		field, ok := jsonDurationField(key)
		if !ok || len(raw) == 0 || raw[0] != '"' {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return configError(field, "%q is not a duration such as \"5s\"", s)
		}
		fields[key] = json.RawMessage(strconv.FormatInt(int64(d), 10))
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, (*plain)(c))
}

// jsonDurationField returns the duration field a JSON key decodes into,
// matching names without regard to case as encoding/json does.
func jsonDurationField(key string) (string, bool) {
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Type != durationType {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" {
			name = sf.Name
		}
		if strings.EqualFold(name, key) {
			return sf.Name, true
		}
	}
	return "", false
}
