// Command quickstart is a small HTTP service that publishes the body of every
// POST /messages to the Kafka topic "quickstart" through an fxkafka pool.
//
//	go run ./examples/quickstart
//
// With KAFKA_BROKERS unset it runs an in-process Kafka broker (kfake) that
// comes up a few seconds after the service does, so you can watch the
// service start during the outage, answer 503 while Kafka is away, and 200
// once it is back, without a restart. With KAFKA_BROKERS set it uses that
// cluster (the topic "quickstart" must exist or be auto-created).
//
// The interface:
//
//	POST /messages   body = the message value
//	  200 {"partition":P,"offset":O}
//	  503 {"error":"fxkafka: kafka unavailable, message not sent: ..."}   within a second, during an outage
//	  504 {"error":"..."}                      no acknowledgement in time; may have been written
//	GET /readyz      200 when a Kafka broker answers (ProducerPool.Ping), else 503
//
// Flags: -addr (default 127.0.0.1:8080), -demo N (send N requests to itself,
// one a second, and print the answers; default 8, 0 to disable), -exit (stop
// after the demo), -v (log at debug level too: Fx's wiring events, the
// pool's provisioning).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"go.fxkafka.dev/fxkafka"
)

// Topic is where the service publishes.
const Topic = "quickstart"

// defaultBrokerDelay is how long the in-process broker stays away after start.
const defaultBrokerDelay = 4 * time.Second

// sendTimeout bounds one publish, so a request answers within it.
const sendTimeout = time.Second

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	demo := flag.Int("demo", 8, "requests the service sends itself, one a second (0: none)")
	exit := flag.Bool("exit", false, "stop after the demo requests")
	verbose := flag.Bool("v", false, "also log at debug level: Fx's wiring events and the pool's provisioning")
	flag.Parse()

	zc := zap.NewDevelopmentConfig()
	if !*verbose {
		zc.Level = zap.NewAtomicLevelAt(zap.InfoLevel)
	}
	log, err := zc.Build(zap.AddStacktrace(zap.ErrorLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	app := fx.New(Options(Settings{Addr: *addr, Demo: *demo, ExitAfterDemo: *exit}, log))
	app.Run()
	if err := app.Err(); err != nil {
		os.Exit(1)
	}
}

// Settings are the command's flags.
type Settings struct {
	Addr          string
	Demo          int
	ExitAfterDemo bool
	// BrokerDelay is how long the in-process broker stays away; 0 means 4s.
	BrokerDelay time.Duration
	// StartBroker, if set, starts the in-process broker when closed, before
	// BrokerDelay has passed (tests use it to order events).
	StartBroker <-chan struct{}
}

// Options assembles the service: the fxkafka module, the HTTP server, its
// handler, and (without KAFKA_BROKERS) the late in-process broker.
func Options(s Settings, log *zap.Logger) fx.Option {
	opts := []fx.Option{
		fxkafka.Module,
		fx.Supply(log, s),
		fx.WithLogger(func() fxevent.Logger { return fxLogger(log) }),
		fx.Provide(NewHandler, newServer),
		fx.Invoke(func(*http.Server) {}),
	}
	if s.Demo > 0 {
		opts = append(opts, fx.Invoke(startDemo))
	}
	if os.Getenv("KAFKA_BROKERS") == "" {
		opts = append(opts, fx.Provide(newLateBroker), fx.Decorate(useLateBroker), fx.Invoke(func(*lateBroker) {}))
	}
	return fx.Options(opts...)
}

// fxLogger logs Fx's events (each constructor provided, each hook run) at
// debug level, so that the service's own lines are what a newcomer sees;
// -v shows them. Fx's errors stay at error level.
func fxLogger(log *zap.Logger) fxevent.Logger {
	l := &fxevent.ZapLogger{Logger: log.Named("fx")}
	l.UseLogLevel(zapcore.DebugLevel)
	return l
}

// Handler publishes request bodies. It depends on the fxkafka.Producer
// interface, so a unit test can hand it a fake.
type Handler struct {
	producer fxkafka.Producer
	log      *zap.Logger
}

// NewHandler is the handler's constructor; Fx injects the pool.
func NewHandler(p fxkafka.Producer, log *zap.Logger) *Handler {
	return &Handler{producer: p, log: log}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sendTimeout)
	defer cancel()
	partition, offset, err := h.producer.SendMessage(ctx, &sarama.ProducerMessage{
		Topic: Topic,
		Value: sarama.ByteEncoder(body),
	})
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]int64{"partition": int64(partition), "offset": offset})
	case errors.Is(err, fxkafka.ErrUnavailable), errors.Is(err, fxkafka.ErrPoolClosed):
		// Not sent: the client may retry as it likes.
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	case errors.Is(err, fxkafka.ErrInvalidMessage):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
	default:
		// ErrDeliveryUnknown: it may have been written.
		writeJSON(w, http.StatusGatewayTimeout, map[string]string{"error": err.Error()})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newServer(lc fx.Lifecycle, s Settings, h *Handler, pool *fxkafka.ProducerPool, log *zap.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/messages", h)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 500*time.Millisecond)
		defer cancel()
		if err := pool.Ping(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	srv := &http.Server{Addr: s.Addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			ln, err := net.Listen("tcp", s.Addr)
			if err != nil {
				return err
			}
			log.Info("listening; try: curl -i -X POST --data hello http://" + ln.Addr().String() + "/messages")
			go func() { _ = srv.Serve(ln) }() // ends when OnStop shuts the server down
			return nil
		},
		OnStop: srv.Shutdown,
	})
	return srv
}

