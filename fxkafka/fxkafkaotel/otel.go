// Package fxkafkaotel traces and measures the sends of a
// [fxkafka.ProducerPool] with OpenTelemetry. It is a module of its own, so
// that services that do not use OpenTelemetry do not link it.
//
// # Traces
//
// Every message gets one span of kind PRODUCER named "send <topic>", a child
// of the span in the context given to the send (a root span if there is
// none). It carries OpenTelemetry's messaging semantic conventions:
// messaging.system "kafka", messaging.operation.name and
// messaging.operation.type "send", messaging.destination.name (the topic),
// messaging.client.id (Config.ClientID) and, once written,
// messaging.destination.partition.id and messaging.kafka.offset. A failed
// send has status Error and error.type set to fxkafka's error class
// ("unavailable", "closed", "invalid" or "unknown"; see [fxkafka.ErrorClass]).
//
// The span's context is injected into the record's headers with the
// propagator (W3C Trace Context's "traceparent" by default), so a consumer
// that extracts it continues the trace. A header the propagator sets
// replaces one of the same key the message already had.
//
// # Metrics
//
//   - messaging.client.operation.duration (histogram, seconds): from the
//     start of the send to its outcome, one observation per message.
//   - messaging.client.sent.messages (counter): messages sent, whatever the
//     outcome.
//
// Both carry messaging.system, messaging.operation.name,
// messaging.operation.type, messaging.destination.name, fxkafka.class (the
// error class of every send, "ok" included: the classes of
// fxkafkaprom's class label) and, for a failed send, error.type (the same
// class). The partition is left out to keep the number of series small.
//
// A message refused by the pool's own checks (nil, no topic, too large)
// has its span too, with status Error and error.type "invalid", and is
// counted (a nil message is seen as an empty one: its span is "send").
//
// # Use
//
// With Fx, add [Module] next to fxkafka.Module; without, pass the hook to
// fxkafka.New:
//
//	h, err := fxkafkaotel.NewHook(fxkafkaotel.WithClientID(cfg.ClientID))
//	...
//	pool, err := fxkafka.New(cfg, fxkafka.WithHook(h))
package fxkafkaotel

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"
	"go.opentelemetry.io/otel/trace"

	"go.fxkafka.dev/fxkafka"
)

// ScopeName is the instrumentation scope of the hook's tracer and meter.
const ScopeName = "go.fxkafka.dev/fxkafka/fxkafkaotel"

// ClassKey is the attribute holding fxkafka's error class on the metrics:
// "ok", "unavailable", "closed", "invalid" or "unknown".
const ClassKey = attribute.Key("fxkafka.class")

// Hook traces and measures a pool's sends; see the package documentation.
// Register it with [fxkafka.WithHook]. It is safe for concurrent use, and
// one Hook may serve several pools.
type Hook struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	duration messagingconv.ClientOperationDuration
	sent     messagingconv.ClientSentMessages
	clientID attribute.KeyValue

	// topics is a copy-on-write map of the per-topic attributes, so that a
	// send reads it without a lock and without allocating.
	topics atomic.Pointer[map[string]*topicAttrs]
	mu     sync.Mutex // serialises writers of topics
}

var (
	_ fxkafka.HookSendStart = (*Hook)(nil)
	_ fxkafka.HookSendEnd   = (*Hook)(nil)
)

// topicAttrs is what the hook computes once per topic.
type topicAttrs struct {
	spanName  string
	spanStart trace.SpanStartOption
	byClass   map[string]attribute.Set // the metrics' attributes, by error class
}

// An Option configures a [Hook].
type Option interface {
	apply(*options)
}

type options struct {
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	prop     propagation.TextMapPropagator
	clientID string
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithTracerProvider sets the provider of the hook's tracer. The default is
// the global one (otel.GetTracerProvider), looked up when the hook is made;
// a global provider set later is used too, as the global delegates to it.
// A nil provider is ignored.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(o *options) {
		if tp != nil {
			o.tp = tp
		}
	})
}

// WithMeterProvider sets the provider of the hook's meter. The default is
// the global one (otel.GetMeterProvider), which, like the tracer provider,
// delegates to one set later. A nil provider is ignored.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) {
		if mp != nil {
			o.mp = mp
		}
	})
}

// WithPropagator sets the propagator that writes the span's context into
// the record's headers. The default is the global propagator if the
// application set one with otel.SetTextMapPropagator (checked on every
// send), else W3C Trace Context (propagation.TraceContext). A nil propagator
// is ignored.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(o *options) {
		if p != nil {
			o.prop = p
		}
	})
}

// WithClientID sets messaging.client.id on the spans: give the pool's
// Config.ClientID. The default is fxkafka.DefaultClientID; an empty id
// means the default.
func WithClientID(id string) Option {
	return optionFunc(func(o *options) { o.clientID = id })
}

