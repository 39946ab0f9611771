package fxkafkaprom

import (
	"context"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"go.fxkafka.dev/fxkafka"
)

// DurationBuckets are the upper bounds, in seconds, of
// fxkafka_send_duration_seconds: from 0.1 ms (a send on loopback) to 10 s
// (a send waiting out retries or an outage), in 1-2.5-5 steps.
var DurationBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// BatchBuckets are the upper bounds of fxkafka_batch_messages: powers of two
// from 1 to 8192 messages.
var BatchBuckets = prometheus.ExponentialBuckets(1, 2, 14)

var classes = []string{fxkafka.ClassOK, fxkafka.ClassUnavailable, fxkafka.ClassClosed, fxkafka.ClassInvalid, fxkafka.ClassUnknown}

// Histograms is a fxkafka hook that observes every send a pool's hooks see,
// and a prometheus.Collector exporting what it observed:
//
//   - fxkafka_send_duration_seconds{class}: from the start of a send to its
//     outcome, one observation per message, by error class ("ok",
//     "unavailable", "closed", "invalid", "unknown"; see
//     [fxkafka.ErrorClass]). Every class's series exists from the start,
//     at zero, so a rate over it is never absent.
//   - fxkafka_batch_messages: for each acknowledged message, how many
//     messages the record batch that carried it held (one observation per
//     message, so its quantiles say "half the messages travelled in batches
//     of at most N"). A send path that cannot tell the batch
//     (fxkafka.SendInfo.Batch 0) observes nothing here.
//
// A message refused by the pool's own checks (nil, no topic, too large) is
// seen too: it is observed with class "invalid", as
// fxkafka_messages_failed_total{class="invalid"}, from the pool's Stats,
// counts it.
//
// Register it with the pool with fxkafka.WithHook, and with a
// prometheus.Registerer; [Module] does both. It is safe for concurrent use;
// one Histograms may serve several pools.
type Histograms struct {
	duration *prometheus.HistogramVec
	byClass  map[string]prometheus.Observer // read-only after NewHistograms
	batch    prometheus.Histogram
}

var (
	_ fxkafka.HookSendEnd  = (*Histograms)(nil)
	_ prometheus.Collector = (*Histograms)(nil)
)

// NewHistograms returns empty histograms.
func NewHistograms() *Histograms {
	h := &Histograms{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fxkafka_send_duration_seconds",
			Help:    "Time from the start of a send to its outcome, per message, by error class: ok was acknowledged; unavailable, closed and invalid were not written; unknown may have been.",
			Buckets: DurationBuckets,
		}, []string{"class"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fxkafka_batch_messages",
			Help:    "Messages in the record batch that carried each acknowledged message, observed once per message.",
			Buckets: BatchBuckets,
		}),
		byClass: make(map[string]prometheus.Observer, len(classes)),
	}
	for _, c := range classes {
		h.byClass[c] = h.duration.WithLabelValues(c)
	}
	return h
}

// OnSendEnd implements [fxkafka.HookSendEnd]: it observes the message's
// duration and, if acknowledged, its batch. It runs on the goroutine that
// learned the outcome and never blocks.
func (h *Histograms) OnSendEnd(_ context.Context, _ *sarama.ProducerMessage, info fxkafka.SendInfo) {
	o, ok := h.byClass[info.Class]
	if !ok {
		o = h.byClass[fxkafka.ClassUnknown]
	}
	o.Observe(info.Duration.Seconds())
	if info.Err == nil && info.Batch > 0 {
		h.batch.Observe(float64(info.Batch))
	}
}

// Describe implements prometheus.Collector.
func (h *Histograms) Describe(ch chan<- *prometheus.Desc) {
	h.duration.Describe(ch)
	h.batch.Describe(ch)
}

// Collect implements prometheus.Collector.
func (h *Histograms) Collect(ch chan<- prometheus.Metric) {
	h.duration.Collect(ch)
	h.batch.Collect(ch)
}
