package fxkafka

import (
	"context"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMessagesAlternatingBetweenTopicsEachLandInTheirOwn(t *testing.T) {
	checkLeaks(t)
	const other = "other-" + topic
	c := startBroker(t, "", topic, other)
	p := newTestPool(t, testConfig(c.ListenAddrs()...))
	ctx := context.Background()
	const n = 200
	names := [2]string{topic, other}
	for i := range n {
		_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: names[i%2], Value: sarama.StringEncoder(names[i%2] + "/" + value(i))})
		require.NoError(t, err)
	}
	for _, name := range names {
		recs := readBack(t, c, name)
		require.Len(t, recs, n/2, "topic %s", name)
		for _, r := range recs {
			assert.True(t, strings.HasPrefix(r.Value, name+"/"), "%s stored in %s", r.Value, name)
		}
	}
	_, _, err := p.SendMessage(ctx, &sarama.ProducerMessage{Topic: "missing-" + topic, Value: sarama.StringEncoder("x")})
	assert.ErrorIs(t, err, ErrInvalidMessage, "a missing topic after a known one is still refused")
}