// NewHook returns a hook with the given options. It fails only if the
// meter refuses to create its instruments.
func NewHook(opts ...Option) (*Hook, error) {
	o := options{prop: globalOrTraceContext{}}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	if o.mp == nil {
		o.mp = otel.GetMeterProvider()
	}
	if o.clientID == "" {
		o.clientID = fxkafka.DefaultClientID
	}
	meter := o.mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	duration, err := messagingconv.NewClientOperationDuration(meter,
		// From 0.1 ms to 10 s: a loopback send takes well under a
		// millisecond, one waiting out a retry or an outage seconds.
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		return nil, err
	}
	sent, err := messagingconv.NewClientSentMessages(meter)
	if err != nil {
		return nil, err
	}
	h := &Hook{
		tracer:   o.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:     o.prop,
		duration: duration,
		sent:     sent,
		clientID: semconv.MessagingClientID(o.clientID),
	}
	h.topics.Store(&map[string]*topicAttrs{})
	return h, nil
}

// durationBuckets are the boundaries of the duration histogram, in seconds.
var durationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

var classes = []string{fxkafka.ClassOK, fxkafka.ClassUnavailable, fxkafka.ClassClosed, fxkafka.ClassInvalid, fxkafka.ClassUnknown}

// attrs returns the attributes for topic, computing them on first use.
func (h *Hook) attrs(topic string) *topicAttrs {
	if a, ok := (*h.topics.Load())[topic]; ok {
		return a
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.topics.Load()
	if a, ok := old[topic]; ok {
		return a
	}
	common := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationName("send"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(topic),
	}
	name := "send " + topic
	if topic == "" {
		name = "send" // a message refused for having no topic: the conventions' name without a destination
	}
	a := &topicAttrs{
		spanName:  name,
		spanStart: trace.WithAttributes(append(common[:len(common):len(common)], h.clientID)...),
		byClass:   make(map[string]attribute.Set, len(classes)),
	}
	for _, class := range classes {
		kv := append(common[:len(common):len(common)], ClassKey.String(class))
		if class != fxkafka.ClassOK {
			kv = append(kv, semconv.ErrorTypeKey.String(class))
		}
		a.byClass[class] = attribute.NewSet(kv...)
	}
	m := make(map[string]*topicAttrs, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[topic] = a
	h.topics.Store(&m)
	return a
}

// OnSendStart implements [fxkafka.HookSendStart]: it starts the message's
// span and writes its context into the message's headers. It runs on the
// caller's goroutine before the message is handed to a producer.
func (h *Hook) OnSendStart(ctx context.Context, msg *sarama.ProducerMessage) context.Context {
	a := h.attrs(msg.Topic)
	ctx, _ = h.tracer.Start(ctx, a.spanName, producerKind, a.spanStart)
	h.prop.Inject(ctx, headerCarrier{msg})
	return ctx
}

var producerKind = trace.WithSpanKind(trace.SpanKindProducer)

// OnSendEnd implements [fxkafka.HookSendEnd]: it ends the message's span
// with its outcome and records the metrics. It runs on the goroutine that
// learned the outcome, before the send returns.
func (h *Hook) OnSendEnd(ctx context.Context, msg *sarama.ProducerMessage, info fxkafka.SendInfo) {
	a := h.attrs(msg.Topic)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		if info.Partition >= 0 {
			span.SetAttributes(
				semconv.MessagingDestinationPartitionID(strconv.FormatInt(int64(info.Partition), 10)),
				semconv.MessagingKafkaOffset(int(info.Offset)),
			)
		}
		if info.Err != nil {
			span.SetAttributes(semconv.ErrorTypeKey.String(info.Class))
			span.SetStatus(codes.Error, info.Err.Error())
		}
		span.End()
	}
	set, ok := a.byClass[info.Class]
	if !ok {
		set = a.byClass[fxkafka.ClassUnknown]
	}
	h.duration.RecordSet(ctx, info.Duration.Seconds(), set)
	h.sent.AddSet(ctx, 1, set)
}

// headerCarrier lets a propagator read and write a message's headers.
type headerCarrier struct{ msg *sarama.ProducerMessage }

var _ propagation.TextMapCarrier = headerCarrier{}

// Get returns the value of the first header named key.
func (c headerCarrier) Get(key string) string {
	for _, h := range c.msg.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the header named key, or adds it.
func (c headerCarrier) Set(key, value string) {
	for i, h := range c.msg.Headers {
		if string(h.Key) == key {
			c.msg.Headers[i].Value = []byte(value)
			return
		}
	}
	c.msg.Headers = append(c.msg.Headers, sarama.RecordHeader{Key: []byte(key), Value: []byte(value)})
}

// Keys returns the headers' names.
func (c headerCarrier) Keys() []string {
	keys := make([]string, len(c.msg.Headers))
	for i, h := range c.msg.Headers {
		keys[i] = string(h.Key)
	}
	return keys
}

// globalOrTraceContext is the default propagator: the global one if the
// application set one, else W3C Trace Context. OpenTelemetry's global
// propagator propagates nothing until it is set, which would silently break
// the trace between producer and consumer.
type globalOrTraceContext struct{}

// unsetGlobal is the global propagator as it is before any
// otel.SetTextMapPropagator: setting one replaces it.
var unsetGlobal = otel.GetTextMapPropagator()

func (globalOrTraceContext) get() propagation.TextMapPropagator {
	if p := otel.GetTextMapPropagator(); p != unsetGlobal {
		return p
	}
	return propagation.TraceContext{}
}

func (g globalOrTraceContext) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	g.get().Inject(ctx, c)
}

func (g globalOrTraceContext) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return g.get().Extract(ctx, c)
}

func (g globalOrTraceContext) Fields() []string { return g.get().Fields() }
