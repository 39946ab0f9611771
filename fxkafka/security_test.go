package fxkafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, generated for the test and written as PEM files.
type testPKI struct {
	caFile, clientCert, clientKey string
	caPool                        *x509.CertPool
	server                        tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fxkafka test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o600))
		return p
	}
	var pki testPKI
	pki.caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	pki.caPool = x509.NewCertPool()
	pki.caPool.AddCert(ca)
	serverCert, serverKey := issue("broker", 2, x509.ExtKeyUsageServerAuth)
	pki.server, err = tls.X509KeyPair(serverCert, serverKey)
	require.NoError(t, err)
	clientCert, clientKey := issue("client", 3, x509.ExtKeyUsageClientAuth)
	pki.clientCert, pki.clientKey = write("client.pem", clientCert), write("client-key.pem", clientKey)
	return pki
}

func startBrokerWith(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, topic)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// stored is how many records the broker holds for topic.
func stored(c *kfake.Cluster) int64 {
	var n int64
	for _, pi := range c.PartitionInfos(topic) {
		n += pi.HighWatermark - pi.LogStartOffset
	}
	return n
}

func TestTLSSendsToABrokerBehindTLS(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	c := startBrokerWith(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}))

	cfg := testConfig(c.ListenAddrs()...)
	cfg.TLS, cfg.TLSCAFile = true, pki.caFile
	p := newTestPool(t, cfg)
	_, _, err := p.SendMessage(context.Background(), msg("over tls"))
	require.NoError(t, err)
	assert.EqualValues(t, 1, stored(c))

	untrusting := testConfig(c.ListenAddrs()...)
	untrusting.TLS = true // the system's roots do not trust the test CA
	q := newTestPool(t, untrusting)
	_, _, err = q.SendMessage(context.Background(), msg("refused"))
	require.ErrorIs(t, err, ErrUnavailable)
	var verr *tls.CertificateVerificationError
	assert.ErrorAs(t, err, &verr, "the certificate error is the wrapped cause: %v", err)
}

func TestTLSPresentsAClientCertificate(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	c := startBrokerWith(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.caPool,
	}))
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TLS, cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile = true, pki.caFile, pki.clientCert, pki.clientKey
	p := newTestPool(t, cfg)
	_, _, err := p.SendMessage(context.Background(), msg("mutual tls"))
	require.NoError(t, err)

	without := testConfig(c.ListenAddrs()...)
	without.TLS, without.TLSCAFile = true, pki.caFile
	q := newTestPool(t, without)
	_, _, err = q.SendMessage(context.Background(), msg("no client cert"))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.EqualValues(t, 1, stored(c))
}

func TestTLSInsecureSkipVerifyWorksAndIsLoggedLoudly(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	c := startBrokerWith(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}))
	core, logs := observer.New(zap.WarnLevel)
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TLS, cfg.TLSInsecureSkipVerify = true, true
	p := newTestPool(t, cfg, WithLogger(zap.New(core)))
	_, _, err := p.SendMessage(context.Background(), msg("unverified"))
	require.NoError(t, err)
	require.Equal(t, 1, logs.Len())
	assert.Contains(t, logs.All()[0].Message, "CERTIFICATE VERIFICATION IS OFF")
}

func TestSASLAuthenticatesWithEachMechanism(t *testing.T) {
	checkLeaks(t)
	for _, mechanism := range []string{SASLPlain, SASLScramSHA256, SASLScramSHA512} {
		t.Run(mechanism, func(t *testing.T) {
			c := startBrokerWith(t, kfake.EnableSASL(), kfake.Superuser(mechanism, "alice", "correct-horse"))
			cfg := testConfig(c.ListenAddrs()...)
			cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = mechanism, "alice", "correct-horse"
			p := newTestPool(t, cfg)
			_, _, err := p.SendMessage(context.Background(), msg("authenticated"))
			require.NoError(t, err)

			wrong := cfg
			wrong.SASLPassword = "battery-staple"
			q := newTestPool(t, wrong)
			_, _, err = q.SendMessage(context.Background(), msg("refused"))
			require.ErrorIs(t, err, ErrUnavailable)
			assert.NotContains(t, err.Error(), "battery-staple")
			assert.NotContains(t, fmt.Sprint(q.Stats().LastProvisionError), "battery-staple")
			assert.EqualValues(t, 1, stored(c))
		})
	}
}