// lateBroker is an in-process kfake broker that starts a few seconds after the
// service, on an address reserved up front so the pool can be configured
// with it.
type lateBroker struct {
	addr    string
	port    int
	delay   time.Duration
	start   <-chan struct{}
	log     *zap.Logger
	stop    chan struct{}
	stopped chan struct{}
	cluster *kfake.Cluster // written by run, read after stopped is closed
}

func newLateBroker(lc fx.Lifecycle, s Settings, log *zap.Logger) (*lateBroker, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	b := &lateBroker{addr: addr, delay: s.BrokerDelay, start: s.StartBroker, log: log, stop: make(chan struct{}), stopped: make(chan struct{})}
	if b.delay == 0 {
		b.delay = defaultBrokerDelay
	}
	b.port, _ = strconv.Atoi(port)
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			log.Info("KAFKA_BROKERS is unset: an in-process broker will start at "+addr+" in a few seconds",
				zap.Duration("delay", b.delay))
			go b.run()
			return nil
		},
		OnStop: func(context.Context) error {
			close(b.stop)
			<-b.stopped
			if b.cluster != nil {
				b.cluster.Close()
			}
			return nil
		},
	})
	return b, nil
}

func (b *lateBroker) run() {
	defer close(b.stopped)
	t := time.NewTimer(b.delay)
	defer t.Stop()
	select {
	case <-b.stop:
		return
	case <-t.C:
	case <-b.start:
	}
	c, err := kfake.NewCluster(kfake.Ports(b.port), kfake.SeedTopics(3, Topic))
	if err != nil {
		b.log.Error("in-process broker did not start", zap.Error(err))
		return
	}
	b.cluster = c
	b.log.Info("in-process broker is up at " + b.addr)
}

// useLateBroker points the environment's config at the in-process broker.
func useLateBroker(b *lateBroker) fxkafka.Config {
	return fxkafka.Config{Brokers: []string{b.addr}}
}

// startDemo sends the service s.Demo requests, one a second, and prints the
// answers, so the outage and the recovery are visible without a second
// terminal.
func startDemo(lc fx.Lifecycle, s Settings, sd fx.Shutdowner, log *zap.Logger) {
	stop := make(chan struct{})
	done := make(chan struct{})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			go func() {
				defer close(done)
				demo(s, stop, log)
				if s.ExitAfterDemo {
					_ = sd.Shutdown()
				}
			}()
			return nil
		},
		OnStop: func(context.Context) error {
			close(stop)
			<-done
			return nil
		},
	})
}

func demo(s Settings, stop <-chan struct{}, log *zap.Logger) {
	client := &http.Client{Timeout: 5 * time.Second}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for i := 1; i <= s.Demo; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		start := time.Now()
		resp, err := client.Post("http://"+s.Addr+"/messages", "text/plain", strings.NewReader(fmt.Sprintf("hello %d", i)))
		if err != nil {
			log.Warn("demo request", zap.Error(err))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		log.Info(fmt.Sprintf("demo: POST /messages -> %d in %v: %s", resp.StatusCode, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(body))))
	}
}
