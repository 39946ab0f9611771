package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkatest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inMemorySpans replaces the service's stdout exporter with exp.
func inMemorySpans(exp *tracetest.InMemoryExporter) fx.Option {
	return fx.Replace(fx.Annotate(exp, fx.As(new(sdktrace.SpanExporter))))
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

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
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the broker's cleanup
	broker := fxkafkatest.NewBroker(t, Topic)
	t.Setenv("KAFKA_BROKERS", broker.Addrs()[0])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())

	app := fxtest.New(t, Options(addr, zap.NewNop()), inMemorySpans(tracetest.NewInMemoryExporter()))
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

func TestAnOrderIsTracedFromTheHTTPRequestToTheKafkaRecord(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	broker := fxkafkatest.NewBroker(t, Topic)
	t.Setenv("KAFKA_BROKERS", broker.Addrs()[0])
	addr := freeAddr(t)
	spans := tracetest.NewInMemoryExporter()
	var tp *sdktrace.TracerProvider
	app := fxtest.New(t, Options(addr, zap.NewNop()), inMemorySpans(spans), fx.Populate(&tp))
	app.RequireStart()

	// The caller's trace, as an upstream service would send it.
	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/orders", bytes.NewBufferString(`{"id":"o-9","item":"ink","quantity":3}`))
	require.NoError(t, err)
	req.Header.Set("traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	resp, err = http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(metrics), `fxkafka_send_duration_seconds_count{class="ok"} 1`)

	require.NoError(t, tp.ForceFlush(context.Background()))
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		byName[s.Name] = s
	}
	server, producer := byName["POST /orders"], byName["send orders"]
	require.Equal(t, trace.SpanKindServer, server.SpanKind, "spans: %v", byName)
	require.Equal(t, trace.SpanKindProducer, producer.SpanKind, "spans: %v", byName)
	assert.Equal(t, callerTrace, server.SpanContext.TraceID().String(), "the service continues the caller's trace")
	assert.Equal(t, callerSpan, server.Parent.SpanID().String())
	assert.True(t, server.Parent.IsRemote())
	assert.Equal(t, server.SpanContext.SpanID(), producer.Parent.SpanID(), "the send is a child of the request")
	app.RequireStop()

	recs := broker.WaitForRecords(Topic, 1, 10*time.Second)
	require.Len(t, recs, 1)
	carrier := propagation.MapCarrier{}
	for _, h := range recs[0].Headers {
		carrier[h.Key] = string(h.Value)
	}
	assert.Equal(t, "application/json", carrier["content-type"], "the service's own headers are kept")
	stored := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	assert.Equal(t, callerTrace, stored.TraceID().String(), "a consumer of the record continues the same trace")
	assert.Equal(t, producer.SpanContext.SpanID(), stored.SpanID(), "from the producer span")
}
