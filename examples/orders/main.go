// Command orders is a realistic service built on fxkafka: it accepts orders
// over HTTP and publishes each to the Kafka topic "orders", keyed by order id.
//
//	KAFKA_BROKERS=kafka-1:9092,kafka-2:9092 go run ./examples/orders
//	go run ./examples/orders       # without KAFKA_BROKERS: an in-process broker
//
// It shows the shape of a production service: zap logging shared with Fx and
// fxkafka, a handler that depends on the fxkafka.Producer interface (so its
// unit test uses a fake), a liveness endpoint that never depends on Kafka, a
// readiness endpoint backed by ProducerPool.Ping, and graceful shutdown on
// SIGINT or SIGTERM: the HTTP server drains, then the pool flushes.
//
// It is traced end to end: a request's W3C traceparent is continued by a
// server span "POST /orders", fxkafkaotel makes the send's producer span its
// child and writes that span's context into the record's headers, so the
// consumer of "orders" continues the same trace. Spans are printed to stdout
// as JSON (swap the exporter for OTLP in production). fxkafkaprom serves the
// pool's metrics and send-latency histograms at /metrics.
//
//	POST /orders  {"id":"o-1","item":"book","quantity":2}
//	  202 {"partition":P,"offset":O}
//	  400 {"error":...}    invalid order
//	  503 {"error":...}    Kafka unavailable: not published, safe to retry
//	  504 {"error":...}    not acknowledged in time: may have been published
//	GET /healthz   200 while the process runs
//	GET /readyz    200 when a Kafka broker answers, else 503
//	GET /metrics   Prometheus metrics
//
// It is a module of its own so that the core module's go.mod carries no
// OpenTelemetry or Prometheus.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"go.fxkafka.dev/fxkafka"
	"go.fxkafka.dev/fxkafka/fxkafkaotel"
	"go.fxkafka.dev/fxkafka/fxkafkaprom"
)

// Topic receives the orders.
const Topic = "orders"

func main() {
	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer func() { _ = log.Sync() }()
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8081"
	}
	// Run starts the app, blocks until SIGINT or SIGTERM, then stops it
	// within fx.StopTimeout: every OnStop hook runs, in reverse order.
	fx.New(Options(addr, log), fx.StopTimeout(15*time.Second)).Run()
}

// Options wires the service. Without KAFKA_BROKERS it adds an in-process
// broker so the service runs anywhere.
func Options(addr string, log *zap.Logger) fx.Option {
	opts := []fx.Option{
		fx.Supply(log),
		fx.WithLogger(func(l *zap.Logger) fxevent.Logger { return &fxevent.ZapLogger{Logger: l.Named("fx")} }),
		fxkafka.Module,
		fxkafkaotel.Module, // traces every send with the app's TracerProvider and propagator
		fxkafkaprom.Module, // the pool's metrics and histograms, in the app's registry
		fx.Provide(
			newSpanExporter,
			newTracerProvider,
			func(tp *sdktrace.TracerProvider) trace.TracerProvider { return tp },
			newPropagator,
			prometheus.NewRegistry,
			func(r *prometheus.Registry) prometheus.Registerer { return r },
		),
		fx.Provide(NewOrderHandler, NewReadiness, newMux),
		fx.Invoke(func(lc fx.Lifecycle, mux *http.ServeMux) { serve(lc, addr, mux, log) }),
	}
	if os.Getenv("KAFKA_BROKERS") == "" {
		opts = append(opts, fx.Provide(newLocalBroker), fx.Decorate(func(c *kfake.Cluster) fxkafka.Config {
			return fxkafka.Config{Brokers: c.ListenAddrs(), ClientID: "orders"}
		}))
	} else {
		opts = append(opts, fx.Decorate(func(c fxkafka.Config) fxkafka.Config {
			if c.ClientID == "" {
				c.ClientID = "orders"
			}
			return c
		}))
	}
	return fx.Options(opts...)
}

