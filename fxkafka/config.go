package fxkafka

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Defaults applied by [New] to zero fields of [Config].
const (
	DefaultClientID            = "fxkafka"
	DefaultMaxProducers        = 4
	DefaultProducerBusyAt      = 1024
	DefaultRequiredAcks        = "all"
	DefaultMaxMessageBytes     = 1024 * 1024
	DefaultProvisionTimeout    = 5 * time.Second
	DefaultProvisionBackoffMax = time.Second
)

// Config configures a [ProducerPool]. The zero value of every field except
// Brokers means "use the default"; [ConfigFromEnv] reads it from the
// environment and [Config.Validate] checks it. Each field names its
// environment variable.
type Config struct {
	// Brokers are the seed brokers, as "host:port". Required.
	// Env: KAFKA_BROKERS, comma-separated.
	Brokers []string `json:"brokers" yaml:"brokers" env:"KAFKA_BROKERS"`

	// ClientID is sent to the brokers with every request. Default "fxkafka".
	// Env: KAFKA_CLIENT_ID.
	ClientID string `json:"clientID" yaml:"clientID" env:"KAFKA_CLIENT_ID"`

	// MaxProducers caps how many sarama producers the pool keeps open.
	// 0 means DefaultMaxProducers (4); a negative value is an error.
	// Env: KAFKA_MAX_PRODUCERS.
	MaxProducers int `json:"maxProducers" yaml:"maxProducers" env:"KAFKA_MAX_PRODUCERS"`

	// ProducerBusyAt is the number of in-flight messages at which a producer
	// counts as busy: the pool provisions another producer (up to
	// MaxProducers) only when every open producer carries at least this many.
	// One sarama producer batches concurrent sends well, and extra producers
	// split its batches, so the default is high. 0 means
	// DefaultProducerBusyAt (1024). Env: KAFKA_PRODUCER_BUSY_AT.
	ProducerBusyAt int `json:"producerBusyAt" yaml:"producerBusyAt" env:"KAFKA_PRODUCER_BUSY_AT"`

	// Version is the Kafka protocol version to speak, such as "3.6.0".
	// Empty means sarama's default (2.8.0). Env: KAFKA_VERSION.
	Version string `json:"version" yaml:"version" env:"KAFKA_VERSION"`

	// RequiredAcks is the acknowledgement a send waits for: "all" (every
	// in-sync replica, the default), "leader", or "none" (no response: a nil
	// error then means only that the message was written to the socket).
	// Env: KAFKA_REQUIRED_ACKS.
	RequiredAcks string `json:"requiredAcks" yaml:"requiredAcks" env:"KAFKA_REQUIRED_ACKS"`

	// Idempotent turns on sarama's idempotent producer: the broker stores
	// each message once even when sarama retries it. It requires (and sets)
	// RequiredAcks "all", one open request per connection, and a Version of
	// at least 0.11; setting RequiredAcks to anything else is an error. It
	// costs some throughput (one request in flight per broker connection):
	// 0.89x at 1 sender and 0.95x at 16 against kfake, see the README.
	// Default false. Env: KAFKA_IDEMPOTENT ("true" or "false").
	Idempotent bool `json:"idempotent" yaml:"idempotent" env:"KAFKA_IDEMPOTENT"`

	// Partitioner chooses a message's partition when it does not set one:
	// "sticky" (the default) hashes keyed messages as sarama does and sends
	// keyless ones to one partition for a run of messages before moving on,
	// so concurrent sends batch together; "hash" is sarama's default (keyed
	// hashed, keyless random). Env: KAFKA_PARTITIONER.
	Partitioner string `json:"partitioner" yaml:"partitioner" env:"KAFKA_PARTITIONER"`

	// MaxMessageBytes is the largest message (key, value, headers and
	// record overhead) a send accepts; a larger one is refused before it
	// reaches a producer. Keep it at or below the topic's max.message.bytes.
	// 0 means DefaultMaxMessageBytes (1 MiB). Env: KAFKA_MAX_MESSAGE_BYTES.
	MaxMessageBytes int `json:"maxMessageBytes" yaml:"maxMessageBytes" env:"KAFKA_MAX_MESSAGE_BYTES"`

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
	// with PLAIN and SCRAM, refused with OAUTHBEARER. The password never
	// appears in logs, errors, %v or JSON.
	// Env: KAFKA_SASL_USER, KAFKA_SASL_PASSWORD.
	SASLUser     string `json:"saslUser" yaml:"saslUser" env:"KAFKA_SASL_USER"`
	SASLPassword Secret `json:"saslPassword" yaml:"saslPassword" env:"KAFKA_SASL_PASSWORD"`

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

	// MaxBufferedMessages bounds the messages Produce has handed to the
	// pool whose promise has not yet run. Env: KAFKA_MAX_BUFFERED_MESSAGES.
	MaxBufferedMessages int `json:"maxBufferedMessages" yaml:"maxBufferedMessages" env:"KAFKA_MAX_BUFFERED_MESSAGES"`

	// MaxBufferedBytes bounds their bytes. Env: KAFKA_MAX_BUFFERED_BYTES.
	MaxBufferedBytes int `json:"maxBufferedBytes" yaml:"maxBufferedBytes" env:"KAFKA_MAX_BUFFERED_BYTES"`
}

