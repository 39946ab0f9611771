package fxkafkaotel_test

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	"go.fxkafka.dev/fxkafka/fxkafkaotel"
)

// headersAfterStart returns the headers OnSendStart writes into a message
// sent with a span and baggage in its context.
func headersAfterStart(t *testing.T, h *fxkafkaotel.Hook, tel *telemetry) map[string]string {
	t.Helper()
	member, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(member)
	require.NoError(t, err)
	ctx, parent := tel.tp.Tracer("test").Start(baggage.ContextWithBaggage(context.Background(), bag), "parent")
	defer parent.End()
	msg := &sarama.ProducerMessage{Topic: topic}
	h.OnSendStart(ctx, msg)
	out := map[string]string{}
	for _, hd := range msg.Headers {
		out[string(hd.Key)] = string(hd.Value)
	}
	return out
}

// TestTheDefaultPropagatorIsTheGlobalOnceOneIsSet runs its body in a child
// process, so that the global propagator it sets stays out of the other
// tests (TestModuleFallsBackToTheGlobals relies on it being unset).
func TestTheDefaultPropagatorIsTheGlobalOnceOneIsSet(t *testing.T) {
	if os.Getenv("FXKAFKAOTEL_GLOBAL_PROPAGATOR_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestTheDefaultPropagatorIsTheGlobalOnceOneIsSet$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "FXKAFKAOTEL_GLOBAL_PROPAGATOR_CHILD=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "child test:\n%s", out)
		assert.Contains(t, string(out), "--- PASS: TestTheDefaultPropagatorIsTheGlobalOnceOneIsSet")
		return
	}

	tel := newTelemetry(t)
	h, err := fxkafkaotel.NewHook(fxkafkaotel.WithTracerProvider(tel.tp), fxkafkaotel.WithMeterProvider(tel.mp))
	require.NoError(t, err)
	before := headersAfterStart(t, h, tel)
	assert.Contains(t, before, "traceparent", "W3C Trace Context while no global propagator is set")
	assert.NotContains(t, before, "baggage")

	otel.SetTextMapPropagator(propagation.Baggage{}) // after the hook was made: checked on every send
	after := headersAfterStart(t, h, tel)
	assert.Equal(t, map[string]string{"baggage": "tenant=acme"}, after, "the global propagator, once set")
}
