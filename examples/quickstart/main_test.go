package main

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func post(t *testing.T, addr, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/messages", "text/plain", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return resp.StatusCode, out
}

func TestQuickstartAnswers503DuringTheOutageThen200(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Setenv("KAFKA_BROKERS", "")
	addr := freeAddr(t)
	startBroker := make(chan struct{})
	app := fxtest.New(t, Options(Settings{Addr: addr, BrokerDelay: time.Hour, StartBroker: startBroker}, zaptest.NewLogger(t)))
	app.RequireStart()

	start := time.Now()
	status, body := post(t, addr, "during the outage")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, body["error"], "kafka unavailable")
	assert.Less(t, time.Since(start), sendTimeout, "answers within a second")

	resp, err := http.Get("http://" + addr + "/messages")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	resp, err = http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready while Kafka is down")

	close(startBroker)
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond) // paces the retries
	defer tick.Stop()
	for {
		status, body = post(t, addr, "after the outage")
		if status == http.StatusOK {
			break
		}
		require.Equal(t, http.StatusServiceUnavailable, status, "only 503 until Kafka is up: %v", body)
		require.True(t, time.Now().Before(deadline), "no 200 within 10s of the broker starting")
		<-tick.C
	}
	assert.Contains(t, body, "partition")
	assert.Contains(t, body, "offset")
	resp, err = http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	app.RequireStop()
}
