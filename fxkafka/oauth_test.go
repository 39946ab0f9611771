package fxkafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// oauthGate is an OAUTHBEARER login in front of a kfake broker, which has
// none: it answers SaslHandshake and SaslAuthenticate itself, lets
// ApiVersions through, and passes a connection's other requests to kfake
// only once it has logged in with "auth=Bearer <token>". Put it in front of
// every broker with kfake.ListenFn, so the addresses kfake advertises are
// gated too.
type oauthGate struct {
	token string

	mu         sync.Mutex // protects following fields
	mechanisms []string   // asked for in each SaslHandshake
	logins     int        // SaslAuthenticate with the right token
	refusals   int        // SaslAuthenticate with anything else
	violations []string   // requests before login (must stay empty)
}

func (g *oauthGate) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return &gateListener{Listener: ln, gate: g}, nil
}

func (g *oauthGate) counts() (mechanisms []string, logins, refusals int, violations []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.mechanisms...), g.logins, g.refusals, append([]string(nil), g.violations...)
}

type gateListener struct {
	net.Listener
	gate *oauthGate
}

func (l *gateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gatedConn{Conn: c, gate: l.gate}, nil
}

// gatedConn is the broker's side of one client connection. kfake reads the
// requests the gate lets through from Read, and writes its answers.
type gatedConn struct {
	net.Conn
	gate *oauthGate

	// Read is kfake's one reading goroutine.
	loggedIn bool
	pending  []byte // a request for kfake, not yet read

	wmu sync.Mutex // orders the gate's answers with kfake's
}

func (c *gatedConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(b)
}

func (c *gatedConn) Read(b []byte) (int, error) {
	for len(c.pending) == 0 {
		req, err := readRequest(c.Conn)
		if err != nil {
			return 0, err
		}
		if c.loggedIn {
			c.pending = req.frame
			break
		}
		switch r := req.body.(type) {
		case *kmsg.ApiVersionsRequest:
			c.pending = req.frame
		case *kmsg.SASLHandshakeRequest:
			resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
			resp.SupportedMechanisms = []string{SASLOAuthBearer}
			if r.Mechanism != SASLOAuthBearer {
				resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
			}
			c.gate.mu.Lock()
			c.gate.mechanisms = append(c.gate.mechanisms, r.Mechanism)
			c.gate.mu.Unlock()
			if err := c.answer(req.correlationID, resp); err != nil {
				return 0, err
			}
		case *kmsg.SASLAuthenticateRequest:
			// RFC 7628's client-first message, without extensions.
			want := fmt.Sprintf("n,,\x01auth=Bearer %s\x01\x01", c.gate.token)
			resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
			c.gate.mu.Lock()
			if string(r.SASLAuthBytes) == want {
				c.gate.logins++
				c.loggedIn = true
			} else {
				c.gate.refusals++
				resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
				resp.ErrorMessage = kmsg.StringPtr("invalid token")
			}
			c.gate.mu.Unlock()
			if err := c.answer(req.correlationID, resp); err != nil {
				return 0, err
			}
			if !c.loggedIn {
				return 0, io.EOF // Kafka closes the connection after a failed login
			}
		default:
			c.gate.mu.Lock()
			c.gate.violations = append(c.gate.violations, fmt.Sprintf("%T before login", r))
			c.gate.mu.Unlock()
			return 0, io.EOF
		}
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// answer writes the gate's own response to a request.
func (c *gatedConn) answer(correlationID int32, resp kmsg.Response) error {
	b := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(correlationID))
	if resp.IsFlexible() {
		b = append(b, 0) // no header tags
	}
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err := c.Write(b)
	return err
}

// request is one request frame as a client sent it, and its decoded body.
type request struct {
	frame         []byte
	correlationID int32
	body          kmsg.Request
}

func readRequest(r io.Reader) (request, error) {
	var length [4]byte
	if _, err := io.ReadFull(r, length[:]); err != nil {
		return request{}, err
	}
	frame := make([]byte, 4+binary.BigEndian.Uint32(length[:]))
	copy(frame, length[:])
	if _, err := io.ReadFull(r, frame[4:]); err != nil {
		return request{}, err
	}
	b := kbin.Reader{Src: frame[4:]}
	key, version, correlationID := b.Int16(), b.Int16(), b.Int32()
	b.NullableString() // client id
	body := kmsg.RequestForKey(key)
	if body == nil {
		return request{}, fmt.Errorf("unknown request key %d", key)
	}
	body.SetVersion(version)
	if body.IsFlexible() {
		kmsg.SkipTags(&b)
	}
	if err := body.ReadFrom(b.Src); err != nil {
		return request{}, fmt.Errorf("decode %T: %w", body, err)
	}
	return request{frame: frame, correlationID: correlationID, body: body}, nil
}

// tokenProvider hands out one token (or one error) and counts the calls.
type tokenProvider struct {
	token string
	err   error
	calls atomic.Int64
}

func (tp *tokenProvider) Token() (*sarama.AccessToken, error) {
	tp.calls.Add(1)
	if tp.err != nil {
		return nil, tp.err
	}
	return &sarama.AccessToken{Token: tp.token}, nil
}

func startOAuthBroker(t *testing.T, token string) (*kfake.Cluster, *oauthGate) {
	t.Helper()
	g := &oauthGate{token: token}
	return startBrokerWith(t, kfake.ListenFn(g.listen)), g
}

func oauthConfig(c *kfake.Cluster) Config {
	cfg := testConfig(c.ListenAddrs()...)
	cfg.SASLMechanism = SASLOAuthBearer
	return cfg
}

func TestOAuthBearerLogsInWithTheProvidersToken(t *testing.T) {
	checkLeaks(t)
	const token = "eyJhbGciOiJSUzI1NiJ9.the-right-token"
	c, gate := startOAuthBroker(t, token)
	tokens := &tokenProvider{token: token}
	p := newTestPool(t, oauthConfig(c), WithTokenProvider(tokens))

	_, _, err := p.SendMessage(context.Background(), msg("logged in"))
	require.NoError(t, err)
	assert.EqualValues(t, 1, stored(c))
	mechanisms, logins, refusals, violations := gate.counts()
	require.NotEmpty(t, mechanisms)
	for _, m := range mechanisms {
		assert.Equal(t, SASLOAuthBearer, m, "every connection asks for OAUTHBEARER")
	}
	assert.Equal(t, len(mechanisms), logins, "every connection logged in with the token")
	assert.Zero(t, refusals)
	assert.Empty(t, violations, "nothing but ApiVersions is sent before the login")
	assert.EqualValues(t, logins, tokens.calls.Load(), "the provider is asked once per connection")
}

func TestOAuthBearerWithTheWrongTokenIsUnavailableAndNeverShowsTheToken(t *testing.T) {
	checkLeaks(t)
	c, gate := startOAuthBroker(t, "the-right-token")
	const wrong = "a-wrong-token-that-must-not-leak"
	p := newTestPool(t, oauthConfig(c), WithTokenProvider(&tokenProvider{token: wrong}))

	_, _, err := p.SendMessage(context.Background(), msg("refused"))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, sarama.ErrSASLAuthenticationFailed, "the cause is the broker's refusal")
	assert.NotContains(t, err.Error(), wrong)
	assert.NotContains(t, fmt.Sprintf("%+v", p.Stats()), wrong)
	assert.NotContains(t, fmt.Sprint(p.Stats().LastProvisionError), wrong)
	_, logins, refusals, violations := gate.counts()
	assert.Zero(t, logins)
	assert.NotZero(t, refusals)
	assert.Empty(t, violations, "a refused client sends nothing more")
	assert.Zero(t, stored(c))
}