// ErrInvalidConfig is matched (with [errors.Is]) by every [*ConfigError].
var ErrInvalidConfig = errors.New("fxkafka: invalid config")

// ConfigError reports a configuration value that cannot be used. It is
// returned by [ConfigFromEnv], [Config.Validate] and [New], and matches
// [ErrInvalidConfig].
type ConfigError struct {
	Field  string // the Config field, such as "MaxProducers"
	EnvVar string // its environment variable, such as "KAFKA_MAX_PRODUCERS"
	Err    error  // what is wrong with it
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("fxkafka: invalid config %s (%s): %v", e.Field, e.EnvVar, e.Err)
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// envVars maps each Config field to its environment variable; it is the one
// place the names live, for errors and for ConfigFromEnv.
var envVars = map[string]string{
	"Brokers":               "KAFKA_BROKERS",
	"ClientID":              "KAFKA_CLIENT_ID",
	"MaxProducers":          "KAFKA_MAX_PRODUCERS",
	"ProducerBusyAt":        "KAFKA_PRODUCER_BUSY_AT",
	"Version":               "KAFKA_VERSION",
	"RequiredAcks":          "KAFKA_REQUIRED_ACKS",
	"Idempotent":            "KAFKA_IDEMPOTENT",
	"Partitioner":           "KAFKA_PARTITIONER",
	"TLS":                   "KAFKA_TLS",
	"TLSCAFile":             "KAFKA_TLS_CA_FILE",
	"TLSCertFile":           "KAFKA_TLS_CERT_FILE",
	"TLSKeyFile":            "KAFKA_TLS_KEY_FILE",
	"TLSServerName":         "KAFKA_TLS_SERVER_NAME",
	"TLSInsecureSkipVerify": "KAFKA_TLS_INSECURE_SKIP_VERIFY",
	"SASLMechanism":         "KAFKA_SASL_MECHANISM",
	"SASLUser":              "KAFKA_SASL_USER",
	"SASLPassword":          "KAFKA_SASL_PASSWORD",
	"TransactionalID":       "KAFKA_TRANSACTIONAL_ID",
	"MaxMessageBytes":       "KAFKA_MAX_MESSAGE_BYTES",
	"ProvisionTimeout":      "KAFKA_PROVISION_TIMEOUT",
	"ProvisionBackoffMax":   "KAFKA_PROVISION_BACKOFF_MAX",
}

func configError(field string, format string, args ...any) *ConfigError {
	return &ConfigError{Field: field, EnvVar: envVars[field], Err: fmt.Errorf(format, args...)}
}

// ConfigFromEnv reads a Config from the environment: KAFKA_BROKERS
// (comma-separated host:port list, required) and the variable each Config
// field names (KAFKA_CLIENT_ID, KAFKA_MAX_PRODUCERS, KAFKA_TLS,
// KAFKA_SASL_MECHANISM, ...). Unset variables leave their field at the zero
// value (the default). It returns a [*ConfigError] naming the variable when
// one cannot be parsed or the result does not pass [Config.Validate].
func ConfigFromEnv() (Config, error) {
	var c Config
	c.Brokers = splitList(os.Getenv(envVars["Brokers"]))
	c.ClientID = strings.TrimSpace(os.Getenv(envVars["ClientID"]))
	c.Version = strings.TrimSpace(os.Getenv(envVars["Version"]))
	c.RequiredAcks = strings.TrimSpace(os.Getenv(envVars["RequiredAcks"]))
	c.Partitioner = strings.TrimSpace(os.Getenv(envVars["Partitioner"]))
	c.TLSCAFile = strings.TrimSpace(os.Getenv(envVars["TLSCAFile"]))
	c.TLSCertFile = strings.TrimSpace(os.Getenv(envVars["TLSCertFile"]))
	c.TLSKeyFile = strings.TrimSpace(os.Getenv(envVars["TLSKeyFile"]))
	c.TLSServerName = strings.TrimSpace(os.Getenv(envVars["TLSServerName"]))
	c.SASLMechanism = strings.TrimSpace(os.Getenv(envVars["SASLMechanism"]))
	c.SASLUser = os.Getenv(envVars["SASLUser"])
	c.TransactionalID = strings.TrimSpace(os.Getenv(envVars["TransactionalID"]))
	c.SASLPassword = Secret(os.Getenv(envVars["SASLPassword"]))
	for _, f := range []struct {
		field string
		dst   *bool
	}{
		{"Idempotent", &c.Idempotent},
		{"TLS", &c.TLS},
		{"TLSInsecureSkipVerify", &c.TLSInsecureSkipVerify},
	} {
		if err := envBool(f.field, f.dst); err != nil {
			return Config{}, err
		}
	}
	ints := []struct {
		field string
		dst   *int
	}{
		{"MaxProducers", &c.MaxProducers},
		{"ProducerBusyAt", &c.ProducerBusyAt},
		{"MaxMessageBytes", &c.MaxMessageBytes},
	}
	for _, f := range ints {
		if err := envInt(f.field, f.dst); err != nil {
			return Config{}, err
		}
	}
	durations := []struct {
		field string
		dst   *time.Duration
	}{
		{"ProvisionTimeout", &c.ProvisionTimeout},
		{"ProvisionBackoffMax", &c.ProvisionBackoffMax},
	}
	for _, f := range durations {
		if err := envDuration(f.field, f.dst); err != nil {
			return Config{}, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// envParse sets *dst from field's environment variable, if it is set, with
// parse; want says what a valid value looks like.
func envParse[T any](field string, dst *T, parse func(string) (T, error), want string) error {
	s := strings.TrimSpace(os.Getenv(envVars[field]))
	if s == "" {
		return nil
	}
	v, err := parse(s)
	if err != nil {
		return configError(field, "%q is not %s", s, want)
	}
	*dst = v
	return nil
}

func envInt(field string, dst *int) error {
	return envParse(field, dst, strconv.Atoi, "an integer")
}

func envBool(field string, dst *bool) error {
	return envParse(field, dst, strconv.ParseBool, "true or false")
}

func envDuration(field string, dst *time.Duration) error {
	return envParse(field, dst, time.ParseDuration, `a duration such as "5s"`)
}

// Validate reports the first problem with c as a [*ConfigError], or nil.
// Zero values are valid wherever a default exists; Brokers is required.
func (c Config) Validate() error {
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
	acks, err := parseAcks(c.RequiredAcks)
	if err != nil {
		return configError("RequiredAcks", "%v", err)
	}
	if _, err := c.checkSecurity(); err != nil {
		return err
	}
	if _, err := partitionerFor(c.Partitioner); err != nil {
		return configError("Partitioner", "%v", err)
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

func partitionerFor(name string) (sticky bool, err error) {
	switch strings.ToLower(name) {
	case "", "sticky":
		return true, nil
	case "hash":
		return false, nil
	}
	return false, fmt.Errorf("%q is not one of sticky, hash", name)
}

// withDefaults returns c with every zero field set to its default.
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
