package fxkafka

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// FuzzConfigFromEnv: whatever the environment holds, ConfigFromEnv returns
// either a config that New accepts or a *ConfigError naming a variable; it
// never panics.
func FuzzConfigFromEnv(f *testing.F) {
	f.Add("localhost:9092", "svc", "4", "1024", "3.6.0", "all", "true", "1048576", "5s", "1s")
	f.Add("a:1,b:2, c:3 ", "", "", "", "", "", "", "", "", "")
	f.Add("", "x", "-1", "0", "0.10.2.0", "leader", "false", "0", "0", "0")
	f.Add("host", "x", "four", "x", "x", "most", "maybe", "-5", "5", "1h")
	f.Add("[::1]:9092", "x", "2", "1", "0.10.0.0", "none", "1", "10", "1ms", "1ns")
	f.Fuzz(func(t *testing.T, brokers, clientID, maxProducers, busyAt, version, acks, idempotent, maxBytes, provTimeout, backoffMax string) {
		values := map[string]string{
			"KAFKA_BROKERS": brokers, "KAFKA_CLIENT_ID": clientID, "KAFKA_MAX_PRODUCERS": maxProducers,
			"KAFKA_PRODUCER_BUSY_AT": busyAt, "KAFKA_VERSION": version, "KAFKA_REQUIRED_ACKS": acks,
			"KAFKA_IDEMPOTENT": idempotent, "KAFKA_MAX_MESSAGE_BYTES": maxBytes,
			"KAFKA_PROVISION_TIMEOUT": provTimeout, "KAFKA_PROVISION_BACKOFF_MAX": backoffMax,
		}
		for k, v := range values {
			if strings.ContainsRune(v, 0) {
				return // the environment cannot hold NUL
			}
			t.Setenv(k, v)
		}
		cfg, err := ConfigFromEnv()
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(ce.EnvVar, "KAFKA_") || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error without the variable's name: %v", err)
			}
			return
		}
		p, err := New(cfg)
		if err != nil {
			t.Fatalf("ConfigFromEnv accepted what New refuses: %v", err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzValidate: Validate and New agree, and every refusal names its field.
func FuzzValidate(f *testing.F) {
	f.Add("localhost:9092", 4, 0, "", "", false, 0, int64(0), int64(0))
	f.Add("", -1, -1, "x", "x", true, -1, int64(-1), int64(-1))
	f.Add("h:0", 0, 0, "0.10.0.0", "leader", true, 0, int64(0), int64(0))
	f.Fuzz(func(t *testing.T, broker string, maxProducers, busyAt int, version, acks string, idempotent bool, maxBytes int, provTimeout, backoffMax int64) {
		cfg := Config{
			Brokers: strings.Split(broker, ","), MaxProducers: maxProducers, ProducerBusyAt: busyAt,
			Version: version, RequiredAcks: acks, Idempotent: idempotent, MaxMessageBytes: maxBytes,
			ProvisionTimeout: durationOf(provTimeout), ProvisionBackoffMax: durationOf(backoffMax),
		}
		verr := cfg.Validate()
		p, nerr := New(cfg)
		if (verr == nil) != (nerr == nil) {
			t.Fatalf("Validate says %v, New says %v", verr, nerr)
		}
		if verr != nil {
			var ce *ConfigError
			if !errors.As(verr, &ce) || ce.Field == "" || !strings.Contains(verr.Error(), ce.Field) {
				t.Fatalf("refusal without its field: %v", verr)
			}
			return
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzMessageValidation: any message is either refused with
// ErrInvalidMessage before anything is sent, or accepted; never a panic.
func FuzzMessageValidation(f *testing.F) {
	f.Add("events", []byte("k"), []byte("v"), "h", []byte("hv"), false, false)
	f.Add("", []byte(nil), []byte(nil), "", []byte(nil), true, true)
	f.Add("t", make([]byte, 600), make([]byte, 600), "", []byte(nil), false, true)
	f.Fuzz(func(t *testing.T, topic string, key, value []byte, hkey string, hvalue []byte, nilKey, nilValue bool) {
		p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, MaxMessageBytes: 1000})
		if err != nil {
			t.Fatal(err)
		}
		m := &sarama.ProducerMessage{Topic: topic, Headers: []sarama.RecordHeader{{Key: []byte(hkey), Value: hvalue}}}
		if !nilKey {
			m.Key = sarama.ByteEncoder(key)
		}
		if !nilValue {
			m.Value = sarama.ByteEncoder(value)
		}
		r, err := p.newRecord(m)
		if r != nil {
			r.release()
		}
		size := brokerCountedSize(m)
		switch {
		case topic == "" || len(topic) > 249 || size > 1000:
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("topic %q, %d bytes: want ErrInvalidMessage, got %v", topic, size, err)
			}
		case err != nil:
			t.Fatalf("valid message refused: %v", err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func durationOf(n int64) time.Duration { return time.Duration(n) }

// brokerCountedSize is what a broker counts against max.message.bytes for
// m alone in a record batch: the batch header and the record, whose offset
// and timestamp deltas are 0 (one byte each). The pool's own count allows
// five bytes for each delta, so it may refuse up to 8 bytes earlier.
func brokerCountedSize(m *sarama.ProducerMessage) int {
	vlen := func(n int) int { return len(binary.AppendVarint(nil, int64(n))) }
	vbytes := func(b []byte, isNil bool) int {
		if isNil {
			return vlen(-1)
		}
		return vlen(len(b)) + len(b)
	}
	var k, v []byte
	if m.Key != nil {
		k, _ = m.Key.Encode()
	}
	if m.Value != nil {
		v, _ = m.Value.Encode()
	}
	body := 1 + 1 + 1 + vbytes(k, m.Key == nil) + vbytes(v, m.Value == nil) + vlen(len(m.Headers))
	for _, h := range m.Headers {
		body += vbytes(h.Key, false) + vbytes(h.Value, h.Value == nil)
	}
	return 61 + vlen(body) + body
}