// Order is what clients post.
type Order struct {
	ID       string `json:"id"`
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

// OrderHandler publishes orders. It needs only the fxkafka.Producer
// interface.
type OrderHandler struct {
	producer fxkafka.Producer
	log      *zap.Logger
	timeout  time.Duration
}

// NewOrderHandler is the handler's constructor.
func NewOrderHandler(p fxkafka.Producer, log *zap.Logger) *OrderHandler {
	return &OrderHandler{producer: p, log: log.Named("orders"), timeout: 2 * time.Second}
}

func (h *OrderHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	var o Order
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&o); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad JSON: " + err.Error()})
		return
	}
	if o.ID == "" || o.Item == "" || o.Quantity <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id, item and a positive quantity are required"})
		return
	}
	value, _ := json.Marshal(o)
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	partition, offset, err := h.producer.SendMessage(ctx, &sarama.ProducerMessage{
		Topic:   Topic,
		Key:     sarama.StringEncoder(o.ID), // one order's events stay in order on one partition
		Value:   sarama.ByteEncoder(value),
		Headers: []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte("application/json")}},
	})
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, map[string]int64{"partition": int64(partition), "offset": offset})
	case errors.Is(err, fxkafka.ErrUnavailable), errors.Is(err, fxkafka.ErrPoolClosed):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case errors.Is(err, fxkafka.ErrInvalidMessage):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		h.log.Warn("order outcome unknown", zap.String("order", o.ID), zap.Error(err))
		writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": err.Error()})
	}
}

// Pinger is what readiness needs of the pool.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Readiness answers /readyz from Ping, bounded to half a second.
type Readiness struct{ pinger Pinger }

// NewReadiness is the readiness endpoint's constructor.
func NewReadiness(p *fxkafka.ProducerPool) *Readiness { return &Readiness{pinger: p} }

func (rd *Readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
	defer cancel()
	if err := rd.pinger.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func newMux(orders *OrderHandler, ready *Readiness, tp trace.TracerProvider, prop propagation.TextMapPropagator, reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/orders", traced(tp, prop, "/orders", orders))
	mux.Handle("/readyz", ready)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	return mux
}

func serve(lc fx.Lifecycle, addr string, mux *http.ServeMux, log *zap.Logger) {
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			log.Info("orders service listening", zap.String("addr", ln.Addr().String()))
			go func() { _ = srv.Serve(ln) }() // ends when OnStop shuts the server down
			return nil
		},
		// The server's hook was appended after the pool's, so it stops
		// first: in-flight requests finish their sends, then the pool flushes.
		OnStop: srv.Shutdown,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// newLocalBroker runs an in-process broker for the service's lifetime.
func newLocalBroker(lc fx.Lifecycle, log *zap.Logger) (*kfake.Cluster, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, Topic))
	if err != nil {
		return nil, err
	}
	log.Info("KAFKA_BROKERS is unset: using an in-process broker", zap.Strings("brokers", c.ListenAddrs()))
	lc.Append(fx.StopHook(c.Close))
	return c, nil
}

// newSpanExporter prints spans to stdout as JSON lines. A production service
// provides an OTLP exporter here instead.
func newSpanExporter() (sdktrace.SpanExporter, error) {
	return stdouttrace.New()
}

// newTracerProvider batches spans to the exporter. It is shut down (flushing
// what it holds) after the pool has closed: the pool was built after it, so
// its OnStop runs first.
func newTracerProvider(lc fx.Lifecycle, exp sdktrace.SpanExporter) (*sdktrace.TracerProvider, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName("orders")))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	lc.Append(fx.StopHook(tp.Shutdown))
	return tp, nil
}

// newPropagator reads and writes W3C trace context and baggage: in HTTP
// requests (traced) and in Kafka record headers (fxkafkaotel).
func newPropagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// traced runs h in a server span that continues the caller's trace (its
// traceparent header, if any), so that the spans of what h does, the
// producer span of a send included, are its children.
func traced(tp trace.TracerProvider, prop propagation.TextMapPropagator, route string, h http.Handler) http.Handler {
	tracer := tp.Tracer("go.fxkafka.dev/examples/orders")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.HTTPRequestMethodKey.String(r.Method), semconv.HTTPRoute(route)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(semconv.HTTPResponseStatusCode(sw.status))
		if sw.status >= http.StatusInternalServerError {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}
