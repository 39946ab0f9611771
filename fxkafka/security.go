package fxkafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// Secret is a string that never prints: fmt's verbs, %v of a [Config], JSON
// and zap all show "[redacted]". Config.SASLPassword is one. Convert it with
// string(s) where the value itself is needed.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]" (and "" for an empty Secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns a redacted Go literal, for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("fxkafka.Secret(%q)", s.String()) }

// MarshalJSON writes the redacted form; a Secret is never marshalled.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf("%q", s.String())), nil }

// MarshalText writes the redacted form, for encoders that use it (zap, YAML).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// SASL mechanisms Config.SASLMechanism accepts.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"

	// SASLOAuthBearer logs in with a token from the provider given with
	// [WithTokenProvider] (KIP-255; OIDC, AWS MSK IAM). SASLUser and
	// SASLPassword stay empty.
	SASLOAuthBearer = "OAUTHBEARER"
)

// WithTokenProvider sets where the pool gets OAUTHBEARER tokens (OIDC, AWS
// MSK IAM). [New] requires it when Config.SASLMechanism is "OAUTHBEARER"
// and refuses it otherwise, with a [*ConfigError] naming SASLMechanism.
// There is none by default; a nil provider is ignored.
//
// sarama calls Token for each new broker connection, from its own
// goroutine, and the connection waits for it: Token must be safe for
// concurrent use, should reuse a token until it nears expiry, and must
// return (an error, if need be) within seconds. Neither the pool's
// deadlines nor Close can interrupt it: a Token that blocks holds up its
// provisioning attempt until it returns. A Token error fails that connection; an attempt that can log in
// to no broker fails with [ErrUnavailable] wrapping it. The pool never logs
// the token, and it never appears in the pool's errors or [Stats].
func WithTokenProvider(tp sarama.AccessTokenProvider) Option {
	return optionFunc(func(p *ProducerPool) {
		if tp != nil {
			p.tokenProvider = tp
		}
	})
}

// security is what the TLS and SASL fields (and WithTokenProvider) come to,
// parsed once by New.
type security struct {
	tls       *tls.Config                // nil: no TLS; the dialer clones it per connection
	mechanism string                     // "": no SASL
	tokens    sarama.AccessTokenProvider // with SASLOAuthBearer only
}

// initSecurity parses the TLS and SASL settings for New: the one parse the
// pool uses (it reads the TLS files), with its error returned, and the
// check that OAUTHBEARER and WithTokenProvider come together, which
// Validate cannot make. It runs after the options.
func (p *ProducerPool) initSecurity() error {
	sec, err := p.cfg.checkSecurity()
	if err != nil {
		return err
	}
	switch {
	case sec.mechanism == SASLOAuthBearer && p.tokenProvider == nil:
		return configError("SASLMechanism", "%s needs a token provider: pass WithTokenProvider to New", SASLOAuthBearer)
	case sec.mechanism != SASLOAuthBearer && p.tokenProvider != nil:
		return configError("SASLMechanism", "is %q, but WithTokenProvider was given, which needs %s", p.cfg.SASLMechanism, SASLOAuthBearer)
	}
	sec.tokens = p.tokenProvider
	p.sec = sec
	return nil
}

// checkSecurity validates the TLS and SASL fields, reading the files they
// name, and returns the settings for sarama (without a token provider,
// which is an option's: see initSecurity). Errors never contain the
// password.
func (c Config) checkSecurity() (security, error) {
	var sec security
	tlsFiles := map[string]string{"TLSCAFile": c.TLSCAFile, "TLSCertFile": c.TLSCertFile, "TLSKeyFile": c.TLSKeyFile}
	if !c.TLS {
		for _, field := range []string{"TLSCAFile", "TLSCertFile", "TLSKeyFile"} {
			if tlsFiles[field] != "" {
				return sec, configError(field, "is set but TLS is false")
			}
		}
		if c.TLSServerName != "" {
			return sec, configError("TLSServerName", "is set but TLS is false")
		}
		if c.TLSInsecureSkipVerify {
			return sec, configError("TLSInsecureSkipVerify", "is set but TLS is false")
		}
	} else {
		sec.tls = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         c.TLSServerName,
			InsecureSkipVerify: c.TLSInsecureSkipVerify, //nolint:gosec // opt-in for development, logged loudly by New
		}
		if c.TLSCAFile != "" {
			pem, err := os.ReadFile(c.TLSCAFile)
			if err != nil {
				return sec, configError("TLSCAFile", "%v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return sec, configError("TLSCAFile", "%s holds no PEM certificate", c.TLSCAFile)
			}
			sec.tls.RootCAs = pool
		}
		switch {
		case c.TLSCertFile != "" && c.TLSKeyFile == "":
			return sec, configError("TLSKeyFile", "is required with TLSCertFile")
		case c.TLSKeyFile != "" && c.TLSCertFile == "":
			return sec, configError("TLSCertFile", "is required with TLSKeyFile")
		case c.TLSCertFile != "":
			cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
			if err != nil {
				return sec, configError("TLSCertFile", "load key pair: %v", err)
			}
			sec.tls.Certificates = []tls.Certificate{cert}
		}
	}

	switch m := strings.ToUpper(c.SASLMechanism); m {
	case "":
		if c.SASLUser != "" {
			return sec, configError("SASLMechanism", "is required with SASLUser")
		}
		if c.SASLPassword != "" {
			return sec, configError("SASLMechanism", "is required with SASLPassword")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			return sec, configError("SASLUser", "is required with SASLMechanism %s", m)
		}
		if c.SASLPassword == "" {
			return sec, configError("SASLPassword", "is required with SASLUser")
		}
		sec.mechanism = m
	case SASLOAuthBearer:
		if c.SASLUser != "" {
			return sec, configError("SASLUser", "is not used with SASLMechanism %s (the token provider logs in)", m)
		}
		if c.SASLPassword != "" {
			return sec, configError("SASLPassword", "is not used with SASLMechanism %s (the token provider logs in)", m)
		}
		sec.mechanism = m
	default:
		return sec, configError("SASLMechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER", c.SASLMechanism)
	}
	return sec, nil
}

// apply sets sarama's TLS and SASL settings. TLS is the dialer's (see
// newDialer), so sarama's own stays off: the dialer's connections hand
// sarama plain Kafka frames, which they check before sarama reads them.
func (sec security) apply(c Config, sc *sarama.Config) {
	sc.Net.TLS.Enable = false
	sc.Net.TLS.Config = nil
	if sec.mechanism == "" {
		return
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	// Version 1 (Kafka 1.0+) carries every SASL exchange in Kafka frames
	// (SaslAuthenticate), which the dialer's frame check relies on; v0 sends
	// raw tokens, and OAUTHBEARER needs v1 anyway.
	sc.Net.SASL.Version = sarama.SASLHandshakeV1
	switch sec.mechanism {
	case SASLPlain:
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case SASLScramSHA256:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case SASLScramSHA512:
		sc.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	case SASLOAuthBearer:
		sc.Net.SASL.Mechanism = sarama.SASLTypeOAuth
		sc.Net.SASL.TokenProvider = sec.tokens
		return
	}
	sc.Net.SASL.User = c.SASLUser
	sc.Net.SASL.Password = string(c.SASLPassword)
}

// scramClient adapts xdg-go/scram to sarama's SCRAMClient.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }
