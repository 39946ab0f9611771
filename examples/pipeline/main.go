// Command pipeline ships a stream of events to Kafka from one goroutine with
// fxkafka's asynchronous ProducerPool.Produce: it keeps many messages in
// flight without a goroutine per message, counts every outcome in the
// promise, Flushes at the end and closes the pool gracefully.
//
//	go run ./examples/pipeline                           # 100000 generated events, in-process broker
//	seq 1 5 | go run ./examples/pipeline -in -           # one event per line of stdin
//	KAFKA_BROKERS=kafka-1:9092 go run ./examples/pipeline -topic events
//
// Without KAFKA_BROKERS it runs an in-process Kafka broker (kfake); with it,
// it uses that cluster (the topic must exist or be auto-created). A line of
// input is an event's value, or "key<TAB>value" for a keyed event; events
// of one key are stored in the order read. Ctrl-C stops reading: what was
// produced is flushed and counted before the pool closes.
//
// Flags: -in FILE (read events from FILE, "-" for stdin; default: generate
// them), -events N (how many to generate, default 100000), -keys K (the
// generated events' keys, default 16), -topic NAME (default "pipeline").
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"go.fxkafka.dev/fxkafka"
)

// flushTimeout bounds the wait for the last outcomes once the input ends,
// and closeTimeout the pool's Close after it.
const (
	flushTimeout = 30 * time.Second
	closeTimeout = 10 * time.Second
)