func TestOAuthBearerProviderErrorIsUnavailableWrappingIt(t *testing.T) {
	checkLeaks(t)
	c, gate := startOAuthBroker(t, "the-right-token")
	errIdP := errors.New("identity provider unreachable")
	p := newTestPool(t, oauthConfig(c), WithTokenProvider(&tokenProvider{err: errIdP}))

	_, _, err := p.SendMessage(context.Background(), msg("no token"))
	require.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, errIdP)
	_, logins, refusals, _ := gate.counts()
	assert.Zero(t, logins+refusals, "no login was tried without a token")
	assert.Zero(t, stored(c))
}

func TestOAuthBearerAndTheTokenProviderComeTogether(t *testing.T) {
	base := Config{Brokers: []string{"127.0.0.1:1"}}
	tokens := &tokenProvider{token: "t"}
	tests := []struct {
		name      string
		give      func(*Config)
		giveOpts  []Option
		wantField string
	}{
		{"OAUTHBEARER without a token provider", func(c *Config) { c.SASLMechanism = SASLOAuthBearer }, nil, "SASLMechanism"},
		{"OAUTHBEARER with a nil token provider", func(c *Config) { c.SASLMechanism = SASLOAuthBearer }, []Option{WithTokenProvider(nil)}, "SASLMechanism"},
		{"a token provider without SASL", func(*Config) {}, []Option{WithTokenProvider(tokens)}, "SASLMechanism"},
		{"a token provider with PLAIN", func(c *Config) { c.SASLMechanism, c.SASLUser, c.SASLPassword = SASLPlain, "u", "p" }, []Option{WithTokenProvider(tokens)}, "SASLMechanism"},
		{"OAUTHBEARER with a user", func(c *Config) { c.SASLMechanism, c.SASLUser = SASLOAuthBearer, "u" }, []Option{WithTokenProvider(tokens)}, "SASLUser"},
		{"OAUTHBEARER with a password", func(c *Config) { c.SASLMechanism, c.SASLPassword = SASLOAuthBearer, "p" }, []Option{WithTokenProvider(tokens)}, "SASLPassword"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.give(&cfg)
			_, err := New(cfg, tt.giveOpts...)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.wantField, ce.Field)
			assert.Equal(t, envVars[tt.wantField], ce.EnvVar)
		})
	}

	cfg := base
	cfg.SASLMechanism = "oauthbearer"
	require.NoError(t, cfg.Validate(), "Validate cannot see options: New checks the pairing")
	p, err := New(cfg, WithTokenProvider(tokens))
	require.NoError(t, err)
	sc := p.saramaConfig(newDialer(0, 0, nil))
	assert.Equal(t, sarama.SASLMechanism(sarama.SASLTypeOAuth), sc.Net.SASL.Mechanism)
	assert.Same(t, tokens, sc.Net.SASL.TokenProvider)
	assert.NoError(t, sc.Validate())
}