func TestSecretsNeverAppearInOutput(t *testing.T) {
	const password = "hunter2-do-not-print"
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, SASLMechanism: SASLPlain, SASLUser: "alice", SASLPassword: password}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		assert.NotContains(t, fmt.Sprintf(verb, cfg), password, verb)
		assert.NotContains(t, fmt.Sprintf(verb, &cfg), password, verb)
	}
	j, err := json.Marshal(cfg)
	require.NoError(t, err)
	assert.NotContains(t, string(j), password)
	assert.Contains(t, string(j), `"saslPassword":"[redacted]"`)

	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	buf, err := enc.EncodeEntry(zapcore.Entry{Message: "config"}, []zapcore.Field{zap.Any("config", cfg)})
	require.NoError(t, err)
	assert.NotContains(t, buf.String(), password)

	noMechanism := cfg
	noMechanism.SASLMechanism = ""
	assert.NotContains(t, fmt.Sprint(noMechanism.Validate()), password)
	assert.Equal(t, password, string(cfg.SASLPassword), "the value itself is kept")
}

func TestSecurityMisconfigurationFailsAtConstructionNamingTheField(t *testing.T) {
	pki := newTestPKI(t)
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	base := Config{Brokers: []string{"127.0.0.1:1"}}
	tests := []struct {
		name  string
		give  func(*Config)
		field string
	}{
		{"CA file that does not exist", func(c *Config) { c.TLS, c.TLSCAFile = true, "/nonexistent/ca.pem" }, "TLSCAFile"},
		{"CA file without a certificate", func(c *Config) { c.TLS, c.TLSCAFile = true, notPEM }, "TLSCAFile"},
		{"certificate without key", func(c *Config) { c.TLS, c.TLSCertFile = true, pki.clientCert }, "TLSKeyFile"},
		{"key without certificate", func(c *Config) { c.TLS, c.TLSKeyFile = true, pki.clientKey }, "TLSCertFile"},
		{"key that does not match", func(c *Config) { c.TLS, c.TLSCertFile, c.TLSKeyFile = true, pki.clientCert, notPEM }, "TLSCertFile"},
		{"TLS file without TLS", func(c *Config) { c.TLSCAFile = pki.caFile }, "TLSCAFile"},
		{"skip-verify without TLS", func(c *Config) { c.TLSInsecureSkipVerify = true }, "TLSInsecureSkipVerify"},
		{"unknown mechanism", func(c *Config) { c.SASLMechanism, c.SASLUser, c.SASLPassword = "GSSAPI", "u", "p" }, "SASLMechanism"},
		{"user without password", func(c *Config) { c.SASLMechanism, c.SASLUser = SASLScramSHA256, "u" }, "SASLPassword"},
		{"mechanism without user", func(c *Config) { c.SASLMechanism = SASLPlain }, "SASLUser"},
		{"password without mechanism", func(c *Config) { c.SASLPassword = "p" }, "SASLMechanism"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.give(&cfg)
			_, err := New(cfg)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Equal(t, envVars[tt.field], ce.EnvVar)
		})
	}
}

func TestSecurityIsReadFromTheEnvironment(t *testing.T) {
	pki := newTestPKI(t)
	clearEnv(t)
	t.Setenv("KAFKA_BROKERS", "kafka:9093")
	t.Setenv("KAFKA_TLS", "true")
	t.Setenv("KAFKA_TLS_CA_FILE", pki.caFile)
	t.Setenv("KAFKA_TLS_SERVER_NAME", "kafka.internal")
	t.Setenv("KAFKA_SASL_MECHANISM", "scram-sha-512")
	t.Setenv("KAFKA_SASL_USER", "svc")
	t.Setenv("KAFKA_SASL_PASSWORD", "from-env")
	cfg, err := ConfigFromEnv()
	require.NoError(t, err)
	assert.True(t, cfg.TLS)
	assert.Equal(t, pki.caFile, cfg.TLSCAFile)
	assert.Equal(t, "kafka.internal", cfg.TLSServerName)
	assert.Equal(t, "svc", cfg.SASLUser)
	assert.Equal(t, Secret("from-env"), cfg.SASLPassword)

	t.Setenv("KAFKA_TLS", "yes please")
	_, err = ConfigFromEnv()
	assert.ErrorContains(t, err, "KAFKA_TLS")
}

func TestNewReturnsTheErrorOfTheSecurityParseItUses(t *testing.T) {
	pki := newTestPKI(t)
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, TLS: true, TLSCAFile: pki.caFile}
	p := &ProducerPool{cfg: cfg}
	require.NoError(t, p.initSecurity())
	assert.NotNil(t, p.sec.tls.RootCAs)

	// The file goes away between Validate and New's own parse.
	require.NoError(t, os.Remove(pki.caFile))
	err := p.initSecurity()
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "TLSCAFile", ce.Field)
}

func TestTLSFilesAreReadByNewOnly(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	c := startBrokerWith(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}, MinVersion: tls.VersionTLS12}))
	cfg := testConfig(c.ListenAddrs()...)
	cfg.TLS, cfg.TLSCAFile = true, pki.caFile
	p := newTestPool(t, cfg)
	require.NoError(t, os.Remove(pki.caFile), "provisioning does not read the file again")
	_, _, err := p.SendMessage(context.Background(), msg("trusted from New's parse"))
	require.NoError(t, err)
}
