package fxkafka

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lengthOf is the 4-byte big-endian length that frames body.
func lengthOf(body []byte) []byte {
	return binary.BigEndian.AppendUint32(nil, uint32(len(body)))
}

func TestFrameTrackerFollowsLengthsSplitAcrossReads(t *testing.T) {
	var stream []byte
	bodies := [][]byte{[]byte("first frame"), {}, []byte("x"), make([]byte, 258)}
	for _, b := range bodies {
		stream = append(append(stream, lengthOf(b)...), b...)
	}
	stream = append(stream, 0, 0) // half of the next frame's length

	// Every way of cutting the stream in three reads sees the same frames.
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			var got []uint32
			f := frameTracker{check: func(frame int, length uint32, _ [4]byte) error {
				assert.Equal(t, len(got), frame, "frames are counted in order")
				got = append(got, length)
				return nil
			}}
			for _, piece := range [][]byte{stream[:i], stream[i:j], stream[j:]} {
				require.NoError(t, f.scan(piece))
			}
			require.Equal(t, []uint32{11, 0, 1, 258}, got, "cut at %d and %d", i, j)
			assert.Equal(t, 2, f.headN, "the last length is half read")
		}
	}
}

func TestFrameTrackerStopsAtTheFirstRefusedLength(t *testing.T) {
	stream := append(lengthOf([]byte("ok")), "okSSH-2.0-OpenSSH"...)
	refuse := errors.New("refused")
	var heads []string
	f := frameTracker{check: func(frame int, _ uint32, head [4]byte) error {
		heads = append(heads, string(head[:]))
		if frame == 1 {
			return refuse
		}
		return nil
	}}
	err := f.scan(stream)
	assert.ErrorIs(t, err, refuse)
	assert.Equal(t, []string{"\x00\x00\x00\x02", "SSH-"}, heads)
}

// answerOnce serves one connection: it reads a request's first bytes, writes
// answer, and reads until the client closes. closed is closed when it sees
// the client close.
func answerOnce(t *testing.T, answer []byte) (addr string, closed <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	f := startForeignListener(t, func(c net.Conn) {
		defer close(done)
		buf := make([]byte, 6)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		_, _ = c.Write(answer)
		_, _ = io.Copy(io.Discard, c)
	})
	return f.addr(), done
}

// requestHead is the start of a request with the given API key: its length
// and key, as sarama writes them.
func requestHead(apiKey int16) []byte {
	b := binary.BigEndian.AppendUint32(nil, 20)
	return binary.BigEndian.AppendUint16(b, uint16(apiKey))
}

func TestConnectionRefusesLengthsNoKafkaResponseHas(t *testing.T) {
	checkLeaks(t)
	tests := []struct {
		name        string
		giveRequest int16
		giveLength  uint32
		wantRefused bool
	}{
		{"an ApiVersions answer of 1 KiB", apiKeyAPIVersions, 1 << 10, false},
		{"an ApiVersions answer of 2 MiB", apiKeyAPIVersions, 2 << 20, true},
		{"a Metadata answer of 2 MiB", 3, 2 << 20, false},
		{"a Metadata answer beyond sarama.MaxResponseSize", 3, uint32(sarama.MaxResponseSize) + 1, true},
		{"an answer shorter than a correlation id", 3, 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, closed := answerOnce(t, binary.BigEndian.AppendUint32(nil, tt.giveLength))
			d := newDialer(time.Second, 0, nil)
			defer d.abort()
			c, err := d.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Write(requestHead(tt.giveRequest))
			require.NoError(t, err)

			n, err := io.ReadFull(c, make([]byte, 4))
			if !tt.wantRefused {
				require.NoError(t, err)
				assert.Equal(t, 4, n)
				return
			}
			assert.ErrorIs(t, err, errNotKafka)
			var nerr net.Error
			require.ErrorAs(t, err, &nerr, "sarama closes a connection on a net.Error")
			assert.False(t, nerr.Timeout(), "and retries on a timeout")
			<-closed // the pool closed the connection: the peer read EOF
			_, err = c.Read(make([]byte, 1))
			assert.ErrorIs(t, err, errNotKafka, "a refused connection stays refused")
			d.mu.Lock()
			assert.Empty(t, d.conns, "a refused connection is no longer tracked")
			d.mu.Unlock()
		})
	}
}

func TestTLSHandshakeWithAPeerThatNeverAnswersEndsOnAbort(t *testing.T) {
	checkLeaks(t)
	h := startHungListener(t)
	d := newDialer(time.Minute, 0, &tls.Config{MinVersion: tls.VersionTLS12})
	dialed := make(chan error, 1)
	go func() {
		c, err := d.Dial("tcp", h.addr())
		if c != nil {
			_ = c.Close()
		}
		dialed <- err
	}()
	<-h.accepted // the TCP connection is up; the handshake waits for an answer
	d.abort()
	assert.ErrorIs(t, <-dialed, errAborted)
}

func TestTLSConfigIsClonedPerConnectionWithTheBrokersHostAsServerName(t *testing.T) {
	shared := &tls.Config{MinVersion: tls.VersionTLS12}
	d := newDialer(time.Second, 0, shared)
	c := d.tlsConfigFor("kafka-1.internal:9093")
	assert.Equal(t, "kafka-1.internal", c.ServerName)
	assert.Empty(t, shared.ServerName, "the shared config is not changed")
	assert.NotSame(t, c, d.tlsConfigFor("kafka-1.internal:9093"))
	assert.Equal(t, "::1", d.tlsConfigFor("[::1]:9093").ServerName)

	named := newDialer(time.Second, 0, &tls.Config{MinVersion: tls.VersionTLS12, ServerName: "kafka.example"})
	assert.Equal(t, "kafka.example", named.tlsConfigFor("10.0.0.7:9093").ServerName, "TLSServerName wins")
}

func TestSaramasOwnTLSStaysOffBecauseTheDialerDoesIt(t *testing.T) {
	pki := newTestPKI(t)
	cfg := Config{Brokers: []string{"127.0.0.1:1"}, TLS: true, TLSCAFile: pki.caFile}
	p, err := New(cfg)
	require.NoError(t, err)
	sc := p.saramaConfig(newDialer(0, 0, p.sec.tls))
	assert.False(t, sc.Net.TLS.Enable)
	assert.Nil(t, sc.Net.TLS.Config)
	require.NotNil(t, p.sec.tls)
	assert.NotNil(t, p.sec.tls.RootCAs, "the CA file New read is the one the dialer uses")
}
