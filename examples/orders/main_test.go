package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

var ignoreBreaker = goleak.IgnoreAnyFunction("github.com/eapache/go-resiliency/breaker.(*Breaker).timer")

// fakeProducer records what the handler sends and answers with err.
type fakeProducer struct {
	sent []*sarama.ProducerMessage
	err  error
}

func (f *fakeProducer) SendMessage(_ context.Context, m *sarama.ProducerMessage) (int32, int64, error) {
	f.sent = append(f.sent, m)
	if f.err != nil {
		return -1, -1, f.err
	}
	return 2, int64(len(f.sent) - 1), nil
}

func (f *fakeProducer) SendMessages(context.Context, []*sarama.ProducerMessage) error { return f.err }

func postOrder(h http.Handler, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/orders", bytes.NewBufferString(body)))
	return rec
}

func TestOrderHandlerWithAFakeProducer(t *testing.T) {
	tests := []struct {
		name       string
		give       string
		sendErr    error
		wantStatus int
		wantSent   int
	}{
		{"accepted", `{"id":"o-1","item":"book","quantity":2}`, nil, http.StatusAccepted, 1},
		{"bad json", `{`, nil, http.StatusBadRequest, 0},
		{"missing id", `{"item":"book","quantity":2}`, nil, http.StatusBadRequest, 0},
		{"kafka down", `{"id":"o-1","item":"book","quantity":2}`, fxkafka.ErrUnavailable, http.StatusServiceUnavailable, 1},
		{"outcome unknown", `{"id":"o-1","item":"book","quantity":2}`, &fxkafka.DeliveryError{Topic: Topic, Err: context.DeadlineExceeded}, http.StatusGatewayTimeout, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeProducer{err: tt.sendErr}
			rec := postOrder(NewOrderHandler(fake, zap.NewNop()), tt.give)
			assert.Equal(t, tt.wantStatus, rec.Code, rec.Body.String())
			require.Len(t, fake.sent, tt.wantSent)
			if tt.wantSent > 0 {
				assert.Equal(t, sarama.StringEncoder("o-1"), fake.sent[0].Key, "keyed by order id")
			}
		})
	}
}

func TestOrdersServiceEndToEnd(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t, ignoreBreaker) }) // after the broker's cleanup
	broker := fxkafkatest.NewBroker(t, Topic)
	t.Setenv("KAFKA_BROKERS", broker.Addrs()[0])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	app := fxtest.New(t, Options(addr, zap.NewNop()))
	app.RequireStart()
	get := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, get("/healthz"))
	assert.Equal(t, http.StatusOK, get("/readyz"))

	resp, err := http.Post("http://"+addr+"/orders", "application/json", bytes.NewBufferString(`{"id":"o-7","item":"pen","quantity":1}`))
	require.NoError(t, err)
	var ack map[string]int64
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&ack))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	broker.Down()
	assert.Equal(t, http.StatusOK, get("/healthz"), "liveness never depends on Kafka")
	assert.Equal(t, http.StatusServiceUnavailable, get("/readyz"))
	broker.Up()
	app.RequireStop()

	recs := broker.WaitForRecords(Topic, 1, 10*time.Second)
	require.Len(t, recs, 1)
	assert.Equal(t, "o-7", string(recs[0].Key))
	assert.Equal(t, ack["offset"], recs[0].Offset)
	assert.JSONEq(t, `{"id":"o-7","item":"pen","quantity":1}`, string(recs[0].Value))
}