func main() {
	in := flag.String("in", "", `read events from this file, one a line ("-": stdin); default: generate them`)
	events := flag.Int("events", 100_000, "events to generate")
	keys := flag.Int("keys", 16, "keys the generated events are spread over")
	topic := flag.String("topic", "pipeline", "topic to produce to")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	src := Generate(*events, *keys)
	switch *in {
	case "":
	case "-":
		src = Lines(os.Stdin)
	default:
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer f.Close()
		src = Lines(f)
	}
	if err := run(ctx, *topic, src, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

// run makes the pool (on the in-process broker unless KAFKA_BROKERS is
// set), runs the pipeline, closes the pool and prints what happened.
func run(ctx context.Context, topic string, src Source, out io.Writer) error {
	cfg, err := config(topic)
	if err != nil {
		return err
	}
	defer cfg.cleanup()
	pool, err := fxkafka.New(cfg.Config)
	if err != nil {
		return err
	}
	start := time.Now()
	pl := &Pipeline{Pool: pool, Topic: topic}
	counts, runErr := pl.Run(ctx, src)
	took := time.Since(start)

	closeCtx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	closeErr := pool.Close(closeCtx)
	fmt.Fprintf(out, "produced %d to %s in %v (%.0f/s): %s\n", counts.Produced, topic,
		took.Round(time.Millisecond), float64(counts.Produced)/took.Seconds(), counts)
	if first := pl.FirstError(); first != nil {
		fmt.Fprintln(out, "first failure:", first)
	}
	return errors.Join(runErr, closeErr)
}

type poolConfig struct {
	fxkafka.Config
	cleanup func()
}

// config is the environment's when KAFKA_BROKERS is set, else that of an
// in-process broker holding topic.
func config(topic string) (poolConfig, error) {
	if os.Getenv("KAFKA_BROKERS") != "" {
		cfg, err := fxkafka.ConfigFromEnv()
		return poolConfig{Config: cfg, cleanup: func() {}}, err
	}
	c, err := kfake.NewCluster(kfake.SeedTopics(3, topic))
	if err != nil {
		return poolConfig{}, fmt.Errorf("start the in-process broker: %w", err)
	}
	return poolConfig{Config: fxkafka.Config{Brokers: c.ListenAddrs()}, cleanup: c.Close}, nil
}

// Event is one message of the stream.
type Event struct {
	Key   string // "" for a keyless event
	Value string
}

// Source yields events until it runs out or yield returns false, and
// reports a read error.
type Source func(yield func(Event) bool) error

// Generate is a source of n events spread over keys keys: key "user-<i mod
// keys>", value "<key>/<i>", so a reader can check each key's order.
func Generate(n, keys int) Source {
	return func(yield func(Event) bool) error {
		for i := range n {
			key := fmt.Sprintf("user-%d", i%max(keys, 1))
			if !yield(Event{Key: key, Value: fmt.Sprintf("%s/%07d", key, i)}) {
				return nil
			}
		}
		return nil
	}
}

// Lines is a source of the lines of r: "key<TAB>value", or a value alone.
func Lines(r io.Reader) Source {
	return func(yield func(Event) bool) error {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			key, value, keyed := strings.Cut(sc.Text(), "\t")
			if !keyed {
				key, value = "", key
			}
			if !yield(Event{Key: key, Value: value}) {
				return nil
			}
		}
		return sc.Err()
	}
}

// Pipeline produces a source's events to Topic from one goroutine. Its
// promise only counts: it runs on the pool's promise goroutine, where slow
// work would hold up every later outcome (and, through the buffer it keeps
// full, Produce).
type Pipeline struct {
	Pool  *fxkafka.ProducerPool
	Topic string

	produced atomic.Int64
	outcomes [5]atomic.Int64 // by class, in the order of classes
	first    atomic.Pointer[error]
}

var classes = [5]string{fxkafka.ClassOK, fxkafka.ClassUnavailable, fxkafka.ClassClosed, fxkafka.ClassInvalid, fxkafka.ClassUnknown}

// Counts is what a run did with its events.
type Counts struct {
	Produced    int64 // events handed to Produce
	Acked       int64 // acknowledged by the brokers
	Unavailable int64 // not sent (safe to retry): no broker, or the buffer stayed full until ctx ended
	Closed      int64 // not sent: the pool was closing
	Invalid     int64 // refused, not written
	Unknown     int64 // may have been written
}

func (c Counts) String() string {
	return fmt.Sprintf("acknowledged %d, unavailable %d, closed %d, invalid %d, unknown %d",
		c.Acked, c.Unavailable, c.Closed, c.Invalid, c.Unknown)
}

// Run produces every event src yields until it runs out or ctx ends, then
// flushes: when Run returns, every event produced has its outcome counted.
// ctx bounds reading (and the wait for buffer space), not the flush, so
// that what was produced before an interrupt is still delivered.
func (pl *Pipeline) Run(ctx context.Context, src Source) (Counts, error) {
	readErr := src(func(e Event) bool {
		if ctx.Err() != nil {
			return false
		}
		msg := &sarama.ProducerMessage{Topic: pl.Topic, Value: sarama.StringEncoder(e.Value)}
		if e.Key != "" {
			msg.Key = sarama.StringEncoder(e.Key)
		}
		pl.produced.Add(1)
		pl.Pool.Produce(ctx, msg, pl.promise)
		return true
	})
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	flushErr := pl.Pool.Flush(flushCtx)
	return pl.Counts(), errors.Join(readErr, flushErr)
}

// promise counts one outcome. The pool calls it once per Produce, on its
// promise goroutine.
func (pl *Pipeline) promise(_ *sarama.ProducerMessage, err error) {
	class := fxkafka.ErrorClass(err)
	for i, c := range classes {
		if c == class {
			pl.outcomes[i].Add(1)
		}
	}
	if err != nil {
		pl.first.CompareAndSwap(nil, &err)
	}
}

// Counts returns what the run did so far.
func (pl *Pipeline) Counts() Counts {
	return Counts{
		Produced:    pl.produced.Load(),
		Acked:       pl.outcomes[0].Load(),
		Unavailable: pl.outcomes[1].Load(),
		Closed:      pl.outcomes[2].Load(),
		Invalid:     pl.outcomes[3].Load(),
		Unknown:     pl.outcomes[4].Load(),
	}
}

// FirstError returns the error of the first event that failed, or nil.
func (pl *Pipeline) FirstError() error {
	if e := pl.first.Load(); e != nil {
		return *e
	}
	return nil
}
